"""Downloads against a local HTTP server: resume, retries, checksums, atomicity, safe extraction."""

import hashlib
import io
import os
import tarfile
import threading
import zipfile

import pytest
from http_server import FileServer

from pasero.download import Checksum, download, extract, fetch, local_name
from pasero.errors import ChecksumError, ConfigError, DownloadError

FAST = {"backoff": 0.01, "timeout": 10}


@pytest.fixture
def server():
    srv = FileServer()
    yield srv
    srv.close()


def payload(size=300_000):
    return os.urandom(size)


def sha256(data):
    return Checksum("sha256", hashlib.sha256(data).hexdigest())


def make_tar(members, mode="w:gz"):
    """members: list of (TarInfo, bytes | None)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def file_member(name, data=b"hello\n"):
    return tarfile.TarInfo(name), data


def link_member(name, target, kind=tarfile.SYMTYPE):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


def test_resume_after_dropped_connection(tmp_path):
    server = FileServer(cut_first=True)
    try:
        data = payload()
        url = server.add("/data/corpus.tar.gz", data)
        dest = tmp_path / "corpus.tar.gz"
        assert download(url, dest, sha256(data), **FAST) is True
        assert dest.read_bytes() == data
        first, second = server.requests
        assert first["range"] is None
        resumed_at = int(second["range"].removeprefix("bytes=").rstrip("-"))
        assert second["status"] == 206 and 0 < resumed_at <= len(data) // 2
        assert not (tmp_path / "corpus.tar.gz.part").exists()
    finally:
        server.close()


def test_server_without_ranges_restarts_from_zero(tmp_path):
    server = FileServer(ranges=False, cut_first=True)
    try:
        data = payload()
        dest = tmp_path / "x.bin"
        download(server.add("/x.bin", data), dest, sha256(data), **FAST)
        assert dest.read_bytes() == data
        assert [r["status"] for r in server.requests] == [200, 200]
    finally:
        server.close()


def test_checksum_mismatch_names_file_and_both_sums(server, tmp_path):
    data = payload(1000)
    url = server.add("/a/de-en.tgz", data)
    wrong = "0" * 32
    dest = tmp_path / "de-en.tgz"
    with pytest.raises(ChecksumError) as e:
        download(url, dest, Checksum.parse(f"md5:{wrong}"), **FAST)
    message = str(e.value)
    assert str(dest) in message and wrong in message and hashlib.md5(data).hexdigest() in message
    assert "\n" not in message
    assert not dest.exists() and not (tmp_path / "de-en.tgz.part").exists()


def test_verified_file_is_reused_and_corrupt_one_replaced(server, tmp_path):
    data = payload(5000)
    url = server.add("/f.bin", data)
    dest = tmp_path / "f.bin"
    assert download(url, dest, sha256(data), **FAST) is True
    assert download(url, dest, sha256(data), **FAST) is False
    assert len(server.requests) == 1
    dest.write_bytes(b"corrupt")
    assert download(url, dest, sha256(data), **FAST) is True
    assert dest.read_bytes() == data


def test_a_checksum_typo_keeps_the_verified_archive(server, tmp_path):
    data = payload(5000)
    url = server.add("/f.tgz", data)
    dest = tmp_path / "f.tgz"
    download(url, dest, sha256(data), **FAST)
    typo = Checksum("sha256", "0" + sha256(data).hexdigest[1:])
    with pytest.raises(ChecksumError) as e:
        download(url, dest, typo, **FAST)
    assert "the checksum in the config is probably wrong" in str(e.value)
    assert f"sha256:{sha256(data).hexdigest}" in str(e.value)
    assert dest.read_bytes() == data and not (tmp_path / "f.tgz.part").exists()


def test_without_a_checksum_an_html_page_never_gets_the_archive_name(server, tmp_path):
    url = server.add("/corpus.tgz", b"\n<!DOCTYPE html>\n<html><body>Please log in</body></html>\n")
    dest = tmp_path / "corpus.tgz"
    with pytest.raises(DownloadError, match="the server sent an HTML page, not the file"):
        download(url, dest, **FAST)
    assert not dest.exists() and not (tmp_path / "corpus.tgz.part").exists()


def test_without_a_checksum_a_cut_stream_is_caught_and_the_rerun_completes(tmp_path, caplog):
    """No Content-Length and a connection closed half-way: the archive is read to its end before it
    gets its name, and its sha256 is logged only once it is known complete."""
    caplog.set_level("INFO", logger="pasero.download")
    data = make_tar([file_member(f"f{i}.txt", os.urandom(20_000)) for i in range(10)])
    server = FileServer(cut_first=True, length=False)
    try:
        url = server.add("/corpus.tar.gz", data)
        dest = tmp_path / "corpus.tar.gz"
        with pytest.raises(DownloadError, match="incomplete or damaged") as e:
            download(url, dest, **FAST)
        assert "\n" not in str(e.value) and "checksum of" not in caplog.text
        assert not dest.exists() and not (tmp_path / "corpus.tar.gz.part").exists()
        assert download(url, dest, **FAST) is True
        assert dest.read_bytes() == data
        assert f"sha256:{hashlib.sha256(data).hexdigest()}" in caplog.text
        dest.write_bytes(data[: len(data) // 2])  # truncated by a full disk, say: replaced on the next run
        assert download(url, dest, **FAST) is True
        assert dest.read_bytes() == data
    finally:
        server.close()


def test_http_error_and_unreachable_host_are_one_line_errors(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(server.add("/x", b"x").replace("/x", "/missing"), tmp_path / "m", **FAST)
    dead = FileServer()
    url = dead.add("/x", b"x")
    dead.close()
    with pytest.raises(DownloadError, match="gave up after 2 retries") as e:
        download(url, tmp_path / "x", retries=2, **FAST)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("spec", ["md5:xyz", "sha1:" + "0" * 40, "sha256:abc", "nonsense"])
def test_bad_checksum_spec(spec):
    with pytest.raises(ConfigError):
        Checksum.parse(spec)


def test_local_name_keeps_url_path_apart():
    train = local_name("https://h.org/archive/2017-01-trnted/texts/de/en/de-en.tgz")
    test = local_name("https://h.org/archive/2017-01-ted-test/texts/de/en/de-en.tgz")
    assert train != test and train.name == test.name == "de-en.tgz"
    assert ".." not in local_name("http://h.org/a/../../b.tgz").parts


@pytest.mark.parametrize("member", [
    file_member("../evil.txt"),
    file_member("a/../../evil.txt"),
    file_member("/tmp/evil-absolute.txt"),
    link_member("link", "../../outside"),
    link_member("abs", "/etc/passwd"),
    link_member("hard", "../outside", tarfile.LNKTYPE),
])
def test_escaping_tar_members_are_refused(tmp_path, member):
    archive = tmp_path / "bad.tar.gz"
    archive.write_bytes(make_tar([file_member("ok/readme.txt"), member]))
    target = tmp_path / "raw" / "bad"
    with pytest.raises(DownloadError, match="unsafe archive") as e:
        extract(archive, target)
    assert "\n" not in str(e.value)
    assert not target.exists() and not (tmp_path / "evil.txt").exists() and not (tmp_path / "raw" / "evil.txt").exists()
    assert os.listdir(tmp_path / "raw") == []  # the temporary folder is gone too


def test_links_inside_the_archive_are_extracted(tmp_path):
    archive = tmp_path / "good.tar"
    archive.write_bytes(make_tar([file_member("d/a.txt", b"A"), link_member("d/b.txt", "a.txt"),
                                  link_member("d/c.txt", "d/a.txt", tarfile.LNKTYPE)], mode="w"))
    target = extract(archive, tmp_path / "good")
    assert [(target / "d" / n).read_bytes() for n in ("a.txt", "b.txt", "c.txt")] == [b"A"] * 3


def test_truncated_archive_is_an_error(tmp_path):
    data = make_tar([file_member(f"f{i}.txt", os.urandom(20_000)) for i in range(5)])
    archive = tmp_path / "cut.tgz"
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(DownloadError, match="truncated or corrupt archive"):
        extract(archive, tmp_path / "cut")
    assert not (tmp_path / "cut").exists()


def test_zip_extraction_and_refusal(tmp_path):
    good, bad = tmp_path / "good.zip", tmp_path / "bad.zip"
    with zipfile.ZipFile(good, "w") as z:
        z.writestr("x/a.txt", "A")
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("../evil.txt", "E")
    assert (extract(good, tmp_path / "good") / "x" / "a.txt").read_text() == "A"
    with pytest.raises(DownloadError, match="outside"):
        extract(bad, tmp_path / "bad")
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(good.read_bytes()[:-30])
    with pytest.raises(DownloadError, match="truncated or corrupt"):
        extract(truncated, tmp_path / "truncated")


def test_concurrent_fetches_share_one_download(server, tmp_path):
    data = make_tar([file_member("corpus/train.txt", b"x\n" * 1000)])
    url = server.add("/c/corpus.tgz", data)
    results, errors = [], []

    def job():
        try:
            results.append(fetch(url, tmp_path, sha256(data), **FAST))
        except Exception as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=job) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(results)) == 1
    assert (results[0] / "corpus" / "train.txt").read_bytes() == b"x\n" * 1000
    assert len(server.requests) == 1
    assert results[0] == tmp_path / local_name(url).parent / "corpus"
