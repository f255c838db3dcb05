"""pasero-serve over 127.0.0.1: concurrent clients get the translations pasero-decode gives, bad
requests a clear 4xx, a model that cannot load a one-line start-up error, the page a translation."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from decoding_models import save_copy_checkpoint, word_corpus

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from pasero.generator import TextGenerator  # noqa: E402

LINES = word_corpus(24, seed=5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(url: str, body: object | None = None, raw: bytes | None = None) -> tuple[int, dict]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return save_copy_checkpoint(tmp_path_factory.mktemp("serve") / "copy" / "model.pt")


@pytest.fixture(scope="module")
def server(model):
    """The server as a user starts it; ready once /models answers (however long the start takes)."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "pasero.cli.serve", f"mine={model}", "--port", str(port),
                                "--dtype", "float32"], stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    while True:
        assert process.poll() is None, process.stderr.read()
        try:
            if call(f"{url}/models")[0] == 200:
                break
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.2)
    yield url
    process.terminate()
    process.wait()


def test_concurrent_clients_get_what_pasero_decode_gives(server, model):
    expected = [n[0]["detok"] for n in TextGenerator.build(model, dtype="float32").decode(LINES)]
    chunks = [LINES[i:i + 3] for i in range(0, len(LINES), 3)]
    with ThreadPoolExecutor(len(chunks)) as pool:
        answers = list(pool.map(lambda chunk: call(f"{server}/translate", {"text": chunk}), chunks))
    assert all(status == 200 for status, _ in answers)
    assert [t for _, answer in answers for t in answer["translations"]] == expected
    status, one = call(f"{server}/translate", {"text": LINES[0], "model": "mine", "beam_size": 1})
    greedy = TextGenerator.build(model, dtype="float32").decode(LINES[0], beam_size=1)[0][0]["detok"]
    assert status == 200 and one == {"model": "mine", "translations": [greedy]}
    status, models = call(f"{server}/models")
    assert models["models"]["mine"]["options"]["beam_size"] == 3


@pytest.mark.parametrize("body, status, message", [
    ({"text": 3}, 400, '"text" must be a string or a non-empty list of strings'),
    ({"text": "a b", "beam_size": 0}, 400, "option 'beam_size' must be positive; got 0"),
    ({"text": "a b", "beam": 2}, 400, "unknown option 'beam'; did you mean beam_size?"),
    ({"text": "a b", "model": "other"}, 404, "unknown model 'other'; this server has: mine"),
    ({"text": ["a"] * 300}, 413, "300 sentences in one request; send at most 256"),
    ({"text": "one\ntwo"}, 400, "a sentence contains a line break"),
])
def test_bad_requests_get_a_clear_4xx(server, body, status, message):
    code, answer = call(f"{server}/translate", body)
    assert code == status and message in answer["error"]


def test_a_body_that_is_not_json_is_a_400(server):
    code, answer = call(f"{server}/translate", raw=b"{not json")
    assert code == 400 and answer["error"] == "the body is not JSON"


def test_a_model_that_cannot_load_is_a_one_line_start_up_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "pasero.cli.serve", str(tmp_path / "nowhere.pt"), "--port",
                             str(free_port())], capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "nowhere.pt" in result.stderr


def test_the_page_shows_a_translation(server, model, tmp_path):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("no chromium (.ci/run installs Debian's package)")
    expected = TextGenerator.build(model, dtype="float32").decode(LINES[1])[0][0]["detok"]
    url = f"{server}/?text={urllib.parse.quote(LINES[1])}"
    dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                          "--disable-background-networking", "--disable-component-update", "--disable-sync",
                          f"--user-data-dir={tmp_path / 'chromium'}", "--virtual-time-budget=30000", "--dump-dom",
                          url], capture_output=True, text=True, check=True).stdout
    assert f'<div id="out">{expected}</div>' in dom
