"""Checkpoints: atomic saving, safe loading, resume with fallback (and whether a run's inputs changed
since its checkpoints), selection and averaging.

A checkpoint is a plain dict that `torch.load(weights_only=True)` can read (tensors, numbers,
strings, lists, dicts): model weights and config, the dictionary's symbols, the tokenizer, the
decoding defaults, optimizer/scheduler/scaler states, every RNG state (as tensors), the data
iterator's position, the step, validation metrics, the training config and provenance (`meta`).
Files are written under a temporary name and renamed, so a killed job leaves either the old or the
new file, never half of one; `checkpoint_last.pt` and `checkpoint_best.pt` are hard links to the
step checkpoint when possible (no second copy on disk).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import random
import re
import shutil
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pasero.errors import CheckpointError
from pasero.files import atomic_output, atomic_path
from pasero.metrics import lower_is_better
from pasero.model import Transformer
from pasero.model_config import CONFIG_DEFAULTS, TransformerConfig

logger = logging.getLogger(__name__)

STEP_RE = re.compile(r"checkpoint_(\d+)\.pt$")
TRAINING_STATE = ("optimizer", "scheduler", "scaler", "rng", "data_state")


# RNG states -------------------------------------------------------------------------------------

def rng_state() -> dict[str, Any]:
    """Every random generator training touches, in weights_only-loadable form."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(gauss)},
        "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64),
                   "gauss_next": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"].tolist()), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


# Saving ------------------------------------------------------------------------------------------

def _save(obj: dict[str, Any], path: Path) -> None:
    # Through a Python file: a full disk then surfaces as ENOSPC (behind torch's writer error).
    with atomic_output(path, "wb") as f:
        torch.save(obj, f)


def _link(src: Path, dst: Path) -> None:
    """Atomically make `dst` the same file as `src` (hard link; a copy where links are unsupported)."""
    with atomic_path(dst) as tmp:
        os.unlink(tmp)
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)


