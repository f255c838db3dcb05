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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pasero.errors import ConfigError
from pasero.files import atomic_output, expand_langs
from pasero.metrics import BEST_METRICS, lower_is_better
from pasero.model_config import ARCHITECTURES, CONFIG_FIELDS, DEFAULT_ARCH, TransformerConfig, build_config
from pasero.multilingual import check_direction
from pasero.options import (
    add_arguments,
    check_values,
    coerce,
    declared,
    flag,
    hints,
    option,
    same_as,
    spec,
    unknown_option,
)
from pasero.search_options import LANG_CODES, DecodeOptions, SearchOptions


def _bleu_tokenizers() -> list[str]:
    from pasero.scoring import bleu_tokenizers  # sacreBLEU's names, read when needed

    return bleu_tokenizers()


# resumable=True: the option does not change the weights a run computes at a given step, so that
# changing it continues training (pasero-train --reset-if-changed) rather than starting over: paths
# (what they point to is compared instead: dictionary, tokenizer, a fingerprint of the training data),
# when to stop (raising max_steps, patience or max_time continues a run), how often to log, validate
# and keep checkpoints, decoding defaults, and where and in which precision the updates are computed.
# best_metric is not resumable: the recorded validation history holds values of that metric.
# workflow=False: set by the workflow itself (paths, languages, a multilingual experiment's
# directions), so not offered in its config.


