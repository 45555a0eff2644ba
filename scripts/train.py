#!/usr/bin/env python
"""Train any sj_sew model on any registered data set.

    python scripts/train.py                                   # the quick start: SEW ResNet on the embedded event set
    python scripts/train.py --preset dvs128_gesture --data-root DIR --connect IAND
    python scripts/train.py --dataset digits --model sew_resnet18 --T 4 --epochs 10
    python scripts/train.py --resume --out runs/quickstart-20261124-030000   # continue an interrupted run
    torchrun --nproc_per_node 2 scripts/train.py --preset imagenet --data-root /data/imagenet

A preset holds one of the SEW paper's recipes (Tables 7 and 8; ``sj_sew.training.PRESETS``); every flag
given explicitly overrides it. Each epoch writes <out>/metrics.jsonl (and TensorBoard logs when available)
and an atomic checkpoint <out>/checkpoint.pt carrying the whole run configuration; <out>/best.pt holds the
best test accuracy's weights, and <out>/curves.png the training curves at the end.

The flags are ``sj_sew.training.cli``'s; the run itself is ``sj_sew.training.run``.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from sj_sew.training.cli import build_parser, main  # noqa: E402

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    main()
