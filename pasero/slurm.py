"""Run `pasero-train --slurm …` / `pasero-decode --slurm …` as SLURM jobs, outside Snakemake.

The command re-submits itself, minus its `--slurm*` options, through submitit: submitit writes
the sbatch script and a job folder on the shared file system, and the job runs the very same
command line on a compute node. Long trainings survive time limits and preemption: SLURM
signals the job (SIGUSR2 `signal_delay_s` before the time limit, or on preemption) and, since
it signals every process of the job step, the command itself saves a checkpoint and stops;
the callable below is checkpointable, so submitit then requeues the job, whose next run
resumes from that checkpoint.

Cluster-specific defaults come from the same environment variables as `profiles/slurm`
(PASERO_SLURM_PARTITION, PASERO_SLURM_ACCOUNT, PASERO_SLURM_GPU_TYPE, …), so one shell set-up
serves both ways of running on SLURM.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pasero.errors import ConfigError


def _env(name: str, default: str = "") -> str:
    return os.environ.get(name) or default


@dataclass
class SlurmOptions:
    """Resources and placement of one SLURM job (what `--slurm-*` options set)."""

    gpus: int = 1
    gpu_type: str | None = None  # e.g. "a100": only GPUs of this model
    cpus_per_gpu: int = 4  # CPU cores per GPU (per job when gpus == 0)
    mem_gb: float = 32.0
    partition: str | None = None  # None: the cluster's default partition
    account: str | None = None  # None: the user's default account
    time_min: int = 1440
    tasks: int = 1  # processes started in the job (data-parallel training: one per GPU)
    job_dir: Path = Path("slurm")  # submitit's folder (scripts, pickles, logs); must be shared
    job_name: str = "pasero"
    max_requeues: int = 3  # time-outs after which the job is not requeued any more
    signal_delay_s: int = 120  # SIGUSR2 this long before the time limit
    sbatch: dict[str, str] = field(default_factory=dict)  # any other sbatch option, e.g. qos

    def __post_init__(self) -> None:
        self.job_dir = Path(self.job_dir)

    @classmethod
    def from_environment(cls, **overrides: Any) -> SlurmOptions:
        """Defaults taken from PASERO_SLURM_* variables (as in profiles/slurm), then overrides."""
        values: dict[str, Any] = {
            "partition": _env("PASERO_SLURM_PARTITION") or None,
            "account": _env("PASERO_SLURM_ACCOUNT") or None,
            "gpu_type": _env("PASERO_SLURM_GPU_TYPE") or None,
            "cpus_per_gpu": int(_env("PASERO_SLURM_CPUS_PER_GPU", "4")),
            "mem_gb": int(_env("PASERO_SLURM_GPU_MEM_MB", "32000")) / 1000,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def sbatch_parameters(self) -> dict[str, Any]:
        """submitit.SlurmExecutor parameters (sbatch options) for these resources."""
        if self.gpus < 0 or self.tasks < 1 or self.cpus_per_gpu < 1 or self.time_min < 1:
            raise ConfigError(
                f"invalid SLURM resources: gpus={self.gpus}, tasks={self.tasks}, "
                f"cpus_per_gpu={self.cpus_per_gpu}, time={self.time_min} min "
                "(need gpus >= 0 and tasks, cpus, time >= 1)"
            )
        cpus = self.cpus_per_gpu * max(self.gpus, 1)
        params: dict[str, Any] = {
            "job_name": self.job_name,
            "time": self.time_min,
            "nodes": 1,
            "ntasks_per_node": self.tasks,
            "cpus_per_task": max(1, cpus // self.tasks),
            "mem": f"{max(1, round(self.mem_gb * 1000))}M",
            "signal_delay_s": self.signal_delay_s,
            "stderr_to_stdout": True,
        }
        if self.gpus:
            # Every task sees all the job's GPUs and picks its own by local rank.
            params["gpus_per_node"] = f"{self.gpu_type}:{self.gpus}" if self.gpu_type else self.gpus
        if self.partition:
            params["partition"] = self.partition
        if self.account:
            params["account"] = self.account
        if self.sbatch:
            params["additional_parameters"] = dict(self.sbatch)
        return params


def placement(environ: dict[str, str] | None = None) -> str | None:
    """Where this process runs in SLURM, for the command's log; None outside a SLURM job.

    E.g. "SLURM job 123 (restart 1), task 0 of 2 on gpu07; CUDA_VISIBLE_DEVICES=0,1": when a
    result looks wrong, the log says which job, attempt and GPUs produced it.
    """
    env = os.environ if environ is None else environ
    job = env.get("SLURM_JOB_ID")
    if not job:
        return None
    restarts = int(env.get("SLURM_RESTART_COUNT") or 0)
    attempt = f" (restart {restarts})" if restarts else ""
    tasks = env.get("SLURM_STEP_NUM_TASKS") or env.get("SLURM_NTASKS") or "1"
    node = env.get("SLURMD_NODENAME") or os.uname().nodename
    return (f"SLURM job {job}{attempt}, task {env.get('SLURM_PROCID', '0')} of {tasks} on {node}; "
            f"CUDA_VISIBLE_DEVICES={env.get('CUDA_VISIBLE_DEVICES', '(unset)')}")


# --- command line -----------------------------------------------------------------------------

# Options that take a value; `--slurm` itself is a flag. Used to strip them from the job's argv.
_VALUE_OPTIONS = (
    "--slurm-gpus", "--slurm-gpu-type", "--slurm-cpus-per-gpu", "--slurm-mem-gb",
    "--slurm-partition", "--slurm-account", "--slurm-time", "--slurm-job-dir",
    "--slurm-max-requeues", "--slurm-sbatch",
)


def add_slurm_arguments(parser: argparse.ArgumentParser, data_parallel: bool = False) -> None:
    """Add `--slurm` and its `--slurm-*` options to a command's parser.

    data_parallel: start one process per GPU (training); otherwise one process uses them all.
    Unset options fall back to the PASERO_SLURM_* environment variables, then to SlurmOptions.
    """
    group = parser.add_argument_group(
        "SLURM", "submit this command as a SLURM job (through submitit) instead of running it here"
    )
    group.add_argument("--slurm", action="store_true",
                       help="submit to SLURM; prints the job id and log path, then returns")
    group.add_argument("--slurm-gpus", type=int, metavar="N", help="GPUs (default 1)")
    group.add_argument("--slurm-gpu-type", metavar="MODEL",
                       help="GPU model, e.g. a100 (default: $PASERO_SLURM_GPU_TYPE or any)")
    group.add_argument("--slurm-cpus-per-gpu", type=int, metavar="N",
                       help="CPU cores per GPU (default: $PASERO_SLURM_CPUS_PER_GPU or 4)")
    group.add_argument("--slurm-mem-gb", type=float, metavar="GB",
                       help="memory (default: $PASERO_SLURM_GPU_MEM_MB / 1000 or 32)")
    group.add_argument("--slurm-partition", metavar="NAME",
                       help="partition (default: $PASERO_SLURM_PARTITION or the cluster's)")
    group.add_argument("--slurm-account", metavar="NAME",
                       help="account (default: $PASERO_SLURM_ACCOUNT or the user's)")
    group.add_argument("--slurm-time", type=int, metavar="MIN",
                       help="time limit in minutes; the job is requeued when it is reached (default 1440)")
    group.add_argument("--slurm-job-dir", type=Path, metavar="DIR",
                       help="job folder on a shared file system: scripts and logs")
    group.add_argument("--slurm-max-requeues", type=int, metavar="N",
                       help="give up after N time-outs (default 3)")
    group.add_argument("--slurm-sbatch", action="append", default=[], metavar="KEY=VALUE",
                       help="any other sbatch option, e.g. qos=high or constraint=ib (repeatable)")
    parser.set_defaults(slurm_data_parallel=data_parallel)


def options_from_args(args: argparse.Namespace, job_dir: Path | str | None = None) -> SlurmOptions:
    """SlurmOptions from parsed `--slurm-*` options; job_dir is the command's default folder."""
    sbatch = {}
    for item in args.slurm_sbatch:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--slurm-sbatch {item!r}: expected KEY=VALUE, e.g. qos=high")
        sbatch[key.lstrip("-")] = value
    options = SlurmOptions.from_environment(
        gpus=args.slurm_gpus, gpu_type=args.slurm_gpu_type, cpus_per_gpu=args.slurm_cpus_per_gpu,
        mem_gb=args.slurm_mem_gb, partition=args.slurm_partition, account=args.slurm_account,
        time_min=args.slurm_time, job_dir=args.slurm_job_dir or job_dir,
        max_requeues=args.slurm_max_requeues, sbatch=sbatch,
    )
    if args.slurm_data_parallel:
        options.tasks = max(1, options.gpus)
    return options


