"""SLURM: the test cluster, profiles/slurm through Snakemake, and pasero.slurm's submitit glue.

The cluster tests run against a real single-node SLURM cluster that tests/slurm/start.sh starts
on this machine (root and Debian's slurm-wlm + munge needed; otherwise they are skipped). Its
node declares two fake GPUs as GRES, so GPU jobs get CUDA_VISIBLE_DEVICES as on a GPU node.
End to end on it: the toy pipeline through `--profile slurm` (same result as `--profile local`),
and real `pasero-train --slurm` / `pasero-decode --slurm` jobs: preempted, at their time limit, or
data-parallel over two SLURM tasks, training ends with the weights of an uninterrupted run.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pasero.checkpoints import load_checkpoint
from pasero.errors import ConfigError
from pasero.slurm import SlurmOptions, add_slurm_arguments, options_from_args, placement, strip_slurm_arguments, submit

REPO = Path(__file__).resolve().parents[1]
SLURM_SCRIPTS = REPO / "tests" / "slurm"
PROFILE = REPO / "profiles" / "slurm"
STATE_DIR = os.environ.get("PASERO_SLURM_STATE", "/tmp/pasero-slurm")
EXP = Path("results/toy/de-en")

BIN = Path(sys.executable).parent  # the pasero commands are console scripts next to this Python

# Small jobs for a 2-core test node; CUDA_VISIBLE_DEVICES must come from SLURM, not from us.
TEST_ENV = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES" and not k.startswith("PASERO_SLURM")}
TEST_ENV.update(PASERO_SLURM_CPUS_PER_GPU="1", PASERO_SLURM_GPU_MEM_MB="1000", PASERO_SLURM_MEM_MB="500",
                PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", OMP_NUM_THREADS="1")
# Poll job states at a test pace. After a poll that saw a job end the plugin waits this many
# seconds, 10 s more after each poll that saw none: 7 s lets a short job (about 5 s, mostly the
# job's own Snakemake start-up) end before the next poll, so each step costs 7 s, not 12.
FAST_STATUS = ["--slurm-init-seconds-before-status-checks", "7", "--seconds-between-status-checks", "1"]


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
    # (Polling every second: Snakemake only stops at its next poll after the refusal.)
    run = _snakemake(tmp_path, "--slurm-init-seconds-before-status-checks", "1", env={**TEST_ENV, variable: value})
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
    # One GPU each time (which one depends on what else runs on the node).
    assert all(re.fullmatch(r"\d", line.split()[2]) for line in state.read_text().splitlines()), state.read_text()
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


# --- the toy pipeline through profiles/slurm ------------------------------------------------

TOY_TARGET = "results/toy/de-en/bleu.txt"
# Rules that run as SLURM jobs (`download` is a local rule: compute nodes may have no internet).
CPU_RULES = {"tokenizer", "dict", "binarize", "select", "score"}
GPU_RULES = {"train", "decode"}
LOG_NAMES = {"decode": "decode.test"}  # a rule's log, when it is not named after the rule alone
# A guard against a hung command, not a speed expectation: on a loaded 2-core machine a tiny training
# run that takes 40 s alone can take several minutes.
HANG = 900


def _toy_config() -> dict:
    """The workflow tests' tiny toy experiment, with one thread per job: the test node has 2 CPUs."""
    from test_workflow import TINY

    config = copy.deepcopy(TINY)
    config["defaults"]["train"].update(max_steps=40, valid_interval=20)
    config["defaults"]["resources"]["threads"] = 1
    return config


def _profiles_by_name(tmp_path: Path) -> dict[str, str]:
    """An environment where `--profile slurm` and `--profile local` are found by name, as after
    the README's set-up (which links them into ~/.config/snakemake)."""
    config_home = tmp_path / "xdg"
    (config_home / "snakemake").mkdir(parents=True)
    for name in ("local", "slurm"):
        (config_home / "snakemake" / name).symlink_to(REPO / "profiles" / name)
    return {**TEST_ENV, "XDG_CONFIG_HOME": str(config_home)}


def _jobs_by_rule(output: str) -> dict[str, list[str]]:
    """{rule: SLURM job ids} from Snakemake's "submitted with SLURM jobid N (log: …/rule_R/…)" lines."""
    jobs: dict[str, list[str]] = {}
    for job, rule in re.findall(r"submitted with SLURM jobid (\d+) \(log: \S*/rule_(\w+)/", output):
        jobs.setdefault(rule, []).append(job)
    return jobs


def _model_bytes(path: Path) -> dict[str, bytes]:
    return {k: v.numpy().tobytes() for k, v in load_checkpoint(path)["model"].items()}


