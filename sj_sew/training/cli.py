"""The command line of :func:`sj_sew.training.run`: flags -> :class:`RunConfig` -> run. ``scripts/train.py``
is this module's :func:`main`; :func:`main` also takes the same flags as a list (the reproduction sweeps)."""
from __future__ import annotations

import argparse

from ..blocks import FAMILIES
from ..connect import list_connects
from ..data import list_datasets
from ..models import list_models
from ..neurons import list_neurons, list_surrogates
from .config import PRESETS, ConfigError, RunConfig, resolve_run
from .loop import OPTIMIZERS, SCHEDULERS, NonFiniteLossError
from .run import run

DESCRIPTION = "Train any sj_sew model on any registered data set."


def _add_model_flags(a) -> None:
    a("--model", choices=list_models(), help="a registered model")
    a("--notation", help="build a NotationNet from the paper's notation instead of --model")
    a("--family", choices=list(FAMILIES), help="block family of notation nets")
    a("--connect", choices=list_connects(), help="g of SEW blocks")
    a("--neuron", choices=list_neurons())
    a("--surrogate", choices=list_surrogates(), help="surrogate gradient (default ATan, alpha = 2)")
    a("--T", type=int, help="time steps (frames of event data; repeats of static images)")
    a("--T-train", type=int, dest="T_train", help="random temporal delete: train on T_train of T frames")


def _add_optimisation_flags(a) -> None:
    a("--lr", type=float)
    a("--optimizer", choices=list(OPTIMIZERS))
    a("--momentum", type=float)
    a("--weight-decay", type=float, dest="weight_decay")
    a("--scheduler", choices=list(SCHEDULERS))
    a("--step-size", type=int, dest="step_size", help="StepLR period in epochs")
    a("--gamma", type=float, help="StepLR factor")
    a("--epochs", type=int)
    a("--batch-size", type=int, dest="batch_size", help="per process")
    a("--amp", action=argparse.BooleanOptionalAction, help="float16 autocast + GradScaler (CUDA only)")
    a("--zero-init", action=argparse.BooleanOptionalAction, dest="zero_init",
      help="start every residual block as an identity mapping")
    a("--seed", type=int)


def _add_run_flags(a) -> None:
    a("--out", help="run directory (default runs/<preset>-<time>)")
    a("--resume", nargs="?", const="", metavar="CHECKPOINT_OR_DIR",
      help="continue from a checkpoint (default: <out>/checkpoint.pt)")
    a("--memory-saving", action="store_true", default=None, dest="memory_saving",
      help="gradient checkpointing via sj_sew.memory.memory_saving")
    a("--workers", type=int)
    a("--device", help="cpu, cuda or cuda:N (default: cuda if available)")
    a("--threads", type=int, help="torch intra-op CPU threads (default: torch's choice)")
    a("--sync-bn", action="store_true", default=None, dest="sync_bn", help="SyncBatchNorm under torchrun (CUDA)")
    a("--tensorboard", action=argparse.BooleanOptionalAction)
    a("--progress", action=argparse.BooleanOptionalAction, help="tqdm progress bars")


def build_parser() -> argparse.ArgumentParser:
    """Every flag of ``scripts/train.py``; an unset flag is None (it takes the preset's value)."""
    p = argparse.ArgumentParser(description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Unset flags take the preset's value (default preset: quickstart).")
    a = p.add_argument
    a("--preset", choices=sorted(PRESETS), help="a recipe of the SEW paper (default: quickstart)")
    a("--dataset", choices=list_datasets())
    a("--data-root", help="directory of the data set's files (cifar10, imagenet, dvs128_gesture, cifar10_dvs)")
    a("--download", action="store_true", default=None, help="allow downloading the data set (never by default)")
    a("--data-option", action="append", metavar="KEY=VALUE", dest="data_options",
      help="extra data set option, e.g. source=fashion_mnist for the events set (repeatable)")
    _add_model_flags(a)
    _add_optimisation_flags(a)
    _add_run_flags(a)
    return p


def config_from_argv(argv: list[str] | None = None,
                     parser: argparse.ArgumentParser | None = None) -> tuple[RunConfig, dict | None]:
    """(config, checkpoint state to resume from or None) of a command line; a bad one exits with the
    parser's usage error (status 2)."""
    parser = parser or build_parser()
    args = parser.parse_args(argv)
    flags = {k: v for k, v in vars(args).items() if v is not None and k not in ("resume", "preset")}
    try:
        return resolve_run(flags, args.preset, args.resume)
    except ConfigError as e:
        parser.error(str(e))


def main(argv: list[str] | None = None) -> dict:
    """Parse ``argv`` (default: the command line), train, and return the run's summary. A loss that stops
    being finite ends the program with its message."""
    cfg, state = config_from_argv(argv)
    try:
        return run(cfg, state)
    except NonFiniteLossError as e:
        raise SystemExit(str(e)) from None
