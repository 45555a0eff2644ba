"""What is checked before a run starts, so that no error surfaces only after the data or the model were built.

The checks come in the groups a config's fields fall into: the network (:func:`check_network`: all that
loading, evaluating and exporting need), the optimisation, the data, and the machine it runs on
(:func:`check_machine`). A run checks them all (:func:`check_config`); loading a trained run anywhere checks
only its network. Each raises :class:`~sj_sew.training.config.ConfigError` naming the flag at fault; names
take the library's spellings (``--connect add``, ``--neuron LIF``) and get its close-match suggestions.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from ..blocks import list_families
from ..connect import list_connects
from ..data import dataset_info, dataset_options, list_datasets
from ..models import PAPER_NETS, list_models, parse_notation
from ..models.weights import list_weights
from ..neurons import close_matches, list_neurons, list_surrogates
from ..neurons.backend import check_backend_for_run
from .build import model_from_config
from .config import AMP_MODES, ConfigError, RunConfig
from .loop import OPTIMIZERS, SCHEDULERS
from .paths import out_problem

#: Data sets that can be downloaded (only with ``download``), and the builder option that allows it.
DOWNLOAD_OPTION = {"cifar10": "download", "dvs128_gesture": "allow_download", "cifar10_dvs": "allow_download"}


def _unknown(flag: str, value, valid) -> ConfigError:
    return ConfigError(f"{flag}: unknown {value!r}; valid: {list(valid)}{close_matches([str(value)], list(valid))}")


def canonical_names(cfg: RunConfig) -> RunConfig:
    """``cfg`` with its names spelled as the library spells them (``connect='add'`` -> ``'ADD'``, ``neuron='LIF'``
    -> ``'lif'``, surrogates and families lower case), as ``create_model`` accepts them; names that are not
    registered stay as given (the checks name them)."""
    def pick(value, valid):
        if not isinstance(value, str):
            return value
        match = [v for v in valid if v.lower() == value.lower()]
        return match[0] if match else value

    cfg.connect = pick(cfg.connect, list_connects())
    cfg.neuron = pick(cfg.neuron, list_neurons())
    cfg.surrogate = pick(cfg.surrogate, list_surrogates())
    cfg.family = pick(cfg.family, list_families())
    return cfg


def _check_names(cfg: RunConfig) -> None:
    for flag, value, valid in (("--dataset", cfg.dataset, list_datasets()), ("--connect", cfg.connect, list_connects()),
                               ("--neuron", cfg.neuron, list_neurons()), ("--surrogate", cfg.surrogate, list_surrogates()),
                               ("--family", cfg.family, list_families())):
        if value is not None and value not in valid:
            raise _unknown(flag, value, valid)
    if cfg.model is not None and cfg.model not in list_models():
        raise ConfigError(f"--model: unknown model {cfg.model!r}; see --list-models{close_matches([cfg.model], list_models())}")


def check_network(cfg: RunConfig) -> None:
    """The network ``cfg`` describes exists and fits its data set's input: registered names, a notation that
    parses, the family option only where it applies, and (for notation nets) a build at the data's size."""
    _check_names(cfg)
    if cfg.model is None and cfg.notation is None:
        raise ConfigError("give --model (see --list-models) or --notation")
    if cfg.model is not None and cfg.notation is not None:
        raise ConfigError("give either --model or --notation, not both")
    if cfg.family is not None and cfg.notation is None and cfg.model not in PAPER_NETS:
        raise ConfigError(f"--family applies to notation nets ({sorted(PAPER_NETS)} or --notation); for ResNets "
                          f"choose the family by name, e.g. --model {cfg.model.replace('sew_', 'spiking_')}")
    if cfg.T is not None and (isinstance(cfg.T, bool) or not isinstance(cfg.T, int) or cfg.T < 1):
        raise ConfigError(f"--T must be an integer >= 1, got {cfg.T!r}")
    if cfg.notation is not None or cfg.model in PAPER_NETS:
        _check_notation_net(cfg)


