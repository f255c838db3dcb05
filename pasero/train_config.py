"""Every training option in one dataclass, loaded from YAML and overridden from the command line.

One flat namespace: training fields (below) and model fields (those of
`pasero.model_config.TransformerConfig`, which override the chosen `arch`) share the same YAML keys and
`--option value` flags, so `--dropout 0.3` or `encoder_layers: 2` work the same way. Values are
parsed as YAML scalars (`--lr 5e-4`, `--max-epochs null`, `--valid-decode false`), and string values
may use `{src}`, `{tgt}` and `{pair}`, which are replaced with the language codes, so one config
serves every language pair. A misspelt key is an error that lists the closest known names: a typo
must never silently fall back to a default. `max_time` is a duration ("4h", "1h30m", "01:30:00" or
seconds), stored as seconds.
"""

from __future__ import annotations

import argparse
import builtins
import contextlib
import dataclasses
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping

import yaml

from pasero.errors import ConfigError, did_you_mean
from pasero.files import atomic_output
from pasero.model_config import ARCHITECTURES, CONFIG_FIELDS, TransformerConfig, build_config

BEST_METRICS = {"loss": "min", "nll": "min", "ppl": "min", "bleu": "max", "chrf": "max"}
CHOICES = {
    "arch": tuple(ARCHITECTURES),
    "optimizer": ("adam", "adamw"),
    "lr_scheduler": ("inverse_sqrt", "constant"),
    "device": ("auto", "cpu", "cuda"),
    "dtype": ("auto", "float32", "bfloat16", "float16"),
    "best_metric": tuple(BEST_METRICS),
}
INFERENCE_FIELDS = ("beam_size", "len_penalty", "max_len_a", "max_len_b", "source_lang", "target_lang", "bleu_tok")
# Options that do not change the weights a run computes at a given step, so that changing them
# continues training (pasero-train --reset-if-changed) rather than starting over: paths (what they
# point to is compared instead: dictionary, tokenizer, a fingerprint of the training data), when to
# stop (raising max_steps, patience or max_time continues a run), how often to log, validate and keep
# checkpoints, decoding defaults, and where and in which precision the updates are computed.
# best_metric is not among them: the recorded validation history holds values of that metric.
RESUMABLE_FIELDS = frozenset({
    "data_dir", "dict", "tokenizer", "model_dir", "train_split", "valid_split",
    "max_steps", "max_epochs", "patience", "max_time",
    "log_interval", "valid_interval", "valid_batch_size", "valid_decode", "valid_beam_size", "valid_max_size",
    "keep_last", "keep_best", "reset_optimizer",
    "beam_size", "len_penalty", "max_len_a", "max_len_b", "bleu_tok",
    "device", "dtype",
})