@dataclass
class TrainConfig:
    # Data
    data_dir: str | None = option(None, "folder of the binarized data ({split}.{src}-{tgt}.{lang}.bin/.idx)",
                                  metavar="DIR", resumable=True, workflow=False)
    dict: str | None = option(None, "fairseq dict.txt shared by both languages (default: DATA_DIR/dict.txt)",
                              metavar="FILE", resumable=True, workflow=False)
    tokenizer: str | None = option(None, "tokenizer folder, embedded in checkpoints and used to detokenize the "
                                         "valid set for BLEU/chrF", metavar="DIR", resumable=True, workflow=False)
    model_dir: str | None = option(None, "where checkpoints, logs and the resolved config are written",
                                   metavar="DIR", resumable=True, workflow=False)
    source_lang: str | None = option(None, "source language code ({src})", metavar="LANG", short=("-s",),
                                     inference=True, workflow=False)
    target_lang: str | None = option(None, "target language code ({tgt})", metavar="LANG", short=("-t",),
                                     inference=True, workflow=False)
    lang_pairs: list[str] | None = option(None, "translation directions of a multilingual model, e.g. [de-en, en-de, "
                                               "fr-en, en-fr] (null: source_lang-target_lang only)",
                                          metavar="[SRC-TGT, ...]", inference=True, workflow=False)
    valid_lang_pairs: list[str] | None = option(None, "directions validated; the average of their best_metric "
                                                      "selects the best checkpoint (null: lang_pairs)",
                                                metavar="[SRC-TGT, ...]", resumable=True, workflow=False)
    lang_code: str = option("none", "how a model is told the target language: none, source (its <lang:xx> token "
                                    "starts the source, Pasero's lang_code: true) or decoder (it is the decoder's "
                                    "first input, fairseq's --decoder-langtok)", choices=LANG_CODES,
                            parse=lambda value, key: _lang_code(value), inference=True)
    lang_temperature: float = option(1.0, "each epoch draws direction d's pairs in proportion to size_d ** "
                                          "(1 / lang_temperature): above 1, small directions are upsampled", gt=0)
    batch_by: str = option("mixed", "mixed: batches by length only; direction: each batch holds one direction's "
                                    "pairs (Pasero's --batch-by)", choices=("mixed", "direction"))
    train_split: str = option("train", "name of the training split", metavar="NAME", resumable=True,
                              workflow=False)
    valid_split: str = option("valid", "name of the validation split", metavar="NAME", resumable=True,
                              workflow=False)
    max_source_len: int = option(256, "skip training pairs whose source is longer (tokens, eos included)", gt=0)
    max_target_len: int = option(256, "skip training pairs whose target is longer (tokens, eos included)", gt=0)
    max_len_ratio: float | None = option(9.0, "skip training pairs whose length ratio exceeds this (null: off)",
                                         gt=0)
    # Model (any TransformerConfig field may be given too and overrides the architecture)
    arch: str = option(DEFAULT_ARCH, "named architecture; the model options below override its values",
                       choices=tuple(ARCHITECTURES))
    # Batching and optimization
    batch_size: int = option(4096, "tokens per batch and process, padding included (fairseq --max-tokens)", gt=0)
    virtual_dp_size: int = option(1, "simulated number of GPUs: batches per update = virtual_dp_size, with "
                                     "gradient accumulation of virtual_dp_size / number of processes", gt=0)
    optimizer: str = option("adam", "adam (L2 weight decay) or adamw (decoupled weight decay)",
                            choices=("adam", "adamw"))
    lr: float = option(5e-4, "peak learning rate", gt=0)
    adam_betas: list[float] = option([0.9, 0.98], "Adam betas", length=2, min=0, lt=1)
    adam_eps: float = option(1e-8, "Adam epsilon", gt=0)
    weight_decay: float = option(0.0, "weight decay", min=0)
    lr_scheduler: str = option("inverse_sqrt", "inverse_sqrt (linear warm-up then 1/sqrt decay) or constant",
                               choices=("inverse_sqrt", "constant"))
    warmup: int = option(4000, "warm-up steps (linear from warmup_init_lr to lr)", min=0)
    warmup_init_lr: float = option(1e-7, "learning rate of the first update", min=0)
    clip_norm: float = option(0.0, "clip the gradient norm to this value (0: no clipping)", min=0)
    label_smoothing: float = option(0.1, "label smoothing of the cross-entropy", min=0, lt=1)
    # Stopping
    max_steps: int | None = option(100000, "stop after this many updates (null: no limit)", gt=0,
                                   resumable=True)
    max_epochs: int | None = option(None, "stop after this many epochs (null: no limit)", gt=0, resumable=True)
    patience: int = option(0, "stop after this many validations without improvement of best_metric (0: off)",
                           min=0, resumable=True)
    max_time: float | None = option(None, "wall-clock budget of the training loop (updates, validation, saving), "
                                          "summed over restarts: seconds or 90s, 30m, 4h, 1h30m, 1.5h, HH:MM:SS, "
                                          "MM:SS; when reached, validate, save and finish (null: no limit)",
                                    gt=0, parse=lambda value, key: parse_duration(value, key),
                                    schema_type=("string", "number", "null"), metavar="DURATION", resumable=True)
    # Validation, logging and checkpoints
    log_interval: int = option(100, "log training figures every N updates", gt=0, resumable=True)
    tensorboard: bool = option(True, "also write the figures of train.jsonl as TensorBoard scalars to "
                                     "MODEL_DIR/tensorboard/ (tensorboard --logdir results/)", resumable=True)
    valid_interval: int = option(1000, "validate and save a checkpoint every N updates", gt=0, resumable=True)
    valid_batch_size: int | None = option(None, "tokens per validation batch (null: batch_size)", gt=0,
                                          resumable=True)
    valid_decode: bool = option(True, "decode the valid set at each validation for BLEU and chrF", resumable=True)
    valid_beam_size: int = option(1, "beam size of the validation decoding (1: greedy, fast)", gt=0,
                                  resumable=True)
    valid_max_size: int | None = option(None, "decode at most this many valid sentences (null: all)", gt=0,
                                        resumable=True)
    best_metric: str = option("chrf", "metric that selects checkpoint_best.pt: loss, nll, ppl (lower is better), "
                                      "bleu or chrf (higher is better)", choices=tuple(BEST_METRICS))
    keep_last: int = option(5, "keep the N most recent checkpoint_{step}.pt (0: all)", min=0, resumable=True)
    keep_best: int = option(0, "also keep the N best checkpoint_{step}.pt by best_metric", min=0, resumable=True)
    # Initialization
    continue_from: str | None = option(None, "initialize the weights from this checkpoint when MODEL_DIR has none "
                                             "(fine-tuning; the step count starts at 0)", metavar="CHECKPOINT")
    reset_optimizer: bool = option(False, "when resuming, start with fresh optimizer moments", resumable=True)
    # Decoding defaults (saved to inference.yaml and in checkpoints): pasero-decode's declarations
    beam_size: int = same_as(SearchOptions, "beam_size", "default beam size for decoding", short=(),
                             inference=True, resumable=True)
    len_penalty: float = same_as(SearchOptions, "len_penalty", "default length penalty for decoding",
                                 inference=True, resumable=True)
    max_len_a: float = same_as(SearchOptions, "max_len_a", "decoding stops at max_len_a * source length + "
                                                           "max_len_b tokens", inference=True, resumable=True)
    max_len_b: int = same_as(SearchOptions, "max_len_b", inference=True, resumable=True)
    bleu_tok: str = option("13a", "sacreBLEU tokenization for validation and test scores", metavar="TOK",
                           choices=_bleu_tokenizers, inference=True, resumable=True)
    # Runtime
    seed: int = option(1, "random seed (model init, data order, dropout)")
    device: str = same_as(DecodeOptions, "device", resumable=True)
    dtype: str = same_as(DecodeOptions, "dtype", "auto: bf16 autocast (fp32 master weights, fp32 loss) where the "
                                                 "hardware has bf16 (CUDA, CPUs with AVX512-BF16 or AMX), else float16 "
                                                 "on CUDA and float32 on CPU; or float32, bfloat16, float16",
                         resumable=True)
    # Model overrides, filled from the model keys of the YAML file and the command line
    # (typing.Dict and builtins.dict: the `dict` field shadows the builtin inside this class body)
    model_overrides: builtins.dict[str, Any] = field(default_factory=builtins.dict)

    def model_config(self) -> TransformerConfig:
        return build_config(self.arch, **self.model_overrides)

    def train_pairs(self) -> list[str]:
        return list(self.lang_pairs or [f"{self.source_lang}-{self.target_lang}"])

    def valid_pairs(self) -> list[str]:
        return list(self.valid_lang_pairs or self.train_pairs())

    def valid_search(self) -> SearchOptions:
        """How the valid set is decoded: the model's decoding defaults with the validation beam."""
        return SearchOptions(beam_size=self.valid_beam_size, len_penalty=self.len_penalty,
                             max_len_a=self.max_len_a, max_len_b=self.max_len_b)

    def inference(self) -> dict[str, Any]:
        """Decoding defaults stored with the model, so decoding needs no training config."""
        return {name: getattr(self, name) for name in INFERENCE_FIELDS}

    def to_dict(self) -> dict[str, Any]:
        """Training fields plus the resolved model config, flat (loadable again with `-c`)."""
        out = {f.name: getattr(self, f.name) for f in train_fields()}
        out.update(dataclasses.asdict(self.model_config()))
        return out

    def best_is_lower(self) -> bool:
        return lower_is_better(self.best_metric)


