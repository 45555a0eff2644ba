"""Each claim of REPRODUCTION.md as a comparison of two sets of per-seed values read from ``results/``, and its
verdict computed by :mod:`.stats` (so the prose cannot claim more than the data): the paired difference A - B
over matched seeds with its 95% interval, what the statistics alone say (A better / B better / inconclusive, or
untestable here with fewer than two paired seeds) and the verdict against the paper (agrees / disagrees /
inconclusive / untestable here).

A study whose best network does not beat its strongest linear readout (results/baselines/<study>.json; the 95%
interval of network - readout above 0) reaches no verdict: every claim of it is "untestable here". So is a claim
the data cannot carry (a stated reason), and one with fewer than two paired seeds.
"""
from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import stats

Values = Callable[[dict], "list[float] | float"]


@dataclass(frozen=True)
class Claim:
    """A claim: A against B, each a function of the study's results (per-seed values in seed order, or a constant);
    ``paper_sign`` +1 where the paper finds A better, -1 where B; ``untestable`` a reason the data cannot carry
    it."""

    id: str
    study: str
    text: str
    paper: str
    a: str
    b: str
    value_a: Values
    value_b: Values
    paper_sign: int = 1
    higher_is_better: bool = True
    untestable: str | None = None
    scale: float = 100.0  # the printed difference: times 100 (accuracy in points), 1 for losses and norms

    @property
    def versus(self) -> str:
        """'A vs B', saying where the difference is B - A (a loss or a spread: lower is better), so that a positive
        difference always favours A."""
        return f"{self.a} vs {self.b}" + ("" if self.higher_is_better else " (B - A: lower is better)")

    def describe(self, d: stats.Paired) -> str:
        """``d`` in this claim's unit: points of accuracy, or the loss or norm itself."""
        return d.text(self.scale, 1 if self.scale == 100 else 3)


@dataclass(frozen=True)
class Evaluated:
    """A claim's paired difference, its measured verdict (the statistics alone), its verdict against the paper
    (after the study's gate) and the gate's text."""

    claim: Claim
    diff: stats.Paired
    measured: str
    verdict: str
    gate: str

    @property
    def diff_text(self) -> str:
        return self.claim.describe(self.diff)


# --- reading the results -------------------------------------------------------------------------------------

