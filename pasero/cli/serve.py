"""pasero-serve: translate over HTTP with one or more models (see pasero/serve.py for the API)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from pasero.cli.common import command, setup_logging
from pasero.search_options import DecodeOptions

logger = logging.getLogger("pasero.serve")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pasero-serve",
        description="Serve models over HTTP: POST /translate with JSON {\"text\": ..., \"model\": ..., decoding "
                    "options}, GET /models, and a page at / to try them. Concurrent requests are batched.")
    parser.add_argument("models", nargs="+", metavar="[NAME=]MODEL",
                        help="model files or folders (model.pt, checkpoint_best.pt...), optionally named; the "
                             "first is the default")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on")
    defaults = DecodeOptions()
    parser.add_argument("--device", default=defaults.device, help="auto, cpu or cuda")
    parser.add_argument("--dtype", default=defaults.dtype, help="auto, float32, bfloat16 or float16")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size,
                        help="source tokens per decoded batch")
    return parser


@command
def serve_main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    from pasero.serve import create_app, model_names

    try:
        import uvicorn
    except ImportError:
        from pasero.errors import ConfigError

        raise ConfigError("pasero-serve needs its server libraries: pip install -e '.[serve]'") from None
    from pasero.generator import TextGenerator

    models = {}
    for name, path in model_names(args.models).items():  # every model loads before the port opens
        models[name] = TextGenerator.build(path, device=args.device, dtype=args.dtype, batch_size=args.batch_size)
        logger.info("model %s: %s (%s-%s)", name, models[name].path, models[name].source_lang,
                    models[name].target_lang)
    uvicorn.run(create_app(models), host=args.host, port=args.port, log_level="info")
    return 0


if __name__ == "__main__":
    raise SystemExit(serve_main())
