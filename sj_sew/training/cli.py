"""The command line of :func:`sj_sew.training.run`: flags -> :class:`RunConfig` -> run. ``scripts/train.py``
is this module's :func:`main`; :func:`main` also takes the same flags as a list (the reproduction sweeps)."""
from __future__ import annotations

import argparse
import os
import sys

from ..blocks import list_families
from ..connect import list_connects
from ..data import DataError, DatasetFilesError, dataset_info, list_datasets
from ..models import list_models
from ..neurons import BACKENDS, list_neurons, list_surrogates
from .checkpoint import CheckpointError, RunWriteError
from .config import ConfigError, RunConfig
from .loop import OPTIMIZERS, SCHEDULERS, NonFiniteLossError
from .paths import LAST, holds_run, restart_command
from .presets import PRESET_RULE, PRESETS
from .resolve import RESUME_MAY_CHANGE, resolve_run
from .run import run

DESCRIPTION = "Train any sj_sew model on any registered data set."

RESUME_RULES = """\
Model selection: --val-fraction (default 0.1) of each class of the training split is held out as a
validation split; best.pt holds the weights of the epoch with the highest validation accuracy, and the run
reports the test accuracy at that epoch and at the last epoch. The test split never selects anything.
With --val-fraction 0 the last epoch is the selected one.

Resuming (--resume [CHECKPOINT_OR_DIR]):
  - continues from a run's checkpoint.pt and reproduces an uninterrupted run exactly (CPU);
  - only {may_change} may change (a run
    continues on another machine with its own device, kernels and data root);
  - a larger or smaller --epochs re-plans the learning-rate schedule: from the resumed epoch on, each epoch
    gets the rate a fresh run of the new length would have;
  - --out, when given, must be the checkpoint's own run directory or a directory that holds no run yet
    (the run then continues there); an existing run is never overwritten;
  - best.pt holds weights only (no optimizer state) and cannot be resumed from: evaluate it with
    scripts/evaluate.py, or load it with sj_sew.load_checkpoint.
Ctrl-C stops a run; its last checkpoint.pt stays, and the message says how to continue.
A run stopped before its first checkpoint was complete starts again from its config.json:
  python scripts/train.py --config <out>/config.json --out <out>""".format(
    may_change=", ".join("--" + k.replace("_", "-") for k in RESUME_MAY_CHANGE))


def _names(values) -> str:
    return ", ".join(values)


def _add_model_flags(a) -> None:
    a("--model", metavar="NAME", help="a registered model (--list-models)")
    a("--notation", help="build a NotationNet from the paper's notation instead of --model")
    a("--weights", metavar="RUN_FILE_OR_NAME",
      help="start from trained weights (fine-tuning): a run directory or checkpoint of sj_sew, a checkpoint file "
           "of a source sj_sew maps (SpikingJelly's zoo, the authors' code), or a weights-table name; a classifier "
           "of another number of classes starts fresh")
    a("--backend", metavar="NAME",
      help=f"neuron kernels: {_names(BACKENDS)}; auto (default) is the fastest for the device; the same "
           "results, so it may change on resume")
    a("--family", metavar="NAME", help=f"block family of notation nets: {_names(list_families())}")
    a("--connect", metavar="G", help=f"g of SEW blocks: {_names(list_connects())} (any case)")
    a("--neuron", metavar="NAME", help=f"{_names(list_neurons())} (any case)")
    a("--surrogate", metavar="NAME", help=f"surrogate gradient: {_names(list_surrogates())} (default ATan, alpha = 2)")
    a("--T", type=int, help="time steps (frames of event data, default: the data set's; repeats of static images, "
                           "default 4 in a custom run)")
    a("--T-train", type=int, dest="T_train", help="random temporal delete: train on T_train of T frames")


