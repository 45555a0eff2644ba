"""Smoke tests: the reproduction scripts run end to end in their --quick setting and their numbers
carry the paper's qualitative signature where the quick setting already shows it."""
import importlib.util
import json
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load(name):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_repro_gradients_quick(tmp_path):
    load("repro_gradients").main(["--quick", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "gradients.json").read_text())
    assert (tmp_path / "gradients.png").stat().st_size > 10_000
    curves = data["curves"]
    # zero init makes every SEW g an identity network: identical gradients whatever g is
    for setting in ("1.0-2.0", "0.5-2.0", "1.0-3.0"):
        add = curves[f"{setting}-True-SEW ADD"]["grad_norm"]
        assert curves[f"{setting}-True-SEW IAND"]["grad_norm"] == pytest.approx(add)
        assert curves[f"{setting}-True-SEW AND"]["grad_norm"] == pytest.approx(add)
    # Vth = 0.5 with zero init: sigma'(0.5) < 1 compounds over Spiking ResNet blocks (paper eq. 8)
    spk = curves["0.5-2.0-True-Spiking ResNet"]["grad_norm"]
    assert spk[0] < spk[-1] / 5


def test_repro_firing_rates_quick(tmp_path):
    load("repro_firing_rates").main(["--quick", "--out", str(tmp_path)])
    curves = json.loads((tmp_path / "init.json").read_text())["curves"]
    assert curves["SEW ADD (zero init)"]["rate_a"] == pytest.approx([0.0] * len(curves["SEW ADD"]["rate_a"]))
    assert curves["SEW AND (zero init)"]["rate_a"] == pytest.approx([1.0] * len(curves["SEW ADD"]["rate_a"]))
    # with IF neurons a zero-init Spiking ResNet is an identity too: same block outputs as SEW
    assert curves["Spiking ResNet (zero init)"]["rate_o"] == pytest.approx(curves["SEW IAND (zero init)"]["rate_o"])