def experiment_settings(train_config: Mapping[str, Any]) -> dict[str, Any]:
    """The options of a saved training config that an experiment's config can set (no paths, no
    languages): what separates two variants, carried into scores.json and the summary."""
    from pasero.model_config import TransformerConfig
    from pasero.options import json_schema

    settable = set(json_schema(TrainConfig)) | set(json_schema(TransformerConfig))
    return {key: value for key, value in train_config.items() if key in settable}


def train_fields() -> list[dataclasses.Field]:
    return declared(TrainConfig)


def known_keys() -> list[str]:
    return [f.name for f in train_fields()] + list(CONFIG_FIELDS)


RESUMABLE_FIELDS = frozenset(f.name for f in train_fields() if spec(f).resumable)
INFERENCE_FIELDS = tuple(f.name for f in train_fields() if spec(f).inference)


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
        return sum(float(n) * unit for n, unit in zip(units.groups(), (3600, 60, 1), strict=True) if n is not None)
    return math.nan


def format_duration(seconds: float) -> str:
    """'1h30m', '45s': a budget as a person writes it."""
    hours, rest = divmod(seconds, 3600)
    minutes, rest = divmod(rest, 60)
    parts = [f"{int(hours)}h" if hours else "", f"{int(minutes)}m" if minutes else "", f"{rest:.6g}s" if rest else ""]
    return "".join(parts) or "0s"


