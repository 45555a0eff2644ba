"""The digits studies under the tuning rule: the surrogate study's grid widening (sj_sew.experiments.surrogate),
the downsample-shortcut ablation's family ``sew-conv-bn`` against SEW's blocks composed by hand, its script end to
end, its bound measurement, and its gate reading the surrogate study's linear readout."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from spikingjelly.activation_based import functional

import sj_sew
from sj_sew.blocks import BasicBlock, list_families
from sj_sew.experiments import claims, surrogate, tables
from sj_sew.experiments.sweep import tuned_grid, widen_step
from sj_sew.neurons import NeuronSpec

from test_repro_scripts import _assert_row_matches_its_runs, _report_only_reproduces, load, needs_default_line


@pytest.mark.parametrize("grid, chosen, expected", [
    ([3e-4, 1e-3, 3e-3, 1e-2], 1e-3, [3e-4, 1e-3, 3e-3, 1e-2]),           # inside: unchanged
    ([3e-4, 1e-3, 3e-3, 1e-2], 1e-2, [3e-4, 1e-3, 3e-3, 1e-2, 3e-2]),     # top edge: one half-decade up
    ([3e-4, 1e-3, 3e-3, 1e-2], 3e-4, [1e-4, 3e-4, 1e-3, 3e-3, 1e-2]),     # bottom edge: one down
    ([3e-2, 1e-1], 1e-1, [3e-2, 1e-1]),                                   # the ladder's end: nothing to add
    ([5e-3, 2e-2], 2e-2, [5e-3, 2e-2]),                                   # off the ladder: left as given
])
def test_a_grid_widens_only_at_its_edge(grid, chosen, expected):
    nxt = widen_step(grid, chosen)
    assert sorted(grid + ([] if nxt is None else [nxt])) == expected


def test_tuned_grid_widens_until_the_choice_is_inside_and_waits_for_missing_probes():
    """Made-up probes peaking at 3e-2: from 1e-3..1e-2 the grid grows to 3e-2, then to 1e-1 (3e-2 at its edge), and
    stops; a probe that is not finished (None) leaves the rate unchosen."""
    peak = {1e-3: 0.4, 3e-3: 0.6, 1e-2: 0.8, 3e-2: 0.9, 1e-1: 0.5}
    lr, grid = tuned_grid(lambda x: {"selected_val_acc": peak[x]}, [1e-2, 1e-3, 3e-3])
    assert (lr, sorted(grid)) == (3e-2, [1e-3, 3e-3, 1e-2, 3e-2, 1e-1])
    assert tuned_grid(lambda x: {"selected_val_acc": peak[x]}, [1e-3, 3e-3, 1e-2], ladder=())[0] == 1e-2
    lr, grid = tuned_grid(lambda x: None if x == 3e-2 else {"selected_val_acc": peak[x]}, [1e-3, 3e-3, 1e-2])
    assert (lr, sorted(grid)) == (None, [1e-3, 3e-3, 1e-2])


def test_tuned_cell_keeps_the_tuning_seed_apart(tmp_path, monkeypatch):
    """Made-up runs (validation accuracy peaking at 3e-2): the grid widens to 3e-2 and then stops, only the
    tuning seed runs on the grid, under runs/tuning, and the reported seeds only at the chosen rate."""
    calls = []
    peak = {3e-4: 0.2, 1e-3: 0.4, 3e-3: 0.6, 1e-2: 0.8, 3e-2: 0.9, 1e-1: 0.5}

    def fake_run(flags, out, seed, train=True, progress=False):
        calls.append((flags["lr"], seed, Path(out).relative_to(tmp_path).parts[:2]))
        return {"selected_val_acc": peak[flags["lr"]], "selected_test_acc": peak[flags["lr"]] + seed / 100,
                "last_test_acc": 0.0, "wall_time_s": 1.0, "history": [{"train_loss": 1.0}]}

    monkeypatch.setattr(surrogate, "train_run", fake_run)
    row = surrogate.tuned_cell("X | Y", lambda lr: {"lr": lr}, tmp_path, [0, 1, 2])
    assert row["lr"] == 3e-2 and list(row["grid_val_acc"]) == ["0.0003", "0.001", "0.003", "0.01", "0.03", "0.1"]
    tuning = [c for c in calls if c[1] == surrogate.TUNING_SEED]
    assert {c[2] for c in tuning} == {("runs", "tuning")} and len(tuning) == 6
    assert [c for c in calls if c not in tuning] == [(3e-2, s, ("runs", "reported")) for s in (0, 1, 2)]
    assert row["seeds"] == [0, 1, 2] and row["selected_test_acc"]["values"] == pytest.approx([0.9, 0.91, 0.92])
    assert row["tuning_seconds"] == 6.0


# --- the family without the shortcut's SN ------------------------------------------------------------------------

def _pair(connect="ADD"):
    spec = NeuronSpec("if")
    torch.manual_seed(0)
    with_sn = BasicBlock(8, 16, 1, "sew", connect, spec)
    without = BasicBlock(8, 16, 1, "sew-conv-bn", connect, spec)
    return with_sn, without


def test_sew_conv_bn_is_sew_without_the_downsample_sn():
    assert "sew-conv-bn" in list_families()
    with_sn, without = _pair()
    assert hasattr(with_sn, "downsample_sn") and not hasattr(without, "downsample_sn")
    keys = set(with_sn.state_dict())
    assert set(without.state_dict()) == {k for k in keys if not k.startswith("downsample_sn.")}
    assert [(n, type(m)) for n, m in without.named_modules()] == [
        (n, type(m)) for n, m in with_sn.named_modules() if not n.startswith("downsample_sn")]
    # a block that keeps its shape has no downsample shortcut in either family: the two are the same function
    same_sn, same = BasicBlock(8, 8, 1, "sew", "ADD", NeuronSpec("if")), BasicBlock(8, 8, 1, "sew-conv-bn", "ADD",
                                                                                     NeuronSpec("if"))
    same.load_state_dict(same_sn.state_dict())
    x = (torch.rand(2, 3, 8, 6, 6) > 0.5).float()
    assert torch.equal(same(x), same_sn(x))


@pytest.mark.parametrize("connect", ["ADD", "IAND"])
def test_sew_conv_bn_output_is_g_of_the_spikes_and_the_bn_shortcut(connect):
    """Against the composition written out from the SEW block's own modules: O = g(SN(F(S)), BN(conv1x1(S)))
    without the SN, O = g(SN(F(S)), SN(BN(conv1x1(S)))) with it."""
    with_sn, without = _pair(connect)
    without.load_state_dict(with_sn.state_dict(), strict=False)
    for m in (with_sn, without):
        m.train()
    x = (torch.rand(4, 3, 8, 6, 6) > 0.6).float()
    b = with_sn
    a = b.sn2(b.bn2(b.conv2(b.sn1(b.bn1(b.conv1(x))))))
    shortcut = b.downsample(x)
    g = {"ADD": lambda a, s: a + s, "IAND": lambda a, s: (1 - a) * s}[connect]
    functional.reset_net(b)
    expected_sn = g(a, b.downsample_sn(shortcut))
    functional.reset_net(b)
    assert torch.allclose(without(x), g(a, shortcut), atol=1e-6)
    functional.reset_net(without)
    assert torch.allclose(with_sn(x), expected_sn, atol=1e-6)
    assert with_sn(x).max() <= 2 and (connect != "ADD" or without(x).min() < 0)  # BN output: not spikes


# --- the downsample study ------------------------------------------------------------------------------------------

@needs_default_line
def test_repro_downsample_quick(tmp_path):
    """Both families tune on seed 1000 only and report seed 0; bound.json holds both downsample blocks of each net,
    at most 2 with the SN (ADD of two spikes)."""
    from sj_sew.training import read_checkpoint

    out = tmp_path / "downsample"  # where tables.downsample(tmp_path) reads
    argv = ["--quick", "--out", str(out)]
    rows = load("repro_downsample").main(argv)
    assert list(rows) == ["SEW ADD", "SEW ADD, no downsample SN"]
    for key, row in rows.items():
        cell = key.replace(" ", "_")
        assert {p.name for p in (out / "runs" / "tuning" / cell).glob("*/*")} == {"seed1000"}
        run_dir = out / "runs" / "reported" / cell / f"lr{row['lr']:g}"
        _assert_row_matches_its_runs(row, run_dir)
        config = read_checkpoint(run_dir / "seed0" / "checkpoint.pt")["config"]
        assert (config["family"], config["surrogate"], config["lr"]) == (row["family"], "atan", row["lr"])
    bound = json.loads((out / "bound.json").read_text())["networks"]
    for name, r in bound.items():
        for when in ("init", "trained"):
            assert [b["block"] for b in r[when]] == ["layers.6", "layers.9"]
    assert all(b["max"] <= 2 and b["fraction_above_2"] == 0 for when in ("init", "trained")
               for b in bound["SEW ADD"][when])
    _report_only_reproduces("repro_downsample", argv, out / "downsample.json")
    lines = tables.downsample(tmp_path)
    assert sum(line.startswith("| SEW ADD, no downsample SN | ") for line in lines) == 1 + 1 + 4  # table, grid, bound


def test_downsample_gate_reads_the_surrogate_studys_readout(tmp_path):
    """The ablation uses the surrogate study's data and split, so its gate is that study's linear readout."""
    (tmp_path / "baselines").mkdir()
    entry = {"linear": {"summed": {"layout": "summed", "features": 64, "val_acc_chosen": 0.9, "test_acc": 0.95}}}
    (tmp_path / "baselines" / "surrogate.json").write_text(json.dumps(entry))
    assert claims.study_readout(tmp_path, "downsample") == entry["linear"]["summed"]
    table = {"SEW ADD": {"selected_test_acc": {"values": [0.99, 0.985, 0.99]}},
             "SEW ADD, no downsample SN": {"selected_test_acc": {"values": [0.96, 0.97, 0.965]}}}
    (tmp_path / "downsample").mkdir()
    (tmp_path / "downsample" / "downsample.json").write_text(json.dumps({"meta": {}, "table": table}))
    (ds1,) = claims.evaluate_study(tmp_path, "downsample")
    assert ds1.claim.id == "DS1" and ds1.measured == "A better" and ds1.verdict == "agrees"
    entry["linear"]["summed"]["test_acc"] = 0.99  # the best net no longer beats the readout: no verdict
    (tmp_path / "baselines" / "surrogate.json").write_text(json.dumps(entry))
    (ds1,) = claims.evaluate_study(tmp_path, "downsample")
    assert ds1.measured == "A better" and ds1.verdict == "untestable here"


def test_downsample_net_has_two_downsample_blocks():
    from sj_sew.experiments import downsample

    net = sj_sew.NotationNet(downsample.NET, family="sew", connect="ADD", in_channels=1, input_size=8)
    changes = [name for name, m in net.named_modules() if isinstance(m, BasicBlock) and m.changes_shape]
    assert changes == ["layers.6", "layers.9"]


def test_reproduction_md_holds_the_digits_studies_tables():
    """§5 and the downsample subsection of REPRODUCTION.md hold every row rendered from the committed results."""
    root = Path(__file__).resolve().parents[1]
    text = (root / "REPRODUCTION.md").read_text()
    for render in (tables.surrogate, tables.downsample):
        rows = [line for line in render(root / "results") if line.startswith("| ")]
        assert len(rows) > 4, render.__name__
        missing = [row for row in rows if row not in text]
        assert not missing, f"{render.__name__}: rows not in REPRODUCTION.md: {missing[:3]}"


def test_reproduction_md_surrogate_prose_numbers_are_recomputed():
    """The figures §5's prose quotes beside its tables: Constant 1 SEW ADD's mean validation accuracy over the last
    five epochs every seed ran, how many runs stopped on their plateau and at the cap, the range of the selected
    epochs, and the best net's margin over the readout."""
    root = Path(__file__).resolve().parents[1]
    text = " ".join((root / "REPRODUCTION.md").read_text().split())
    reported = root / "results" / "surrogate" / "runs" / "reported"
    summaries = {p: json.loads(p.read_text()) for p in sorted(reported.glob("*/*/seed*/summary.json"))}
    assert len(summaries) == 30

    constant = [r["history"] for p, r in summaries.items() if p.parts[-4] == "Constant_1-SEW_ADD"]
    common = min(len(h) for h in constant)
    means = [100 * sum(h[e]["val_acc"] for h in constant) / len(constant) for e in range(common - 5, common)]
    assert (f"its mean validation accuracy went {', '.join(f'{v:.1f}' for v in means)} over epochs "
            f"{common - 4}-{common}, the last all its seeds ran") in text
    cap = sum(len(r["history"]) == r["flags"]["epochs"] for r in summaries.values())
    assert f"{30 - cap} of the 30 reported runs stopped on their plateau, the other {cap} at the 20-epoch cap" in text
    selected = [r["selected_epoch"] + 1 for r in summaries.values()]
    assert f"(validation-selected epochs {min(selected)}-{max(selected)})" in text
    rows = claims.load_study(root / "results", "surrogate")
    best, d = claims.best_against_readout(rows, claims.study_readout(root / "results", "surrogate"))
    assert best == "Rectangular | SEW ADD" and f"is {100 * d.mean:.1f} points above it" in text


