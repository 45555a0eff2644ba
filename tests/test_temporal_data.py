"""The temporal event set ``motion_events`` (sj_sew.data.temporal) and the pieces of its study
(sj_sew.experiments.temporal): registry entry, determinism, options refused with clear errors, the direction of
each sweep in the raw events, and the property the set exists for: a linear readout of the frames summed over time
sits near chance while the frames side by side carry the class (a small setting)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sj_sew.data import build_dataset, dataset_info
from sj_sew.data.temporal import AXES, CLASSES, MotionConfig, MotionEventSet, _frames, motion_streams
from sj_sew.experiments import tables, temporal

SMALL = {"per_class": 12, "sensor_size": 16}


def test_registered_like_a_dvs_set():
    info = dataset_info("motion_events")
    assert (info.in_channels, info.num_classes, info.input_size, info.sequence, info.default_T) == (2, 8, 32, True, 16)
    assert len(CLASSES) == 8 and len(set(CLASSES)) == 8
    train = build_dataset("motion_events", train=True, T=4, **SMALL)
    test = build_dataset("motion_events", train=False, T=4, **SMALL)
    x, y = train[0]
    assert x.shape == (4, 2, 16, 16) and x.dtype == torch.float32 and isinstance(y, int)
    assert np.bincount(train.labels).tolist() == [9] * 8 and np.bincount(test.labels).tolist() == [3] * 8
    assert not set(train.indices) & set(test.indices)
    # the frames hold every event of the sample, split by count
    assert x.sum().item() == len(train.events(0)["t"])


def test_deterministic_per_seed_and_cached():
    a = MotionEventSet(train=True, T=4, **SMALL)
    b = MotionEventSet(train=True, T=4, **SMALL)
    assert a.frames is b.frames  # cached per setting
    motion_streams.cache_clear()
    _frames.cache_clear()
    c = MotionEventSet(train=True, T=4, **SMALL)
    assert c.frames is not a.frames and np.array_equal(c.frames, a.frames)
    d = MotionEventSet(train=True, T=4, seed=1, **SMALL)
    assert not np.array_equal(d.frames, a.frames)


@pytest.mark.parametrize("options, message", [
    ({"per_class": 0}, "per_class must be an int >= 2"),
    ({"per_class": 2.5}, "per_class must be an int >= 2"),
    ({"sensor_size": 8}, r"sensor_size must be an int in \[16, 128\]"),
    ({"sensor_size": 256}, r"sensor_size must be an int in \[16, 128\]"),
    ({"seed": -1}, "seed must be a non-negative int"),
    ({"train_fraction": 1.5}, r"fraction must be in \(0, 1\)"),
])
def test_bad_options_are_refused_by_name(options, message):
    with pytest.raises(ValueError, match=message):
        build_dataset("motion_events", train=True, T=4, **{**SMALL, **options})


def test_bad_T_and_unknown_option():
    with pytest.raises(ValueError, match="T must be a positive int"):
        build_dataset("motion_events", train=True, T=0, **SMALL)
    with pytest.raises(TypeError, match="takes no option"):
        build_dataset("motion_events", train=True, T=4, source="digits")


def test_each_sweep_goes_the_way_its_class_says():
    """In the raw events, the centroid of each third of the motion moves along its axis in the class's direction
    (at constant speed, so that each sweep takes a third of the time)."""
    config = MotionConfig(per_class=6, sensor_size=32, warp=0.0)
    streams, labels = motion_streams(config)
    thirds = config.motion_us / len(AXES)
    for i, label in enumerate(labels):
        ev = streams.sample(i)
        for j, (axis, _) in enumerate(AXES.values()):
            part = (ev["t"] > j * thirds) & (ev["t"] <= (j + 1) * thirds)
            position = axis[0] * ev["y"][part] + axis[1] * ev["x"][part]
            slope = np.polyfit(ev["t"][part].astype(float), position.astype(float), 1)[0]
            assert np.sign(slope) == CLASSES[label][j], (i, j)


def test_linear_readout_needs_time():
    """Summed over time a tuned linear readout is near chance (1/8); side by side it is far above it."""
    r = temporal.linear_readout(T=8, data_options={"per_class": 60, "sensor_size": 16})
    assert r["sizes"] == {"train": 240, "val": 120, "test": 120}
    assert r["summed"]["test_acc"] < 0.25
    assert r["frames"]["test_acc"] > 0.6
    assert r["frames"]["test_acc"] - r["summed"]["test_acc"] > 0.4


def test_study_units_and_rate_choice():
    runs = temporal.units(["T16", "T4", "Plain RTD", "SEW ADD RTD"], [1e-3, 3e-3], 2)
    # the T study's one rate is probed on T8 (not itself a listed cell here); each ablation cell probes its own
    assert runs[:6] == [("tune", c, lr, temporal.TUNE_SEED) for c in ("T8", "Plain RTD", "SEW ADD RTD")
                        for lr in (1e-3, 3e-3)]
    assert runs[6:] == [("report", c, None, s) for s in (0, 1) for c in ("T16", "T4", "Plain RTD", "SEW ADD RTD")]
    assert {temporal.rate_cell(c) for c in temporal.T_CELLS} == {temporal.T_RATE_CELL} == {"T8"}
    assert set(temporal.ABLATION_CELLS) == {f"{n} RTD" for n in ("SEW ADD", "SEW IAND", "SEW AND", "Spiking ResNet",
                                                                "Plain")}
    assert temporal.units(["T4"], [1e-3], 1) == [("report", "T4", None, 0)]  # one rate: no tuning run
    # a choice at an edge of the rates tried widens the grid along the half-decade ladder, within its ends
    from sj_sew.experiments.sweep import choose_lr, widen_step

    assert widen_step([1e-3, 3e-3, 1e-2], 1e-2) == 3e-2
    assert widen_step([1e-3, 3e-3, 1e-2], 1e-3) == 3e-4
    assert widen_step([1e-3, 3e-3, 1e-2], 3e-3) is None
    assert widen_step([1e-2, 3e-2, 1e-1], 1e-1) is None
    assert choose_lr({1e-3: {"selected_val_acc": 0.5}, 3e-3: {"selected_val_acc": 0.5}}) == 1e-3
    assert choose_lr({1e-3: {"selected_val_acc": 0.4}, 3e-3: {"selected_val_acc": 0.5}}) == 3e-3
    flags = temporal.cell_flags("T16 RTD", 1e-3, 3, {"per_class": 5, "sensor_size": 16})
    assert (flags["T"], flags["T_train"], flags["dataset"]) == (16, 12, "motion_events")
    assert flags["notation"].endswith("*4-FC8") and "T_train" not in temporal.cell_flags("T8", 1e-3, 3, {})
    assert (flags["family"], flags["connect"]) == ("sew", "ADD")
    plain = temporal.cell_flags("Plain RTD", 1e-3, 3, {})
    assert (plain["family"], plain["T_train"], "connect" in plain) == ("plain", 12, False)


def test_every_cell_stops_on_its_validation_plateau():
    """T16 RTD and the ablation's SEW ADD RTD are one setting (flags equal at one rate) whose rates are chosen
    apart (on T8, on itself); every cell, the ablation's included, stops on a plateau within the cap it is given."""
    options = {"per_class": 200, "sensor_size": 32}
    t16_rtd, ablation = (temporal.cell_flags(c, 1e-2, 30, options) for c in ("T16 RTD", "SEW ADD RTD"))
    assert t16_rtd == ablation and (t16_rtd["epochs"], t16_rtd["patience"]) == (30, temporal.PATIENCE)
    assert (temporal.rate_cell("T16 RTD"), temporal.rate_cell("SEW ADD RTD")) == ("T8", "SEW ADD RTD")
    # one setting, one place: a rate both choose is trained once, and the ablation's probes sit with T16 RTD's runs
    assert temporal.run_dir(Path("r"), "SEW ADD RTD", 3e-3) == temporal.run_dir(Path("r"), "T16 RTD", 3e-3)
    assert temporal.run_dir(Path("r"), "SEW ADD RTD", 3e-3, 30).parts[-2] == "T16_RTD"
    assert len({temporal.run_dir(Path("r"), c, 3e-3) for c in temporal.CELLS}) == len(temporal.CELLS) - 1
    for cell in temporal.CELLS:
        assert temporal.cell_flags(cell, 1e-2, 12, {})["epochs"] == 12
        assert temporal.cell_flags(cell, 1e-2, 12, {})["patience"] == temporal.PATIENCE


