#!/usr/bin/env bash
# Fill .whl/ (ignored by git) with the wheels scripts/gpu_check.sh installs on a GPU machine that has no
# package index: both SpikingJelly lines and the pure-Python packages SpikingJelly 2.x imports that such a
# machine lacks (its image has torch, torchvision, torchaudio, triton, cupy, numpy, scipy, h5py, matplotlib,
# tqdm, tensorboard, scikit-learn, pytest, onnx, onnxruntime). No torch: the set stays a few MB, well inside
# the device tool's 64 MiB carry limit. Run from anywhere; needs pip and PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] && PY=${PYTHON:-.venv/bin/python}
mkdir -p .whl
# one pip call per wheel: pip refuses two versions of one project in one call
for wheel in spikingjelly==2.0.0 spikingjelly==0.0.0.0.14 loguru==0.7.3 SciencePlots==2.1.1; do
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 -d .whl "$wheel"
done
ls -la .whl
du -sh .whl