def test_reproduction_md_downsample_prose_numbers_are_recomputed():
    """The bound figures the downsample subsection's prose quotes, from results/downsample/bound.json."""
    root = Path(__file__).resolve().parents[1]
    text = " ".join((root / "REPRODUCTION.md").read_text().split())
    bound = json.loads((root / "results" / "downsample" / "bound.json").read_text())["networks"]
    assert all(b["max"] <= 2 for when in ("init", "trained") for b in bound["SEW ADD"][when])
    assert max(b["max"] for b in bound["SEW ADD"]["init"]) < 2
    r = bound["SEW ADD, no downsample SN"]
    init, trained = (" and ".join(f"{b['max']:.2f}" for b in r[w]) for w in ("init", "trained"))
    above = " and ".join(f"{100 * b['fraction_above_2']:.1f}%" for b in r["trained"])
    assert f"outputs reach {init} at init and {trained} trained, with {above} of the trained outputs above 2" in text


@pytest.mark.parametrize("connect", ["ADD", "IAND"])
def test_sew_conv_bn_on_the_fused_kernel_route(connect):
    """SEW's fused output (one kernel call with g, forced on CPU) takes the real-valued BN shortcut of sew-conv-bn
    as the unfused composition does, in training and in eval mode (last BN fused)."""
    from sj_sew.neurons import fused

    torch.manual_seed(0)
    block = BasicBlock(8, 16, 1, "sew-conv-bn", connect, NeuronSpec("if", "fused"))
    x = (torch.rand(3, 2, 8, 5, 5) > 0.6).float()
    for train in (True, False):
        block.train(train)
        functional.reset_net(block)
        expected = block.kind.output(block, block.branch(x), x)
        functional.reset_net(block)
        with fused.kernel_route_forced():
            assert block._runs_connect_kernel(x)
            got = block(x)
        assert torch.allclose(got, expected, atol=1e-5), (connect, train)
