"""Every difference between the SpikingJelly release lines sj_sew supports, in one place.

Supported lines: 0.0.0.0.14 (multi-step neurons take ``backend='torch'|'cupy'``) and 2.x (no CuPy; the
kernel is chosen per device by SpikingJelly, overridable with ``SJ_<NEURON>_CUDA_IMPLEMENTATION``).
The rest of the package asks this module instead of testing versions itself.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
from functools import lru_cache

import spikingjelly
from spikingjelly.activation_based import functional, neuron

try:
    from importlib.metadata import version as _dist_version

    SJ_VERSION = _dist_version("spikingjelly")
except Exception:  # a source checkout without metadata
    SJ_VERSION = getattr(spikingjelly, "__version__", "0")

#: True on the 2.x line (CuPy removed, kernels chosen by device).
SJ2 = int(SJ_VERSION.split(".")[0]) >= 2

CUPY_REMOVED_MESSAGE = (
    "backend='cupy' is not available: SpikingJelly {v} removed its CuPy backend upstream. "
    "Use backend='auto' (SpikingJelly 2.x then picks its native CUDA kernel, then Triton, on a GPU), "
    "or install spikingjelly==0.0.0.0.14 with cupy to use the CuPy kernels."
)


def neuron_takes_backend(neuron_cls) -> bool:
    """Whether this neuron class accepts a ``backend`` constructor argument (0.0.0.0.14 line)."""
    try:
        return "backend" in inspect.signature(neuron_cls.__init__).parameters
    except (TypeError, ValueError):
        return False


@lru_cache(maxsize=None)
def cupy_importable() -> bool:
    return importlib.util.find_spec("cupy") is not None


def backends_for(neuron_cls, step_mode: str = "m") -> tuple[str, ...]:
    """The backends a neuron class offers in ``step_mode`` ('torch' only where it has no choice)."""
    if not neuron_takes_backend(neuron_cls):
        return ("torch",)
    try:
        probe = neuron_cls(step_mode=step_mode)
        return tuple(probe.supported_backends)
    except Exception:
        return ("torch",)


def init_surrogate(module, base_cls, alpha: float, spiking: bool) -> None:
    """Initialise a ``SurrogateFunctionBase`` subclass: 0.0.0.0.14 takes ``(alpha, spiking)``
    positionally, 2.x takes ``spiking`` and keyword surrogate parameters."""
    if SJ2:
        base_cls.__init__(module, spiking=spiking, alpha=alpha)
    else:
        base_cls.__init__(module, alpha, spiking)


def reset_cache_invalidate(net) -> None:
    """Tell SpikingJelly that modules of ``net`` were swapped (2.x caches what ``reset_net`` finds)."""
    fn = getattr(functional, "invalidate_reset_cache", None)
    if fn is not None:
        fn(net)


def default_neuron_classes() -> dict:
    """Short names for SpikingJelly's neurons that the paper uses."""
    return {"if": neuron.IFNode, "lif": neuron.LIFNode, "plif": neuron.ParametricLIFNode}


def has_module(dotted: str) -> bool:
    try:
        importlib.import_module(dotted)
        return True
    except Exception:
        return False
