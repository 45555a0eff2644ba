"""The command-line pieces the reproduction scripts share (argparse only; the studies live in
sj_sew.experiments): the repository on the import path, ``--out`` and ``--shard``, and the arguments of the
analyses at initialisation."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from sj_sew.experiments.sweep import output_dir, shard_of  # noqa: E402
from sj_sew.progress import add_progress_flag  # noqa: E402

OUT_RULE = ("default runs/{name} (runs/quick/{name} with --quick), never the committed results; "
            "only an explicit --out results/{name} writes there")


def parse_shard(text: str) -> tuple[int, int]:
    """argparse type of ``--shard K/N``."""
    try:
        return shard_of(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_out(p: argparse.ArgumentParser, name: str) -> None:
    """``--out DIR`` of a study whose default is ``runs/<name>``."""
    p.add_argument("--out", type=Path, help=OUT_RULE.format(name=name))
    p.set_defaults(result_name=name)


def add_sweep_outputs(p: argparse.ArgumentParser, name: str) -> None:
    """``--out`` and ``--progress`` of a training sweep: its runs draw no bars unless asked (each prints a line
    per epoch)."""
    add_out(p, name)
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=False,
                   help="progress bars of each training run (default: none; every run prints a line per epoch)")


def study_parser(doc: str, name: str, *, seeds: int, epochs: int, quick: str, seeds_help: str | None = None,
                 epochs_help: str | None = None, shard: str | None = None,
                 report_only: str = "aggregate the finished runs, train nothing") -> argparse.ArgumentParser:
    """The parser of a training study (``repro_<name>.py``) with the arguments they all share: ``--seeds`` and
    ``--epochs`` (with the study's defaults), ``--shard K/N`` where its runs split over processes (``shard``: what
    a share is), ``--report-only``, ``--quick`` (``quick``: its smoke setting), ``--out`` and ``--progress``; the
    study adds its own after them."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=seeds, help=seeds_help or "reported seeds 0 .. SEEDS-1")
    p.add_argument("--epochs", type=int, default=epochs, help=epochs_help)
    if shard:
        p.add_argument("--shard", type=parse_shard, default=(0, 1),
                       help=f"K/N: run only {shard} from the K-th (N processes side by side)")
    p.add_argument("--report-only", action="store_true", help=report_only)
    p.add_argument("--quick", action="store_true", help=quick)
    add_sweep_outputs(p, name)
    return p


def resolve_out(args) -> Path:
    """The study's directory: ``--out`` as given, else under runs/ (see :func:`sj_sew.experiments.sweep.output_dir`)."""
    args.out = output_dir(args.out, args.result_name, getattr(args, "quick", False))
    return args.out


def output_paths(args) -> list[Path]:
    """Where a study script writes with these arguments (its directory)."""
    return [resolve_out(args)]


def init_probe_parser(doc: str, name: str) -> argparse.ArgumentParser:
    """The arguments shared by the analyses at initialisation (repro_gradients, repro_firing_rates):
    network depth, input side, T, batch, seed, ``--quick`` (18 layers, 32x32, T=2, batch 2), ``--out`` and
    ``--progress``."""
    from sj_sew.models import RESNET_LAYOUTS

    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--depth", type=int, default=152, choices=sorted(RESNET_LAYOUTS))
    p.add_argument("--size", type=int, default=64, help="input side (the paper: 224; reduced for CPU)")
    p.add_argument("--T", type=int, default=4)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="18 layers, 32x32, T=2, batch 2 (smoke test)")
    add_out(p, name)
    add_progress_flag(p)
    return p


def parse_init_probe_args(p: argparse.ArgumentParser, argv):
    args = p.parse_args(argv)
    if args.quick:
        args.depth, args.size, args.T, args.batch = 18, 32, 2, 2
    resolve_out(args).mkdir(parents=True, exist_ok=True)
    return args