def strip_slurm_arguments(argv: Sequence[str] | None = None) -> list[str]:
    """argv without `--slurm` and `--slurm-* VALUE`: what the job itself runs."""
    argv = list(sys.argv[1:] if argv is None else argv)
    kept, skip_value = [], False
    for arg in argv:
        if skip_value:
            skip_value = False
        elif arg == "--slurm" or arg.split("=", 1)[0] in _VALUE_OPTIONS:
            skip_value = arg in _VALUE_OPTIONS  # "--opt VALUE" rather than "--opt=VALUE"
        else:
            kept.append(arg)
    return kept


# --- submission -------------------------------------------------------------------------------

class RequeueableCommand:
    """A command line run in a child process of the job; checkpointable for submitit.

    On SIGUSR2 (time limit near, or preemption) submitit calls `checkpoint`: the command got the
    same signal from SLURM and is saving its own checkpoint, so wait for it to exit, then hand
    submitit the same command to run again after the requeue (it resumes by itself).
    """

    def __init__(self, argv: Sequence[str], grace_s: float = 60.0) -> None:
        self.argv = list(argv)
        self.grace_s = grace_s
        self._process: subprocess.Popen | None = None
        self._stopped = False

    def __call__(self) -> int:
        self._stopped = False
        for signum in _stop_signals():
            self._note_signal(signum)
        self._process = subprocess.Popen(self.argv)
        # poll() rather than wait(): the signal handler below must be able to reap the child.
        while (code := self._process.poll()) is None:
            time.sleep(0.2)
        if code != 0 and not self._stopped:
            # SLURM signals the processes of a job step one at a time: the command may have
            # saved and exited before this process got the same signal.
            time.sleep(2.0)
        if code != 0 and self._stopped:
            # Stopped by SLURM (requeue, preemption, time limit): do not report a failure for a
            # job about to be requeued; SLURM or submitit ends this process in the meantime.
            time.sleep(self.grace_s)
        if code != 0:
            raise RuntimeError(f"{shlex.join(self.argv)} exited with status {code}")
        return code

    def _note_signal(self, signum: int) -> None:
        """Remember that SLURM signalled the job, then run submitit's own handler."""
        previous = signal.getsignal(signum)

        def handler(received: int, frame: Any) -> None:
            self._stopped = True
            if callable(previous):
                previous(received, frame)

        signal.signal(signum, handler)

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        from submitit.helpers import DelayedSubmission

        process = self._process
        if process is not None and not self._exited_within(self.grace_s):
            # It did not react to SLURM's signal: SIGTERM also makes pasero save and stop.
            process.send_signal(signal.SIGTERM)
            self._exited_within(min(30.0, self.grace_s))
        return DelayedSubmission(RequeueableCommand(self.argv, self.grace_s))

    def _exited_within(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while self._process.poll() is None:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)
        return True

    def __getstate__(self) -> dict:  # a running process does not travel to the next job
        return {"argv": self.argv, "grace_s": self.grace_s, "_process": None, "_stopped": False}


