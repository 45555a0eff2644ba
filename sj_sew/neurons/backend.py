"""Which kernel a neuron runs: every backend decision of sj_sew, on both SpikingJelly lines.

A ``backend=`` name is one of :data:`BACKENDS`; a SpikingJelly line offers ``'auto'`` and its
``_compat.KERNEL_BACKENDS`` ('torch' and 'cupy' on 0.0.0.0.14; 'cuda', 'triton' and 'torch' on 2.x), and
``'fused'`` is sj_sew's own on every line: the fused torch path on CPU, sj_sew's Triton kernels
(:mod:`sj_sew.neurons.ops`) on CUDA. ``'auto'`` keeps SpikingJelly's kernels on a GPU: it is to pick sj_sew's
once a GPU measurement shows them faster and correct (none has been made yet). This module decides

- whether a pinned name can serve a neuron class and surrogate, and the error that says why not
  (:func:`check_choice`; on a GPU, :func:`check_kernel`; for a run configuration, :func:`check_backend_for_run`);
- what a neuron's ``backend`` attribute is on a device (:func:`backend_attribute`, 0.0.0.0.14: ``'auto'``
  picks CuPy on a GPU where it can run) or which 2.x kernel a neuron pins (:func:`pinned_kernel`);
- the hooks a new neuron carries (:func:`install_hooks`: the 2.x kernel scope, the CuPy dtype guard);
- the per-device sync of a network's neurons (:func:`sync_neurons`; on CUDA it includes the hooks that mark
  their spikes, and max pooling of marked spikes, 0/1 for :mod:`sj_sew.memory.packing`, :func:`set_spike_marks`).

:mod:`sj_sew._compat` supplies the facts about SpikingJelly it decides from.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .. import _compat
from ..binary_marks import is_marked_binary, mark_binary
from . import ops

#: Every ``backend=`` name; which ones a SpikingJelly line offers is :func:`line_backends`.
BACKENDS = ("auto", "torch", "cupy", "cuda", "triton", "fused")

TRITON_MISSING_MESSAGE = ("backend={backend!r} needs the triton package on a GPU (pip install triton; it comes "
                          "with CUDA builds of torch on Linux); or use backend='auto'")

CUPY_REMOVED_MESSAGE = (
    "backend='cupy' is not available: SpikingJelly {v} removed its CuPy backend upstream. "
    "Use backend='auto' (SpikingJelly 2.x then picks its native CUDA kernel, then Triton, on a GPU), "
    "or install spikingjelly==0.0.0.0.14 with cupy to use the CuPy kernels."
)

#: The input dtypes SpikingJelly 0.0.0.0.14's CuPy kernels take.
CUPY_DTYPES = (torch.float32, torch.float16)


def line_backends() -> tuple[str, ...]:
    """The ``backend=`` names this SpikingJelly line offers: ``'auto'`` and its kernels."""
    return ("auto",) + _compat.KERNEL_BACKENDS


def surrogate_has_cupy_code(surrogate_function) -> bool:
    """Whether a surrogate carries the CUDA code SpikingJelly 0.0.0.0.14's CuPy kernels need."""
    try:
        surrogate_function.cuda_codes("y", "x", "float")
        return True
    except (NotImplementedError, AttributeError, TypeError):
        return False