def step_checkpoints(model_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """(step, path) of every checkpoint_{step}.pt, oldest first."""
    found = []
    for path in Path(model_dir).glob("checkpoint_*.pt"):
        m = STEP_RE.fullmatch(path.name)
        if m:
            found.append((int(m.group(1)), path))
    return sorted(found)


def save_checkpoint(ckpt: dict[str, Any], model_dir: str | os.PathLike, *, step_file: bool = True,
                    is_best: bool = False, keep_last: int = 0, keep_best: int = 0,
                    history: dict[int, float] | None = None, lower_is_better: bool = True) -> Path:
    """Write checkpoint_{step}.pt (when `step_file`) and checkpoint_last.pt (+ checkpoint_best.pt),
    then delete step checkpoints that are neither among the `keep_last` newest nor the `keep_best`
    best according to `history` ({step: metric})."""
    model_dir = Path(model_dir)
    last = model_dir / "checkpoint_last.pt"
    if step_file:
        path = model_dir / f"checkpoint_{ckpt['step']}.pt"
        _save(ckpt, path)
        _link(path, last)
    else:
        path = last
        _save(ckpt, last)
    if is_best:
        _link(path, model_dir / "checkpoint_best.pt")
    _prune(model_dir, keep_last, keep_best, history or {}, lower_is_better)
    return path


def _prune(model_dir: Path, keep_last: int, keep_best: int, history: dict[int, float], lower: bool) -> None:
    """Delete step checkpoints outside the `keep_last` newest and the `keep_best` best. The single best
    one is always kept: it is also checkpoint_best.pt (a hard link, so keeping it costs no disk) and
    `pasero-average-checkpoints --best 1` needs its step file."""
    if keep_last <= 0:
        return
    steps = [step for step, _ in step_checkpoints(model_dir)]
    keep = set(steps[-keep_last:])
    on_disk = set(steps)
    keep |= set([s for s in rank_steps(history, lower) if s in on_disk][:max(keep_best, 1)])
    for step, path in step_checkpoints(model_dir):
        if step not in keep:
            path.unlink(missing_ok=True)


def rank_steps(history: dict[int, float], lower_is_better: bool) -> list[int]:
    """Steps best first by their metric; NaN/inf rank last (a diverged validation is never the best)
    and ties go to the earlier step, as for checkpoint_best.pt (only a strict improvement moves it)."""
    def key(step: int) -> tuple[bool, float, int]:
        value = float(history[step])
        if not math.isfinite(value):
            return True, 0.0, step
        return False, value if lower_is_better else -value, step
    return sorted(history, key=key)


# Loading -----------------------------------------------------------------------------------------

def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu",
                    mmap: bool = False, verify: bool = True) -> dict[str, Any]:
    """Read a checkpoint with weights_only=True; a missing, truncated or corrupt file is a CheckpointError.

    With `verify` (the default) every member's CRC-32 is checked first: torch.load does not, so a
    flipped bit in the weights would otherwise be used silently (resume, averaging, decoding).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    if verify:
        verify_checkpoint(path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as e:  # zip/pickle/unpickler errors all mean: not a usable checkpoint
        raise _load_error(path, e) from None
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise CheckpointError(f"{path}: not a pasero checkpoint (no 'model' entry)")
    return ckpt


def _load_error(path: Path, error: Exception) -> CheckpointError:
    """A file that asks to run code is refused as such, not as "corrupt", and without torch's hint
    to retry with weights_only=False, which would run that code."""
    lines = str(error).splitlines() or [""]
    reason = next((line.strip() for line in lines if "WeightsUnpickler error" in line), lines[0])[:300]
    if found := re.search(r"GLOBAL ([\w.]+)", str(error)):  # torch names the object it would have loaded
        return CheckpointError(f"{path}: refused: it asks to load the Python object {found[1]}, which no "
                               "checkpoint holds (pasero loads only tensors and plain data); it is not a "
                               "pasero checkpoint or it was tampered with")
    return CheckpointError(f"{path}: corrupt or truncated checkpoint ({type(error).__name__}: {reason})")


def verify_checkpoint(path: str | os.PathLike) -> None:
    """Check the CRC-32 of every member of a (zip) checkpoint, reading the file once.

    A damaged file raises the same CheckpointError as a truncated one, naming the damaged member, so
    that resuming falls back to an older checkpoint. Members stored without a CRC (torch's
    `compute_crc32=False` writes 0) cannot be checked and are skipped.
    """
    path = Path(path)
    if not zipfile.is_zipfile(path):  # truncated (no zip directory) or torch's legacy format: torch.load decides
        return
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.CRC == 0 and info.file_size:
                    continue
                try:
                    with archive.open(info) as member:
                        while member.read(1 << 22):
                            pass
                except (zipfile.BadZipFile, OSError, EOFError) as e:
                    raise CheckpointError(f"{path}: corrupt or truncated checkpoint (damaged member "
                                          f"'{info.filename}': {e})") from None
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint ({type(e).__name__}: {e})") from None


def load_resume_checkpoint(model_dir: str | os.PathLike) -> tuple[dict[str, Any], Path] | None:
    """The newest usable checkpoint of a training run: checkpoint_last.pt, or, when it is corrupt or
    truncated (a job killed by a full disk, a broken file system), the newest loadable
    checkpoint_{step}.pt, with a warning. None when the run has no checkpoint yet."""
    model_dir = Path(model_dir)
    candidates = [model_dir / "checkpoint_last.pt"] + [p for _, p in reversed(step_checkpoints(model_dir))]
    candidates = [p for p in candidates if p.is_file()]
    for i, path in enumerate(candidates):
        try:
            ckpt = load_checkpoint(path)
        except CheckpointError as e:
            logger.warning("%s; trying an older checkpoint", e)
            continue
        if i > 0:
            logger.warning("resuming from %s (step %d) instead", path, ckpt.get("step", 0))
        return ckpt, path
    if candidates:
        raise CheckpointError(f"{model_dir}: no loadable checkpoint (all corrupt); rerun with --reset to start over")
    return None


def check_dictionary(ckpt: dict[str, Any], symbols: Sequence[str], ckpt_path: str | os.PathLike,
                     dict_path: str | os.PathLike) -> None:
    """A model trained with another dictionary would silently produce garbage: refuse."""
    saved = list(ckpt.get("dictionary") or [])
    if saved == list(symbols):
        return
    pairs = enumerate(zip(saved, symbols, strict=False))  # up to the shorter one's end
    diff = next((i for i, (a, b) in pairs if a != b), min(len(saved), len(symbols)))
    detail = (f"{len(saved)} vs {len(symbols)} symbols" if len(saved) != len(symbols)
              else f"symbol {diff} is '{saved[diff]}' vs '{symbols[diff]}'")
    raise CheckpointError(f"{dict_path} does not match the dictionary of {ckpt_path} ({detail}); use the "
                          f"dictionary the model was trained with, or --reset to train a new model")


def fingerprint(paths: Sequence[str | os.PathLike]) -> str:
    """sha1 of the files' bytes: the identity of the binarized training data (it changes with the
    text, the tokenizer or the dictionary), read in chunks so memory stays flat."""
    digest = hashlib.sha1()
    for path in paths:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def changed_inputs(ckpt: dict[str, Any], train_config: dict[str, Any], resumable: frozenset[str],
                   symbols: Sequence[str], tokenizer: dict[str, Any] | None, train_data: str) -> list[str]:
    """What determines the weights and differs between the run that wrote `ckpt` and the current
    inputs (resolved training config but its `resumable` options, dictionary symbols, tokenizer
    state, training data fingerprint); [] when resuming would compute what a fresh run computes."""
    saved = dict(ckpt.get("train_config") or {})
    # a model option added since that checkpoint was written: it was trained with the option's default
    saved.update({key: CONFIG_DEFAULTS[key] for key in train_config if key in CONFIG_DEFAULTS and key not in saved})
    changes = [f"{key} {saved.get(key)} -> {train_config.get(key)}"
               for key in sorted((set(saved) | set(train_config)) - resumable)
               if saved.get(key) != train_config.get(key)]
    step, max_steps = int(ckpt.get("step", 0)), train_config.get("max_steps")
    if max_steps is not None and step > max_steps:  # a fresh run would stop earlier
        changes.append(f"max_steps {max_steps} < the checkpoint's step {step}")
    if list(ckpt.get("dictionary") or []) != list(symbols):
        changes.append("dictionary")
    changes += _tokenizer_changes(ckpt.get("tokenizer"), tokenizer)
    saved_data = (ckpt.get("meta") or {}).get("train_data")
    if saved_data is not None and saved_data != train_data:  # checkpoints of older versions have none
        changes.append("train data")
    return changes


def _tokenizer_changes(saved: dict[str, Any] | None, current: dict[str, Any] | None) -> list[str]:
    if saved is None and current is None:
        return []
    if saved is None or current is None:
        return ["tokenizer none -> given" if saved is None else "tokenizer given -> none"]
    if torch.equal(saved["model"], current["model"]):
        return []
    old, new = saved.get("settings") or {}, current.get("settings") or {}
    settings = [f"tokenizer.{key} {old.get(key)} -> {new.get(key)}" for key in sorted(set(old) | set(new))
                if key != "inputs" and old.get(key) != new.get(key)]  # inputs: file names, not contents
    return settings or ["tokenizer model"]


def resolve_model_path(path: str | os.PathLike) -> Path:
    """A checkpoint file, or in a model/training folder: model.pt, checkpoint_best.pt, checkpoint_last.pt."""
    path = Path(path)
    if path.is_dir():
        for name in ("model.pt", "checkpoint_best.pt", "checkpoint_last.pt"):
            if (path / name).is_file():
                return path / name
        raise CheckpointError(f"{path}: no model.pt, checkpoint_best.pt or checkpoint_last.pt in this folder")
    return path


def source_symbols(ckpt: dict[str, Any]) -> list[str]:
    """The source side's dictionary: its own in models imported with separate dictionaries, else the joint one."""
    return list(ckpt.get("source_dictionary") or ckpt["dictionary"])