def _check_notation_net(cfg: RunConfig) -> None:
    """Build a notation net (small) as the run would, so that a notation that does not parse or does not fit
    the data set's input fails now, naming the flag. Skipped where ``--data-option``s may change the input
    size; the global random state is left as it was."""
    flag = "--notation" if cfg.notation is not None else f"--model {cfg.model}"
    if cfg.notation is not None:
        if not isinstance(cfg.notation, str) or not cfg.notation.strip():
            raise ConfigError(f"--notation must be a network in the paper's notation, got {cfg.notation!r}")
        try:
            parse_notation(cfg.notation)
        except ValueError as e:
            raise ConfigError(f"--notation {cfg.notation!r} does not parse: {e}") from None
    if cfg.data_options and cfg.input_size is None:
        return
    try:
        with torch.random.fork_rng(devices=[]):
            model_from_config(cfg, backend="auto")  # the network alone: kernels are the machine's check
    except (ValueError, TypeError) as e:
        size = cfg.input_size or dataset_info(cfg.dataset).input_size
        reason = str(e).replace("; pass a larger input_size", "")  # a Python argument, not a flag
        raise ConfigError(f"{flag} cannot be built for data set {cfg.dataset!r} ({size}x{size} input): {reason}. "
                          f"Choose a net whose pooling fits that size (--notation with fewer pooling stages), "
                          f"or a data set with larger frames") from None


def check_optimisation(cfg: RunConfig) -> None:
    """Optimiser, schedule and their numbers."""
    for flag, value, valid in (("--optimizer", cfg.optimizer, OPTIMIZERS), ("--scheduler", cfg.scheduler, SCHEDULERS)):
        if value not in valid:
            raise _unknown(flag, value, valid)
    for key in ("epochs", "batch_size", "step_size"):
        if getattr(cfg, key) < 1:
            raise ConfigError(f"--{key.replace('_', '-')} must be >= 1, got {getattr(cfg, key)}")
    if cfg.lr is None or not 0 < cfg.lr < math.inf:
        raise ConfigError(f"--lr must be > 0 and finite, got {cfg.lr}")
    for key in ("momentum", "weight_decay"):
        value = getattr(cfg, key)
        if not 0 <= value < math.inf:
            raise ConfigError(f"--{key.replace('_', '-')} must be a finite number >= 0, got {value}")
    if cfg.momentum >= 1:
        raise ConfigError(f"--momentum must be < 1 (SGD momentum; 0.9 in the paper), got {cfg.momentum}")
    if not 0 < cfg.gamma < math.inf:
        raise ConfigError(f"--gamma (the StepLR factor) must be a finite number > 0, got {cfg.gamma}")
    if not 0 <= cfg.label_smoothing < 1:
        raise ConfigError(f"--label-smoothing must be in [0, 1), got {cfg.label_smoothing}")
    if not 0 <= cfg.warmup_epochs < cfg.epochs:
        raise ConfigError(f"--warmup-epochs must be in [0, epochs={cfg.epochs}), got {cfg.warmup_epochs}")
    if cfg.clip_grad is not None and not 0 < cfg.clip_grad < math.inf:
        raise ConfigError(f"--clip-grad (the largest global gradient L2 norm) must be > 0, got {cfg.clip_grad}")
    if not 0 <= cfg.val_fraction < 1:
        raise ConfigError(f"--val-fraction must be in [0, 1), got {cfg.val_fraction}")
    if cfg.patience is not None:
        if isinstance(cfg.patience, bool) or not isinstance(cfg.patience, int) or cfg.patience < 1:
            raise ConfigError(f"--patience must be an integer >= 1 (epochs without a better validation accuracy), "
                              f"got {cfg.patience!r}")
        if cfg.val_fraction <= 0:
            raise ConfigError("--patience stops on the validation accuracy and needs a validation split: "
                              "--val-fraction > 0")


def check_data(cfg: RunConfig) -> None:
    """The data set, its T and options (its root, a fact of the machine, is :func:`check_machine`'s)."""
    if cfg.dataset not in list_datasets():
        raise _unknown("--dataset", cfg.dataset, list_datasets())
    info = dataset_info(cfg.dataset)
    T = cfg.T if cfg.T is not None else info.default_T
    if T is None:
        raise ConfigError(f"static data set {cfg.dataset!r} needs --T (how many time steps each image is shown), "
                          "e.g. --T 4")
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ConfigError(f"--T must be an integer >= 1, got {cfg.T!r}")
    if cfg.T_train is not None:
        if not info.sequence:
            raise ConfigError(f"--T-train (random temporal delete) applies to sequence data sets, not {cfg.dataset!r}")
        if not 1 <= cfg.T_train <= T:
            raise ConfigError(f"--T-train must be in [1, T={T}], got {cfg.T_train}")
    if cfg.download and cfg.dataset not in DOWNLOAD_OPTION:
        raise ConfigError(f"--download applies to {sorted(DOWNLOAD_OPTION)}; {cfg.dataset!r} is embedded or "
                          "never downloaded")
    valid = dataset_options(cfg.dataset)
    unknown = sorted(set(cfg.data_options) - set(valid))
    if unknown:
        hint = close_matches(unknown, valid, "{match}= for {name}=")
        reserved = [k for k in unknown if k in ("root", "T", "train")]
        if reserved:
            hint += f"; {reserved} are set by --data-root/--T, not --data-option"
        raise ConfigError(f"--data-option {unknown[0]}={cfg.data_options[unknown[0]]!r}: data set {cfg.dataset!r} "
                          f"takes no option {unknown}; valid: {valid or 'none'}{hint}")


