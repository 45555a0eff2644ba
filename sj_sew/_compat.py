"""Every difference between the SpikingJelly release lines sj_sew supports, in one place.

Supported lines: 0.0.0.0.14 (multi-step neurons take ``backend='torch'|'cupy'``) and 2.x (no CuPy; the
kernel is chosen per device by SpikingJelly, overridable with ``SJ_<NEURON>_CUDA_IMPLEMENTATION``).
The rest of the package asks this module instead of testing versions itself.
"""
from __future__ import annotations

import importlib.util
import inspect
from functools import lru_cache

import spikingjelly
from spikingjelly.activation_based import functional

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


def cupy_backend_exists(neuron_cls) -> bool:
    """Whether this line offers a CuPy backend for this neuron class at all (0.0.0.0.14 only)."""
    return not SJ2 and neuron_takes_backend(neuron_cls)


def kernel_chosen_by_device() -> bool:
    """True where SpikingJelly picks a neuron's GPU kernel from the device (2.x: CUDA, then Triton), so a
    neuron's ``backend`` attribute does not select it; False where ``backend`` does (0.0.0.0.14)."""
    return SJ2


def neurons_use_torchscript() -> bool:
    """Whether SpikingJelly's own neuron steps call TorchScript functions (0.0.0.0.14's resets do), which turn
    an exception raised inside autograd into an opaque RuntimeError."""
    return not SJ2


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


def spikingjelly_synop_counter():
    """SpikingJelly's ``(DispatchCounterMode, SynOpCounter)`` classes (2.x), or None on a line without its
    op counter (0.0.0.0.14)."""
    try:
        from spikingjelly.activation_based.op_counter import DispatchCounterMode, SynOpCounter
    except ImportError:
        return None
    return DispatchCounterMode, SynOpCounter


class _NumpyWithBinaryFromstring:
    """NumPy, except that ``fromstring`` reads bytes like ``frombuffer`` (the result binary mode gave)."""

    def __getattr__(self, name):
        import numpy

        return getattr(numpy, name)

    @staticmethod
    def fromstring(data, dtype=float, **_):
        import numpy

        return numpy.frombuffer(data, dtype=dtype)


def numpy2_fromstring_fix(sj_dataset_module):
    """A context in which a SpikingJelly dataset module reads raw files under any NumPy.

    SpikingJelly 0.0.0.0.14 reads CIFAR10-DVS (its module has ``load_raw_events``) with ``np.fromstring`` in
    binary mode, which NumPy 2.3 removed; its worker threads swallow the error and leave empty class folders.
    There, the module gets a numpy whose ``fromstring`` is ``frombuffer`` while the context lasts; elsewhere
    the context changes nothing."""
    import contextlib
    from unittest import mock

    import numpy

    try:
        numpy.fromstring(b"\0\0\0\0", dtype=">u4")
        needed = False
    except (ValueError, AttributeError):
        needed = getattr(sj_dataset_module, "np", None) is numpy and hasattr(sj_dataset_module, "load_raw_events")
    if not needed:
        return contextlib.nullcontext()
    return mock.patch.object(sj_dataset_module, "np", _NumpyWithBinaryFromstring())


def ann2snn_convert(ann, calibration_loader, mode):
    """SpikingJelly's ann2snn conversion of ``ann`` (modified in place, returned): 0.0.0.0.14 runs
    ``Converter(dataloader, mode=...)(ann)``, 2.x ``Converter(RateCodingRecipe(dataloader=..., mode=...)).convert(ann)``."""
    from spikingjelly.activation_based import ann2snn

    if SJ2:
        return ann2snn.Converter(ann2snn.RateCodingRecipe(dataloader=calibration_loader, mode=mode)).convert(ann)
    return ann2snn.Converter(calibration_loader, mode=mode)(ann)


def spikingjelly_nir_import():
    """SpikingJelly's ``import_from_nir`` (2.x ``activation_based.nir_exchange``), or None on a line without it
    (0.0.0.0.14) or where ``nir``/``nirtorch`` are not installed."""
    try:
        from spikingjelly.activation_based.nir_exchange import import_from_nir
    except ImportError:
        return None
    return import_from_nir