# --- validation of a pinned choice --------------------------------------------------------------------
def check_choice(backend: str, neuron_cls: type, surrogate_function) -> None:
    """Raise (ValueError, RuntimeError or ImportError, saying why and what to use instead) unless ``backend``
    can serve ``neuron_cls`` with ``surrogate_function`` on this SpikingJelly line and machine."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid: {list(BACKENDS)}")
    if backend == "cupy":
        _check_cupy(neuron_cls, surrogate_function)
    elif backend in ("cuda", "triton"):
        _check_device_kernel(backend, neuron_cls, surrogate_function)
    elif backend == "fused":
        why = ops.refusal(neuron_cls, surrogate_function)
        if why is not None:
            raise ValueError(f"backend='fused': {why}; use backend='auto' or 'torch'")


def _check_cupy(neuron_cls: type, surrogate_function) -> None:
    if not _compat.cupy_backend_exists(neuron_cls):
        raise RuntimeError(CUPY_REMOVED_MESSAGE.format(v=_compat.SJ_VERSION))
    if "cupy" not in _compat.backends_for(neuron_cls):
        raise ValueError(f"{neuron_cls.__name__} has no CuPy backend in multi-step mode; use backend='torch'")
    if not _compat.cupy_importable():
        raise ImportError("backend='cupy' needs CuPy and an NVIDIA GPU: pip install 'sj_sew[cupy]' "
                          "(cupy-cuda12x), or use backend='auto'")
    if not surrogate_has_cupy_code(surrogate_function):
        raise ValueError(f"surrogate {type(surrogate_function).__name__} has no CUDA code "
                         "for the CuPy backend; use backend='torch'")


def _check_device_kernel(backend: str, neuron_cls: type, surrogate_function) -> None:
    if backend not in _compat.KERNEL_BACKENDS:
        raise ValueError(f"backend={backend!r} needs SpikingJelly 2.x (its native CUDA and Triton kernels); "
                         f"SpikingJelly {_compat.SJ_VERSION} offers backend='auto', 'torch' or 'cupy'")
    if _compat.kernel_selection(neuron_cls) is None:
        raise ValueError(f"backend={backend!r}: {neuron_cls.__name__} has no SpikingJelly kernel to choose "
                         "(IF, LIF and PLIF have); use backend='auto' or 'torch'")
    if backend == "triton" and not _compat.triton_importable():
        raise ImportError("backend='triton' needs the triton package (pip install triton; it comes with "
                          "CUDA builds of torch on Linux); or use backend='auto'")
    if not _compat.surrogate_has_kernel(surrogate_function):
        raise ValueError(f"backend={backend!r}: surrogate {type(surrogate_function).__name__} "
                         "has no SpikingJelly CUDA/Triton kernel (ATan, Sigmoid, PiecewiseQuadratic, "
                         "PiecewiseExp, SoftSign, SuperSpike and Erf have); use backend='auto' or 'torch'")


def check_kernel(neuron_cls: type, kernel: str, device) -> None:
    """Raise RuntimeError naming ``backend=kernel`` when SpikingJelly 2.x cannot run that kernel for
    ``neuron_cls`` on CUDA ``device`` (e.g. 'cuda' in a build without its native kernels)."""
    error = _compat.kernel_unavailable(neuron_cls, kernel, device)
    if error is not None:
        raise RuntimeError(f"backend={kernel!r}: SpikingJelly {_compat.SJ_VERSION} cannot run its {kernel} kernel "
                           f"for {neuron_cls.__name__} on {device} ({error}); use backend='auto' (it falls back "
                           "by itself) or another of 'cuda', 'triton', 'torch'")


def check_backend_for_run(backend: str, device: str | None) -> None:
    """The ``--backend`` check of a run configuration: raise ValueError, naming the flag, unless ``backend``
    can run on ``device`` ('cpu', 'cuda', 'cuda:N'; None: CUDA where torch sees a GPU, else CPU) for the
    paper's neuron (IF, ATan). 'auto', 'torch' and 'fused' run anywhere ('fused' needs triton on a GPU); the
    others pin GPU kernels."""
    from spikingjelly.activation_based import neuron as sj_neuron

    from .surrogate import make_surrogate

    if backend not in BACKENDS:
        raise ValueError(f"unknown --backend {backend!r}; valid: {list(BACKENDS)}")
    if backend in ("auto", "torch"):
        return
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if backend == "fused":
        if device.startswith("cuda") and not _compat.triton_importable():
            raise ValueError(f"--backend fused: {TRITON_MISSING_MESSAGE.format(backend=backend)}")
        return
    if not device.startswith("cuda"):
        raise ValueError(f"--backend {backend} runs GPU kernels; on {device} use --backend auto or torch")
    try:
        check_choice(backend, sj_neuron.IFNode, make_surrogate(None))
    except (ValueError, RuntimeError, ImportError) as e:
        raise ValueError(f"--backend {backend}: {e}") from None


# --- what a neuron runs -------------------------------------------------------------------------------
def pinned_kernel(backend: str, neuron_cls: type) -> str | None:
    """The GPU kernel ``backend`` pins for ``neuron_cls`` on a line where SpikingJelly picks it per device
    (2.x: 'cuda', 'triton' or 'torch'); None where SpikingJelly's own choice applies ('auto') or the neuron's
    ``backend`` attribute selects it (0.0.0.0.14)."""
    if backend in ("cuda", "triton", "torch") and _compat.kernel_chosen_by_device() \
            and _compat.kernel_selection(neuron_cls) is not None:
        return backend
    return None


def backend_attribute(backend: str, neuron_cls: type, surrogate_function, device) -> str | None:
    """The ``backend`` attribute a neuron of ``neuron_cls`` gets on ``device`` (None: not known yet), or None
    where the class takes none (2.x). ``'auto'`` is CuPy on a GPU where CuPy can run this neuron and
    surrogate, else torch; a pinned name is itself."""
    if not _compat.neuron_takes_backend(neuron_cls):
        return None
    if backend == "fused":  # sj_sew's path; SpikingJelly's own code, where it runs, is its torch one
        return "torch"
    if backend != "auto":
        return backend
    on_gpu = device is not None and torch.device(device).type == "cuda"
    if (on_gpu and _compat.cupy_importable() and "cupy" in _compat.backends_for(neuron_cls)
            and surrogate_has_cupy_code(surrogate_function)):
        return "cupy"
    return "torch"


class CupyDtypeGuard:
    """Forward pre-hook and hook of one SpikingJelly 0.0.0.0.14 neuron whose backend may be 'cupy'.

    Those CuPy kernels take :data:`CUPY_DTYPES` inputs only (any other dtype, e.g. under bf16 autocast, raised
    a bare ``NotImplementedError``). For such a call a neuron on ``backend='auto'`` runs SpikingJelly's torch
    path and returns to CuPy afterwards; one pinned to ``backend='cupy'`` raises an error that says what to do."""

    def __init__(self, pinned: bool):
        self.pinned = pinned

    def pre(self, module, args):
        x = args[0] if args else None
        if getattr(module, "backend", None) != "cupy" or not isinstance(x, torch.Tensor) or x.dtype in CUPY_DTYPES:
            return
        if self.pinned:
            raise ValueError(f"backend='cupy': SpikingJelly {_compat.SJ_VERSION}'s CuPy kernels take float32 and "
                             f"float16 inputs, got {x.dtype} (bf16 autocast?); use backend='auto' (it runs such "
                             "calls on the torch path) or 'torch', or --amp fp16")
        module.backend = "torch"
        module._sj_sew_cupy_paused = True

    def post(self, module, args, output):  # also called when the forward raised (always_call)
        if getattr(module, "_sj_sew_cupy_paused", False):
            module.backend = "cupy"
            module._sj_sew_cupy_paused = False


def mark_spikes(module, args, kwargs, output) -> None:
    """Forward hook of an IF/LIF/PLIF neuron: called on its input alone (not on more arguments, e.g. a shortcut
    whose connect function could make sums) with a spiking surrogate (not its soft output), its output is 0/1
    spikes, so :func:`sj_sew.binary_marks.mark_binary` declares it (packed unchecked, no host sync on CUDA)."""
    if (len(args) == 1 and not kwargs and isinstance(output, torch.Tensor)
            and getattr(module.surrogate_function, "spiking", False)):
        mark_binary(output)


#: The max pooling layers :func:`mark_pooled_spikes` hooks (SpikingJelly's multi-step ones are subclasses).
MAX_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)


def mark_pooled_spikes(module, args, kwargs, output) -> None:
    """Forward hook of a max pooling layer: the maximum over a window of marked 0/1 values (a window always holds
    at least one of them; padding never wins) is 0/1, so an output of a marked input is marked too."""
    if (len(args) == 1 and not kwargs and isinstance(output, torch.Tensor) and torch.is_grad_enabled()
            and not torch.compiler.is_compiling() and is_marked_binary(args[0])):
        mark_binary(output)


def set_spike_marks(modules, neuron_cls: type, enabled: bool) -> None:
    """Give every neuron of ``neuron_cls`` among ``modules`` the :func:`mark_spikes` hook and every max pooling
    layer (:data:`MAX_POOLS`) the :func:`mark_pooled_spikes` hook (once each), or take them away; only IF, LIF
    and PLIF (and their subclasses) mark their spikes."""
    marks_spikes = ops.neuron_kind(neuron_cls) is not None
    for m in modules:
        if marks_spikes and isinstance(m, neuron_cls):
            _set_hook(m, mark_spikes, enabled)
        elif isinstance(m, MAX_POOLS):
            _set_hook(m, mark_pooled_spikes, enabled)


def _set_hook(module, hook, enabled: bool) -> None:
    present = [key for key, h in module._forward_hooks.items() if h is hook]
    if enabled and not present:
        module.register_forward_hook(hook, with_kwargs=True)
    elif not enabled:
        for key in present:
            del module._forward_hooks[key]
            module._forward_hooks_with_kwargs.pop(key, None)


def install_hooks(node, backend: str, neuron_cls: type) -> None:
    """Give a new neuron the hooks its backend needs: on 2.x, the scope of the kernel it pins (that neuron's
    forward and backward only, never process-wide); on 0.0.0.0.14 with CuPy, the :class:`CupyDtypeGuard`."""
    kernel = pinned_kernel(backend, neuron_cls)
    if kernel is not None:
        _compat.bind_kernel(node, kernel)
    if backend in ("auto", "cupy") and _compat.cupy_backend_exists(neuron_cls) and _compat.cupy_importable():
        guard = CupyDtypeGuard(pinned=backend == "cupy")
        node.register_forward_pre_hook(guard.pre)
        node.register_forward_hook(guard.post, always_call=True)


def sync_neurons(modules, backend: str, neuron_cls: type, surrogate_function, device) -> None:
    """Point every neuron of ``neuron_cls`` among ``modules`` at the backend for ``device``; first, on a GPU,
    check that a pinned 2.x kernel can run there (:func:`check_kernel`). On CUDA the neurons mark their spikes
    (:func:`set_spike_marks`: packed for backward without a host sync); elsewhere they do not (packing reads
    CPU values without a sync anyway)."""
    modules = list(modules)  # (walked twice: a generator such as net.modules() would be spent by the first walk)
    on_cuda = torch.device(device).type == "cuda"
    kernel = pinned_kernel(backend, neuron_cls)
    if kernel is not None and on_cuda:
        check_kernel(neuron_cls, kernel, torch.device(device))
    if backend == "fused" and on_cuda and not _compat.triton_importable():
        raise ImportError(TRITON_MISSING_MESSAGE.format(backend=backend))
    set_spike_marks(modules, neuron_cls, enabled=on_cuda)
    wanted = backend_attribute(backend, neuron_cls, surrogate_function, device)
    if wanted is None:
        return
    for m in modules:
        if isinstance(m, neuron_cls) and hasattr(m, "backend") and m.backend != wanted:
            m.backend = wanted
