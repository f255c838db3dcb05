"""SLURM: the test cluster, profiles/slurm through Snakemake, and pasero.slurm's submitit glue.

The cluster tests run against a real single-node SLURM cluster that tests/slurm/start.sh starts
on this machine (root and Debian's slurm-wlm + munge needed; otherwise they are skipped). Its
node declares two fake GPUs as GRES, so GPU jobs get CUDA_VISIBLE_DEVICES as on a GPU node.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pasero.errors import ConfigError
from pasero.slurm import (SlurmOptions, add_slurm_arguments, options_from_args,
                          strip_slurm_arguments, submit)

REPO = Path(__file__).resolve().parents[1]
SLURM_SCRIPTS = REPO / "tests" / "slurm"
PROFILE = REPO / "profiles" / "slurm"
STATE_DIR = os.environ.get("PASERO_SLURM_STATE", "/tmp/pasero-slurm")

# Small jobs for a 2-core test node; CUDA_VISIBLE_DEVICES must come from SLURM, not from us.
TEST_ENV = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES" and not k.startswith("PASERO_SLURM")}
TEST_ENV.update(PASERO_SLURM_CPUS_PER_GPU="1", PASERO_SLURM_GPU_MEM_MB="1000", PASERO_SLURM_MEM_MB="500")
# Poll job states every second instead of the plugin's production pace.
FAST_STATUS = ["--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "1"]


def _sh(*cmd: str, timeout: float = 120, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=check, **kwargs)


def _test_cluster_up() -> bool:
    """Is our test cluster (not some other SLURM configuration) up already?"""
    conf = Path("/etc/slurm/slurm.conf")
    if not conf.exists() or not conf.read_text().startswith("# pasero test cluster"):
        return False
    return "UP" in _sh("scontrol", "ping", timeout=15, check=False).stdout


@pytest.fixture(scope="session")
def slurm_cluster():
    """The local test cluster, started for this session unless it was already up."""
    if not (shutil.which("slurmctld") or Path("/usr/sbin/slurmctld").exists()) or not shutil.which("sbatch"):
        pytest.skip("SLURM is not installed (as root: bash tests/slurm/install.sh)")
    if os.geteuid() != 0:
        if _test_cluster_up():
            yield STATE_DIR
            return
        pytest.skip("starting the test SLURM cluster needs root (or start it first: sudo bash tests/slurm/start.sh)")
    started = _sh("bash", str(SLURM_SCRIPTS / "start.sh"), STATE_DIR, timeout=180, check=False)
    if started.returncode != 0:
        pytest.fail(f"tests/slurm/start.sh failed:\n{started.stdout}{started.stderr}")
    yield STATE_DIR
    if "already up" not in started.stdout:
        _sh("bash", str(SLURM_SCRIPTS / "stop.sh"), STATE_DIR, timeout=60, check=False)


def _job_field(job_id: str, name: str) -> str | None:
    shown = _sh("scontrol", "show", "job", job_id).stdout
    match = re.search(rf"\b{name}=(\S+)", shown)
    return match.group(1) if match else None


def _wait_for(predicate, timeout: float, what: str, details=lambda: "") -> None:
    """Poll; the timeouts are generous upper bounds for a loaded 2-core machine."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{details()}")
        time.sleep(0.2)