def _opt(default: Any, help: str) -> Any:
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    # Data
    data_dir: str | None = _opt(None, "folder of the binarized data ({split}.{src}-{tgt}.{lang}.bin/.idx)")
    dict: str | None = _opt(None, "fairseq dict.txt shared by both languages (default: DATA_DIR/dict.txt)")
    tokenizer: str | None = _opt(None, "tokenizer folder, embedded in checkpoints and used to detokenize "
                                       "the valid set for BLEU/chrF")
    model_dir: str | None = _opt(None, "where checkpoints, logs and the resolved config are written")
    source_lang: str | None = _opt(None, "source language code ({src})")
    target_lang: str | None = _opt(None, "target language code ({tgt})")
    train_split: str = _opt("train", "name of the training split")
    valid_split: str = _opt("valid", "name of the validation split")
    max_source_len: int = _opt(256, "skip training pairs whose source is longer (tokens, eos included)")
    max_target_len: int = _opt(256, "skip training pairs whose target is longer (tokens, eos included)")
    max_len_ratio: float | None = _opt(9.0, "skip training pairs whose length ratio exceeds this (null: off)")
    # Model (any TransformerConfig field may be given too and overrides the architecture)
    arch: str = _opt("transformer_small", "named architecture (pasero.model_config.ARCHITECTURES)")
    # Batching and optimization
    batch_size: int = _opt(4096, "tokens per batch and process, padding included (fairseq --max-tokens)")
    virtual_dp_size: int = _opt(1, "simulated number of GPUs: batches per update = virtual_dp_size, with "
                                   "gradient accumulation of virtual_dp_size / number of processes")
    optimizer: str = _opt("adam", "adam (L2 weight decay) or adamw (decoupled weight decay)")
    lr: float = _opt(5e-4, "peak learning rate")
    adam_betas: list[float] = _opt([0.9, 0.98], "Adam betas")
    adam_eps: float = _opt(1e-8, "Adam epsilon")
    weight_decay: float = _opt(0.0, "weight decay")
    lr_scheduler: str = _opt("inverse_sqrt", "inverse_sqrt (linear warm-up then 1/sqrt decay) or constant")
    warmup: int = _opt(4000, "warm-up steps (linear from warmup_init_lr to lr)")
    warmup_init_lr: float = _opt(1e-7, "learning rate of the first update")
    clip_norm: float = _opt(0.0, "clip the gradient norm to this value (0: no clipping)")
    label_smoothing: float = _opt(0.1, "label smoothing of the cross-entropy")
    # Stopping
    max_steps: int | None = _opt(100000, "stop after this many updates (null: no limit)")
    max_epochs: int | None = _opt(None, "stop after this many epochs (null: no limit)")
    patience: int = _opt(0, "stop after this many validations without improvement of best_metric (0: off)")
    max_time: float | None = _opt(None, "wall-clock budget of the training loop (updates, validation, saving), "
                                        "summed over restarts: seconds or 90s, 30m, 4h, 1h30m, 1.5h, HH:MM:SS, "
                                        "MM:SS; when reached, validate, save and finish (null: no limit)")
    # Validation, logging and checkpoints
    log_interval: int = _opt(100, "log training figures every N updates")
    valid_interval: int = _opt(1000, "validate and save a checkpoint every N updates")
    valid_batch_size: int | None = _opt(None, "tokens per validation batch (default: batch_size)")
    valid_decode: bool = _opt(True, "decode the valid set at each validation for BLEU and chrF")
    valid_beam_size: int = _opt(1, "beam size of the validation decoding (1: greedy, fast)")
    valid_max_size: int | None = _opt(None, "decode at most this many valid sentences (null: all)")
    best_metric: str = _opt("chrf", "metric that selects checkpoint_best.pt: loss, nll, ppl (lower is "
                                    "better), bleu or chrf (higher is better)")
    keep_last: int = _opt(5, "keep the N most recent checkpoint_{step}.pt (0: all)")
    keep_best: int = _opt(0, "also keep the N best checkpoint_{step}.pt by best_metric")
    # Initialization
    continue_from: str | None = _opt(None, "initialize the weights from this checkpoint when MODEL_DIR has "
                                           "none (fine-tuning; the step count starts at 0)")
    reset_optimizer: bool = _opt(False, "when resuming, start with fresh optimizer moments")
    # Decoding defaults (saved to inference.yaml and in checkpoints)
    beam_size: int = _opt(5, "default beam size for decoding")
    len_penalty: float = _opt(1.0, "default length penalty for decoding")
    max_len_a: float = _opt(1.2, "decoding stops at max_len_a * source length + max_len_b tokens")
    max_len_b: int = _opt(10, "see max_len_a")
    bleu_tok: str = _opt("13a", "sacreBLEU tokenization for validation and test scores")
    # Runtime
    seed: int = _opt(1, "random seed (model init, data order, dropout)")
    device: str = _opt("auto", "auto (cuda when available), cpu or cuda")
    dtype: str = _opt("auto", "auto (float32 on CPU, bfloat16 on CUDA when supported else float16), "
                              "float32, bfloat16 or float16")
    # Model overrides, filled from the model keys of the YAML file and the command line
    # (typing.Dict and builtins.dict: the `dict` field shadows the builtin inside this class body)
    model_overrides: Dict[str, Any] = field(default_factory=builtins.dict, metadata={"internal": True})

    def model_config(self) -> TransformerConfig:
        return build_config(self.arch, **self.model_overrides)

    def inference(self) -> dict[str, Any]:
        """Decoding defaults stored with the model, so decoding needs no training config."""
        return {name: getattr(self, name) for name in INFERENCE_FIELDS}

    def to_dict(self) -> dict[str, Any]:
        """Training fields plus the resolved model config, flat (loadable again with `-c`)."""
        out = {f.name: getattr(self, f.name) for f in train_fields()}
        out.update(dataclasses.asdict(self.model_config()))
        return out

    def best_is_lower(self) -> bool:
        return BEST_METRICS[self.best_metric] == "min"


def train_fields() -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(TrainConfig) if not f.metadata.get("internal")]


def known_keys() -> list[str]:
    return [f.name for f in train_fields()] + list(CONFIG_FIELDS)


def _types() -> dict[str, Any]:
    hints = typing.get_type_hints(TrainConfig)
    hints.update(typing.get_type_hints(TransformerConfig))
    return hints


def _unknown(key: str, where: str) -> ConfigError:
    hint = did_you_mean(key, known_keys()) or "see pasero-train --help"
    return ConfigError(f"{where}: unknown option '{key}'; {hint}")


