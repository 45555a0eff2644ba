"""The tables of REPRODUCTION.md, rendered from the committed results files (nothing is typed in by hand): each
study's table, its baselines (results/baselines/, scripts/repro_baselines.py) and the verdict of each of its claims,
computed from the results (sj_sew.experiments.claims: paired differences over seeds, 95% intervals).

    python scripts/repro_tables.py                 # every table whose results exist, as markdown (stdout)
    python scripts/repro_tables.py --results DIR   # another results directory (e.g. runs/quick)

Writes no file. The logic is sj_sew.experiments.tables.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import _sweep  # noqa: F401  (the repository on the import path)
from sj_sew.experiments.tables import (ablation, degradation, energy, firing_trained, render_all,  # noqa: F401
                                       surrogate, systems)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", type=Path, default=Path("results"), help="the results directory to read")
    return p


def output_paths(args) -> list[Path]:
    """None: the tables go to stdout."""
    return []


def main(argv=None):
    text = render_all(build_parser().parse_args(argv).results)
    print(text)
    return text


if __name__ == "__main__":
    main()
