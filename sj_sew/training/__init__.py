"""Reusable training machinery: the run configuration and the SEW paper's presets, one train/eval loop,
checkpoints that survive a kill, exact resume, distributed data parallel, metrics and curves.

- :mod:`.config` -- :class:`RunConfig` (the schema; which fields are the network, which the machine), config files.
- :mod:`.presets` -- :data:`PRESETS` and the defaults of a run of one's own; :mod:`.resolve` --
  :func:`resolve_config`, :func:`resolve_run`; :mod:`.checks` -- :func:`check_config`.
- :mod:`.build` -- :func:`model_from_config`, fine-tuning weights; :mod:`.paths` -- which file a run directory means.
- :mod:`.loop` -- :func:`train_one_epoch`, :func:`evaluate`, :func:`fit`, optimizers and schedules.
- :mod:`.checkpoint`, :mod:`.distributed`, :mod:`.metrics` -- what a run writes, DDP, the records.
- :mod:`.load` -- :func:`load_checkpoint`: a trained model back from a checkpoint or run directory, on any machine.
- :mod:`.run` -- :func:`run`, a whole run from a config; :mod:`.cli` -- its command line (``scripts/train.py``).
"""
from .build import load_initial_weights, model_from_config
from .checkpoint import (CheckpointError, CheckpointWriteError, RunWriteError, read_checkpoint, remove_stale_temps,
                         rng_state, save_checkpoint, seed_everything, set_rng_state)
from .checks import DOWNLOAD_OPTION, check_config, check_network
from .config import MACHINE_FIELDS, NETWORK_FIELDS, ConfigError, RunConfig, read_config_file
from .distributed import (DistEnv, MultiStepSyncBatchNorm, ShardSampler, all_reduce_sum, broadcast_buffers,
                          convert_sync_batchnorm, init_distributed, make_eval_loader, make_loaders, unwrap)
from .load import LoadedRun, architecture, load_checkpoint
from .loop import (OPTIMIZERS, SCHEDULERS, NonFiniteLossError, autocast, evaluate, fit, make_optimizer,
                   make_scheduler, train_one_epoch)
from .metrics import MetricsLog, plot_curves, read_metrics
from .paths import run_file
from .presets import CUSTOM_DEFAULTS, DVS_GESTURE_LR, PRESETS, QUICKSTART_NET
from .resolve import RESUME_MAY_CHANGE, resolve_config, resolve_run
from .run import run

__all__ = ["NonFiniteLossError", "seed_everything", "rng_state", "set_rng_state", "save_checkpoint",
           "load_checkpoint", "DistEnv", "init_distributed", "all_reduce_sum", "ShardSampler", "make_loaders",
           "MultiStepSyncBatchNorm", "convert_sync_batchnorm", "model_from_config", "make_optimizer", "make_scheduler",
           "train_one_epoch", "evaluate", "MetricsLog", "read_metrics", "plot_curves", "unwrap",
           "OPTIMIZERS", "SCHEDULERS",
           "RunConfig", "ConfigError", "PRESETS", "DVS_GESTURE_LR", "QUICKSTART_NET", "DOWNLOAD_OPTION",
           "CUSTOM_DEFAULTS", "NETWORK_FIELDS", "MACHINE_FIELDS", "read_config_file", "load_initial_weights",
           "RESUME_MAY_CHANGE", "resolve_config", "resolve_run", "check_config", "check_network", "run_file",
           "autocast", "fit", "run", "CheckpointError", "read_checkpoint", "remove_stale_temps", "LoadedRun",
           "architecture", "CheckpointWriteError", "RunWriteError", "broadcast_buffers", "make_eval_loader"]
