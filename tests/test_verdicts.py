"""Verdicts computed from the data (sj_sew.experiments.stats, .claims): the statistics against scipy and a hand
computation, the verdict rules, the linear-readout gate on made-up results, and REPRODUCTION.md's verdict words
against the verdicts computed from the committed results/."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from sj_sew.experiments import claims, stats, tables

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"


def test_paired_matches_scipy_ttest_rel():
    from scipy import stats as sp

    a, b = [0.83, 0.85, 0.80, 0.86, 0.81], [0.80, 0.81, 0.79, 0.82, 0.83]
    d = stats.paired(a, b)
    ref = sp.ttest_rel(a, b)
    ci = ref.confidence_interval(0.95)
    assert d.n == 5
    assert d.t == pytest.approx(float(ref.statistic), rel=1e-12)
    assert d.p == pytest.approx(float(ref.pvalue), rel=1e-10)
    assert (d.low, d.high) == (pytest.approx(float(ci.low), rel=1e-10), pytest.approx(float(ci.high), rel=1e-10))


def test_paired_by_hand():
    # differences 1, 2, 3: mean 2, sd 1, se 1/sqrt(3); t(2) critical value 4.302653
    d = stats.paired([2.0, 4.0, 6.0], [1.0, 2.0, 3.0])
    assert d.diffs == (1.0, 2.0, 3.0) and d.mean == 2.0 and d.std == 1.0
    assert d.t == pytest.approx(2 * math.sqrt(3))
    half = 4.302652729749464 / math.sqrt(3)
    assert (d.low, d.high) == (pytest.approx(2 - half), pytest.approx(2 + half))
    assert stats.verdict(d) == stats.INCONCLUSIVE  # the interval [-0.48, 4.48] holds 0
    # a loss: lower is better, so the difference is B - A
    loss = stats.paired([0.2, 0.3, 0.25], [0.5, 0.6, 0.55], higher_is_better=False)
    assert loss.mean == pytest.approx(0.3) and stats.verdict(loss) == stats.A_BETTER
    # {seed: value}: only the seeds both have are paired, whatever their order
    by_seed = stats.paired({2: 6.0, 0: 2.0, 1: 4.0, 4: 100.0}, {1: 2.0, 0: 1.0, 2: 3.0, 3: -50.0})
    assert by_seed.diffs == (1.0, 2.0, 3.0)


def test_verdict_rules():
    assert stats.verdict(stats.paired([0.9, 0.91, 0.92], [0.5, 0.52, 0.5])) == stats.A_BETTER
    assert stats.verdict(stats.paired([0.5, 0.52, 0.5], [0.9, 0.91, 0.92])) == stats.B_BETTER
    assert stats.verdict(stats.paired([0.9], [0.5])) == stats.UNTESTABLE  # one seed: no interval
    assert stats.verdict(stats.paired([0.9, 0.91, 0.92], [0.5, 0.52, 0.5]), "no data") == stats.UNTESTABLE
    same = stats.paired([0.7, 0.7], [0.7, 0.7])  # zero spread and zero mean
    assert stats.verdict(same) == stats.INCONCLUSIVE
    constant = stats.paired([0.9, 0.9, 0.9], [0.8, 0.8, 0.8])  # zero spread, a real difference
    assert stats.verdict(constant) == stats.A_BETTER and math.isinf(constant.t)
    assert stats.paired([0.9, 0.8], 0.7).diffs == pytest.approx((0.2, 0.1))  # a constant baseline
    with pytest.raises(ValueError, match="same seeds"):
        stats.paired([1, 2, 3], [1, 2])


@pytest.mark.parametrize("sign, measured, expected", [
    (1, stats.A_BETTER, stats.AGREES), (1, stats.B_BETTER, stats.DISAGREES),
    (-1, stats.B_BETTER, stats.AGREES), (-1, stats.A_BETTER, stats.DISAGREES),
    (1, stats.INCONCLUSIVE, stats.INCONCLUSIVE), (-1, stats.UNTESTABLE, stats.UNTESTABLE)])
def test_paper_verdict(sign, measured, expected):
    assert stats.paper_verdict(sign, measured) == expected


def test_beats_needs_the_interval_above_the_baseline():
    assert stats.beats([0.90, 0.91, 0.92], 0.85)
    assert not stats.beats([0.80, 0.95, 0.86], 0.85)  # mean above, interval across
    assert not stats.beats([0.99], 0.5)  # one seed


def _fake_ablation(tmp_path: Path, accs: dict, linear: float) -> Path:
    rows = {key: {"selected_test_acc": {"values": v}, "final_train_loss": {"values": [1.0, 1.1, 1.2]}}
            for key, v in accs.items()}
    (tmp_path / "ablation").mkdir(parents=True)
    (tmp_path / "ablation" / "ablation.json").write_text(json.dumps({"meta": {}, "table": rows}))
    (tmp_path / "baselines").mkdir()
    entry = {"linear": {"summed": {"layout": "summed", "features": 10, "val_acc_chosen": 0.5, "test_acc": linear}}}
    (tmp_path / "baselines" / "ablation.json").write_text(json.dumps(entry))
    return tmp_path


ABLATION_KEYS = [f"{n}{s}" for n in ("SEW ADD", "SEW IAND", "SEW AND", "Spiking ResNet", "Plain")
                 for s in (" RTD", "")]


def test_gate_a_study_below_its_linear_readout_reaches_no_verdict(tmp_path):
    accs = {k: [0.60, 0.61, 0.62] for k in ABLATION_KEYS}
    accs["SEW ADD RTD"] = [0.80, 0.81, 0.82]  # clearly above Spiking ResNet RTD
    low = claims.evaluate_study(_fake_ablation(tmp_path / "low", accs, linear=0.85), "ablation")
    assert low and all(e.verdict == stats.UNTESTABLE for e in low)
    a1 = next(e for e in low if e.claim.id == "A1")
    assert a1.measured == stats.A_BETTER  # the statistics still show, the verdict does not follow them
    assert "does not beat the linear readout" in a1.gate
    high = {e.claim.id: e for e in claims.evaluate_study(_fake_ablation(tmp_path / "high", accs, 0.70), "ablation")}
    assert high["A1"].verdict == stats.AGREES
    assert high["A10"].verdict == stats.UNTESTABLE  # RTD: the data cannot carry it, whatever the numbers
    assert high["A10"].measured == stats.A_BETTER  # while its statistics still show, as for a study below the gate
    assert high["A5"].verdict == stats.INCONCLUSIVE  # equal values


def test_every_claim_reads_its_results():
    found = claims.evaluate_all(RESULTS)
    studies = {c.study for c in claims.CLAIMS}
    assert {e.claim.study for e in found.values()} == studies, "a study's results are missing"
    assert len(found) == len(claims.CLAIMS) == len({c.id for c in claims.CLAIMS})


def _markdown_rows(text: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines()
            if line.startswith("| ")]


def test_reproduction_md_verdicts_are_the_computed_ones():
    """Each claim's row in REPRODUCTION.md carries the verdict computed from results/ (and its statistics), and
    no verdict table holds a row that is not a computed claim."""
    text = (ROOT / "REPRODUCTION.md").read_text()
    found = claims.evaluate_all(RESULTS)
    by_id = {row[0]: row for row in _markdown_rows(text) if row and row[0] in found}
    missing = sorted(set(found) - set(by_id))
    assert not missing, f"claims without a verdict row in REPRODUCTION.md: {missing}"
    for cid, e in found.items():
        row = by_id[cid]
        assert row[-1] == e.verdict, f"{cid}: REPRODUCTION.md says {row[-1]!r}, the data say {e.verdict!r}"
        assert row[-2] == e.measured and e.diff_text in row[-3], cid
    # any table with a verdict column is a computed one: its rows start with a claim id of claims.py
    computed = set(found)
    for block in re.split(r"\n\s*\n", text):
        rows = _markdown_rows(block)
        if rows and "verdict" in [c.lower() for c in rows[0]]:
            body = [r for r in rows[1:] if not set("".join(r)) <= set("-: ")]
            assert all(r[0] in computed for r in body), (f"a hand-written verdict table: {rows[0]}; give each claim "
                                                      "its row in sj_sew/experiments/claims.py and paste the "
                                                      "rendered table (scripts/repro_tables.py)")


def test_reproduction_md_holds_the_rendered_baselines_and_verdicts():
    text = (ROOT / "REPRODUCTION.md").read_text()
    for study in ("degradation", "degradation_digits", "ablation", "gradients", "surrogate", "downsample", "systems",
                  "temporal", "temporal_depth"):
        lines = tables.baselines(RESULTS, study) + tables.verdicts(RESULTS, study)
        missing = [line for line in lines if line.startswith("| ") and line not in text]
        assert not missing, f"{study}: rendered rows not in REPRODUCTION.md: {missing[:2]}"
    missing = [line for line in tables.gates(RESULTS) if line.startswith("| ") and line not in text]
    assert not missing, f"the table of which studies reach a verdict is not the rendered one: {missing[:2]}"


# --- the validation-plateau stopping rule and the tuning seed (sj_sew.experiments.sweep) ----------------------

def _history(vals):
    return [{"epoch": i, "val_acc": v, "test_acc": v / 2} for i, v in enumerate(vals)]


def test_plateau_stop():
    from sj_sew.experiments.sweep import plateau_stop

    h = _history([0.1, 0.5, 0.4, 0.5, 0.45, 0.9])
    r = plateau_stop(h, patience=3)
    assert r == {"stop_epoch": 4, "stopped_early": True, "selected_epoch": 1, "selected_test_acc": 0.25}
    assert plateau_stop(h, patience=4)["selected_epoch"] == 5  # one more epoch of patience reaches the 0.9
    assert plateau_stop(h, patience=10, cap=3) == {"stop_epoch": 2, "stopped_early": False, "selected_epoch": 1,
                                                   "selected_test_acc": 0.25}
    rising = plateau_stop(_history([0.1, 0.2, 0.3]), patience=1)
    assert rising["stop_epoch"] == 2 and not rising["stopped_early"]
    with pytest.raises(ValueError, match="patience"):
        plateau_stop(h, patience=0)


def test_plateau_stop_reads_a_committed_run():
    """On a committed run the rule with patience larger than the run selects the run's own selected epoch."""
    from sj_sew.experiments.sweep import plateau_stop

    summary = json.loads((RESULTS / "degradation" / "runs" / "SEW_ADD-b8" / "seed0" / "summary.json").read_text())
    r = plateau_stop(summary["history"], patience=len(summary["history"]))
    assert r["selected_epoch"] == summary["selected_epoch"] and r["selected_test_acc"] == summary["selected_test_acc"]


