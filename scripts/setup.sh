#!/usr/bin/env bash
# Create .venv and install medft-bench with its test and lint extras.
# torch/torchvision are pinned to the releases this project is tested with (2.14.1 / 0.29.1); an unpinned
# torch can pull a multi-GB CUDA download. Set MEDFT_VENV to use another location.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${MEDFT_VENV:-.venv}
python=${PYTHON:-python3}
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q torch==2.14.1 torchvision==0.29.1
"$venv/bin/python" -m pip install -q -e ".[test,lint]"
echo "installed into $venv: $("$venv/bin/python" -c 'import torch, timm, medft_bench; print("torch", torch.__version__, "timm", timm.__version__, "medft-bench", medft_bench.__version__)')"