_DURATION_FORMS = "seconds (5400) or 90s, 30m, 4h, 1h30m, 1.5h, HH:MM:SS, MM:SS, or null"
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_UNITS = re.compile(rf"(?:({_NUMBER})h)?(?:({_NUMBER})m)?(?:({_NUMBER})s)?")
_CLOCK = re.compile(r"\d+(?::[0-5]?\d){1,2}(?:\.\d*)?")


def parse_duration(value: Any, key: str = "max_time") -> float | None:
    """Seconds from a number or a '1h30m' / 'HH:MM:SS' string (None stays None: no limit).

    YAML already turns an unquoted 1:30:00 into 5400 (sexagesimal), which is the same value."""
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        seconds = None if value is None else float(value)
    elif isinstance(value, str):
        seconds = _duration_from_text(value.strip().lower().replace(" ", ""))
    else:
        seconds = math.nan
    if seconds is not None and not math.isfinite(seconds):
        raise ConfigError(f"option '{key}' expects a duration: {_DURATION_FORMS}; got {value!r}")
    return seconds


def _duration_from_text(text: str) -> float:
    """Seconds from the text of a duration; NaN when it is not one."""
    with contextlib.suppress(ValueError):
        return float(text)  # "5400", and "1e-6" (which YAML 1.1 leaves a string)
    if _CLOCK.fullmatch(text):
        seconds = 0.0
        for part in text.split(":"):
            seconds = seconds * 60 + float(part)
        return seconds
    units = _UNITS.fullmatch(text)
    if text and units:
        return sum(float(n) * unit for n, unit in zip(units.groups(), (3600, 60, 1)) if n is not None)
    return math.nan


def format_duration(seconds: float) -> str:
    """'1h30m', '45s': a budget as a person writes it."""
    hours, rest = divmod(seconds, 3600)
    minutes, rest = divmod(rest, 60)
    parts = [f"{int(hours)}h" if hours else "", f"{int(minutes)}m" if minutes else "", f"{rest:.6g}s" if rest else ""]
    return "".join(parts) or "0s"


PARSERS = {"max_time": parse_duration}  # options written in a notation of their own


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """Check a parsed value against a field's type (ints are accepted where floats are expected)."""
    if key in PARSERS:
        return PARSERS[key](value, key)
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType)
    args = typing.get_args(hint) if optional else ()
    if value is None:
        if type(None) in args:
            return None
        raise ConfigError(f"option '{key}' cannot be null")
    base = next(a for a in args if a is not type(None)) if optional else hint
    origin = typing.get_origin(base)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"option '{key}' expects a list, e.g. [0.9, 0.98]; got {value!r}")
        (item,) = typing.get_args(base)
        return [_coerce(key, v, item) for v in value]
    if isinstance(value, str) and base in (int, float):  # YAML 1.1 reads 5e-4 (no dot) as a string
        try:
            value = base(value)
        except ValueError:
            pass
    if base is bool:
        if isinstance(value, bool):
            return value
    elif base is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif base is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif base is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    else:
        return value
    raise ConfigError(f"option '{key}' expects {base.__name__}; got {value!r}")


def _normalize(mapping: Mapping[str, Any], where: str) -> dict[str, Any]:
    keys, out = set(known_keys()), {}
    for key, value in mapping.items():
        name = str(key).replace("-", "_")
        if name not in keys:
            raise _unknown(str(key), where)
        out[name] = value
    return out


def _substitute(value: Any, src: str | None, tgt: str | None) -> Any:
    if isinstance(value, str) and src and tgt:
        return value.replace("{src}", src).replace("{tgt}", tgt).replace("{pair}", f"{src}-{tgt}")
    if isinstance(value, list):
        return [_substitute(v, src, tgt) for v in value]
    return value


def load_config(path: str | os.PathLike | None = None, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """Defaults < YAML file < overrides (already typed values, e.g. from `parse_cli_values`)."""
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: no such config file")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: invalid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of option: value")
        values.update(_normalize(data, str(path)))
    values.update(_normalize(overrides or {}, "command line"))
    cfg = _build(values)
    validate(cfg)
    return cfg


def _build(values: Mapping[str, Any]) -> TrainConfig:
    types = _types()
    values = {k: _coerce(k, v, types[k]) for k, v in values.items()}
    src, tgt = values.get("source_lang"), values.get("target_lang")
    values = {k: _substitute(v, src, tgt) for k, v in values.items()}
    model = {k: values.pop(k) for k in list(values) if k in CONFIG_FIELDS}
    return TrainConfig(**values, model_overrides=model)