def _env_file(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def _snakemake(workdir: Path, *args: str, env: dict | None = None, timeout: float = 300, **popen):
    cmd = [sys.executable, "-m", "snakemake", "--profile", str(PROFILE), *FAST_STATUS, *args]
    if popen.pop("background", False):
        return subprocess.Popen(cmd, cwd=workdir, env=env or TEST_ENV, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return subprocess.run(cmd, cwd=workdir, env=env or TEST_ENV, capture_output=True, text=True,
                          timeout=timeout)


# A program that behaves like pasero-train towards SLURM: on SIGTERM/SIGUSR2 it records a
# "checkpoint" and exits 3; started again, it resumes from it and finishes at once.
RESUMABLE = textwrap.dedent("""\
    import os, signal, sys, time
    out, state = sys.argv[1], sys.argv[2]
    resumed = os.path.exists(state) and "saved" in open(state).read()
    def record(what):
        with open(state, "a") as f:
            print(what, os.environ.get("SLURM_JOB_ID"), os.environ.get("CUDA_VISIBLE_DEVICES"), file=f)
    def stop(signum, frame):
        record("saved-on-" + signal.Signals(signum).name)
        sys.exit(3)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGUSR2, stop)
    record("resumed" if resumed else "started")
    if not resumed:
        time.sleep(300)
    with open(out, "w") as f:
        f.write("trained\\n")
    record("done")
""")


def _events(state: Path) -> list[str]:
    """What the resumable program recorded so far (complete lines only)."""
    text = state.read_text() if state.exists() else ""
    return [line.split()[0] for line in text.splitlines(keepends=True) if line.endswith("\n")]


# --- the cluster itself ---------------------------------------------------------------------

@pytest.mark.slurm
@pytest.mark.slow
def test_cluster_allocates_fake_gpus_and_keeps_finished_jobs(slurm_cluster):
    assert "gpu:fake:2" in _sh("sinfo", "-h", "-o", "%G").stdout
    assert re.search(r"^CUDA_VISIBLE_DEVICES=\d$", _sh("srun", "--gpus=1", "env", env=TEST_ENV).stdout, re.M)
    assert "CUDA_VISIBLE_DEVICES=0,1" in _sh("srun", "--gpus=2", "env", env=TEST_ENV).stdout
    assert "CUDA_VISIBLE_DEVICES" not in _sh("srun", "env", env=TEST_ENV).stdout
    # No accounting database: squeue must still tell how a finished job ended.
    job = _sh("sbatch", "--parsable", "-o", "/dev/null", "--wrap", "true").stdout.strip()
    state = lambda: _sh("squeue", "-h", "--states=all", "-j", job, "-o", "%T").stdout.strip()
    _wait_for(lambda: state() == "COMPLETED", 120, f"job {job} to complete")


# --- profiles/slurm through Snakemake -------------------------------------------------------

GPU_AND_CPU_RULES = """\
rule all:
    input: "train.env", "prep.env"

rule prep:
    output: "prep.env"
    shell: "env > {output}"

rule train:
    input: "prep.env"
    output: "train.env"
    resources: gpu=1
    shell: "env > {output}"
"""


@pytest.mark.slurm
@pytest.mark.slow
def test_profile_runs_gpu_rule_with_one_gpu_and_cpu_rule_without(slurm_cluster, tmp_path):
    (tmp_path / "Snakefile").write_text(GPU_AND_CPU_RULES)
    run = _snakemake(tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    cpu, gpu = _env_file(tmp_path / "prep.env"), _env_file(tmp_path / "train.env")
    assert "SLURM_JOB_ID" in cpu and "SLURM_JOB_ID" in gpu, "rules did not run as SLURM jobs"
    assert "CUDA_VISIBLE_DEVICES" not in cpu
    assert re.fullmatch(r"\d", gpu["CUDA_VISIBLE_DEVICES"])
    assert _job_field(gpu["SLURM_JOB_ID"], "TresPerJob") == "gres:gpu:1"
    assert _job_field(cpu["SLURM_JOB_ID"], "TresPerJob") is None
    # The profile's per-rule resources reached sbatch (train: appended log, early SIGTERM).
    assert _job_field(gpu["SLURM_JOB_ID"], "TimeLimit") == "1-00:00:00"
    assert _job_field(cpu["SLURM_JOB_ID"], "TimeLimit") == "04:00:00"


@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.parametrize("variable, value, slurm_says", [
    ("PASERO_SLURM_PARTITION", "nosuchpartition", "invalid partition specified: nosuchpartition"),
    ("PASERO_SLURM_GPU_TYPE", "h100", "Requested node configuration is not available"),
])
def test_sbatch_refusal_reaches_the_user(slurm_cluster, tmp_path, variable, value, slurm_says):
    (tmp_path / "Snakefile").write_text(GPU_AND_CPU_RULES.replace('"train.env", "prep.env"', '"train.env"')
                                        .replace('    input: "prep.env"\n', ""))
    run = _snakemake(tmp_path, env={**TEST_ENV, variable: value})
    assert run.returncode != 0
    assert slurm_says in run.stdout + run.stderr


@pytest.mark.slurm
@pytest.mark.slow
def test_requeued_training_job_resumes_in_the_same_submission(slurm_cluster, tmp_path):
    (tmp_path / "resumable.py").write_text(RESUMABLE)
    (tmp_path / "Snakefile").write_text(textwrap.dedent("""\
        rule train:
            output: "model.txt"
            resources: gpu=1
            shell: "python3 resumable.py {output} state.txt"
        """))
    state = tmp_path / "state.txt"
    snakemake = _snakemake(tmp_path, background=True)
    try:
        _wait_for(lambda: _events(state), 180, "the training job to start")
        job = state.read_text().split()[1]
        _sh("scontrol", "requeue", job)  # what SLURM does to a preempted job
        out, _ = snakemake.communicate(timeout=300)
    finally:
        snakemake.kill()
        snakemake.wait()
    assert snakemake.returncode == 0, out
    assert _events(state) == ["started", "saved-on-SIGTERM", "resumed", "done"]
    assert out.count("has been submitted with SLURM jobid") == 1  # SLURM requeued, no retry
    assert _job_field(job, "Restarts") == "1"
    assert (tmp_path / "model.txt").read_text() == "trained\n"


# --- pasero.slurm: submitit ------------------------------------------------------------------

def _submit_resumable(tmp_path: Path, **options):
    (tmp_path / "resumable.py").write_text(RESUMABLE)
    options = SlurmOptions(cpus_per_gpu=1, mem_gb=0.5, time_min=10, job_dir=tmp_path / "jobs", **options)
    return submit([sys.executable, "resumable.py", "model.txt", "state.txt"], options)


@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.parametrize("how", ["time limit", "preemption"])
def test_submitted_job_is_requeued_and_resumes(slurm_cluster, tmp_path, monkeypatch, capsys, how):
    monkeypatch.chdir(tmp_path)
    for key in [k for k in os.environ if k == "CUDA_VISIBLE_DEVICES" or k.startswith("PASERO_SLURM")]:
        monkeypatch.delenv(key)
    job = _submit_resumable(tmp_path, gpus=1)
    printed = capsys.readouterr().out
    assert f"Submitted SLURM job {job.job_id}" in printed and str(job.paths.stdout) in printed
    state = tmp_path / "state.txt"
    log = lambda: job.paths.stdout.read_text()[-3000:] if job.paths.stdout.exists() else "(no log)"
    _wait_for(lambda: _events(state), 180, "the job to start", log)
    if how == "time limit":  # the signal SLURM sends signal_delay_s before the time limit
        _sh("scancel", "--signal=USR2", job.job_id)
    else:  # preemption with requeue: SIGTERM, then SIGKILL after KillWait
        _sh("scontrol", "requeue", job.job_id)
    _wait_for(job.paths.result_pickle.exists, 240, "the requeued job to finish",
              lambda: (state.read_text() if state.exists() else "") + log())
    saved = "saved-on-SIGUSR2" if how == "time limit" else "saved-on-SIGTERM"
    assert _events(state) == ["started", saved, "resumed", "done"], state.read_text() + log()
    assert {line.split()[2] for line in state.read_text().splitlines()} == {"0"}  # one GPU each time
    assert job.result() == 0
    assert _job_field(job.job_id, "Restarts") == "1"


@pytest.mark.slurm
@pytest.mark.slow
def test_submitted_command_failure_is_the_job_result(slurm_cluster, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    options = SlurmOptions(gpus=0, cpus_per_gpu=1, mem_gb=0.5, time_min=5, job_dir=tmp_path / "jobs")
    job = submit([sys.executable, "-c", "import sys; sys.exit(5)"], options)
    _wait_for(job.paths.result_pickle.exists, 180, "the job to finish")
    with pytest.raises(Exception, match="exited with status 5"):
        job.result()


@pytest.mark.slurm
@pytest.mark.slow
def test_submit_reports_slurm_refusal(slurm_cluster, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="invalid partition specified: nosuchpartition"):
        _submit_resumable(tmp_path, gpus=0, partition="nosuchpartition")


# --- pasero.slurm: command-line options (no cluster needed) ---------------------------------

def _parse(argv: list[str], data_parallel: bool = False) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("-c")
    add_slurm_arguments(parser, data_parallel=data_parallel)
    return parser.parse_args(argv)


def test_job_runs_the_command_without_its_slurm_options():
    argv = ["-c", "x.yaml", "--slurm", "--slurm-gpus", "2", "--slurm-partition=gpu", "--lr", "1e-3",
            "--slurm-sbatch", "qos=high"]
    assert strip_slurm_arguments(argv) == ["-c", "x.yaml", "--lr", "1e-3"]


def test_options_come_from_flags_then_environment(monkeypatch):
    monkeypatch.setenv("PASERO_SLURM_PARTITION", "gpu")
    monkeypatch.setenv("PASERO_SLURM_GPU_TYPE", "a100")
    monkeypatch.delenv("PASERO_SLURM_ACCOUNT", raising=False)
    args = _parse(["--slurm", "--slurm-gpus", "2", "--slurm-account", "nlp", "--slurm-sbatch", "qos=high"],
                  data_parallel=True)
    options = options_from_args(args, job_dir="models/x/slurm")
    assert (options.partition, options.account, options.gpus, options.tasks) == ("gpu", "nlp", 2, 2)
    params = options.sbatch_parameters()
    assert params["gpus_per_node"] == "a100:2" and params["ntasks_per_node"] == 2
    assert params["partition"] == "gpu" and params["account"] == "nlp"
    assert params["additional_parameters"] == {"qos": "high"}
    assert options.job_dir == Path("models/x/slurm")
    decode = options_from_args(_parse(["--slurm", "--slurm-gpus", "2"]))
    assert decode.tasks == 1  # one process uses both GPUs


def test_bad_slurm_options_are_user_errors():
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        options_from_args(_parse(["--slurm-sbatch", "qos"]))
    with pytest.raises(ConfigError, match="gpus=-1"):
        SlurmOptions(gpus=-1).sbatch_parameters()
