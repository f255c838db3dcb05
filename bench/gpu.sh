#!/usr/bin/env bash
# The GPU paths in one short run, for a lent CUDA machine (a few minutes on an H100/H200, plus the
# install): training tokens/s, MFU and peak memory of transformer_small in bf16 on generated data,
# beam-5 and greedy decoding of 2,000 sentences, then the fast tests (on a CUDA machine the
# generator's and the trainer's `auto` device is the GPU).
#
#   bash bench/gpu.sh                  # PEAK_TFLOPS=989 (H100/H200 SXM dense bf16) for the MFU
#
# Where python3 already has a CUDA torch (the lent GPU machines: PyTorch, sentencepiece, sacrebleu,
# tensorboard and the rest of pasero's inference and training imports are there, and no network),
# pasero runs from this checkout as it is (PYTHONPATH), with any wheels carried in .whl/ installed
# first. Elsewhere it installs from PyPI: a virtual environment with torch==2.13.0 (PyPI's CUDA
# build) and pasero.
set -euo pipefail
cd "$(dirname "$0")/.."

if python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    if [ -d .whl ]; then
        python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/pasero-site .whl/*.whl
        export PYTHONPATH=/tmp/pasero-site
    fi
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
    python3 -c "import pasero.training, pasero.generator" || {
        echo "gpu.sh: a module pasero needs is missing here; carry its wheel in .whl/" >&2; exit 2; }
else
    venv="${GPU_VENV:-/tmp/pasero-gpu-venv}"
    python3 -m venv "$venv"
    . "$venv/bin/activate"
    pip install -q torch==2.13.0
    pip install -q -c constraints.txt -e '.[test]'
fi

python3 - <<'PY'
import torch
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name()}, "
      f"bf16 {torch.cuda.is_bf16_supported()}")
PY
echo "== training: transformer_small, 4096-token batches, 200 timed updates (bf16 autocast)"
python3 bench/train.py --device cuda --arch transformer_small --steps 200 --warmup-steps 20 --train-size 50000 \
    --peak-tflops "${PEAK_TFLOPS:-989}"
echo "== training: transformer_base"
python3 bench/train.py --device cuda --arch transformer_base --steps 100 --warmup-steps 10 --train-size 50000 \
    --peak-tflops "${PEAK_TFLOPS:-989}"
echo "== decoding: 2,000 sentences, beam 5 and greedy"
python3 bench/decode.py --devices cuda --sentences 2000 --beams 5 1
echo "== tests (fast ones)"
python3 -m pytest -q -m "not slow" tests/test_model.py tests/test_search.py tests/test_generator.py \
    tests/test_training.py tests/test_multilingual.py
