import os

import pytest

# Tests run on CPU with few threads: the machine they target has 2 cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A fresh temporary working directory."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
