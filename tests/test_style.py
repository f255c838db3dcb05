"""The tree stays uniform: ruff (pyflakes, pycodestyle, isort, bugbear, pyupgrade) and snakefmt, as
configured in pyproject.toml, find nothing to change."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True)


def test_ruff_finds_nothing():
    result = run(sys.executable, "-m", "ruff", "check", "--no-cache", "pasero", "tests", "bench", "workflow")
    assert result.returncode == 0, result.stdout + result.stderr


def test_snakefmt_leaves_the_workflow_as_it_is():
    result = run(str(BIN / "snakefmt"), "--check", "--diff", "rules", "workflow/Snakefile")
    assert result.returncode == 0, result.stdout + result.stderr