def build_model(ckpt: dict[str, Any]) -> Transformer:
    try:
        cfg = TransformerConfig(**ckpt["model_config"])
    except TypeError as e:
        raise CheckpointError(f"checkpoint model config is incompatible with this pasero version ({e})") from None
    model = Transformer(cfg, len(source_symbols(ckpt)), len(ckpt["dictionary"]))
    model.load_state_dict(ckpt["model"])
    return model


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[Transformer, dict[str, Any]]:
    """Model (eval mode, on `device`) and checkpoint dict, for inference."""
    path = resolve_model_path(path)
    ckpt = load_checkpoint(path)
    for key in ("model_config", "dictionary"):
        if key not in ckpt:
            raise CheckpointError(f"{path}: checkpoint has no '{key}' entry")
    model = build_model(ckpt).to(device).eval()
    return model, ckpt


# Selection and averaging -------------------------------------------------------------------------

def select_checkpoints(model_dir: str | os.PathLike, last: int | None = None, best: int | None = None,
                       metric: str | None = None) -> list[Path]:
    """The `last` newest step checkpoints, or the `best` ones by validation metric (default: 1 by the
    run's best_metric).

    By best_metric the ranking is the run's recorded validation history (in its newest checkpoint),
    not just the step files still on disk: a best checkpoint deleted by keep_last is an error naming
    its step, never a silent second best. `--best 1` falls back to checkpoint_best.pt when the step
    file is gone. By another metric only the step files on disk can be ranked. NaN/inf rank last.
    """
    model_dir = Path(model_dir)
    found = step_checkpoints(model_dir)
    if last:
        if not found:
            raise CheckpointError(f"{model_dir}: no checkpoint_{{step}}.pt files")
        return [p for _, p in found[-last:]]
    n = best or 1
    recorded = _recorded_history(model_dir)
    if recorded is not None and recorded[1] and metric in (None, recorded[0]):
        return _best_by_history(model_dir, found, recorded[0], recorded[1], n)
    if not found:
        raise CheckpointError(f"{model_dir}: no checkpoint_{{step}}.pt files")
    return _best_on_disk(model_dir, found, metric, n)