def check_settings(settings: Mapping[str, Any], where: str) -> None:
    """Check the training options of a workflow config as pasero-train will, before any job runs
    (an `embed_dim` that `heads` does not divide must not wait for the training job to fail)."""
    values = _normalize(settings, where)
    try:
        check_values(_build(values))
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


def validate(cfg: TrainConfig) -> None:
    for name in ("data_dir", "model_dir", "source_lang", "target_lang"):
        if not getattr(cfg, name):
            raise ConfigError(f"option '{name}' is required (in the config file or as --{name.replace('_', '-')})")
    check_values(cfg)


def check_values(cfg: TrainConfig) -> None:
    """Types are checked on reading; this checks choices, bounds and how options fit together."""
    for name, choices in CHOICES.items():
        if getattr(cfg, name) not in choices:
            raise ConfigError(f"option '{name}' must be one of {', '.join(choices)}; got '{getattr(cfg, name)}'")
    positive = ("batch_size", "virtual_dp_size", "lr", "log_interval", "valid_interval", "max_source_len",
                "max_target_len", "beam_size", "valid_beam_size")
    for name in positive + ("max_steps", "max_epochs", "max_time", "valid_batch_size", "valid_max_size"):
        value = getattr(cfg, name)
        if value is not None and value <= 0:
            raise ConfigError(f"option '{name}' must be positive; got {value}")
    for name in ("warmup", "patience", "keep_last", "keep_best", "clip_norm", "weight_decay", "warmup_init_lr"):
        if getattr(cfg, name) < 0:
            raise ConfigError(f"option '{name}' must not be negative; got {getattr(cfg, name)}")
    if not 0 <= cfg.label_smoothing < 1:
        raise ConfigError(f"option 'label_smoothing' must be in [0, 1); got {cfg.label_smoothing}")
    if len(cfg.adam_betas) != 2:
        raise ConfigError(f"option 'adam_betas' needs two values; got {cfg.adam_betas}")
    if cfg.best_metric in ("bleu", "chrf") and not cfg.valid_decode:
        raise ConfigError(f"best_metric '{cfg.best_metric}' needs valid_decode: true (or choose loss/nll)")
    cfg.model_config()  # unknown architecture or inconsistent model fields


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One `--field` option per training and model field, so `--help` documents all of them.

    Values are read as strings (defaults are suppressed: an absent option keeps the YAML value)
    and parsed by `parse_cli_values`.
    """
    group = parser.add_argument_group("training options (also valid as YAML keys)")
    for f in train_fields():
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        shown = f" [default: {default}]" if default is not None else ""
        _add(group, f.name, f"{f.metadata['help']}{shown}", f.type == "bool")
    group = parser.add_argument_group("model options (override the architecture's values)")
    defaults = dataclasses.asdict(TransformerConfig())
    for name in CONFIG_FIELDS:
        _add(group, name, f"[transformer default: {defaults[name]}, see --arch]", isinstance(defaults[name], bool))


def _add(group: argparse._ArgumentGroup, name: str, help: str, is_bool: bool) -> None:
    flags = [f"--{name.replace('_', '-')}"] + ([f"--{name}"] if "_" in name else [])
    extra = dict(nargs="?", const="true") if is_bool else {}
    group.add_argument(*flags, dest=f"cfg.{name}", metavar="VALUE", default=argparse.SUPPRESS,
                       help=help.replace("%", "%%"), **extra)


def parse_cli_values(namespace: argparse.Namespace) -> dict[str, Any]:
    """The config options given on the command line, their values parsed as YAML scalars."""
    out = {}
    for dest, text in vars(namespace).items():
        if dest.startswith("cfg."):
            try:
                out[dest[4:]] = yaml.safe_load(text) if text != "" else ""
            except yaml.YAMLError:
                out[dest[4:]] = text
    return out


def check_unknown_arguments(extra: list[str]) -> None:
    """argparse leaves unknown options to us so that the error can suggest close matches."""
    for arg in extra:
        if arg.startswith("--"):
            raise _unknown(arg[2:].split("=", 1)[0].replace("-", "_"), "command line")
    if extra:
        raise ConfigError(f"unexpected argument '{extra[0]}'")


def save_config(cfg: TrainConfig, model_dir: str | os.PathLike) -> None:
    """Write the resolved config (reusable with `-c`) and the decoding defaults next to the checkpoints."""
    model_dir = Path(model_dir)
    with atomic_output(model_dir / "config.yaml") as f:
        yaml.safe_dump(cfg.to_dict(), f, sort_keys=False)
    with atomic_output(model_dir / "inference.yaml") as f:
        yaml.safe_dump(cfg.inference(), f, sort_keys=False)
