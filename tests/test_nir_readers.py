"""sj_sew's NIR graphs in the readers people load them into (issue 21): sj_sew's ``from_nir``, SpikingJelly 2.x's
importer, snnTorch 1.0.0, Norse 1.1.0 and Sinabs 3.1.3, run on a batch for T steps and compared with sj_sew's
streaming model (scripts/nir_readers.py does the measuring and prints the README's table).

Every cell of the matrix (reader x family x shortcut shape x neuron, for the spec-literal graph and for
``to_nir(..., target=reader)``) is asserted to have the status measured for it. Where a reader as released cannot
run a net, the test asserts that it fails, so it fails the day upstream fixes it: then update the README's table.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("nir_readers", ROOT / "scripts" / "nir_readers.py")
readers = sys.modules.setdefault("nir_readers", importlib.util.module_from_spec(_spec))
if not hasattr(readers, "READERS"):
    _spec.loader.exec_module(readers)

pytest.importorskip("nir")
pytest.importorskip("nirtorch")


def _need(reader: str):
    why = readers.reader_available(reader)
    if why:
        pytest.skip(f"{reader}: {why}")


def expected(reader: str, graph: str, family: str, shape: str, neuron: str) -> set[str]:
    """The measured status of one cell (see the README's table of NIR readers)."""
    # An MS block sums membranes: a reader sums a node's input edges in its own order, which need not be the
    # network's (measured: up to 2.4e-7 in the logits on SpikingJelly 2.0.0, none on 0.0.0.0.14; no spike differs)
    exact = {"exact", "close"} if (family, shape) == ("ms", "identity") else {"exact"}
    if reader in ("sj_sew", "spikingjelly"):
        return exact
    if graph == "target":
        if reader == "snntorch":
            return exact
        if reader == "norse":  # nirtorch.load (which Norse calls) orders a diamond depth-first: a shortcut
            # with its own downsampling branch is read from the previous step (plain nets have no shortcut)
            return {"exact"} if shape == "identity" or family == "plain" else {"wrong"}
    # As released: snnTorch asserts r == 1 on IF and flattens the batch axis; Norse and Sinabs have no AvgPool2d
    # and read through nirtorch.load's depth-first order; Sinabs' LIF fails on v_leak arrays and its IF fires
    # several spikes per step with a subtractive reset (which of "error"/"wrong" depends on the order)
    return {"error", "wrong"}


@pytest.mark.parametrize("graph", ["default", "target"])
@pytest.mark.parametrize("reader", list(readers.READERS))
def test_reader_matrix_matches_the_measured_table(reader, graph):
    _need(reader)
    if graph == "target" and readers.READERS[reader].target is None:
        pytest.skip(f"to_nir has no target for {reader} (its own graph is read correctly, or none can be)")
    torch.set_num_threads(1)
    cells = readers.run_matrix([reader], graph)
    wrong = [(c.family, c.shape, c.neuron, c.status, c.error) for c in cells
             if c.status not in expected(reader, graph, c.family, c.shape, c.neuron)]
    assert not wrong, f"{reader} ({graph} graph): cells that differ from the measured table: {wrong}"
    for c in cells:  # the numbers behind "exact" and "close"
        if c.status in ("exact", "close"):
            assert c.spike_agreement >= readers.SPIKE_AGREEMENT and c.argmax_same
            assert c.max_logit_diff <= (0.0 if c.status == "exact" else 1e-5), c


def test_snntorch_as_released_fails_for_the_reasons_the_readme_gives():
    _need("snntorch")
    errors = {(c.neuron, c.error) for c in readers.run_matrix(["snntorch"], families=("sew",), shapes=("identity",))}
    assert ("if", "AssertionError: r != 1 not supported") in errors
    assert any(n == "lif" and "cannot be multiplied" in e for n, e in errors)  # the batch axis flattened


def _edge_net():
    """conv 1x1 identity into IF into FC: an input of 0.5 per step charges the IF to exactly 1.0 at step 2."""
    import sj_sew

    torch.manual_seed(0)
    net = sj_sew.NotationNet("c2k1s1-IF-FC2", family="sew", neuron="if", in_channels=2, input_size=2,
                             num_classes=2).eval()
    with torch.no_grad():
        net.layers[0].weight.copy_(torch.eye(2).reshape(2, 2, 1, 1))
    return net, torch.full((3, 2, 2, 2, 2), 0.5)


@pytest.mark.parametrize("reader", ["snntorch", "norse"])
def test_target_graph_fires_on_the_threshold_as_spikingjelly_does(reader, monkeypatch):
    _need(reader)
    from sj_sew.deploy import nir_export

    net, x = _edge_net()
    assert readers.measure(reader, net, x, "target")["status"] == "exact"
    # the same graph with the threshold as it is: the reader fires at v > v_th and misses the edge
    monkeypatch.setattr(nir_export._Builder, "threshold", lambda self, v: v)
    assert readers.measure(reader, net, x, "target")["status"] == "wrong"


def test_target_graphs_say_what_they_change():
    from sj_sew.deploy import to_nir
    import nir

    net = readers.build_net("sew", "identity", "lif")
    default, snn, norse = to_nir(net, 8), to_nir(net, 8, target="snntorch"), to_nir(net, 8, target="norse")
    assert default.metadata["dt"] == 1e-4 and snn.metadata == {**default.metadata, "target": "snntorch"}
    assert norse.metadata["dt"] == 1e-3  # Norse's from_nir default
    flat = [n for n in snn.nodes.values() if isinstance(n, nir.Flatten)]
    assert [(f.start_dim, f.end_dim) for f in flat] == [(-3, -1)]
    assert np.array_equal(flat[0].output_type["output"], [n for n in default.nodes.values()
                                                           if isinstance(n, nir.Flatten)][0].output_type["output"])
    th = [n.v_threshold for n in snn.nodes.values() if isinstance(n, nir.LIF)]
    assert all(np.all(t == np.nextafter(np.float32(1), np.float32(0))) for t in th)
    assert not any(isinstance(n, nir.AvgPool2d) for n in norse.nodes.values())
    assert any(isinstance(n, nir.AvgPool2d) for n in snn.nodes.values())
    if_net = readers.build_net("sew", "identity", "if")
    assert not any(isinstance(n, nir.IF) for n in to_nir(if_net, 8, target="snntorch").nodes.values())
    assert any(isinstance(n, nir.IF) for n in to_nir(if_net, 8, target="norse").nodes.values())


def test_target_refusals_name_the_reason():
    import sj_sew
    from sj_sew.deploy import to_nir

    net = readers.build_net("plain", "identity", "if")
    with pytest.raises(ValueError, match="unknown target 'sinabs'"):
        to_nir(net, 8, target="sinabs")
    with pytest.raises(ValueError, match="assumes dt = 0.0001"):
        to_nir(net, 8, target="snntorch", dt=1e-3)
    other = sj_sew.NotationNet("c2k1s1-IF-FC2", neuron="if", v_reset=-0.5, in_channels=2, input_size=2).eval()
    with pytest.raises(ValueError, match="reads neither v_reset nor v_leak"):
        to_nir(other, 2, target="norse")


@pytest.mark.parametrize("neuron", ["lif", "plif"])
def test_norse_target_reads_lif_without_decay_input(neuron):
    """r = tau (decay_input=False) is ignored by Norse: the target graph writes the membrane in units of 1/tau."""
    _need("norse")
    import sj_sew

    torch.manual_seed(0)
    net = sj_sew.NotationNet(f"c8k3s1-BN-{neuron.upper()}-{{Block(c8)}}*2-APk2s2-FC5", family="spiking",
                             neuron=neuron, decay_input=False, in_channels=2, input_size=8, num_classes=5).eval()
    x = readers.example_input()
    assert readers.measure("norse", net, x, "target")["status"] == "exact"
    assert readers.measure("snntorch", net, x, "target")["status"] in ("exact", "close")