def _add_optimisation_flags(a) -> None:
    a("--lr", type=float)
    a("--optimizer", metavar="NAME", help=_names(OPTIMIZERS))
    a("--momentum", type=float)
    a("--weight-decay", type=float, dest="weight_decay")
    a("--scheduler", metavar="NAME", help=_names(SCHEDULERS))
    a("--step-size", type=int, dest="step_size", help="StepLR period in epochs")
    a("--gamma", type=float, help="StepLR factor")
    a("--warmup-epochs", type=int, dest="warmup_epochs",
      help="linear learning-rate warm-up over this many epochs, then the schedule over the rest (default 0)")
    a("--label-smoothing", type=float, dest="label_smoothing", help="cross-entropy label smoothing (default 0)")
    a("--clip-grad", type=float, dest="clip_grad", metavar="MAX_NORM",
      help="clip the gradients' global L2 norm to MAX_NORM (default: no clipping)")
    a("--epochs", type=int, help="epochs to train (the cap, with --patience)")
    a("--patience", type=int, metavar="P",
      help="early stopping: stop once the validation accuracy has not improved for P epochs (default: off)")
    a("--batch-size", type=int, dest="batch_size", help="per process")
    a("--amp", nargs="?", const="fp16", metavar="fp16|bf16",
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
    a("--sync-bn", action=argparse.BooleanOptionalAction, dest="sync_bn", help="SyncBatchNorm under torchrun (CUDA)")
    a("--val-fraction", type=float, dest="val_fraction",
      help="fraction of each class of the training split held out to select the best epoch (default 0.1; 0: none)")
    a("--tensorboard", action=argparse.BooleanOptionalAction)
    a("--progress", action=argparse.BooleanOptionalAction,
      help="tqdm progress bars (default: only when writing to a terminal)")


class _ListAction(argparse.Action):
    """``--list-models [PATTERN]``, ``--list-datasets``, ``--list-presets``: print and exit."""

    def __init__(self, option_strings, dest, lister, **kwargs):
        self.lister = lister
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print("\n".join(self.lister(values)))
        parser.exit()


def describe_datasets(_=None) -> list[str]:
    """One line per registered data set: name, kind, input, classes and default T."""
    lines = []
    for name in list_datasets():
        info = dataset_info(name)
        kind = f"events, T = {info.default_T}" if info.sequence else "static images"
        where = "needs --data-root" if info.needs_root else "embedded"
        lines.append(f"{name:18s} {kind:18s} {info.in_channels}x{info.input_size}x{info.input_size}, "
                     f"{info.num_classes} classes, {where}")
    return lines


def describe_presets(_=None) -> list[str]:
    """One line per preset: its name and settings."""
    return [f"{name:18s} " + ", ".join(f"{k}={v}" for k, v in values.items()) for name, values in PRESETS.items()]


def build_parser() -> argparse.ArgumentParser:
    """Every flag of ``scripts/train.py``; an unset flag is None (it takes the config file's or the preset's
    value)."""
    p = argparse.ArgumentParser(description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=PRESET_RULE + "\n\n" + RESUME_RULES)
    a = p.add_argument
    a("--list-models", nargs="?", const=None, metavar="PATTERN", action=_ListAction, lister=list_models,
      help="print the registered models (optionally matching a pattern such as 'sew_*') and exit")
    a("--list-datasets", nargs=0, action=_ListAction, lister=describe_datasets,
      help="print the registered data sets and exit")
    a("--list-presets", nargs=0, action=_ListAction, lister=describe_presets, help="print the presets and exit")
    a("--preset", metavar="NAME",
      help=f"a recipe of the SEW paper: {_names(sorted(PRESETS))} (default: quickstart when none of --dataset, "
           "--model and --notation is given, else 'custom'; see below)")
    a("--config", metavar="FILE", help="settings from a TOML file (keys as the flags, e.g. lr = 0.01, "
                                       "batch-size = 16) or a run's config.json; flags override it")
    a("--dataset", metavar="NAME", help="a registered data set (--list-datasets)")
    a("--data-root", help="directory of the data set's files (cifar10, imagenet, dvs128_gesture, cifar10_dvs)")
    a("--download", action="store_true", default=None, help="allow downloading the data set (never by default)")
    a("--data-option", action="append", metavar="KEY=VALUE", dest="data_options",
      help="extra data set option, e.g. source=fashion_mnist for the events set (repeatable)")
    _add_model_flags(a)
    _add_optimisation_flags(a)
    _add_run_flags(a)
    return p


#: Parser destinations that are not RunConfig fields.
_NOT_FIELDS = ("resume", "preset", "config", "list_models", "list_datasets", "list_presets")


def config_from_argv(argv: list[str] | None = None,
                     parser: argparse.ArgumentParser | None = None) -> tuple[RunConfig, dict | None]:
    """(config, checkpoint state to resume from or None) of a command line; a bad one exits with the
    parser's usage error (status 2)."""
    parser = parser or build_parser()
    args = parser.parse_args(argv)
    flags = {k: v for k, v in vars(args).items() if v is not None and k not in _NOT_FIELDS}
    try:
        return resolve_run(flags, args.preset, args.resume, args.config)
    except (ConfigError, CheckpointError) as e:
        parser.error(str(e))


def _exit_distributed_worker() -> None:
    """End a torchrun worker now that its run is complete: gloo's threads can abort a finished process at
    interpreter exit, which torchrun reports as a failure."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def _how_to_continue(out: str) -> str:
    if holds_run(out):
        return (f"interrupted. The last finished epoch is saved in {out}/{LAST}; continue with:\n"
                f"  python scripts/train.py --resume --out {out}")
    return (f"interrupted before the first epoch was saved; start the run again with:\n"
            f"  {restart_command(out)}")


def main(argv: list[str] | None = None) -> dict:
    """Parse ``argv`` (default: the command line), train, and return the run's summary. A loss that stops
    being finite, or Ctrl-C, ends the program with a message saying how to continue."""
    parser = build_parser()
    cfg, state = config_from_argv(argv, parser)
    try:
        summary = run(cfg, state)
    except ConfigError as e:  # found only once the data is read (e.g. a split too small to validate on)
        parser.error(str(e))
    except (NonFiniteLossError, RunWriteError) as e:  # the message says what was kept and how to go on
        raise SystemExit(str(e)) from None
    except (DataError, DatasetFilesError) as e:  # bad data found while loading it: a usage error, no traceback
        build_parser().error(str(e))
    except KeyboardInterrupt:
        print("\n" + _how_to_continue(cfg.out), file=sys.stderr, flush=True)
        raise SystemExit(130) from None
    _exit_distributed_worker()
    return summary
