"""Accuracy of the ANN and of converted SNNs against the number of time steps."""
from __future__ import annotations

from typing import Iterable, Sequence

import torch
import torch.nn as nn

from ..progress import progress_bar
from ..training.loop import evaluate


def ann_accuracy(ann: nn.Module, loader: Iterable) -> float:
    """Test accuracy of ``ann`` on ``(x, y)`` batches (sj_sew's :func:`~sj_sew.training.evaluate`)."""
    return evaluate(ann, loader)["acc"]


@torch.no_grad()
def accuracy_vs_time(snn, loader: Iterable, time_steps: Sequence[int], progress: bool = False) -> dict[int, float]:
    """Test accuracy after each T in ``time_steps``, from one simulation of max(T) steps per batch.

    ``snn`` is an :class:`~sj_sew.conversion.SResNet` or an :class:`~sj_sew.conversion.AccumulatedOutput`
    (anything with reset/step/scores).
    """
    steps = sorted(set(int(t) for t in time_steps))
    if not steps or steps[0] < 1:
        raise ValueError(f"time_steps must be positive ints, got {list(time_steps)}")
    correct = dict.fromkeys(steps, 0)
    total = 0
    for x, y in progress_bar(loader, progress, desc="SNN", leave=False):
        snn.reset()
        for t in range(1, steps[-1] + 1):
            snn.step(x)
            if t in correct:
                correct[t] += int((snn.scores().argmax(1) == y).sum())
        total += len(y)
    snn.reset()
    return {t: correct[t] / total for t in steps}