def _recorded_history(model_dir: Path) -> tuple[str, dict[int, float]] | None:
    """(best_metric, {step: value}) of the newest loadable checkpoint; None when there is none."""
    candidates = [model_dir / "checkpoint_last.pt"] + [p for _, p in reversed(step_checkpoints(model_dir))]
    for path in candidates:
        if not path.is_file():
            continue
        try:
            ckpt = load_checkpoint(path, mmap=True)
        except CheckpointError as e:
            logger.warning("%s; trying an older checkpoint", e)
            continue
        name = (ckpt.get("train_config") or {}).get("best_metric", "nll")
        return name, {int(k): float(v) for k, v in ((ckpt.get("metrics") or {}).get("history") or {}).items()}
    return None


def _best_by_history(model_dir: Path, found: list[tuple[int, Path]], name: str, history: dict[int, float],
                     n: int) -> list[Path]:
    on_disk = dict(found)
    paths, missing = [], []
    for step in rank_steps(history, lower_is_better(name))[:n]:
        if step in on_disk:
            paths.append(on_disk[step])
        elif _holds_step(model_dir / "checkpoint_best.pt", step):
            paths.append(model_dir / "checkpoint_best.pt")
        else:
            missing.append(step)
    if missing:
        files = ", ".join(f"checkpoint_{s}.pt" for s in missing)
        raise CheckpointError(f"{model_dir}: the {n} best checkpoints by {name} include {files}, deleted by "
                              f"keep_last; train with keep_best: {n} to keep them, or use --last N")
    return paths


def _holds_step(path: Path, step: int) -> bool:
    if not path.is_file():
        return False
    return int(load_checkpoint(path, mmap=True, verify=False).get("step", -1)) == step


def _best_on_disk(model_dir: Path, found: list[tuple[int, Path]], metric: str | None, n: int) -> list[Path]:
    """Rank the step files on disk by the validation metric each one recorded (not verified here: the
    chosen ones are when they are averaged)."""
    values, paths, name = {}, dict(found), metric
    for step, path in found:
        ckpt = load_checkpoint(path, mmap=True, verify=False)
        name = metric or (ckpt.get("train_config") or {}).get("best_metric", "nll")
        value = (ckpt.get("metrics") or {}).get("valid", {}).get(name)
        if value is not None:
            values[step] = float(value)
    if not values:
        raise CheckpointError(f"{model_dir}: no checkpoint has a recorded validation '{metric or 'best_metric'}'")
    return [paths[s] for s in rank_steps(values, lower_is_better(name))[:n]]


def average_checkpoints(paths: Sequence[str | os.PathLike]) -> dict[str, Any]:
    """A self-contained inference checkpoint whose weights are the mean of those of `paths`.

    Everything but the weights comes from the newest checkpoint; training state (optimizer, RNG,
    data position) is dropped. meta records the averaged steps, training time and size.
    """
    if not paths:
        raise CheckpointError("no checkpoint to average")
    sums: dict[str, torch.Tensor] = {}
    ckpts = []
    for path in paths:
        ckpt = load_checkpoint(path, mmap=True)
        model = ckpt["model"]
        if sums and set(model) != set(sums):
            raise CheckpointError(f"{path}: parameters differ from {paths[0]}; checkpoints of different models")
        _check_finite(model, path)
        for name, tensor in model.items():
            if tensor.is_floating_point():
                sums[name] = sums[name] + tensor.double() if name in sums else tensor.double()
            else:
                sums[name] = tensor
        ckpts.append(ckpt)
    newest = max(ckpts, key=lambda c: c.get("step", 0))
    out = {k: v for k, v in newest.items() if k not in TRAINING_STATE}
    ref = newest["model"]
    out["model"] = {name: (t / len(paths)).to(ref[name].dtype) if ref[name].is_floating_point() else t.clone()
                    for name, t in sums.items()}
    meta = dict(newest.get("meta") or {})
    meta.update(steps=sorted(int(c.get("step", 0)) for c in ckpts),
                train_seconds=max(float((c.get("meta") or {}).get("train_seconds", 0.0)) for c in ckpts),
                params=int(meta.get("params") or build_model(out).num_parameters()),  # shared weights once
                sources=[Path(p).name for p in paths])
    out["meta"] = meta
    return out


def _check_finite(weights: dict[str, torch.Tensor], path: str | os.PathLike) -> None:
    """Weights of a diverged step would turn the whole average (or model.pt) into NaN: refuse them."""
    for name, tensor in weights.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{path}: NaN or inf in the weights ({name}); select other checkpoints "
                                  f"(--best N ranks diverged validations last, or a smaller --last N)")


def save_model(ckpt: dict[str, Any], path: str | os.PathLike) -> None:
    """Write an inference checkpoint (e.g. model.pt) atomically."""
    _save(ckpt, Path(path))
