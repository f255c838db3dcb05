#!/usr/bin/env bash
# Build fairseq 0.12.2 (and CTranslate2 4.x) in its own virtual environment, for the side-by-side
# benchmarks of bench/peers/side_by_side.py.
#
#     bash bench/peers/build_fairseq.sh [VENV_DIR]      # default: /work/peers/fairseq-venv
#
# fairseq 0.12.2 (2022) predates Python 3.11 and torch 2.x: it is installed from its PyPI sdist
# against the local CPU torch 2.13.0 wheel, then patched in place by patch_fairseq.py (each patch
# is documented there). Re-running the script is safe: pip skips what is installed and the patches
# are idempotent.
set -euo pipefail

VENV=${1:-/work/peers/fairseq-venv}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PYTHON=${PYTHON:-python3.11}

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/pip" install --quiet)

# omegaconf 2.0.6 (fairseq's pin, via hydra-core 1.0.7) declares `PyYAML (>=5.1.*)`, a specifier
# that pip >= 24.1 rejects.
"${PIP[@]}" 'pip<24'
# The CPU wheel on this machine's disk; the exact pin keeps pip off the multi-GB CUDA build.
"${PIP[@]}" torch==2.13.0
# fairseq's build requirements, installed first because its build runs without isolation (so that
# its C++ extensions compile against the torch above instead of a freshly downloaded one).
"${PIP[@]}" setuptools wheel cython numpy
# fairseq 0.12.2 from its PyPI sdist (PyPI has no Python 3.11 wheel), unpacked in VENV/build so that
# setup.py can be patched first (patch_fairseq.py --sdist: the sdist lacks some C++ sources), then
# built without isolation and without dependencies (see below).
if ! "$VENV/bin/python" -c 'import importlib.metadata as m; assert m.version("fairseq") == "0.12.2"' 2> /dev/null; then
    BUILD="$VENV/build"
    mkdir -p "$BUILD"
    [ -f "$BUILD/fairseq-0.12.2.tar.gz" ] ||
        "$VENV/bin/pip" download --quiet --no-deps --no-build-isolation --no-binary fairseq fairseq==0.12.2 -d "$BUILD"
    [ -d "$BUILD/fairseq-0.12.2" ] || tar -xzf "$BUILD/fairseq-0.12.2.tar.gz" -C "$BUILD"
    "$VENV/bin/python" "$HERE/patch_fairseq.py" --sdist "$BUILD/fairseq-0.12.2"
    MAX_JOBS=${MAX_JOBS:-2} "${PIP[@]}" --no-build-isolation --no-deps "$BUILD/fairseq-0.12.2"
fi
# fairseq's run-time requirements, less torchaudio (only its speech tasks import it, lazily, and a
# PyPI torchaudio would drag in another torch build): pip's "fairseq 0.12.2 requires torchaudio"
# complaint is expected.
"${PIP[@]}" cffi 'hydra-core==1.0.7' 'omegaconf==2.0.6' regex 'sacrebleu>=1.4.12' tqdm bitarray
# The decoding anchor (bench/peers/convert_ct2.py converts fairseq checkpoints for it).
"${PIP[@]}" 'ctranslate2>=4,<5'

SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
"$VENV/bin/python" "$HERE/patch_fairseq.py" "$SITE"

# Smoke tests: the entry points import and parse their options.
"$VENV/bin/fairseq-train" --help > /dev/null
"$VENV/bin/fairseq-generate" --help > /dev/null
"$VENV/bin/fairseq-preprocess" --help > /dev/null
"$VENV/bin/python" -c 'import ctranslate2, fairseq; print("fairseq", fairseq.__version__, "ctranslate2", ctranslate2.__version__)'
echo "fairseq venv ready: $VENV"
