#!/usr/bin/env bash
# Build the project's virtual environment (default .venv) from nothing; safe to re-run.
#
# - torch 2.14.1 / torchvision 0.29.1 come from this machine's local wheels: pinned exactly so that no
#   resolver ever pulls a second multi-GB torch.
# - SpikingJelly 2.0.0 (current upstream) is the venv's default line. It declares torchaudio, whose newest
#   release pins another torch, so it and torchaudio go in with --no-deps and its runtime deps by name.
# - SpikingJelly 0.0.0.0.14 (the CuPy line) goes to $VENV/sj014; put it first on PYTHONPATH to use it
#   (scripts/run_tests.sh runs the suite on both lines).
# - Export (sj_sew.deploy): onnx + onnxruntime (ONNX), nir + nirtorch (NIR; nirtorch with --no-deps, it
#   declares torch).
# - NIR readers that tests/test_nir_readers.py runs sj_sew's graphs in: snnTorch, Norse, Sinabs, Rockpool, each
#   with --no-deps (they declare torch; Sinabs also pins nir<=1.0.4 and the hardware library samna, neither
#   needed to read NIR); their runtime imports beyond torch/numpy/nir/nirtorch: pbr (Sinabs).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${SJ_SEW_VENV:-.venv}
STAMP="$VENV/.sj_sew-env-v3"
# Fashion-MNIST (real data, no download from a data host) comes as a Debian package.
FASHION=/usr/share/datasets/fashion-mnist
if [ ! -d "$FASHION" ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 \
    || echo "note: could not apt-get install dataset-fashion-mnist; Fashion-MNIST runs will be skipped"
fi
if [ -f "$STAMP" ]; then exit 0; fi
[ -x "$VENV/bin/python" ] || "${PYTHON:-python3}" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@" 2>&1 | grep -v "^WARNING: Location" || true; }
pip install torch==2.14.1 torchvision==0.29.1
pip install numpy scipy tqdm matplotlib tensorboard scikit-learn pytest h5py 'loguru<1,>=0.7' packaging requests SciencePlots cupy-cuda12x \
  onnx onnxruntime nir
pip install --no-deps spikingjelly==2.0.0 torchaudio==2.11.0
pip install --no-deps nirtorch  # export: NIR graphs (it declares torch, already here)
pip install pbr
pip install --no-deps snntorch==1.0.0 norse==1.1.0 sinabs==3.1.3 rockpool==3.1.0
pip install --no-deps --target "$VENV/sj014" spikingjelly==0.0.0.0.14
pip install --no-deps -e .
"$VENV/bin/python" - <<'PY'
import torch, torchvision, spikingjelly.activation_based.neuron, sj_sew
import snntorch.import_nir, norse.torch, sinabs, rockpool.nn.modules.torch.nir  # the NIR readers import
assert torch.__version__.startswith("2.14.1"), torch.__version__
print(f"sj_sew {sj_sew.__version__}: torch {torch.__version__}, SpikingJelly {sj_sew.SJ_VERSION}")
PY
PYTHONPATH="$VENV/sj014" "$VENV/bin/python" -c "import sj_sew; assert sj_sew.SJ_VERSION == '0.0.0.0.14', sj_sew.SJ_VERSION"
touch "$STAMP"
