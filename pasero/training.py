"""The training loop: updates, validation, checkpoints, resume and clean interruption.

Design choices that make a run reproducible and resumable bit for bit (on CPU, same seed):
- the batches are a pure function of (seed, epoch) and the data position is saved (batching.py);
- dropout is seeded per batch from (seed, update, batch index in the update), so the masks do not
  depend on what ran before (validation, a restart) nor on how many processes share the update;
- optimizer, scheduler, scaler and RNG states are saved with every checkpoint.
An update always sums the loss over `virtual_dp_size` batches (split across processes, the rest by
gradient accumulation) and divides the gradient by their total number of target tokens, so the
number of GPUs changes the speed but not the result.

With `reset_if_changed`, checkpoints trained with other weight-determining inputs (options,
dictionary, tokenizer, data: `checkpoints.changed_inputs`) are deleted and training starts over.

Training finishes at max_steps, after max_epochs, when patience runs out, or when the time budget
`max_time` is spent: the wall-clock time of the training loop (updates, validation, saving) summed
over restarts and saved in the checkpoints (meta.wall_seconds). Like fairseq's cumulative training
time (--stop-time-hours), it excludes process start-up and data loading, and the time since the last
checkpoint of a killed run is lost. When the budget is spent, the update in progress completes, the
model is validated and saved, and the run ends as finished; raising max_time continues it.

Exit codes of `Trainer.run`: 0 finished (or already finished), EXIT_INTERRUPTED (3) when a signal
(SIGTERM, SIGINT, SIGUSR2: SLURM preemption or time limit) stopped training after saving
checkpoint_last.pt; rerunning the same command resumes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import signal
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pasero import __version__, checkpoints, distributed, scoring, search
from pasero.batching import (
    BatchIterator,
    MultiPairDataset,
    PairDataset,
    fixed_batches,
    open_pair,
    shard,
    split_prefix,
)
from pasero.criterion import LabelSmoothedCrossEntropy, base2, perplexity
from pasero.devices import release_free_memory, resolve_device, resolve_dtype
from pasero.dictionary import Dictionary
from pasero.errors import CheckpointError, DataError, LockedError, TrainingError
from pasero.files import LogFile, atomic_output, file_lock
from pasero.model import Transformer
from pasero.model_config import CONFIG_DEFAULTS
from pasero.optim import InverseSqrtSchedule, build_optimizer
from pasero.tokenizer import Tokenizer, lang_token
from pasero.train_config import RESUMABLE_FIELDS, TrainConfig, format_duration, save_config
from pasero.train_log import RunLog, clock_time, eta
from pasero.train_state import TrainState, UpdateStats

logger = logging.getLogger(__name__)

EXIT_INTERRUPTED = 3
MAX_NONFINITE_UPDATES = 10  # consecutive non-finite updates before training gives up
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2)
TRAINING_ONLY_FIELDS = ("dropout", "attention_dropout", "activation_dropout")
RUN_FILES = ("checkpoint*.pt", ".checkpoint*.tmp", "train.jsonl", "train.log", "config.yaml", "inference.yaml")


def _short(value: float | None) -> str:
    """A metric for the log; none yet when every validation so far was NaN."""
    return "none" if value is None else f"{value:.4g}"


class Trainer:
    """A training run, whole once constructed: devices, the locked model folder, data, model,
    optimizer and the state resumed from MODEL_DIR's last checkpoint (if any). `run()` trains and
    releases what construction took (the lock, the log file, the process group); so does `close()`
    for a trainer that is not run."""

    def __init__(self, cfg: TrainConfig, reset: bool = False, reset_if_changed: bool = False):
        self.cfg, self.model_dir = cfg, Path(cfg.model_dir)
        self.state = TrainState()
        self.stop_signal, self.out_of_time = 0, False
        # the time budget: wall seconds of earlier runs + this run's since train() started, on `clock`
        # (replaceable in tests); out_of_time is agreed by all processes after each update
        self.clock: Callable[[], float] = time.monotonic
        self._clock_start: float | None = None
        self._stats = UpdateStats()
        self.valid_by_direction: dict[str, dict[str, float]] = {}  # the last validation's metrics
        self._log_file: LogFile | None = None
        self.run_log = RunLog(self.model_dir, cfg.tensorboard)
        self._lock = contextlib.ExitStack()
        try:
            self._setup(reset, reset_if_changed)
        except BaseException:
            self.close()
            raise

    # Set-up ------------------------------------------------------------------------------------

    def _setup(self, reset: bool, reset_if_changed: bool) -> None:
        self._init_devices()
        self.model_config = self.cfg.model_config()
        self._load_inputs()
        if self.dist.is_master:
            self._lock_model_dir()
        resumed = self._resume_point(reset, reset_if_changed)
        self._open_log()
        init = resumed or (self._load_continue() if self.cfg.continue_from else None)
        self._build_model(init)
        self._build_optimizer()
        if resumed:
            self._restore(*resumed)
        if self.dist.is_master:
            self._prepare_model_dir()
        self.model = self.raw_model
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = torch.nn.parallel.DistributedDataParallel(self.raw_model, device_ids=ids)
        self._log_setup()

    def _init_devices(self) -> None:
        self.device = resolve_device(self.cfg.device)
        self.dist = distributed.init(self.device.type)
        if not self.dist.is_master:  # one copy of the log is enough
            logging.getLogger("pasero").setLevel(logging.WARNING)
        if self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
            torch.backends.cuda.matmul.allow_tf32 = True  # float32 matmuls on tensor cores (float32 runs)
            torch.backends.cudnn.allow_tf32 = True
        self.amp_dtype = resolve_dtype(self.cfg.dtype, self.device)

    def _resume_point(self, reset: bool, reset_if_changed: bool) -> tuple[dict[str, Any], Path] | None:
        """The checkpoint to resume from; with `reset` (or changed inputs and `reset_if_changed`),
        none, and the files of the earlier run are deleted."""
        resumed = None
        if not reset and self.model_dir.is_dir():
            resumed = checkpoints.load_resume_checkpoint(self.model_dir)
        if resumed and reset_if_changed and (changes := self._changed_inputs(resumed[0])):
            logger.info("%s: inputs changed since its checkpoints were made (%s): training from scratch",
                        self.model_dir, "; ".join(changes))
            reset, resumed = True, None
        distributed.barrier()  # every process has read the checkpoint before it is deleted
        if reset and self.dist.is_master:
            for pattern in RUN_FILES:
                for path in self.model_dir.glob(pattern):
                    path.unlink()
        distributed.barrier()
        return resumed

    def _build_model(self, init: tuple[dict[str, Any], Path] | None) -> None:
        if init:
            checkpoints.check_dictionary(init[0], self.dictionary.symbols, init[1], self.dict_path)
            self._check_model_config(*init)
        else:
            logger.info("starting a new training in %s", self.model_dir)
        torch.manual_seed(self.cfg.seed)
        model = Transformer(self.model_config, len(self.dictionary), len(self.dictionary))
        if init:
            model.load_state_dict(init[0]["model"])
        self.raw_model = model.to(self.device)
        self.num_params = model.num_parameters()

    def _build_optimizer(self) -> None:
        cfg = self.cfg
        self.optimizer = build_optimizer(self.raw_model.parameters(), cfg.optimizer, cfg.lr, tuple(cfg.adam_betas),
                                         cfg.adam_eps, cfg.weight_decay)
        self.scheduler = InverseSqrtSchedule(self.optimizer, cfg.lr, cfg.warmup, cfg.warmup_init_lr, cfg.lr_scheduler)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.accum = max(1, cfg.virtual_dp_size // self.dist.world_size)
        if self.accum * self.dist.world_size != cfg.virtual_dp_size:
            logger.warning("virtual_dp_size %d is not a multiple of the %d processes: %d batches per update",
                           cfg.virtual_dp_size, self.dist.world_size, self.accum * self.dist.world_size)
        self.iterator = BatchIterator(self.train_data, cfg.batch_size, cfg.seed, self.accum * self.dist.world_size)
        self.criterion = LabelSmoothedCrossEntropy(cfg.label_smoothing, self.raw_model.padding_idx)

    def _log_setup(self) -> None:
        cfg, m = self.cfg, self.model_config
        n_valid = sum(map(len, self.valid_sets.values()))
        overridden = f" ({m.encoder_layers}+{m.decoder_layers} layers, d{m.embed_dim}, ffn {m.ffn_dim}, " \
                     f"{m.heads} heads)" if cfg.model_overrides else ""
        logger.info("model %s%s: %s parameters; %d training pairs (%d skipped), %d valid pairs; device %s (%s), "
                    "%d process(es) x %d accumulated batches of %d tokens", cfg.arch, overridden,
                    f"{self.num_params:,}", len(self.train_data), self.train_data.num_skipped, n_valid,
                    self.device, str(self.amp_dtype).replace("torch.", ""), self.dist.world_size, self.accum,
                    cfg.batch_size)

    def _lock_model_dir(self) -> None:
        """One trainer per model folder: a second one would interleave checkpoints and train.jsonl
        rows. The lock lives until this process ends (run() releases it)."""
        try:
            self._lock.enter_context(file_lock(self.model_dir / "trainer", wait=False))
        except LockedError as e:
            raise LockedError(f"{self.model_dir} is being trained by another pasero-train ({e}); wait for it "
                              "to end or stop it, or use another model_dir") from None

    def _load_inputs(self) -> None:
        cfg = self.cfg
        self.dict_path = Path(cfg.dict) if cfg.dict else Path(cfg.data_dir) / "dict.txt"
        if not self.dict_path.is_file():
            raise DataError(f"{self.dict_path}: dictionary not found (set the 'dict' option)")
        self.dictionary = Dictionary.load(self.dict_path)
        self.tokenizer = None
        if cfg.tokenizer:
            if not Path(cfg.tokenizer).is_dir():
                raise DataError(f"{cfg.tokenizer}: tokenizer folder not found (set the 'tokenizer' option)")
            self.tokenizer = Tokenizer.load(cfg.tokenizer)
        limit = self.model_config.max_positions
        filters = dict(max_source_len=min(cfg.max_source_len, limit), max_target_len=min(cfg.max_target_len, limit),
                       max_len_ratio=cfg.max_len_ratio)
        train = {pair: open_pair(cfg.data_dir, cfg.train_split, *pair.split("-"), **filters)
                 for pair in cfg.train_pairs()}
        valid = {pair: open_pair(cfg.data_dir, cfg.valid_split, *pair.split("-"), max_source_len=limit,
                                 max_target_len=limit) for pair in cfg.valid_pairs()}
        if len(train) == 1 and cfg.lang_code == "none":  # a bilingual model
            self.train_data = next(iter(train.values()))
            self.valid_sets = valid
        else:
            lang_ids = self._lang_ids(list(train) + list(valid))
            self.train_data = MultiPairDataset(train, lang_ids, cfg.lang_code, cfg.lang_temperature, cfg.batch_by)
            self.valid_sets = {pair: MultiPairDataset({pair: data}, lang_ids, cfg.lang_code)
                               for pair, data in valid.items()}
        self.train_data_sha1 = checkpoints.fingerprint(
            [f"{split_prefix(cfg.data_dir, cfg.train_split, *pair.split('-'), lang)}.{ext}"
             for pair in cfg.train_pairs() for lang in pair.split("-") for ext in ("idx", "bin")])

    def _lang_ids(self, pairs: list[str]) -> dict[str, int]:
        """Dictionary ids of the target languages' code tokens, which tell the model what to produce."""
        ids = {}
        for tgt in sorted({pair.split("-")[1] for pair in pairs}):
            token = lang_token(tgt)
            if token not in self.dictionary:
                langs = sorted({lang for pair in pairs for lang in pair.split("-")})
                raise DataError(f"{self.dict_path} has no {token}: train the tokenizer with --lang-codes "
                                f"{' '.join(langs)} and rebuild the dictionary (or set lang_code: none)")
            ids[tgt] = self.dictionary.index(token)
        return ids

    def _changed_inputs(self, ckpt: dict[str, Any]) -> list[str]:
        tokenizer = self.tokenizer.to_state() if self.tokenizer is not None else None
        return checkpoints.changed_inputs(ckpt, self.cfg.to_dict(), RESUMABLE_FIELDS, self.dictionary.symbols,
                                          tokenizer, self.train_data_sha1)

    def _load_continue(self) -> tuple[dict[str, Any], Path]:
        path = checkpoints.resolve_model_path(self.cfg.continue_from)
        logger.info("initializing the model from %s", path)
        ckpt = checkpoints.load_checkpoint(path)
        if ckpt.get("source_dictionary"):
            raise CheckpointError(f"{path} has separate source and target dictionaries (a model imported from "
                                  "fairseq); training uses one joint dictionary, so continue_from cannot start from it")
        return ckpt, path

    def _check_model_config(self, ckpt: dict[str, Any], path: Path) -> None:
        saved, now = ckpt.get("model_config", {}), dataclasses.asdict(self.model_config)
        diff = [f"{k}: {saved.get(k)} vs {v}" for k, v in now.items()
                if saved.get(k, CONFIG_DEFAULTS[k]) != v and k not in TRAINING_ONLY_FIELDS]
        if diff:
            raise CheckpointError(f"{path} is a different model ({'; '.join(diff)} in the checkpoint vs the config); "
                                  f"use --reset or another model_dir")

    def _restore(self, ckpt: dict[str, Any], path: Path) -> None:
        self.state.restore(ckpt)
        if self.cfg.reset_optimizer:
            logger.info("resetting the optimizer state")
        else:
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.scaler.load_state_dict(ckpt["scaler"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.iterator.load_state_dict(ckpt["data_state"])
        checkpoints.set_rng_state(ckpt["rng"])
        logger.info("resumed from %s (step %d, epoch %d)", path, self.state.step, self.iterator.epoch)

    def _prepare_model_dir(self) -> None:
        self.model_dir.mkdir(parents=True, exist_ok=True)
        save_config(self.cfg, self.model_dir)
        log = self.model_dir / "train.jsonl"
        if log.is_file():  # forget what was logged after the checkpoint we resume from
            rows = [line for line in log.read_text(encoding="utf-8").splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= self.state.step]
            with atomic_output(log) as f:
                f.write("".join(row + "\n" for row in rows))

    # Training ----------------------------------------------------------------------------------

    def run(self) -> int:
        """Train (or finish what an earlier run left); returns the exit code (module docstring) and
        releases what the set-up took."""
        handlers = {}
        try:
            handlers = {sig: signal.signal(sig, self._on_signal) for sig in SIGNALS}
            code = self.train()
            distributed.barrier()  # no process tears the group down while another still uses it
            return code
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            self.close()

    def close(self) -> None:
        """Release the log file, the process group and the model folder's lock (idempotent)."""
        self.run_log.close()
        if self._log_file is not None:
            logging.getLogger("pasero").removeHandler(self._log_file)
            self._log_file.close()
            self._log_file = None
        if getattr(self, "raw_model", None) is not None:
            self.model = self.raw_model  # DDP's reducer goes before the process group it uses
        distributed.cleanup()
        self._lock.close()

    def _open_log(self) -> None:
        """A copy of the log next to the checkpoints: it survives the job and its scheduler's logs."""
        if self.dist.is_master:
            self.model_dir.mkdir(parents=True, exist_ok=True)
            self._log_file = LogFile(self.model_dir / "train.log")
            self._log_file.setFormatter(logging.Formatter("%(asctime)s | %(levelname)s | %(name)s | %(message)s"))
            logging.getLogger("pasero").addHandler(self._log_file)

    def _on_signal(self, signum: int, frame: Any) -> None:
        logger.warning("received %s: stopping after this update", signal.Signals(signum).name)
        self.stop_signal = signum
        signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)

    def finished(self) -> bool:
        return self.stop_reason() is not None

    def stop_reason(self) -> str | None:
        """Why training is finished (None: it is not). The same on every process."""
        cfg = self.cfg
        if cfg.max_steps is not None and self.state.step >= cfg.max_steps:
            return f"max_steps {cfg.max_steps} reached"
        if cfg.max_epochs is not None and self.iterator.epoch > cfg.max_epochs:
            return f"max_epochs {cfg.max_epochs} done"
        bad = self.state.validations.bad_validations
        if cfg.patience > 0 and bad >= cfg.patience:
            return f"patience: {bad} validations without improvement"
        if self.out_of_time:
            return f"time budget {format_duration(cfg.max_time)} spent"
        return None

    def wall_seconds(self) -> float:
        """Time budget spent: the training loops of this run and of the runs it resumes."""
        now = 0.0 if self._clock_start is None else self.clock() - self._clock_start
        return self.state.wall_seconds_before + now

    def _check_time(self) -> None:
        """Processes measure time apart: they agree, so that all stop at the same update."""
        if self.cfg.max_time is not None:
            self.out_of_time = self._agree(self.wall_seconds() >= self.cfg.max_time)

    def train(self) -> int:
        self._check_time()  # before the clock starts: only the budget spent by earlier runs counts
        self._clock_start = self.clock()
        self.run_log.start(self._clock_start, self.state.step)
        if self.finished():
            if self.state.validations.last_step() != self.state.step:  # a signal came at the last update
                self.validate_and_save()
            logger.info("training already finished (step %d): %s", self.state.step, self.stop_reason())
            return 0
        while not self.finished():
            stop = self.train_step(self.iterator.next_step())
            if self.device.type == "cpu":
                release_free_memory()
            self._check_time()
            if self.state.step % self.cfg.log_interval == 0 or self.finished():  # the last update is logged
                self._log_train()
            if self.state.step % self.cfg.valid_interval == 0:
                self.validate_and_save()
                stop = stop or self._agree(bool(self.stop_signal))
            if stop:
                if self.state.step % self.cfg.valid_interval:
                    self.save(step_file=False)
                logger.warning("training interrupted at step %d; rerun the same command to resume", self.state.step)
                return EXIT_INTERRUPTED
        self._log_train()  # what patience stopped after the last log line
        if self.state.validations.last_step() != self.state.step:
            self.validate_and_save()
        if self.out_of_time:
            logger.info("time budget of %s (max_time) reached at step %d", format_duration(self.cfg.max_time),
                        self.state.step)
        logger.info("training finished at step %d (epoch %d; %s); best %s %s at step %s", self.state.step,
                    self.iterator.epoch, self.stop_reason(), self.cfg.best_metric,
                    _short(self.state.validations.best), self.state.validations.best_step)
        return 0

    def _autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype != torch.float32)

    def _agree(self, flag: bool) -> bool:
        """True on every process when it is True on any (all must stop at the same update)."""
        if not self.dist.enabled:
            return flag
        return bool(distributed.all_reduce_sum(torch.tensor([float(flag)], device=self.device)).item())

    def train_step(self, step_batches: list[np.ndarray]) -> bool:
        """One update over this process's share of the batches; returns whether to stop now."""
        start = time.perf_counter()
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        mine = shard(step_batches, self.dist.rank, self.dist.world_size)
        stats = torch.zeros(5, dtype=torch.float64, device=self.device)  # loss, nll, ntokens, nsentences, stop
        for j, positions in enumerate(mine):
            batch = self.train_data.collate(positions).to(self.device)
            seed = np.random.SeedSequence([self.cfg.seed, self.state.step, self.dist.rank * len(mine) + j])
            torch.manual_seed(int(seed.generate_state(1, np.uint64)[0] >> 1))
            sync = j == len(mine) - 1 or not self.dist.enabled
            with (contextlib.nullcontext() if sync else self.model.no_sync()):
                with self._autocast():
                    logits = self.model(batch.src_tokens, batch.prev_output_tokens)
                loss, nll, ntokens = self.criterion(logits, batch.target)
                self.scaler.scale(loss).backward()
            stats[0] += loss.detach()
            stats[1] += nll
            stats[2] += ntokens
            stats[3] += batch.nsentences
        stats[4] = float(bool(self.stop_signal))
        loss_sum, nll_sum, ntokens, nsentences, stop = distributed.all_reduce_sum(stats).tolist()
        lr = self.scheduler.step(self.state.step)
        self.scaler.unscale_(self.optimizer)
        grads = [p.grad for p in self.raw_model.parameters() if p.grad is not None]
        # DDP averaged the gradients over processes: turn that into a sum divided by the update's tokens
        torch._foreach_mul_(grads, self.dist.world_size / max(ntokens, 1.0))
        gnorm = torch.nn.utils.get_total_norm(grads)
        if self.cfg.clip_norm > 0:
            torch.nn.utils.clip_grads_with_norm_(self.raw_model.parameters(), self.cfg.clip_norm, gnorm)
        gnorm = float(gnorm)
        scale = self.scaler.get_scale()
        if math.isfinite(gnorm) or self.scaler.is_enabled():
            self.scaler.step(self.optimizer)
            self.state.nonfinite_updates = 0
        else:
            logger.warning("non-finite gradient at step %d: update skipped", self.state.step + 1)
            self._count_nonfinite()
        self.scaler.update()
        if self.scaler.is_enabled() and self.scaler.get_scale() < scale:
            logger.info("fp16 gradient overflow: update skipped, loss scale now %g", self.scaler.get_scale())
        else:
            self.state.step += 1
        elapsed = time.perf_counter() - start
        self.state.train_seconds += elapsed
        self._stats.add(loss_sum, nll_sum, ntokens, nsentences, elapsed, gnorm, lr)
        return stop > 0

    def _count_nonfinite(self) -> None:
        """An occasional non-finite gradient is skipped; a run of them means the weights or the
        learning rate are broken, and going on would only burn compute until max_steps."""
        state = self.state
        state.nonfinite_updates += 1
        if state.nonfinite_updates >= MAX_NONFINITE_UPDATES:
            first = state.step + 2 - state.nonfinite_updates
            raise TrainingError(
                f"training diverged: the {state.nonfinite_updates} updates of steps {first}-{state.step + 1} all had "
                f"NaN or inf gradients; the checkpoints in {self.model_dir} are left as they were: resume from an "
                "earlier one (delete the later ones), or lower lr / set clip_norm")

    def _log_train(self) -> None:
        w, self._stats = self._stats, UpdateStats()
        if not w.updates:
            return
        row = {"type": "train", "step": self.state.step, "epoch": self.iterator.epoch,
               "loss": base2(w.loss, w.ntokens), "nll": base2(w.nll, w.ntokens), "ppl": perplexity(w.nll, w.ntokens),
               "lr": w.lr, "tokens_per_s": w.ntokens / max(w.seconds, 1e-9), "gnorm": w.gnorm / w.updates,
               "ntokens": w.ntokens / w.updates, "elapsed": self.state.train_seconds}
        rate = self.run_log.rate(self.clock(), self.state.step)
        row["updates_per_s"] = rate
        budget_left = None if self.cfg.max_time is None else self.cfg.max_time - self.wall_seconds()
        logger.info("step %d/%d (%.0f%%) | epoch %d | loss %.3f | nll %.3f | ppl %.2f | lr %.3g | %.0f tok/s | "
                    "%s upd/s | gnorm %.3f | %s | ETA %s", row["step"], self.cfg.max_steps,
                    100 * row["step"] / self.cfg.max_steps, row["epoch"], row["loss"], row["nll"], row["ppl"],
                    row["lr"], row["tokens_per_s"], "-" if rate is None else f"{rate:.2f}", row["gnorm"],
                    clock_time(row["elapsed"]), eta(rate, self.cfg.max_steps - self.state.step, budget_left))
        self._write_row(row)

    def _write_row(self, row: dict[str, Any]) -> None:
        if self.dist.is_master:
            self.run_log.write(row)

    # Validation and checkpoints ----------------------------------------------------------------

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Valid loss/nll/ppl (every process takes a share), and BLEU/chrF decoded on rank 0, per
        direction; the metrics returned are their averages over the directions."""
        decoding = " (decoding them for BLEU/chrF)" if self.cfg.valid_decode else ""
        logger.info("valid | step %d | validating on %d pairs%s", self.state.step,
                    sum(map(len, self.valid_sets.values())), decoding)
        model = self.raw_model.eval()
        self.valid_by_direction = {pair: self._validate_direction(model, data)
                                   for pair, data in self.valid_sets.items()}
        per_direction = list(self.valid_by_direction.values())
        return {name: statistics.fmean(m[name] for m in per_direction) for name in per_direction[0]}

    def _validate_direction(self, model: Transformer, data: PairDataset | MultiPairDataset) -> dict[str, float]:
        batches = fixed_batches(data, self.cfg.valid_batch_size or self.cfg.batch_size)
        sums = torch.zeros(3, dtype=torch.float64, device=self.device)
        for positions in batches[self.dist.rank::self.dist.world_size]:
            batch = data.collate(positions).to(self.device)
            with self._autocast():
                logits = model(batch.src_tokens, batch.prev_output_tokens)
            loss, nll, ntokens = self.criterion(logits, batch.target)
            sums += torch.tensor([float(loss), float(nll), ntokens], dtype=torch.float64, device=self.device)
        loss, nll, ntokens = distributed.all_reduce_sum(sums).tolist()
        metrics = {"loss": base2(loss, ntokens), "nll": base2(nll, ntokens), "ppl": perplexity(nll, ntokens)}
        if self.cfg.valid_decode:
            scores = self._decode_valid(model, data) if self.dist.is_master else None
            metrics.update(distributed.broadcast_object(scores))
        return metrics

    def _decode_valid(self, model: Transformer, data: PairDataset | MultiPairDataset) -> dict[str, float]:
        cfg = self.cfg
        sub = data.head(cfg.valid_max_size)
        hyps, refs = [""] * len(sub), [""] * len(sub)
        for positions in fixed_batches(sub, cfg.valid_batch_size or cfg.batch_size):
            batch = sub.collate(positions).to(self.device)
            with self._autocast():  # the decoder starts as in training: eos or the target language's code
                out = search.generate(model, batch.src_tokens, cfg.valid_search(), bos=batch.prev_output_tokens[:, 0])
            for k, pos in enumerate(positions):
                hyps[pos] = self._detok(out[k][0].tokens.tolist())
                refs[pos] = self._detok(batch.target[k].tolist())
        result = scoring.score(hyps, refs, bleu_tok=cfg.bleu_tok)
        return {"bleu": result["bleu"], "chrf": result["chrf"]}

    def _detok(self, ids: list[int]) -> str:
        pieces = self.dictionary.decode(ids)
        return self.tokenizer.detokenize(pieces) if self.tokenizer is not None else pieces

    def validate_and_save(self) -> None:
        start = time.perf_counter()
        metrics = self.validate()
        cfg, record, step = self.cfg, self.state.validations, self.state.step
        improved = record.record(step, metrics, cfg.best_metric)
        row = {"type": "valid", "step": step, "epoch": self.iterator.epoch, **metrics,
               "best_metric": cfg.best_metric, "best": record.best, "best_step": record.best_step,
               "seconds": time.perf_counter() - start}
        if len(self.valid_by_direction) > 1:  # the metrics above are their averages
            row["directions"] = self.valid_by_direction
            logger.info("valid | step %d | %s by direction: %s", step, cfg.best_metric, ", ".join(
                f"{pair} {m[cfg.best_metric]:.4g}" for pair, m in self.valid_by_direction.items()))
        logger.info("valid | step %d | %s | best %s %s (step %s)", step,
                    " | ".join(f"{k} {v:.4g}" for k, v in metrics.items()), cfg.best_metric, _short(record.best),
                    record.best_step)
        self._write_row(row)
        self.save(step_file=True, is_best=improved)

    def checkpoint(self) -> dict[str, Any]:
        return {
            "model": self.raw_model.state_dict(), "model_config": dataclasses.asdict(self.model_config),
            "arch": self.cfg.arch, "dictionary": list(self.dictionary.symbols),
            "tokenizer": self.tokenizer.to_state() if self.tokenizer is not None else None,
            "inference": self.cfg.inference(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
            "rng": checkpoints.rng_state(), "data_state": self.iterator.state_dict(), "step": self.state.step,
            "epoch": self.iterator.epoch, "metrics": self.state.validations.state_dict(),
            "train_config": self.cfg.to_dict(),
            "meta": {"steps": [self.state.step], "train_seconds": self.state.train_seconds,
                     "wall_seconds": self.wall_seconds(), "params": self.num_params,
                     "train_data": self.train_data_sha1,
                     "world_size": self.dist.world_size, "pasero_version": __version__,
                     "torch_version": str(torch.__version__)},
        }

    def save(self, step_file: bool, is_best: bool = False) -> None:
        if not self.dist.is_master:
            return
        path = checkpoints.save_checkpoint(
            self.checkpoint(), self.model_dir, step_file=step_file, is_best=is_best, keep_last=self.cfg.keep_last,
            keep_best=self.cfg.keep_best, history=self.state.validations.history,
            lower_is_better=self.cfg.best_is_lower())
        logger.info("saved %s", path)
