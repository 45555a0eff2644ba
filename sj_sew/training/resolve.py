"""How settings resolve into one run: RunConfig's defaults <- a preset (or the checkpoint's config when
resuming) <- a configuration file <- explicitly given flags; then the checks. Also the run a resume continues."""
from __future__ import annotations

from pathlib import Path

from ..data import dataset_info
from .checks import canonical_names, check_config, check_out
from .checkpoint import read_checkpoint
from .config import ConfigError, RunConfig, parse_data_options, read_config_file
from .paths import default_out, holds_run, run_file
from .presets import CUSTOM, STATIC_T, new_run_values, preset_for

#: Settings that may differ from the checkpoint's configuration when resuming: the length of the run and
#: the machine's choices (another machine has other devices, kernels and paths).
RESUME_MAY_CHANGE = ("epochs", "workers", "device", "threads", "out", "progress", "tensorboard", "backend",
                     "data_root", "sync_bn")


def complete(cfg: RunConfig) -> RunConfig:
    """``cfg`` with names in the library's spelling and T resolved: a sequence set's own T, or the static
    default :data:`~sj_sew.training.presets.STATIC_T` for a custom run on images (so that the run records the
    T it used)."""
    cfg = canonical_names(cfg)
    if cfg.T is None:
        try:
            info = dataset_info(cfg.dataset)
        except ValueError:
            return cfg  # an unknown data set: the checks name it
        cfg.T = info.default_T if info.sequence else (STATIC_T if cfg.preset == CUSTOM else None)
    return cfg


def _resumed_values(flags: dict, preset: str | None, saved: dict) -> dict:
    saved = RunConfig.from_dict(saved).to_dict()
    if preset is not None and preset != saved["preset"]:
        raise ConfigError(f"--preset {preset} differs from the checkpoint's preset {saved['preset']}")
    changed = sorted(k for k, v in flags.items() if k not in RESUME_MAY_CHANGE and saved.get(k) != v)
    if changed:
        raise ConfigError(f"cannot change {changed} when resuming (only {list(RESUME_MAY_CHANGE)}); "
                          "start a new run with a new --out instead")
    return {**saved, **flags}


def resolve_config(flags: dict, preset: str | None = None, saved: dict | None = None,
                   config_file: str | Path | None = None) -> RunConfig:
    """The config of explicitly given ``flags`` (RunConfig fields; ``data_options`` as a dict or as
    ``KEY=VALUE`` strings) over ``config_file``'s settings (TOML or a run's config.json) over ``preset`` (see
    :func:`~sj_sew.training.presets.preset_for`: quickstart unless the flags or file set the data set or the
    net), or over the checkpoint config ``saved`` when resuming; then checked. Raises :class:`ConfigError`."""
    flags = dict(flags)
    if isinstance(flags.get("data_options"), (list, tuple)):
        flags["data_options"] = parse_data_options(flags["data_options"])
    if config_file is not None:
        if saved is not None:
            raise ConfigError("--config starts a new run; a resumed run keeps its checkpoint's configuration")
        from_file = read_config_file(config_file)
        preset = preset or from_file.pop("preset", None)
        for key in ("num_classes", "input_size", "out"):  # a run's config.json: read off the data / its place
            from_file.pop(key, None)
        flags = {**from_file, **flags}
    if saved is not None:
        cfg = RunConfig.from_dict(_resumed_values(flags, preset, saved))
    else:
        cfg = RunConfig.from_dict(new_run_values(flags, preset_for(flags, preset)))
    cfg = complete(cfg)
    check_config(cfg)
    return cfg


def resolve_run(flags: dict, preset: str | None = None, resume: str | None = None,
                config_file: str | Path | None = None) -> tuple[RunConfig, dict | None]:
    """The run that explicitly given settings describe: (its config, the checkpoint state it continues from,
    or None). ``resume`` is a checkpoint or run directory, '' for ``flags['out']``'s, or None for a new run,
    whose ``out`` defaults to ``runs/<preset>-<time>`` and must not hold a run yet."""
    flags, state = dict(flags), None
    if resume is not None:
        if not (resume or flags.get("out")):
            raise ConfigError("--resume needs a checkpoint or run directory: --resume PATH, or --resume with --out DIR")
        path = run_file(resume or flags["out"], "resume")
        state = read_checkpoint(path)
        if "optimizer" not in state:
            raise ConfigError(f"{path} holds weights only (no optimizer state; best.pt is the selected epoch's "
                              f"weights): resume from the run's checkpoint.pt, or evaluate this file with "
                              f"scripts/evaluate.py")
        out = Path(flags.setdefault("out", str(path.parent)))
        if out.resolve() != path.parent.resolve() and holds_run(out):
            raise ConfigError(f"--out {out} already holds another run; resuming {path} there would overwrite it. "
                              f"Choose an empty --out, or leave --out out to continue in {path.parent}")
    cfg = resolve_config(flags, preset, state["config"] if state else None, config_file)
    if cfg.out is None:
        cfg.out = default_out(cfg.preset)
        check_out(cfg.out)
    if state is None and holds_run(cfg.out):
        raise ConfigError(f"{Path(cfg.out)} already holds a run; continue it with --resume or choose another --out")
    return cfg, state