def test_reported_seeds_keep_the_tuning_seed_out():
    from sj_sew.experiments.sweep import TUNING_SEED, reported_seeds

    assert reported_seeds(5) == [0, 1, 2, 3, 4] and TUNING_SEED not in reported_seeds(5)
    with pytest.raises(ValueError, match="tuning seed"):
        reported_seeds(3, tuning_seed=0)
    assert reported_seeds(3, tuning_seed=None) == [0, 1, 2]


def test_reproduction_md_prose_numbers_are_recomputed():
    """The numbers the prose quotes beside the verdicts, recomputed from results/."""
    text = " ".join((ROOT / "REPRODUCTION.md").read_text().split())
    o = claims.overfitting(RESULTS)
    assert (f"in {o['test_at_or_below_train']} of {o['runs']} runs and at most {o['largest_excess']:.3f} above it"
            in text)
    rows = claims.load_study(RESULTS, "degradation")
    gaps = [sum(a - b for a, b in zip(rows[f"SEW ADD {n}"]["acc"], rows[f"Spiking ResNet {n}"]["acc"])) / 3
            for n in (6, 18, 34, 102)]
    assert "(" + ", ".join(f"{100 * g:+.1f}" for g in gaps) + " points at 6, 18, 34, 102 layers" in text
    seconds = sum(json.loads(p.read_text())["seconds"] for p in (RESULTS / "baselines").glob("*.json"))
    assert f"`sj_sew/experiments/baselines.py`; {seconds} s on one thread" in text