def test_depth_cells_are_the_degradation_stack_at_one_rate_per_family():
    """Table 2's cells: the degradation study's families and zero init, 2n + 2 layers, each family at the rate its
    18-layer probes choose (Spiking ResNet without zero init at Spiking ResNet's, zero init the one difference)."""
    assert {c.layers for c in temporal.DEPTH_CELLS.values()} == {6, 18, 34}
    assert {c.network for c in temporal.DEPTH_CELLS.values()} == {"SEW ADD", "Spiking ResNet",
                                                                  "Spiking ResNet (no zero init)"}
    deep = temporal.cell_flags("SEW ADD 34", 1e-2, 30, {"per_class": 200, "sensor_size": 32})
    assert deep["notation"] == "c16k3s2-BN-IF-MPk2s2-{Block(c16)}*16-FC8"
    assert (deep["family"], deep["connect"], deep["zero_init"], deep["neuron"], deep["T"], "T_train" in deep) == (
        "sew", "ADD", True, "if", 16, False)
    assert (deep["epochs"], deep["patience"]) == (30, temporal.PATIENCE)
    with_zi, without = (temporal.cell_flags(f"Spiking ResNet{s} 34", 1e-2, 10, {}) for s in ("", " (no zero init)"))
    assert {k for k in with_zi.keys() | without.keys() if with_zi.get(k) != without.get(k)} == {"zero_init"}
    assert temporal.rate_cell("Spiking ResNet (no zero init) 34") == temporal.rate_cell("Spiking ResNet 6") == (
        "Spiking ResNet 18")
    tuning = [u[1] for u in temporal.units(["SEW ADD 6", "SEW ADD 34"], [1e-3, 3e-3], 1) if u[0] == "tune"]
    assert tuning == ["SEW ADD 18"] * 2
    assert temporal.run_dir(Path("r"), "Spiking ResNet (no zero init) 34", 1e-2).parts[-2] == (
        "Spiking_ResNet_no_zero_init_34")


