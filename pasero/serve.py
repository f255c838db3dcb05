"""Translation over HTTP: the models of `pasero-serve`, a JSON API and a page to try them.

    POST /translate  {"text": "Guten Morgen." | ["...", ...], "model": NAME, "beam_size": 5, ...}
                  -> {"model": NAME, "translations": ["Good morning.", ...]}
    GET  /models     the models with their languages and decoding defaults
    GET  /           a page: type text, pick a model, read its translation (?text=... translates at once)

Concurrent requests are batched: while the model decodes one batch, new requests queue up, and the
next batch takes every queued request with the same model and options, so a busy server decodes
many sentences per forward pass instead of one request at a time. Decoding runs in a worker thread;
the event loop keeps accepting requests. A request's decoding options are pasero-decode's
(SearchOptions), checked like any other input: a bad one is a 400 naming it.

No `from __future__ import annotations` here: FastAPI reads the endpoints' annotations (Request) as
objects.
"""

import asyncio
import dataclasses
import html
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pasero.errors import ConfigError
from pasero.options import updated

if TYPE_CHECKING:
    from pasero.generator import TextGenerator
    from pasero.search_options import SearchOptions

logger = logging.getLogger(__name__)

MAX_SENTENCES = 256  # per request: a larger job belongs to pasero-decode
MAX_BATCH_SENTENCES = 512  # sentences of queued requests decoded together


