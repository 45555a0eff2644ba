#!/usr/bin/env python
"""Train any sj_sew model on any registered data set.

    python scripts/train.py                                   # the quick start: SEW ResNet on the embedded event set
    python scripts/train.py --preset dvs128_gesture --data-root DIR --connect IAND
    python scripts/train.py --dataset digits --model sew_resnet18 --epochs 10   # a custom run: a recipe that trains
    python scripts/train.py --config run.toml --lr 0.01       # settings from a file, flags on top
    python scripts/train.py --dataset fashion_events --model sew_resnet18 --weights runs/<run>   # fine-tune
    python scripts/train.py --resume --out runs/quickstart-20261124-030000   # continue an interrupted run
    python scripts/train.py --list-models 'sew_*'             # also --list-datasets, --list-presets
    torchrun --nproc_per_node 2 scripts/train.py --preset imagenet --data-root /data/imagenet

A preset holds one of the SEW paper's recipes (Tables 7 and 8; ``sj_sew.training.PRESETS``); every flag
given explicitly overrides it. A run writes <out>/config.json (the resolved configuration, every default
included) at its start, <out>/metrics.jsonl and TensorBoard logs every epoch, an atomic checkpoint
<out>/checkpoint.pt (the whole state, resumable) and <out>/best.pt (the validation-selected weights), and
<out>/summary.json, <out>/curves.png and TensorBoard hparams at the end.

The flags are ``sj_sew.training.cli``'s (also ``sj-sew train``); the run itself is ``sj_sew.training.run``.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from sj_sew.training.cli import build_parser, main  # noqa: E402

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    main()