def _normalize(mapping: Mapping[str, Any], where: str) -> dict[str, Any]:
    keys, out = set(known_keys()), {}
    for key, value in mapping.items():
        name = str(key).replace("-", "_")
        if name not in keys:
            raise unknown_option(str(key), keys, where)
        out[name] = value
    return out


def _substitute(value: Any, src: str | None, tgt: str | None) -> Any:
    if isinstance(value, str) and src and tgt:
        return expand_langs(value, src, tgt)
    if isinstance(value, list):
        return [_substitute(v, src, tgt) for v in value]
    return value


def load_config(path: str | os.PathLike | None = None, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """Defaults < YAML file < overrides (already typed values, e.g. from `pasero.options.cli_values`)."""
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
    fields = {f.name: f for f in train_fields()} | {f.name: f for f in declared(TransformerConfig)}
    types_ = hints(TrainConfig) | hints(TransformerConfig)
    values = {k: coerce(k, v, types_[k], spec(fields[k]).parse) for k, v in values.items()}
    src, tgt = values.get("source_lang"), values.get("target_lang")
    values = {k: _substitute(v, src, tgt) for k, v in values.items()}
    model = {k: values.pop(k) for k in list(values) if k in CONFIG_FIELDS}
    return TrainConfig(**values, model_overrides=model)


def resolved_settings(settings: Mapping[str, Any], where: str = "train") -> dict[str, Any]:
    """A workflow's training options with every default pasero-train would apply (those of the
    architecture included): what the report states an experiment was trained with."""
    return _build(_normalize(settings, where)).to_dict()


def check_settings(settings: Mapping[str, Any], where: str) -> None:
    """Check the training options of a workflow config as pasero-train will, before any job runs
    (an `embed_dim` that `heads` does not divide must not wait for the training job to fail)."""
    values = _normalize(settings, where)
    try:
        check_config(_build(values))
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


def _lang_code(value: Any) -> Any:
    """Pasero writes `lang_code: true` for a target-language code on the source side."""
    return {True: "source", False: "none"}.get(value, value) if isinstance(value, bool) else value


def validate(cfg: TrainConfig) -> None:
    required = ("data_dir", "model_dir") + (() if cfg.lang_pairs else ("source_lang", "target_lang"))
    for name in required:
        if not getattr(cfg, name):
            raise ConfigError(f"option '{name}' is required (in the config file or as {flag(name)})")
    check_config(cfg)


def check_config(cfg: TrainConfig) -> None:
    """Types are checked on reading; this checks the declared choices and bounds, and how options
    fit together."""
    check_values(cfg)
    for pair in (cfg.lang_pairs or []) + (cfg.valid_lang_pairs or []):
        check_direction(pair)
    if cfg.best_metric in ("bleu", "chrf") and not cfg.valid_decode:
        raise ConfigError(f"best_metric '{cfg.best_metric}' needs valid_decode: true (or choose loss/nll)")
    cfg.model_config()  # model options: their bounds, and heads dividing embed_dim


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per training and model option, so that `--help` documents all of them; the model
    options show the default architecture's values."""
    add_arguments(parser.add_argument_group("training options (also valid as YAML keys)"), TrainConfig)
    add_arguments(parser.add_argument_group(f"model options (override those of --arch; shown: {DEFAULT_ARCH}'s)"),
                  TransformerConfig, defaults=ARCHITECTURES[DEFAULT_ARCH])


def check_unknown_arguments(extra: list[str]) -> None:
    """argparse leaves unknown options to us so that the error can suggest close matches."""
    for arg in extra:
        if arg.startswith("--"):
            raise unknown_option(arg[2:].split("=", 1)[0].replace("-", "_"), known_keys(), "command line")
    if extra:
        raise ConfigError(f"unexpected argument '{extra[0]}'")


def save_config(cfg: TrainConfig, model_dir: str | os.PathLike) -> None:
    """Write the resolved config (reusable with `-c`) and the decoding defaults next to the checkpoints."""
    model_dir = Path(model_dir)
    with atomic_output(model_dir / "config.yaml") as f:
        yaml.safe_dump(cfg.to_dict(), f, sort_keys=False)
    with atomic_output(model_dir / "inference.yaml") as f:
        yaml.safe_dump(cfg.inference(), f, sort_keys=False)