def _json(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


def rows_from(study: str, table: dict) -> dict:
    """{row label: {"acc": per-seed test accuracy at the validation-selected epoch, "loss": per-seed final train
    loss (where recorded)}} from a study's ``table`` as its JSON holds it (degradation, ablation, surrogate,
    downsample).
    Degradation rows are '<network> <layers>'."""
    if study in DEGRADATION_STUDIES:
        return {f"{name} {r['layers']}": {"acc": r["selected_test_acc"]["values"],
                                          "loss": r["final_train_loss"]["values"]}
                for name, rows in table.items() for r in rows.values()}
    if study in ("ablation", "surrogate", "downsample"):
        return {key: {"acc": r["selected_test_acc"]["values"],
                      **({"loss": r["final_train_loss"]["values"]} if "final_train_loss" in r else {})}
                for key, r in table.items()}
    if study in TEMPORAL_STUDIES:  # {seed: value}: each claim pairs the seeds its two cells share (stats.paired)
        metrics = {"acc": "selected_test_acc", "loss": "final_train_loss", "gap": "gap_train_test"}
        depth = study == "temporal_depth"
        return {cell: {name: dict(zip(r["seeds"], r[key]["values"])) for name, key in metrics.items() if key in r}
                for cell, r in table.items() if bool(r.get("layers")) == depth}
    raise ValueError(f"no rows of study {study!r} from a table")


def load_study(results: Path, study: str) -> dict | None:
    """The rows (:func:`rows_from`) of a study under ``results``, or None where its results do not exist; systems
    rows are 'MS-ResNet <depth>' and 'DS-ResNet K=<levels>', gradient rows '<Vth>-<alpha>-<zero init>-<network>'
    with per seed log10 of the first and last block's gradient norm and log10(first / last) within the identity-mapping
    areas (each the mean over the seed's batches); rows of the batch-16 run start with 'b16 '."""
    results = Path(results)
    if study in (*DEGRADATION_STUDIES, "ablation", "surrogate", "downsample", *TEMPORAL_STUDIES):
        name = "temporal" if study in TEMPORAL_STUDIES else study
        data = _json(results / name / f"{name}.json")
        return (rows_from(study, data["table"]) or None) if data else None
    if study == "systems":
        data = _json(results / "systems.json")
        if data is None:
            return None
        out = {}
        for section, label in (("ms_resnet_depth", lambda r: f"MS-ResNet {r['depth']}"),
                                ("ds_resnet_mlf", lambda r: f"DS-ResNet K={r['kwargs']['levels']}")):
            for r in sorted(data.get(section, []), key=lambda r: r["seed"]):
                out.setdefault(label(r), {"acc": []})["acc"].append(r["selected_test_accuracy"])
        return out
    if study == "gradients":
        rows = {}
        for prefix, name in (("", "gradients_seeds"), ("b16 ", "gradients_batch16")):
            data = _json(results / "gradients" / f"{name}.json")
            for k, v in (data or {}).get("summary", {}).items():
                rows[prefix + k] = {"first": v["seed_log10_first"], "last": v["seed_log10_last"],
                                    "ident": v["seed_log10_identity"]}
        return rows or None
    raise ValueError(f"unknown study {study!r}")


def _v(row: str, metric: str = "acc") -> Values:
    return lambda rows: rows[row][metric]


def _gap(a: str, b: str) -> Values:
    """Per-seed a - b (accuracy): a list in seed order, or {seed: value} over the seeds both rows have where the
    rows keep their seeds (:func:`rows_from`)."""
    def gap(rows):
        x, y = rows[a]["acc"], rows[b]["acc"]
        if isinstance(x, dict):
            return {seed: x[seed] - y[seed] for seed in sorted(set(x) & set(y))}
        return [u - v for u, v in zip(x, y)]
    return gap


#: The temporal benchmark's two studies, both in results/temporal/temporal.json on the same data and split, each
#: behind its own gate: its T, RTD and ablation cells (7B-Net layout, PLIF), and its degradation cells (rows with
#: ``layers``; IF neurons), whose best network must beat the readout by itself.
TEMPORAL_STUDIES = ("temporal", "temporal_depth")
#: Table 2's degradation on fashion_events (3 seeds, one rate) and on the digits (:func:`.degradation.study_name`)
DEGRADATION_STUDIES = ("degradation", "degradation_digits")

_NO_TIME = ("fashion_events is made from static images: time carries only the saccade direction, and no run "
            "over-fits, so RTD's regularisation has nothing to act on")


def _g_decay(setting: str, network: str) -> Values:
    """Per seed log10(last / first) gradient norm within the identity-mapping areas: above 0 the gradient decays
    towards the input."""
    return lambda rows: [-v for v in rows[f"{setting}-{network}"]["ident"]]


def _g_change(setting: str, network: str) -> Values:
    """Per seed |log10(first / last)| within the identity-mapping areas: how far the gradient moves."""
    return lambda rows: [abs(v) for v in rows[f"{setting}-{network}"]["ident"]]


def _gradient_claims():
    """§4 (Figs. 6-8), read where the paper's eqs. 8 and 11 apply, within the identity-mapping areas (the blocks
    between two downsampling blocks): decay (log10 last/first > 0) or explosion (< 0) of Spiking ResNet's gradient
    against a flat one, and SEW ADD's gradient moving less than Spiking ResNet's (same seeds and batches)."""
    spk, add, flat = "Spiking ResNet", "SEW ADD", lambda rows: 0.0
    trend = (("G1", "1.0-2.0-False", "decays towards the input (Vth 1, alpha 2, no zero init)", "decays (Fig. 6)", 1),
             ("G9", "b16 1.0-2.0-False", "decays towards the input (Vth 1, alpha 2, no zero init, batches of 16)",
              "decays (Fig. 6)", 1),
             ("G2", "1.0-2.0-True", "decays towards the input (Vth 1, alpha 2, zero init)",
              "the decay also happens with zero init (Fig. 6)", 1),
             ("G3", "0.5-2.0-True", "vanishes towards the input (Vth 0.5, alpha 2, zero init)", "vanishes (Fig. 7)", 1),
             ("G4", "1.0-3.0-True", "explodes towards the input (Vth 1, alpha 3, zero init)", "explodes (Fig. 8)", -1))
    for cid, setting, text, paper, sign in trend:
        yield Claim(cid, "gradients", f"Spiking ResNet's gradient {text}", paper, "log10 last/first", "0 (flat)",
                    _g_decay(setting, spk), flat, paper_sign=sign, scale=1.0)
    moves = (("G5", "1.0-2.0-False", "Vth 1, alpha 2, no zero init", "SEW ADD increases slowly, Spiking decays"),
             ("G10", "b16 1.0-2.0-False", "Vth 1, alpha 2, no zero init, batches of 16",
              "SEW ADD increases slowly, Spiking decays"),
             ("G6", "0.5-2.0-True", "Vth 0.5, alpha 2, zero init", "SEW not affected (eq. 11), Spiking vanishes"),
             ("G7", "1.0-3.0-True", "Vth 1, alpha 3, zero init", "SEW not affected, Spiking explodes"),
             ("G8", "1.0-3.0-False", "Vth 1, alpha 3, no zero init", "exploding not serious in SEW ADD"))
    for cid, setting, where, paper in moves:
        yield Claim(cid, "gradients", f"SEW ADD's gradient moves less than Spiking ResNet's ({where})", paper,
                    "SEW ADD abs. log10 first/last", "Spiking abs. log10 first/last", _g_change(setting, add),
                    _g_change(setting, spk), higher_is_better=False, scale=1.0)


def _degradation_claims(prefix: str, study: str, shallow: int, mid: int, deep: int, zero_init_at: int):
    """Table 2 / Fig. 3's degradation claims as ``<prefix>1`` .. ``<prefix>7`` of ``study``, whose rows are
    '<network> <layers>', over its depths ``shallow`` < ``mid`` < ``deep`` (Spiking ResNet with zero init unless the
    row says otherwise, as in the paper)."""
    add, spk = "SEW ADD", "Spiking ResNet"
    yield Claim(f"{prefix}1", study, "deeper SEW ADD trains better (test acc.)", "+6.1 points, 18 -> 152 layers",
                f"{add} {deep}", f"{add} {shallow}", _v(f"{add} {deep}"), _v(f"{add} {shallow}"))
    yield Claim(f"{prefix}2", study, "deeper SEW ADD reaches a lower training loss", "(Fig. 3: lower loss when deeper)",
                f"{add} {deep}", f"{add} {shallow}", _v(f"{add} {deep}", "loss"), _v(f"{add} {shallow}", "loss"),
                higher_is_better=False, scale=1.0)
    yield Claim(f"{prefix}3", study, f"SEW ADD, {mid} -> {deep} layers (test acc.)", "deeper better",
                f"{add} {deep}", f"{add} {mid}", _v(f"{add} {deep}"), _v(f"{add} {mid}"))
    yield Claim(f"{prefix}4", study, "deeper Spiking ResNet (zero init) trains worse (test acc.)",
                "-52.3 points, 18 -> 152 layers", f"{spk} {deep}", f"{spk} {shallow}", _v(f"{spk} {deep}"),
                _v(f"{spk} {shallow}"), paper_sign=-1)
    yield Claim(f"{prefix}5", study, f"SEW ADD beats Spiking ResNet at depth ({deep} layers)",
                "+59.2 points at 152 layers", f"{add} {deep}", f"{spk} {deep}", _v(f"{add} {deep}"),
                _v(f"{spk} {deep}"))
    yield Claim(f"{prefix}6", study, f"the SEW - Spiking gap grows with depth (gap at {deep} - gap at {shallow})",
                "+0.9 at 18 layers, +59.2 at 152", f"gap {deep}", f"gap {shallow}",
                _gap(f"{add} {deep}", f"{spk} {deep}"), _gap(f"{add} {shallow}", f"{spk} {shallow}"))
    yield Claim(f"{prefix}7", study, f"Spiking ResNet needs zero init when deep ({zero_init_at} layers)",
                "no convergence without it (Sec. 4.1)", f"zero init {zero_init_at}", f"no zero init {zero_init_at}",
                _v(f"{spk} {zero_init_at}"), _v(f"{spk} (no zero init) {zero_init_at}"))


_G_ORDER = (("SEW IAND", "Spiking ResNet"), ("Spiking ResNet", "SEW ADD"), ("SEW ADD", "Plain"), ("Plain", "SEW AND"))


def _g_claims(prefix: str, study: str, cell: Callable[[str], str]):
    """Table 4's element-wise function ablation (with RTD, the paper's setting) as claims ``<prefix>0`` ..
    ``<prefix>9`` of ``study``, whose row for a network is ``cell(network)``: the accuracy order and Sec. 4.3's
    training-loss order. Table 4 ranks SEW IAND second, so "ADD is the best g" is ADD against IAND; ADD
    against Spiking ResNet is Sec. 4.3's own comparison (the paper's 97.92 vs 90.97)."""
    def acc(net):
        return _v(cell(net))

    order = (("0", "SEW ADD is the best g: above the runner-up, SEW IAND (RTD)", "97.92 vs 95.49", "SEW ADD",
              "SEW IAND", 1),
             ("1", "SEW ADD is above Spiking ResNet (RTD; Sec. 4.3's comparison)", "97.92 vs 90.97",
              "SEW ADD", "Spiking ResNet", 1),
             ("2", "SEW AND is the worst g (vs IAND; RTD)", "70.49 vs 95.49", "SEW AND", "SEW IAND", -1),
             ("3", "SEW IAND is above Plain (RTD)", "95.49 vs 91.67", "SEW IAND", "Plain", 1),
             ("4", "SEW IAND is above Spiking ResNet (RTD)", "95.49 vs 90.97", "SEW IAND", "Spiking ResNet", 1),
             ("5", "Plain is above Spiking ResNet (RTD)", "91.67 vs 90.97", "Plain", "Spiking ResNet", 1))
    for n, text, paper, a, b, sign in order:
        yield Claim(prefix + n, study, text, paper, f"{a} RTD", f"{b} RTD", acc(a), acc(b), paper_sign=sign)
    for i, (a, b) in enumerate(_G_ORDER):
        yield Claim(f"{prefix}{6 + i}", study, f"training loss {a} < {b} (RTD; Sec. 4.3's order IAND < Spiking "
                    "ResNet < ADD < Plain < AND)", "that order", f"{a} RTD", f"{b} RTD", _v(cell(a), "loss"),
                    _v(cell(b), "loss"), higher_is_better=False, scale=1.0)


def _temporal_claims():
    """The temporal benchmark: random temporal delete (Fig. 10) and accuracy against T (Table 6) on SEW ADD,
    Table 4's ablation at T = 16 with RTD, each network at its own probe-chosen rate, and Table 2's degradation at
    6 to 34 layers."""
    yield Claim("RTD1", "temporal", "RTD raises test accuracy (Fig. 10)", "higher test accuracy with RTD on DVS "
                "Gesture (Table 4's 97.92 % for SEW ADD is with RTD)", "T16 RTD", "T16", _v("T16 RTD"), _v("T16"))
    yield Claim("RTD2", "temporal", "RTD shrinks the train-test gap (Fig. 10)", "higher train loss, lower train and "
                "higher test accuracy with RTD", "T16 RTD", "T16", _v("T16 RTD", "gap"), _v("T16", "gap"),
                higher_is_better=False)
    yield Claim("T1", "temporal", "T = 16 beats T = 8 (Table 6)", "74.4 vs 70.2 % on CIFAR10-DVS", "T16", "T8",
                _v("T16"), _v("T8"))
    yield Claim("T2", "temporal", "T = 8 beats T = 4 (Table 6)", "70.2 vs 64.8 % on CIFAR10-DVS", "T8", "T4",
                _v("T8"), _v("T4"))
    yield from _g_claims("TA", "temporal", lambda net: f"{net} RTD")
    yield from _degradation_claims("TD", "temporal_depth", shallow=6, mid=18, deep=34, zero_init_at=34)


#: Every verdict of REPRODUCTION.md, in its order.
CLAIMS = (
    *_degradation_claims("D", "degradation", shallow=6, mid=34, deep=102, zero_init_at=34),
    *_degradation_claims("DG", "degradation_digits", shallow=6, mid=34, deep=66, zero_init_at=34),
    *_g_claims("A", "ablation", lambda net: f"{net} RTD"),
    Claim("A10", "ablation", "RTD helps SEW ADD", "used for every Table 4 number (Fig. 10: less over-fitting)",
          "SEW ADD RTD", "SEW ADD", _v("SEW ADD RTD"), _v("SEW ADD"), untestable=_NO_TIME),
    *_gradient_claims(),
    Claim("S1", "surrogate", "SEW ADD beats Spiking ResNet with ArcTan", "+5.3 points (CIFAR-10)",
          "SEW ADD", "Spiking ResNet", _v("ArcTan | SEW ADD"), _v("ArcTan | Spiking ResNet")),
    Claim("S2", "surrogate", "SEW ADD beats Spiking ResNet with Rectangular", "+16.6 points",
          "SEW ADD", "Spiking ResNet", _v("Rectangular | SEW ADD"), _v("Rectangular | Spiking ResNet")),
    Claim("S3", "surrogate", "the SEW - Spiking gap is larger with Rectangular than with ArcTan", "16.6 vs 5.3",
          "gap Rectangular", "gap ArcTan", _gap("Rectangular | SEW ADD", "Rectangular | Spiking ResNet"),
          _gap("ArcTan | SEW ADD", "ArcTan | Spiking ResNet")),
    Claim("S4", "surrogate", "Constant 1 is worse than ArcTan (SEW ADD)", "12.56 vs 82.63",
          "Constant 1", "ArcTan", _v("Constant 1 | SEW ADD"), _v("ArcTan | SEW ADD"), paper_sign=-1),
    Claim("S5", "surrogate", "Constant 1 is worse than ArcTan (Spiking ResNet)", "10.00 vs 77.33",
          "Constant 1", "ArcTan", _v("Constant 1 | Spiking ResNet"), _v("ArcTan | Spiking ResNet"), paper_sign=-1),
    Claim("DS1", "downsample", "SEW ADD with an SN in its downsample shortcut beats the same net without it",
          "the paper adds the SN (conv1x1-BN-SN, Sec. 3.3, Fig. 2b) and reports no accuracy without it",
          "with SN", "without SN", _v("SEW ADD"), _v("SEW ADD, no downsample SN")),
    Claim("M1", "systems", "MS-ResNet: 56 layers above 20 (depth does not hurt)", "accuracy rises with depth",
          "MS-ResNet 56", "MS-ResNet 20", _v("MS-ResNet 56"), _v("MS-ResNet 20")),
    Claim("M2", "systems", "MS-ResNet: 56 layers above 8", "accuracy rises with depth",
          "MS-ResNet 56", "MS-ResNet 8", _v("MS-ResNet 56"), _v("MS-ResNet 8")),
    Claim("M3", "systems", "MLF (K = 3) beats single-level firing (K = 1) in DS-ResNet-20",
          "more efficient gradient propagation", "K=3", "K=1", _v("DS-ResNet K=3"), _v("DS-ResNet K=1")),
    *_temporal_claims(),
)


def best_linear(entry: dict) -> dict | None:
    """The stronger (by validation accuracy) of a study's linear readouts in its baselines JSON, or None."""
    linear = entry.get("linear") or {}
    return max(linear.values(), key=lambda r: (r["val_acc_chosen"], -r["features"])) if linear else None


#: studies with trained networks (the linear-readout gate applies); the others have no accuracy to gate
GATED = (*DEGRADATION_STUDIES, "ablation", "surrogate", "downsample", "systems", *TEMPORAL_STUDIES)
#: studies run on another study's data and split, whose baselines (results/baselines/<that study>.json) they share
SAME_DATA_AS = {"downsample": "surrogate"}


def study_readout(results: Path, study: str) -> dict | None:
    """The stronger linear readout of ``study``'s data: results/baselines/<study>.json (the file of the study
    whose data it shares, :data:`SAME_DATA_AS`), or for the temporal benchmark the readout its own report holds
    (results/temporal/temporal.json, for both of :data:`TEMPORAL_STUDIES`); None where none was run."""
    if study in TEMPORAL_STUDIES:
        data = _json(Path(results) / "temporal" / "temporal.json")
        return readout_of_temporal((data or {}).get("linear_readout"))
    entry = _json(Path(results) / "baselines" / f"{SAME_DATA_AS.get(study, study)}.json")
    return best_linear(entry) if entry else None


def readout_of_temporal(readout: dict | None) -> dict | None:
    """The stronger of the temporal benchmark's two readouts (:func:`sj_sew.experiments.temporal.linear_readout`)."""
    if readout is None:
        return None
    return best_linear({"linear": {"summed": readout["summed"], "side by side": readout["frames"]}})


def gate(study: str, rows: dict, linear: dict | None) -> str | None:
    """Why ``study`` reaches no verdict (its best network does not beat its strongest linear readout ``linear``,
    or no readout was run), or None. 'Best' is the row with the highest mean accuracy."""
    if study not in GATED:
        return None
    if linear is None:
        return "no linear readout on this data yet (scripts/repro_baselines.py)"
    best, d = best_against_readout(rows, linear)
    if stats.verdict(d) != stats.A_BETTER:
        return (f"the best network, {best} ({100 * d.mean + 100 * linear['test_acc']:.1f}%), does not beat the "
                f"linear readout ({linear['layout']}, {100 * linear['test_acc']:.1f}%)")
    return None


def accuracies(row: dict) -> list[float]:
    """A row's per-seed test accuracies, whether :func:`rows_from` keeps them as a list or as {seed: value}."""
    acc = row["acc"]
    return list(acc.values()) if isinstance(acc, dict) else list(acc)


def best_against_readout(rows: dict, linear: dict) -> tuple[str, stats.Paired]:
    """The row with the highest mean accuracy and its per-seed accuracy minus the readout's test accuracy."""
    best = max(rows, key=lambda k: statistics.fmean(accuracies(rows[k])))
    return best, stats.paired(accuracies(rows[best]), linear["test_acc"])


def evaluate_rows(study: str, rows: dict, linear: dict | None) -> list[Evaluated]:
    """Every claim of ``study`` whose rows exist in ``rows`` (:func:`rows_from`), with its computed verdicts
    behind the study's :func:`gate` against ``linear`` (its strongest linear readout)."""
    blocked = gate(study, rows, linear)
    gate_text = f"untestable here: {blocked}" if blocked else (
        "its best network beats the linear readout" if study in GATED else "no trained networks")
    out = []
    for c in (c for c in CLAIMS if c.study == study):
        try:
            d = stats.paired(c.value_a(rows), c.value_b(rows), c.higher_is_better)
        except KeyError:  # a row of the claim has no finished run yet
            continue
        measured = stats.verdict(d)  # the statistics alone; a claim's own limit bears on the verdict
        verdict = stats.paper_verdict(c.paper_sign, stats.verdict(d, c.untestable or blocked))
        out.append(Evaluated(c, d, measured, verdict, gate_text))
    return out


def evaluate_study(results: Path, study: str) -> list[Evaluated]:
    """Every claim of ``study`` with its computed verdicts (empty where its results do not exist)."""
    rows = load_study(results, study)
    return [] if rows is None else evaluate_rows(study, rows, study_readout(results, study))


def evaluate_all(results: Path) -> dict[str, Evaluated]:
    """claim id -> its evaluation, for every claim whose results exist."""
    studies = dict.fromkeys(c.study for c in CLAIMS)
    return {e.claim.id: e for s in studies for e in evaluate_study(results, s)}


def overfitting(results: Path) -> dict:
    """Over-fitting at the last epoch of the ablation's reported runs (every setting's seeds at its chosen rate):
    how many of them end with the test loss at or below the training loss, and the largest excess of the others."""
    data = _json(Path(results) / "ablation" / "ablation.json")
    gaps = []
    for row in data["table"].values():
        for checkpoint in row["checkpoints"]:  # recorded as results/ablation/runs/...: read under ``results``
            run = Path(results).joinpath(*Path(checkpoint).parts[1:]).parent
            last = json.loads((run / "summary.json").read_text())["history"][-1]
            gaps.append(last["test_loss"] - last["train_loss"])
    return {"runs": len(gaps), "test_at_or_below_train": sum(g <= 0 for g in gaps),
            "largest_excess": max((g for g in gaps if g > 0), default=0.0)}


def statistics_lines(study: str, table: dict) -> list[str]:
    """The paired statistics of ``study``'s claims from its in-memory ``table`` (a sweep's printout): no verdict,
    which needs the baselines (``scripts/repro_tables.py`` prints it). Claims whose rows are missing are left out."""
    rows, lines = rows_from(study, table), []
    for c in (c for c in CLAIMS if c.study == study):
        try:
            d = stats.paired(c.value_a(rows), c.value_b(rows), c.higher_is_better)
        except (KeyError, ValueError):
            continue
        lines.append(f"{c.id} {c.text}: {c.versus}: {c.describe(d)}; {stats.verdict(d, c.untestable)}")
    if lines:
        lines.insert(0, "Claims (A - B over matched seeds, 95% interval; verdicts against the paper and the "
                        "baselines: scripts/repro_tables.py):")
    return lines