def test_the_depth_gap_is_paired_by_seed():
    """TD6 (the SEW - Spiking gap at 34 layers minus the gap at 6) subtracts seed k from seed k, whatever order
    the rows list their seeds in."""
    from sj_sew.experiments.sweep import spread

    def cell(accs, seeds=(0, 1, 2)):
        return {"selected_test_acc": spread(accs), "seeds": list(seeds), "layers": 6}

    table = {"SEW ADD 34": cell([0.9, 0.8, 0.7]), "Spiking ResNet 34": cell([0.6, 0.8, 0.5], seeds=(2, 1, 0)),
             "SEW ADD 6": cell([0.5, 0.5, 0.5]), "Spiking ResNet 6": cell([0.5, 0.5, 0.5])}
    found = {e.claim.id: e for e in temporal.verdicts(table, None)}
    assert found["TD6"].diff.diffs == pytest.approx((0.4, 0.0, 0.1))  # seed 0: 0.9 - 0.5, seed 2: 0.7 - 0.6
    assert found["TD5"].diff.diffs == pytest.approx((0.4, 0.0, 0.1))
    assert found["TD6"].verdict == "untestable here"  # no readout yet


def test_a_saved_run_is_read_back_only_for_its_own_settings(tmp_path):
    """A finished run answers the same flags again without training; other flags (a 4-epoch probe asked for as a
    10-epoch one) raise instead of passing the old run off as the new, and probes of each length have their own
    directory."""
    from sj_sew.experiments.sweep import train_run

    flags = temporal.cell_flags("T4", 1e-3, 1, SMALL)
    first = train_run(flags, tmp_path, 0)
    assert train_run(flags, tmp_path, 0, train=False)["history"] == first["history"]
    with pytest.raises(ValueError, match=r"other settings \(epochs differ\)"):
        train_run({**flags, "epochs": 2}, tmp_path, 0, train=False)
    legacy = {k: v for k, v in first.items() if k != "flags"}  # committed summaries from before flags were saved
    (tmp_path / "seed0" / "summary.json").write_text(json.dumps(legacy))
    assert train_run(flags, tmp_path, 0, train=False) == json.loads(json.dumps(legacy))
    dirs = {temporal.run_dir(tmp_path, "Plain RTD", 1e-3, e) for e in (None, 4, 10)}
    assert len(dirs) == 3 and temporal.run_dir(tmp_path, "Plain RTD", 1e-3, 4).parts[-3] == "probe_4ep"


def test_verdicts_are_computed_and_gated_by_the_linear_readout():
    from sj_sew.experiments.sweep import spread

    def cell(accs, gaps, seeds=(0, 1, 2)):
        return {"selected_test_acc": spread(accs), "gap_train_test": spread(gaps), "seeds": list(seeds)}

    table = {"T16 RTD": cell([0.80, 0.82, 0.81], [0.02, 0.03, 0.01]), "T16": cell([0.70, 0.71, 0.69], [0.20, 0.22, 0.21]),
             "T8": cell([0.75, 0.70, 0.65], [0.1, 0.1, 0.1], seeds=(1, 0, 2))}  # paired by seed, not position

    def readout(acc):
        r = {"val_acc_chosen": acc, "test_acc": acc, "layout": "side by side", "features": 16 * 2 * 8 * 8}
        return {"summed": {**r, "val_acc_chosen": 0.1, "layout": "summed", "features": 2 * 8 * 8}, "frames": r}

    found = {e.claim.id: e for e in temporal.verdicts(table, readout(0.5))}
    assert set(found) == {"RTD1", "RTD2", "T1"}  # T2 needs T4, the TA claims the other networks
    assert (found["RTD1"].measured, found["RTD1"].verdict) == ("A better", "agrees")
    assert (found["RTD2"].measured, found["RTD2"].verdict) == ("A better", "agrees")  # the smaller gap wins
    assert found["T1"].measured == "inconclusive" and "[-9.9, +9.9]" in found["T1"].diff_text
    gated = {e.claim.id: e for e in temporal.verdicts(table, readout(0.9))}
    assert gated["RTD1"].measured == "A better" and gated["RTD1"].verdict == "untestable here"
    assert "does not beat the linear readout (side by side, 90.0%)" in gated["RTD1"].gate


def test_reproduction_section_is_the_committed_results():
    """REPRODUCTION.md's temporal section holds exactly the tables rendered from results/temporal/temporal.json."""
    import json

    root = Path(__file__).resolve().parents[1]
    path = root / "results" / "temporal" / "temporal.json"
    if not path.exists():
        pytest.skip("no committed temporal results")
    text = (root / "REPRODUCTION.md").read_text()
    section = text[text.index("Temporal event benchmark"):]
    for line in tables.temporal_markdown(json.loads(path.read_text())):
        assert line in section, line