@pytest.mark.slurm
@pytest.mark.slow
def test_toy_pipeline_through_the_slurm_profile_gives_the_local_result(slurm_cluster, tmp_path):
    from test_workflow import workspace

    env = _profiles_by_name(tmp_path)
    on_slurm, here = workspace(tmp_path / "slurm", _toy_config()), workspace(tmp_path / "local", _toy_config())
    # --max-threads 1 on both (the test node has 2 CPUs): a rule's threads become its OMP_NUM_THREADS,
    # and on CPU the thread count changes the weights (float sums in another order, ~1e-3 in 40 steps).
    snakemake = [sys.executable, "-m", "snakemake", "--max-threads", "1", TOY_TARGET]
    local = subprocess.Popen([*snakemake, "--profile", "local"], cwd=here, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # meanwhile, on this machine
    try:
        run = subprocess.run([*snakemake, "--profile", "slurm", *FAST_STATUS], cwd=on_slurm, env=env,
                             capture_output=True, text=True, timeout=400)
        local_out, _ = local.communicate(timeout=300)
    finally:
        local.kill()
        local.wait()
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-5000:]
    assert local.returncode == 0, local_out[-3000:]

    jobs = _jobs_by_rule(out)
    assert set(jobs) == CPU_RULES | GPU_RULES, out[-5000:]
    assert len(jobs["binarize"]) == 4
    for rule in CPU_RULES:
        for job in jobs[rule]:
            assert _job_field(job, "TresPerJob") is None, f"{rule} (job {job}) was given a GPU"
    exp = on_slurm / EXP
    for rule in GPU_RULES:
        (job,) = jobs[rule]
        assert _job_field(job, "TresPerJob") == "gres:gpu:1", rule
        log = (exp / "logs" / f"{LOG_NAMES.get(rule, rule)}.log").read_text()
        assert re.search(rf"running in SLURM job {job}, .*; CUDA_VISIBLE_DEVICES=\d$", log, re.M), log[:2000]

    # Same data, same seed, same threads: the cluster changes where the steps run, not their results.
    hyps = (exp / "test.hyp").read_text()
    assert any(hyps.splitlines()), "the tiny model translates everything to nothing: nothing compared"
    assert hyps == (here / EXP / "test.hyp").read_text()
    assert _model_bytes(exp / "model.pt") == _model_bytes(here / EXP / "model.pt")
    assert (exp / "bleu.txt").read_text() == (here / EXP / "bleu.txt").read_text()


@pytest.mark.slurm
@pytest.mark.slow
def test_multilingual_experiment_through_the_slurm_profile(slurm_cluster, tmp_path):
    """One training job on a GPU for all directions, a decoding job on a GPU per direction, and the
    experiment's table: a multilingual experiment runs on the cluster like a bilingual one."""
    from test_workflow import workspace
    from test_workflow_multilingual import CONFIG, write_corpus
    from test_workflow_multilingual import EXP as MULTI

    config = copy.deepcopy(CONFIG)
    config["defaults"]["train"].update(max_steps=20, valid_interval=20)
    config["defaults"]["resources"]["threads"] = 1
    path = workspace(tmp_path / "multi", config)
    write_corpus(path)
    command = [sys.executable, "-m", "snakemake", "--profile", "slurm", "--max-threads", "1", *FAST_STATUS,
               str(MULTI / "bleu.txt")]  # the test node has 2 CPUs
    run = subprocess.run(command, cwd=path, env=_profiles_by_name(tmp_path), capture_output=True, text=True,
                         timeout=HANG)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-5000:]
    jobs = _jobs_by_rule(out)
    assert len(jobs["train"]) == 1 and len(jobs["decode_direction"]) == 4 and len(jobs["score_direction"]) == 4
    for job in jobs["train"] + jobs["decode_direction"]:
        assert _job_field(job, "TresPerJob") == "gres:gpu:1", job
    table = json.loads((path / MULTI / "scores.json").read_text())
    assert set(table["directions"]) == {"de-en", "en-de", "fr-en", "de-fr"}
    assert table["directions"]["de-fr"]["zero_shot"]


# --- pasero-train --slurm / pasero-decode --slurm on the cluster ------------------------------

# What the test node can give one job: 1 CPU per GPU, 1 GB, 5 minutes.
SMALL_JOB = ["--slurm-cpus-per-gpu", "1", "--slurm-mem-gb", "1", "--slurm-time", "5"]
JOB_ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL",
             "DEADLINE", "PREEMPTED"}


