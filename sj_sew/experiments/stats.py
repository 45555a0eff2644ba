"""Verdicts computed from the data: paired differences over matched seeds with a Student-t 95% confidence
interval, and the small table of rules that turns an interval into a verdict.

    d = paired([0.83, 0.84, 0.82], [0.80, 0.81, 0.79])   # A's and B's values, seed by seed
    verdict(d)              # 'A better', 'B better', 'inconclusive' or 'untestable here'
    paper_verdict(+1, verdict(d))   # the paper says A is better: 'agrees', ...

A verdict is "untestable here" when fewer than two paired values exist (no interval) or when the caller says
the data cannot carry the claim (a reason is then given, e.g. no network beats the linear readout).
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

#: the confidence level of every interval
LEVEL = 0.95

A_BETTER, B_BETTER, INCONCLUSIVE, UNTESTABLE = "A better", "B better", "inconclusive", "untestable here"
AGREES, DISAGREES = "agrees", "disagrees"


@dataclass(frozen=True)
class Paired:
    """Differences A - B over matched seeds: mean, sample std, n, t statistic, two-sided p and the 95% interval
    (nan where n < 2)."""

    diffs: tuple[float, ...]
    mean: float
    std: float
    t: float
    p: float
    low: float
    high: float

    @property
    def n(self) -> int:
        return len(self.diffs)

    def text(self, scale: float = 100.0, digits: int = 1) -> str:
        """'+2.4 [-1.1, +5.9], t = 1.20, n = 3' (values times ``scale``)."""
        if self.n < 2:
            return f"{self.mean * scale:+.{digits}f} (n = {self.n}, no interval)"
        t = "inf" if math.isinf(self.t) else f"{self.t:.2f}"
        return (f"{self.mean * scale:+.{digits}f} [{self.low * scale:+.{digits}f}, {self.high * scale:+.{digits}f}], "
                f"t = {t}, n = {self.n}")


def t_quantile(dof: int, level: float = LEVEL) -> float:
    """The two-sided Student-t critical value with ``dof`` degrees of freedom."""
    from scipy import stats

    return float(stats.t.ppf(0.5 + level / 2, dof))


def paired(a, b, higher_is_better: bool = True) -> Paired:
    """A - B over matched values (``a[i]`` and ``b[i]`` come from the same seed); a scalar ``b`` is a constant
    (e.g. a deterministic baseline). With ``higher_is_better=False`` (a loss) the differences are B - A, so that a
    positive difference always means A is better. ``a`` and ``b`` may also be ``{seed: value}`` dicts: then the
    seeds both have are paired, in order."""
    if isinstance(a, dict) and isinstance(b, dict):
        common = sorted(set(a) & set(b))
        a, b = [a[k] for k in common], [b[k] for k in common]
    elif isinstance(a, dict):
        a = [a[k] for k in sorted(a)]
    a = [float(v) for v in a]
    b = [float(b)] * len(a) if isinstance(b, (int, float)) else [float(v) for v in b]
    if len(a) != len(b):
        raise ValueError(f"paired values need the same seeds: {len(a)} values of A, {len(b)} of B")
    diffs = tuple(x - y if higher_is_better else y - x for x, y in zip(a, b))
    n = len(diffs)
    mean = statistics.fmean(diffs) if diffs else math.nan
    if n < 2:
        return Paired(diffs, mean, math.nan, math.nan, math.nan, math.nan, math.nan)
    from scipy import stats

    std = statistics.stdev(diffs)
    se = std / math.sqrt(n)
    if se == 0:
        t = math.copysign(math.inf, mean) if mean else 0.0
        p = 0.0 if mean else 1.0
    else:
        t = mean / se
        p = float(2 * stats.t.sf(abs(t), n - 1))
    half = t_quantile(n - 1) * se
    return Paired(diffs, mean, std, t, p, mean - half, mean + half)


def verdict(d: Paired, untestable: str | None = None) -> str:
    """The verdict of A against B: 'untestable here' if ``untestable`` names a reason or n < 2, 'inconclusive'
    if the interval contains 0, else 'A better' or 'B better'."""
    if untestable or d.n < 2:
        return UNTESTABLE
    if d.low <= 0 <= d.high:
        return INCONCLUSIVE
    return A_BETTER if d.mean > 0 else B_BETTER


def paper_verdict(paper_sign: int, measured: str) -> str:
    """The paper says A is better (``paper_sign`` +1) or B is (-1); the measured verdict ``measured`` then
    agrees, disagrees, is inconclusive or is untestable here."""
    if paper_sign not in (1, -1):
        raise ValueError(f"paper_sign must be +1 or -1, got {paper_sign!r}")
    if measured in (INCONCLUSIVE, UNTESTABLE):
        return measured
    return AGREES if (measured == A_BETTER) == (paper_sign == 1) else DISAGREES


def beats(values, baseline: float) -> bool:
    """Whether a network's per-seed ``values`` beat a deterministic ``baseline``: the 95% interval of
    value - baseline lies above 0 (needs two seeds)."""
    return verdict(paired(values, baseline)) == A_BETTER