class RequestError(ValueError):
    """A request the server refuses (HTTP status and a message that says what to change)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message, self.status = message, status


@dataclasses.dataclass
class _Job:
    lines: list[str]
    options: "SearchOptions"
    future: asyncio.Future


class Batcher:
    """One queue per model; a worker task decodes the queued requests of equal options together."""

    def __init__(self, generator: "TextGenerator"):
        self.generator = generator
        self.queue: asyncio.Queue[_Job] = asyncio.Queue()
        self.batches = self.requests = 0
        self._worker: asyncio.Task | None = None

    async def translate(self, lines: list[str], options: "SearchOptions") -> list[str]:
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._run())
        job = _Job(lines, options, asyncio.get_running_loop().create_future())
        await self.queue.put(job)
        return await job.future

    async def _run(self) -> None:
        while True:
            jobs = [await self.queue.get()]
            while not self.queue.empty() and sum(len(j.lines) for j in jobs) < MAX_BATCH_SENTENCES:
                jobs.append(self.queue.get_nowait())
            groups: dict[tuple, list[_Job]] = {}
            for job in jobs:  # requests of equal options together
                groups.setdefault(dataclasses.astuple(job.options), []).append(job)
            for group in groups.values():
                await self._decode(group, group[0].options)

    async def _decode(self, jobs: list[_Job], options: "SearchOptions") -> None:
        lines = [line for job in jobs for line in job.lines]
        try:
            results = await asyncio.to_thread(self.generator.decode, lines, **dataclasses.asdict(options))
        except Exception as e:  # noqa: BLE001 - the requests get the error, the worker goes on
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(e)
            return
        self.batches, self.requests = self.batches + 1, self.requests + len(jobs)
        start = 0
        for job in jobs:
            if not job.future.done():  # a client that left has its future cancelled
                job.future.set_result([nbest[0]["detok"] for nbest in results[start:start + len(job.lines)]])
            start += len(job.lines)


def parse_request(body: Any, models: Mapping[str, Any]) -> tuple[str, list[str], dict[str, Any]]:
    """(model name, lines, decoding options) of a /translate body, or a RequestError."""
    if not isinstance(body, dict):
        raise RequestError('the body must be a JSON object, e.g. {"text": "Guten Morgen."}')
    body = dict(body)
    text = body.pop("text", None)
    name = body.pop("model", None) or next(iter(models))
    if name not in models:
        raise RequestError(f"unknown model '{name}'; this server has: {', '.join(models)}", status=404)
    if isinstance(text, str):
        lines = [text]
    elif isinstance(text, list) and text and all(isinstance(t, str) for t in text):
        lines = list(text)
    else:
        raise RequestError('"text" must be a string or a non-empty list of strings')
    if len(lines) > MAX_SENTENCES:
        raise RequestError(f"{len(lines)} sentences in one request; send at most {MAX_SENTENCES} "
                           "(or use pasero-decode for files)", status=413)
    if any("\n" in line for line in lines):
        raise RequestError('a sentence contains a line break: send one sentence per item of "text"')
    return name, lines, body


def request_options(generator: "TextGenerator", options: dict[str, Any]) -> "SearchOptions":
    try:
        return updated(generator.options, "request", **options)
    except ConfigError as e:
        raise RequestError(str(e)) from None


def model_info(generator: "TextGenerator") -> dict[str, Any]:
    return {"source_lang": generator.source_lang, "target_lang": generator.target_lang,
            "lang_pairs": generator.lang_pairs or None, "options": dataclasses.asdict(generator.options)}


def create_app(models: Mapping[str, "TextGenerator"]) -> Any:
    """The FastAPI application serving `models` ({name: generator}; the first one is the default)."""
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse

    app = FastAPI(title="pasero-serve", docs_url="/docs")
    batchers = {name: Batcher(generator) for name, generator in models.items()}
    app.state.batchers = batchers

    @app.exception_handler(RequestError)
    async def refused(request: Request, error: RequestError) -> JSONResponse:
        return JSONResponse({"error": error.message}, status_code=error.status)

    @app.get("/models")
    async def list_models() -> dict[str, Any]:
        return {"models": {name: model_info(generator) for name, generator in models.items()}}

    @app.post("/translate")
    async def translate(request: Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            raise RequestError("the body is not JSON") from None
        name, lines, options = parse_request(body, models)
        translations = await batchers[name].translate(lines, request_options(models[name], options))
        return {"model": name, "translations": translations}

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return PAGE.replace("{{MODELS}}", "".join(f"<option>{html.escape(name)}</option>" for name in models))

    return app


def model_names(paths: Sequence[str]) -> dict[str, str]:
    """{name: path} of `NAME=PATH` or PATH arguments (a path's name: its folder for model.pt files)."""
    out: dict[str, str] = {}
    for arg in paths:
        name, sep, path = arg.partition("=")
        if not sep:
            path = arg
            p = Path(arg)
            name = p.parent.name if p.name in ("model.pt", "checkpoint_best.pt", "checkpoint_last.pt") else p.stem
        if name in out:
            raise ConfigError(f"two models named '{name}': name them, e.g. {name}2={path}")
        out[name] = path
    return out


PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>pasero-serve</title>
<style>body{font-family:sans-serif;max-width:50em;margin:2em auto}textarea,#out{width:100%;min-height:6em;
font-size:1.1em}#out{border:1px solid #ccc;padding:.5em;white-space:pre-wrap}#error{color:#b00}</style></head>
<body><h1>pasero-serve</h1>
<p><label>Model <select id="model">{{MODELS}}</select></label>
<label>Beam <input id="beam" type="number" min="1" value="5" style="width:4em"></label></p>
<textarea id="text" placeholder="One sentence per line"></textarea>
<p><button id="go">Translate</button> <span id="error"></span></p>
<div id="out"></div>
<script>
async function translate() {
  const lines = document.getElementById("text").value.split("\\n").filter(l => l.trim());
  document.getElementById("error").textContent = "";
  if (!lines.length) return;
  const body = {text: lines, model: document.getElementById("model").value,
                beam_size: parseInt(document.getElementById("beam").value)};
  const response = await fetch("/translate", {method: "POST", headers: {"Content-Type": "application/json"},
                                              body: JSON.stringify(body)});
  const answer = await response.json();
  if (!response.ok) { document.getElementById("error").textContent = answer.error; return; }
  document.getElementById("out").textContent = answer.translations.join("\\n");
}
document.getElementById("go").onclick = translate;
const given = new URLSearchParams(location.search).get("text");
if (given) { document.getElementById("text").value = given; translate(); }
</script></body></html>
"""