def check_data_root(cfg: RunConfig) -> None:
    """The data set's files can be read on this machine (where it needs them)."""
    if dataset_info(cfg.dataset).needs_root and not cfg.data_root:
        raise ConfigError(f"data set {cfg.dataset!r} is not embedded: give --data-root DIR with its files")
    if cfg.data_root is None:
        return
    root = Path(cfg.data_root)
    if not str(cfg.data_root).strip():
        raise ConfigError("--data-root must name a directory, got ''")
    if root.exists() and not root.is_dir():
        raise ConfigError(f"--data-root {root} is a file; give the directory that holds the data set's files")
    if not root.exists() and not cfg.download:
        raise ConfigError(f"--data-root {root} does not exist on this machine; give the directory that holds the "
                          f"{cfg.dataset} files" + (" (or add --download)" if cfg.dataset in DOWNLOAD_OPTION else ""))
    if root.is_dir() and not os.access(root, os.R_OK | os.X_OK):
        raise ConfigError(f"--data-root {root} is not readable")


def _check_device(cfg: RunConfig) -> None:
    if cfg.device is None:
        return
    valid = "cpu, cuda or cuda:N"
    try:
        dev = torch.device(cfg.device)
    except (RuntimeError, ValueError, TypeError):
        raise ConfigError(f"--device {cfg.device!r} is not a device; valid: {valid}") from None
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"--device {cfg.device!r}: sj_sew trains on {valid}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {cfg.device}: CUDA is not available on this machine; use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"--device {cfg.device}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                          f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")


def run_device(cfg: RunConfig) -> str:
    """The device a run uses: ``cfg.device``, else cuda where available, else cpu."""
    return cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")


def check_out(out: str | Path) -> None:
    """Raise :class:`ConfigError` unless ``out`` is (or can be made) a writable run directory."""
    problem = out_problem(out)
    if problem is not None:
        raise ConfigError(f"--out {out}: {problem}; choose another --out")


def check_machine(cfg: RunConfig) -> None:
    """This machine can run ``cfg`` as it asks: data files, device, precision, kernels, output directory and
    SyncBatchNorm."""
    _check_device(cfg)
    check_data_root(cfg)
    if cfg.workers < 0:
        raise ConfigError(f"--workers must be >= 0, got {cfg.workers}")
    if cfg.threads is not None and cfg.threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {cfg.threads}")
    if cfg.amp is not False and cfg.amp not in AMP_MODES:
        raise ConfigError(f"--amp {cfg.amp!r} is not a precision; valid: {', '.join(AMP_MODES)} "
                          "(--amp alone means fp16; --no-amp for float32)")
    try:
        check_backend_for_run(cfg.backend, run_device(cfg))
    except (ValueError, RuntimeError, ImportError) as e:
        raise ConfigError(str(e)) from None
    if cfg.out is not None:
        check_out(cfg.out)
    if cfg.sync_bn and run_device(cfg).startswith("cpu"):
        raise ConfigError("--sync-bn needs CUDA: PyTorch's SyncBatchNorm does not run on CPU")


def check_weights(cfg: RunConfig) -> None:
    """``--weights`` names something there: a file or run directory here, or a weights-table name."""
    if cfg.weights is None or Path(cfg.weights).exists() or cfg.weights in list_weights():
        return
    raise ConfigError(f"--weights {cfg.weights}: no such file or run directory, and no weights-table name "
                      f"(sj_sew.pretrained.list_weights()){close_matches([cfg.weights], list_weights())}")


def check_config(cfg: RunConfig) -> None:
    """Raise :class:`ConfigError` for every error that would otherwise surface after the data or the model
    were built."""
    check_optimisation(cfg)
    check_data(cfg)
    check_machine(cfg)
    check_network(cfg)
    check_weights(cfg)