def _stop_signals() -> tuple[int, ...]:
    """SIGTERM (preemption, scancel) and submitit's time-out signal (SIGUSR2 unless changed)."""
    usr = getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"), signal.SIGUSR2)
    return (signal.SIGTERM, usr)


def submit(command_argv: Sequence[str], options: SlurmOptions) -> Any:
    """Submit `command_argv` as a SLURM job; print and return the submitit job.

    The program (argv[0]) is resolved to an absolute path here, so the job runs the same
    installation; the job starts in the current directory with the current environment.
    """
    import submitit

    if not command_argv:
        raise ConfigError("nothing to submit: empty command")
    if shutil.which("sbatch") is None or shutil.which("srun") is None:
        raise ConfigError("--slurm needs SLURM's sbatch and srun on PATH (run on a login node)")
    argv = list(command_argv)
    argv[0] = shutil.which(argv[0]) or argv[0]
    params = options.sbatch_parameters()
    job_dir = Path(options.job_dir).absolute()
    executor = submitit.SlurmExecutor(folder=job_dir / "%j", max_num_timeout=options.max_requeues)
    executor.update_parameters(**params)
    grace = max(10.0, options.signal_delay_s - 15.0)  # leave submitit time to requeue
    try:
        job = executor.submit(RequeueableCommand(argv, grace_s=grace))
    except submitit.core.utils.FailedJobError as e:
        reason = " ".join(str(e).split())
        raise ConfigError(f"SLURM refused the job: {reason}") from None
    print(f"Submitted SLURM job {job.job_id}: {shlex.join(argv)}")
    print(f"Log: {job.paths.stdout}")
    return job