# --- §4: gradients over seeds x batches (sj_sew.experiments.gradients) ------------------------------------------

def _gradient_study():
    return json.loads((RESULTS / "gradients" / "gradients_seeds.json").read_text())


def test_gradient_ratios_on_made_up_curves():
    from sj_sew.experiments import gradients

    # blocks 0 and 3 downsample; identity areas: inputs of blocks 1-2 and 4-5
    curve, down = [8.0, 4.0, 2.0, 2.0, 1.0, 0.5], [True, False, False, True, False, False]
    assert gradients.log_ratio(curve) == pytest.approx(math.log10(16))
    assert gradients.identity_log_ratio(curve, down) == pytest.approx(math.log10(2) + math.log10(2))
    assert gradients.log_ratio([0.0, 1.0]) == pytest.approx(-30)  # a vanished norm sits at the floor
    s = gradients.summarise([curve, [1.0] * 6, curve, curve], down, batches=2)  # 2 seeds x 2 batches
    assert s["seed_log10_first"] == pytest.approx([math.log10(8) / 2, math.log10(8)])
    assert s["seed_log10_last"] == pytest.approx([math.log10(0.5) / 2, math.log10(0.5)])
    assert s["log10_first_over_last"]["median"] == pytest.approx(math.log10(16))
    assert s["median_curve"] == curve