def _pasero(*argv, cwd: Path) -> subprocess.CompletedProcess:
    """Run a pasero command as a user would (console script, from `cwd`)."""
    return subprocess.run([str(a) for a in argv], cwd=cwd, env=TEST_ENV, capture_output=True, text=True,
                          timeout=HANG)


def _submitted(run: subprocess.CompletedProcess) -> tuple[str, Path]:
    """(job id, log path) that a `--slurm` command printed."""
    assert run.returncode == 0, run.stdout + run.stderr
    job = re.search(r"^Submitted SLURM job (\d+): ", run.stdout, re.M)
    log = re.search(r"^Log: (\S+)$", run.stdout, re.M)
    assert job and log, run.stdout + run.stderr
    return job.group(1), Path(log.group(1))


def _tail(path: Path) -> str:
    return path.read_text()[-4000:] if path.exists() else f"({path} does not exist)"


def _wait_until_ended(job: str, log: Path, timeout: float = 240) -> str:
    """The final state of a job, as squeue shows it (finished jobs stay visible: MinJobAge)."""
    state = lambda: _sh("squeue", "-h", "--states=all", "-j", job, "-o", "%T").stdout.strip()
    _wait_for(lambda: state() in JOB_ENDED, timeout, f"job {job} to end", lambda: _tail(log))
    return state()


def _training_config(root: Path, **overrides) -> dict:
    from train_helpers import make_corpus

    return {**make_corpus(root / "data"), "valid_decode": False, "best_metric": "nll", "log_interval": 10,
            **overrides}


def _train_command(config: dict, model_dir: Path) -> list[str]:
    from train_helpers import write_config

    path = write_config(model_dir.with_suffix(".yaml"), {**config, "model_dir": str(model_dir)})
    return [BIN / "pasero-train", "-c", path]


