#!/usr/bin/env bash
# Runs inside the new environment, from the repository root (snakemake's working directory).
set -euo pipefail
pip install -q -c constraints.txt torch==2.13.0
pip install -q -c constraints.txt -e .