def test_spikingjelly_atan_is_the_papers_surrogate():
    """The paper's sigma'(x) = alpha / (2 (1 + (pi/2 alpha x)^2)) and its quoted values (Sec. 4.1): sigma'(0) = 1
    and sigma'(-1) = 0.092 at alpha = 2, sigma'(+-0.5) = 0.288, sigma'(0) = 1.5 at alpha = 3."""
    import torch
    from spikingjelly.activation_based import surrogate

    def grad(alpha, x):
        t = torch.tensor([x], requires_grad=True)
        surrogate.ATan(alpha=alpha)(t).sum().backward()
        return t.grad.item()

    for alpha, x in ((2.0, 0.0), (2.0, -1.0), (2.0, 0.5), (2.0, -0.5), (3.0, 0.0)):
        assert grad(alpha, x) == pytest.approx(alpha / (2 * (1 + (math.pi / 2 * alpha * x) ** 2)), rel=1e-5)
    assert (round(grad(2.0, -1.0), 3), round(grad(2.0, 0.5), 3), grad(3.0, 0.0)) == (0.092, 0.288, 1.5)


def test_reproduction_md_holds_the_gradient_table_and_numbers():
    from sj_sew.experiments import gradients

    study = _gradient_study()
    md = (ROOT / "REPRODUCTION.md").read_text()
    missing = [line for line in gradients.markdown_table(study["summary"]) if line not in md]
    assert not missing, f"§4's table is not the rendered one: {missing[:2]}"
    text = " ".join(md.split())
    meta, r = study["meta"], study["summary"]["1.0-2.0-False-Spiking ResNet"]["log10_first_over_last"]
    assert (f"rises {10 ** r['median']:.0f}x toward the input (median of {r['n']} runs: {len(meta['seeds'])} seeds "
            f"x {meta['batches']} batches of {meta['batch']}; 5-95%: {10 ** r['p5']:.0f}x to {10 ** r['p95']:.0f}x;"
            ) in text
    assert f"in {meta['seconds']:.0f} s on one thread" in text
    variants = json.loads((RESULTS / "gradients" / "variants.json").read_text())
    missing = [line for line in gradients.variants_table(variants) if line not in md]
    assert not missing and f"{variants['seconds']:.0f} s on one thread" in text, missing[:2]


def test_reproduction_md_plateau_counts_are_recomputed():
    """The stopping rule read on the committed runs (P = 3), as REPRODUCTION.md quotes it."""
    from sj_sew.experiments.sweep import plateau_stop

    text = " ".join((ROOT / "REPRODUCTION.md").read_text().split())
    table = json.loads((RESULTS / "ablation" / "ablation.json").read_text())["table"]
    ablation = [RESULTS.joinpath(*Path(c).parts[1:]).parent / "summary.json"
                for row in table.values() for c in row["checkpoints"]]
    degradation = sorted((RESULTS / "degradation" / "runs").glob("*/seed*/summary.json"))
    early = [sum(plateau_stop(json.loads(p.read_text())["history"], 3)["stopped_early"] for p in runs)
             for runs in (ablation, degradation)]
    assert (f"with P = 3 it would have stopped {early[0]} of §2's {len(ablation)} reported runs and {early[1]} of "
            f"§1's {len(degradation)} before their last epoch") in text


def test_reproduction_md_deep_trained_firing_rates_are_recomputed():
    """§3's reading of the 102-layer trained SEW ADD (results/firing_rates/trained_sew_add_102.json)."""
    (rec,) = json.loads((RESULTS / "firing_rates" / "trained_sew_add_102.json").read_text())["curves"].values()
    a, o = rec["rate_a"], rec["rate_o"]
    text = " ".join((ROOT / "REPRODUCTION.md").read_text().split())
    assert (f"The rate of A^l is at most {max(a):.3f} in every one of the {len(a)} blocks (mean "
            f"{sum(a) / len(a):.3f})") in text
    assert f"the last two ({a[-1]:.3f}) are the highest" in text and max(a[-2:]) == max(a)
    assert f"outputs O^l average {sum(o) / len(o):.2f} (at most {max(o):.2f} per block), not above 1" in text


def test_repro_tables_prints_every_claim_once():
    """scripts/repro_tables.py (tables.render_all) is the one command that prints every verdict table and every
    study's baselines: each claim of claims.CLAIMS has exactly one row in it."""
    text = tables.render_all(RESULTS)
    for path in (RESULTS / "baselines").glob("*.json"):
        assert text.count(f"Baselines on the same data and split ({path.stem}):") == 1, path.stem
    ids = [m.group(1) for m in re.finditer(r"^\| ([A-Z]+[0-9]+) \| .*\| (agrees|disagrees|inconclusive|untestable "
                                           r"here) \|$", text, re.M)]
    assert sorted(ids) == sorted(c.id for c in claims.CLAIMS)
