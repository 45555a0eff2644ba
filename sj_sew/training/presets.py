"""The SEW paper's training recipes as presets, and the defaults of a run of one's own.

A preset is a dict of :class:`~sj_sew.training.config.RunConfig` fields. A new run takes the values of its
preset; a run that names its own data set or net without ``--preset`` takes :data:`CUSTOM_DEFAULTS`, a recipe
that trains any registered net (the quick start's optimiser on the given data).
"""
from __future__ import annotations

from ..neurons import close_matches
from .config import ConfigError, RunConfig

#: The quick start's net: a 7B-Net-like SEW ResNet (ADD) for the 16x16 emulated sensor (3 blocks, 16 -> 2 pixels).
QUICKSTART_NET = "c16k3s1-BN-PLIF-{SEW Block(c16)-MPk2s2}*3-FC10"

#: SEW paper, Table 8: learning rate of each network on DVS128 Gesture (SEW by g, else by family).
DVS_GESTURE_LR = {"ADD": 0.001, "AND": 0.03, "IAND": 0.063, "spiking": 0.1, "plain": 0.005}

PRESETS = {
    # the main job: seconds to build the data, a few minutes to train on 2 CPU cores, >= 90% test accuracy
    # (one intra-op thread: these small convs gain little from more, and spinning OpenMP threads slow to a
    # crawl when other jobs share the CPU)
    "quickstart": dict(dataset="events", notation=QUICKSTART_NET, T=4, optimizer="adam", lr=0.003,
                       scheduler="cosine", epochs=10, batch_size=16, zero_init=True, threads=1),
    # Tables 7 and 8: 7B-Net, T = 16, random temporal delete to 12, SGD, StepLR(64, 0.1), 192 epochs
    "dvs128_gesture": dict(dataset="dvs128_gesture", model="net7b", T=16, T_train=12, optimizer="sgd",
                           momentum=0.9, lr=None, scheduler="step", step_size=64, gamma=0.1, epochs=192,
                           batch_size=16, amp=True, workers=4),
    # Tables 6 and 7: Wide-7B-Net, SGD 0.01, cosine T_max = 64, 64 epochs, no random temporal delete
    "cifar10_dvs": dict(dataset="cifar10_dvs", model="wide_net7b", T=16, optimizer="sgd", momentum=0.9,
                        lr=0.01, scheduler="cosine", epochs=64, batch_size=16, workers=4),
    # Table 7 and Sec. 4.1: SEW ResNet with IF neurons, T = 4, SGD 0.1, cosine T_max = 320, 320 epochs, AMP
    "imagenet": dict(dataset="imagenet", model="sew_resnet18", neuron="if", T=4, optimizer="sgd", momentum=0.9,
                     lr=0.1, scheduler="cosine", epochs=320, batch_size=32, amp=True, workers=8),
    # Appendix A.5 (Table 9): the lightweight CIFAR-10 net; the paper tunes lr per surrogate and does not give
    # T, epochs or batch size: these values are our choice
    "cifar10_surrogate": dict(dataset="cifar10", model="surrogate_net", T=4, optimizer="sgd", momentum=0.9,
                              lr=0.1, scheduler="cosine", epochs=64, batch_size=64, workers=4),
}

#: What a run is called that no preset describes: ``--dataset``, ``--model`` or ``--notation`` without ``--preset``.
CUSTOM = "custom"

#: The flags that describe a run of one's own: given without ``--preset``, no preset applies.
OWN_RUN_FLAGS = ("dataset", "model", "notation")

#: A run of one's own: Adam at 1e-3 with a cosine schedule, which trains every registered family; T = 4 for static
#: images (the paper's ImageNet setting); the quick start's net where neither a model nor a notation is given.
#: Measured (fashion_events, 60 images per class, 8 epochs, CPU; test accuracy at the validation-selected epoch):
#: SEW ResNet-18 78.7% (SGD 0.1: 75.3%; with identity init 48.7% / 55.3%), Spiking ResNet-18 62.7% (SGD 0.1:
#: 62.0%; identity init 60.7% / 56.0%). Identity init (--zero-init) slows such short runs down, so it is not a default.
CUSTOM_DEFAULTS = dict(optimizer="adam", lr=0.001, scheduler="cosine", batch_size=32, epochs=10)
STATIC_T = 4

PRESET_RULE = f"""\
Presets: --preset NAME applies that recipe. Without --preset, the quickstart preset applies only when none of
--dataset, --model and --notation is given. A run that sets one of them is called 'custom' and starts from
a recipe that trains any registered net: {', '.join(f'{k}={v}' for k, v in CUSTOM_DEFAULTS.items())}, T={STATIC_T}
for static images (sequence sets: their own T), and the quick start's net where no --model/--notation is given.
--config FILE (TOML, or a run's config.json) comes next, and flags given explicitly override everything."""


def preset_for(flags: dict, preset: str | None) -> str:
    """The preset a new run with explicitly given ``flags`` uses: ``preset`` if given, else quickstart when
    ``flags`` name no data set or net (:data:`OWN_RUN_FLAGS`), else :data:`CUSTOM`."""
    if preset is not None:
        return preset
    return CUSTOM if any(k in flags for k in OWN_RUN_FLAGS) else "quickstart"


def preset_values(preset: str) -> dict:
    """The RunConfig fields preset ``preset`` sets (:data:`CUSTOM_DEFAULTS` for :data:`CUSTOM`)."""
    if preset == CUSTOM:
        return dict(CUSTOM_DEFAULTS)
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; valid: {sorted(PRESETS)}{close_matches([preset], PRESETS)}")
    return dict(PRESETS[preset])


def new_run_values(flags: dict, preset: str) -> dict:
    """The settings of a new run: RunConfig's defaults <- the preset's values <- ``flags`` (which hold a
    config file's settings under the explicitly given flags). The net one of them picks replaces the preset's;
    a custom run without a net gets the quick start's; DVS128 Gesture's lr follows Table 8."""
    cfg = {**RunConfig().to_dict(), **preset_values(preset), **flags, "preset": preset}
    if "model" in flags and "notation" not in flags:  # one picks the net; the other's preset value goes
        cfg["notation"] = None
    if "notation" in flags and "model" not in flags:
        cfg["model"] = None
    if preset == CUSTOM and cfg["model"] is None and cfg["notation"] is None:
        cfg["notation"] = QUICKSTART_NET
    if cfg["lr"] is None and preset == "dvs128_gesture":
        family = cfg["family"] or "sew"
        net = (cfg["connect"] or "ADD").upper() if family == "sew" else family
        if net not in DVS_GESTURE_LR:
            raise ConfigError(f"the SEW paper gives no DVS128 Gesture learning rate for {net!r} (Table 8 has "
                              f"{sorted(DVS_GESTURE_LR)}): give --lr")
        cfg["lr"] = DVS_GESTURE_LR[net]
    return cfg
