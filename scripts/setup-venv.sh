#!/usr/bin/env bash
# Create .venv with the CPU build of PyTorch, then flatscope with its test extras.
# An unpinned `pip install torch` on Linux pulls a multi-GB CUDA build; we pin the CPU build
# first so the package's own `torch>=2.1` requirement is already satisfied.
# Override the PyTorch requirement with FLATSCOPE_TORCH (e.g. FLATSCOPE_TORCH="torch==2.13.0"
# PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu on a machine whose default index
# serves CUDA wheels).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "${FLATSCOPE_TORCH:-torch==2.13.0}"
.venv/bin/python -m pip install --quiet -e ".[test]"
