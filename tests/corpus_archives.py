"""Corpus files in their real formats, packed as the real archives are (tests only).

TED talks TSVs (Qi et al., 2018), IWSLT `train.tags.{pair}.{lang}` files (a header block of
tag lines per talk, then its text lines) and IWSLT XML dev/test sets (`<seg id="N">`).
"""

import hashlib
import io
import tarfile

from pasero.cli.download import download_main
from pasero.files import count_lines


def targz(files):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode("utf-8") if isinstance(text, str) else text
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def md5(data):
    return "md5:" + hashlib.md5(data).hexdigest()


def run(*argv):
    return download_main([str(a) for a in argv])


def lines(path):
    return path.read_text(encoding="utf-8").splitlines()


def assert_aligned(text_dir, src, tgt, splits=("train", "valid", "test")):
    for split in splits:
        assert count_lines(text_dir / f"{split}.{src}") == count_lines(text_dir / f"{split}.{tgt}") > 0


def talk_header(t, lang, year=17):
    """The tag lines that open talk `t`; IWSLT'17 files also name a reviewer and a translator."""
    header = [f"<url>http://www.ted.com/talks/{t}.html</url>", f"<keywords>talks, {lang}</keywords>",
              f"<speaker>Speaker {t}</speaker>", f"<talkid>{t}</talkid>",
              f"<title>Title {t} {lang}</title>", f"<description>About {t} {lang}</description>"]
    if year >= 17:
        header += ['<reviewer href="http://x">R</reviewer>', '<translator href="http://y">T</translator>']
    return header


def tags_file(lang, n_talks=2, per_talk=30, blank_at=None, year=17):
    out = []
    for t in range(n_talks):
        out += talk_header(t, lang, year)
        for i in range(per_talk):
            k = t * per_talk + i
            out.append("" if k == blank_at else f"line {k} {lang}")
    return "\n".join(out) + "\n"


def xml_file(name, lang, n, text="{name} {i} {lang} &amp; co"):
    segs = [f'<seg id="{i + 1}"> {text.format(name=name, i=i, lang=lang)} </seg>' for i in range(n)]
    return "\n".join([
        '<?xml version="1.0" encoding="UTF-8"?>', "<mteval>", f'<srcset setid="{name}" srclang="{lang}">',
        '<doc docid="1" genre="lectures">', "<url>http://www.ted.com/talks/1.html</url>",
        "<description>TED Talk Subtitles and Transcript</description>", "<talkid>1</talkid>",
        "<title>A title</title>", *segs, "</doc>", "</srcset>", "</mteval>",
    ]) + "\n"


def xml_name(year, name, pair, lang):
    return f"IWSLT{year}.{name}.{pair}.{lang}.xml"
