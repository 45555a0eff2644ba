"""The command line of :func:`sj_sew.training.run`: flags -> :class:`RunConfig` -> run. ``scripts/train.py``
is this module's :func:`main`; :func:`main` also takes the same flags as a list (the reproduction sweeps)."""
from __future__ import annotations

import argparse
import os
import sys

from ..blocks import FAMILIES
from ..connect import list_connects
from ..data import DataError, DatasetFilesError, list_datasets
from ..models import list_models
from ..neurons import BACKENDS, list_neurons, list_surrogates
from .checkpoint import CheckpointError
from .config import PRESET_RULE, PRESETS, ConfigError, RunConfig, resolve_run
from .loop import OPTIMIZERS, SCHEDULERS, NonFiniteLossError
from .run import run

DESCRIPTION = "Train any sj_sew model on any registered data set."

RESUME_RULES = """\
Model selection: --val-fraction (default 0.1) of each class of the training split is held out as a
validation split; best.pt holds the weights of the epoch with the highest validation accuracy, and the run
reports the test accuracy at that epoch and at the last epoch. The test split never selects anything.
With --val-fraction 0 the last epoch is the selected one.

Resuming (--resume [CHECKPOINT_OR_DIR]):
  - continues from a run's checkpoint.pt and reproduces an uninterrupted run exactly (CPU);
  - only --epochs, --workers, --device, --threads, --out, --progress, --tensorboard and --backend may change;
  - a larger or smaller --epochs re-plans the learning-rate schedule: from the resumed epoch on, each epoch
    gets the rate a fresh run of the new length would have;
  - --out, when given, must be the checkpoint's own run directory or a directory that holds no run yet
    (the run then continues there); an existing run is never overwritten;
  - best.pt holds weights only (no optimizer state) and cannot be resumed from: evaluate it with
    scripts/evaluate.py, or load it with sj_sew.load_checkpoint.
Ctrl-C stops a run; its last checkpoint.pt stays, and the message says how to continue."""


def _add_model_flags(a) -> None:
    a("--model", choices=list_models(), help="a registered model")
    a("--backend", choices=list(BACKENDS),
      help="neuron kernels: auto (default: the fastest for the device), torch, cuda or triton (SpikingJelly 2.x), "
           "cupy (0.0.0.0.14); the same results, so it may change on resume")
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
    a("--amp", nargs="?", const="fp16", choices=["fp16", "bf16"],
      help="mixed precision: fp16 (autocast + GradScaler, CUDA only; also --amp alone) or bf16 (autocast, "
           "CUDA or CPU)")
    a("--no-amp", action="store_const", const=False, dest="amp", help="float32 (no autocast)")
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
    a("--val-fraction", type=float, dest="val_fraction",
      help="fraction of each class of the training split held out to select the best epoch (default 0.1; 0: none)")
    a("--tensorboard", action=argparse.BooleanOptionalAction)
    a("--progress", action=argparse.BooleanOptionalAction,
      help="tqdm progress bars (default: only when writing to a terminal)")


def build_parser() -> argparse.ArgumentParser:
    """Every flag of ``scripts/train.py``; an unset flag is None (it takes the preset's value)."""
    p = argparse.ArgumentParser(description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=PRESET_RULE + "\n\n" + RESUME_RULES)
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
    except (ConfigError, CheckpointError) as e:
        parser.error(str(e))


def _exit_distributed_worker() -> None:
    """End a torchrun worker now that its run is complete: gloo's threads can abort a finished process at
    interpreter exit, which torchrun reports as a failure."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def main(argv: list[str] | None = None) -> dict:
    """Parse ``argv`` (default: the command line), train, and return the run's summary. A loss that stops
    being finite, or Ctrl-C, ends the program with a message saying how to continue."""
    parser = build_parser()
    cfg, state = config_from_argv(argv, parser)
    try:
        summary = run(cfg, state)
    except ConfigError as e:  # found only once the data is read (e.g. a split too small to validate on)
        parser.error(str(e))
    except NonFiniteLossError as e:
        raise SystemExit(str(e)) from None
    except (DataError, DatasetFilesError) as e:  # bad data found while loading it: a usage error, no traceback
        build_parser().error(str(e))
    except KeyboardInterrupt:
        print(f"\ninterrupted. The last finished epoch is saved in {cfg.out}/checkpoint.pt; continue with:\n"
              f"  python scripts/train.py --resume --out {cfg.out}", file=sys.stderr, flush=True)
        raise SystemExit(130) from None
    _exit_distributed_worker()
    return summary