@pytest.mark.slurm
@pytest.mark.slow
def test_requeued_pasero_train_job_ends_with_the_weights_of_an_uninterrupted_run(slurm_cluster, tmp_path):
    config = _training_config(tmp_path, max_steps=600, valid_interval=100)
    job_dir = tmp_path / "job"
    job, log = _submitted(_pasero(*_train_command(config, job_dir), "--slurm", *SMALL_JOB, cwd=tmp_path))
    assert log.parent.parent == job_dir / "slurm"  # the job folder defaults to MODEL_DIR/slurm

    # Preempt it mid-training, after its first checkpoint: SLURM signals it and requeues it.
    _wait_for(lambda: (job_dir / "checkpoint_100.pt").exists(), 180, "the job's first checkpoint", lambda: _tail(log))
    _sh("scontrol", "requeue", job)
    reference = subprocess.Popen(_train_command(config, tmp_path / "reference"), cwd=tmp_path, env=TEST_ENV,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        state = _wait_until_ended(job, log)
        _, reference_err = reference.communicate(timeout=HANG)
    finally:
        reference.kill()
        reference.wait()
    assert state == "COMPLETED", _tail(log)
    assert reference.returncode == 0, reference_err[-2000:]

    assert _job_field(job, "Restarts") == "1"
    attempts = log.read_text().split(f"running in SLURM job {job}")  # both attempts append to the log
    assert len(attempts) == 3 and attempts[2].startswith(" (restart 1), task 0 of 1"), _tail(log)
    assert "received SIGTERM" in attempts[1] and "training interrupted at step" in attempts[1], _tail(log)
    resumed = re.search(r"resumed from \S*checkpoint_last\.pt \(step (\d+)", attempts[2])
    assert resumed and 100 <= int(resumed.group(1)) < 600, _tail(log)
    assert load_checkpoint(job_dir / "checkpoint_last.pt")["step"] == 600
    assert _model_bytes(job_dir / "checkpoint_last.pt") == _model_bytes(tmp_path / "reference" / "checkpoint_last.pt")


@pytest.mark.slurm
@pytest.mark.slow
def test_pasero_train_job_at_its_time_limit_is_requeued_and_resumes(slurm_cluster, tmp_path):
    """A real time limit: 1 minute, and USR2 `signal_delay_s` (120 s) before it, so at once, that is
    at slurmctld's next time-limit check (every 30 s). Training outlasts that check (8000 steps of
    a tiny model, about 40 s), so at least one attempt is stopped by the signal."""
    config = _training_config(tmp_path, max_steps=8000, valid_interval=2000, log_interval=1000)
    job_dir = tmp_path / "job"
    job, log = _submitted(_pasero(*_train_command(config, job_dir), "--slurm", *SMALL_JOB, "--slurm-time", "1",
                                  "--slurm-max-requeues", "30", cwd=tmp_path))  # (the last --slurm-time wins)
    assert _job_field(job, "TimeLimit") == "00:01:00"
    reference = _pasero(*_train_command(config, tmp_path / "reference"), cwd=tmp_path)  # meanwhile, here
    assert reference.returncode == 0, reference.stderr[-2000:]
    # each attempt trains until the next time-limit check: a slow machine needs more of them
    assert _wait_until_ended(job, log, timeout=HANG) == "COMPLETED", _tail(log)

    text = log.read_text()
    assert "received SIGUSR2" in text and "this job is timed-out" in text, _tail(log)
    assert int(_job_field(job, "Restarts")) >= 1
    resumed = [int(step) for step in re.findall(r"resumed from \S*checkpoint_last\.pt \(step (\d+)", text)]
    assert resumed and all(0 < step < 8000 for step in resumed), _tail(log)
    assert _model_bytes(job_dir / "checkpoint_last.pt") == _model_bytes(tmp_path / "reference" / "checkpoint_last.pt")


@pytest.mark.slurm
@pytest.mark.slow
def test_two_slurm_tasks_train_like_one_process_with_accumulation(slurm_cluster, tmp_path):
    import torch

    config = _training_config(tmp_path, virtual_dp_size=2, max_steps=8, valid_interval=8)
    job, log = _submitted(_pasero(*_train_command(config, tmp_path / "two"), "--slurm", "--slurm-gpus", "2",
                                  *SMALL_JOB, cwd=tmp_path))
    one = _pasero(*_train_command(config, tmp_path / "one"), cwd=tmp_path)  # meanwhile, on this machine
    assert one.returncode == 0, one.stderr[-2000:]
    assert _wait_until_ended(job, log) == "COMPLETED", _tail(log)

    assert _job_field(job, "NumTasks") == "2"
    task_logs = "".join(path.read_text() for path in sorted(log.parent.glob(f"{job}_*_log.out")))
    for rank in (0, 1):
        assert f"running in SLURM job {job}, task {rank} of 2" in task_logs, task_logs
    a = load_checkpoint(tmp_path / "one" / "checkpoint_last.pt")
    b = load_checkpoint(tmp_path / "two" / "checkpoint_last.pt")
    assert b["meta"]["world_size"] == 2 and a["step"] == b["step"] == 8
    for name, tensor in a["model"].items():
        torch.testing.assert_close(b["model"][name], tensor, rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.slurm
@pytest.mark.slow
def test_pasero_decode_submits_itself_and_translates_on_the_cluster(slurm_cluster, tmp_path):
    from decoding_models import save_copy_checkpoint, word_corpus

    from pasero.generator import TextGenerator

    model = save_copy_checkpoint(tmp_path / "model.pt")
    lines = word_corpus(20, seed=5)
    (tmp_path / "test.de").write_text("\n".join(lines) + "\n")
    job, log = _submitted(_pasero(BIN / "pasero-decode", model, "-i", "test.de", "-o", "test.hyp", "--slurm",
                                  *SMALL_JOB, cwd=tmp_path))
    assert not (tmp_path / "test.hyp").exists()  # submitted, not run here
    assert _wait_until_ended(job, log) == "COMPLETED", _tail(log)

    expected = [nbest[0]["detok"] for nbest in TextGenerator.build(model).decode(lines)]
    assert (tmp_path / "test.hyp").read_text().splitlines() == expected
    assert _job_field(job, "TresPerNode") == "gres:gpu:1"
    assert re.search(rf"running in SLURM job {job}, task 0 of 1 on \S+; CUDA_VISIBLE_DEVICES=\d$",
                     log.read_text(), re.M), _tail(log)


def test_decode_slurm_needs_input_files(capsys):
    from pasero.cli.decode import decode_main

    assert decode_main(["model.pt", "--slurm"]) == 2
    assert "--slurm needs input files (-i)" in capsys.readouterr().err


def test_placement_names_job_attempt_task_and_gpus():
    assert placement({}) is None
    env = {"SLURM_JOB_ID": "42", "SLURM_RESTART_COUNT": "1", "SLURM_PROCID": "1", "SLURM_NTASKS": "2",
           "SLURMD_NODENAME": "gpu07", "CUDA_VISIBLE_DEVICES": "0,1"}
    assert placement(env) == "SLURM job 42 (restart 1), task 1 of 2 on gpu07; CUDA_VISIBLE_DEVICES=0,1"
    assert placement({"SLURM_JOB_ID": "7", "SLURMD_NODENAME": "n1"}) == \
        "SLURM job 7, task 0 of 1 on n1; CUDA_VISIBLE_DEVICES=(unset)"


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
