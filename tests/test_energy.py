import pytest
import torch
from spikingjelly.activation_based import functional, layer

import sj_sew
from sj_sew.analysis.energy import E_AC_PJ, E_MAC_PJ, OpCounter, spikingjelly_synops


def _count(module, x, samples):
    with torch.no_grad(), OpCounter(module) as c:
        module(x)
    c.samples = samples
    return c.report()


def test_corner_spike_reaches_four_outputs_per_channel():
    conv = layer.Conv2d(1, 5, 3, padding=1, bias=False, step_mode="m")
    x = torch.zeros(1, 1, 1, 4, 4)
    x[0, 0, 0, 0, 0] = 1.0
    assert _count(conv, x, 1)["sops"] == 4 * 5


def test_integer_inputs_count_as_that_many_events_and_analog_inputs_as_macs():
    fc = layer.Linear(3, 7, step_mode="m")
    r = _count(fc, torch.tensor([[[2.0, 0.0, 1.0]]]), 1)
    assert r["sops"] == 3 * 7 and r["macs"] == 0
    r = _count(fc, torch.tensor([[[0.5, 0.0, 1.0]]]), 1)
    assert r["sops"] == 0 and r["macs"] == 3 * 7
    assert r["snn_energy_pj"] == pytest.approx(E_MAC_PJ * 21) and r["ann_macs"] == 21
    assert E_AC_PJ < E_MAC_PJ


def test_equals_spikingjelly_synop_counter_on_binary_spikes():
    net = sj_sew.create_model("surrogate_net", connect="IAND", T=2, num_classes=10).eval()
    x = torch.rand(2, 3, 32, 32)
    expected = spikingjelly_synops(net, x)
    if expected is None:
        pytest.skip("this SpikingJelly line has no op counter")
    functional.reset_net(net)
    assert _count(net, x, 2)["sops"] * 2 == expected
