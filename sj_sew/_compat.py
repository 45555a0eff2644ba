"""Every difference between the SpikingJelly release lines sj_sew supports, in one place.

Supported lines: 0.0.0.0.14 (multi-step neurons take ``backend='torch'|'cupy'``) and 2.x (no CuPy; the
kernel is chosen per device by SpikingJelly, overridable with ``SJ_<NEURON>_CUDA_IMPLEMENTATION``).
The rest of the package asks this module instead of testing versions itself; which kernel a neuron runs is
decided from these facts in :mod:`sj_sew.neurons.backend`.
"""
from __future__ import annotations

import importlib.util
import inspect
import threading
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


class _NumpyWith:
    """NumPy as a SpikingJelly 0.0.0.0.14 module written for NumPy 1 expects it: NumPy itself, except for the
    attributes given here (NumPy is left untouched for everyone else)."""

    def __init__(self, **replaced):
        self.__dict__.update(replaced)

    def __getattr__(self, name):
        import numpy

        return getattr(numpy, name)


def _binary_fromstring(data, dtype=float, **_):
    """``np.fromstring`` in binary mode, as NumPy < 2.3 read bytes: ``frombuffer``."""
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
    return mock.patch.object(sj_dataset_module, "np", _NumpyWith(fromstring=_binary_fromstring))


def numpy2_cupy_kernel_fix() -> bool:
    """Let SpikingJelly 0.0.0.0.14's CuPy kernels run under NumPy 2.

    Their launcher (``activation_based.auto_cuda.base``) checks argument types against ``np.int``, an alias NumPy
    2 removed, so every CuPy neuron raised AttributeError. That module alone gets a numpy in which ``int`` is the
    builtin again (what the alias was). Returns True when the fix was applied; a no-op on 2.x, under NumPy 1, or
    where the module does not exist."""
    import numpy

    if SJ2 or hasattr(numpy, "int"):
        return False
    try:
        launcher = importlib.import_module("spikingjelly.activation_based.auto_cuda.base")
    except Exception:  # no such module on this line, or it cannot import here
        return False
    if getattr(launcher, "np", None) is numpy:
        launcher.np = _NumpyWith(int=int)
    return isinstance(launcher.np, _NumpyWith)


numpy2_cupy_kernel_fix()


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


# --- GPU kernel choice (issue 12) ---------------------------------------------------------------------
#: The kernels this line lets a neuron pin, by sj_sew's ``backend=`` names (which ones a neuron may use is
#: :mod:`sj_sew.neurons.backend`'s decision).
KERNEL_BACKENDS = ("cuda", "triton", "torch") if SJ2 else ("torch", "cupy")

_KERNEL_PACKAGES = (("ParametricLIFNode", "plif"), ("LIFNode", "lif"), ("IFNode", "if_"))


def kernel_selection(neuron_cls):
    """SpikingJelly 2.x's kernel selection object (``spikingjelly._ops.<neuron>._selection``) that serves
    ``neuron_cls`` (IF, LIF, PLIF and their subclasses), or None (0.0.0.0.14, or a neuron without one)."""
    if not SJ2:
        return None
    from spikingjelly.activation_based import neuron as sj_neuron

    for name, package in _KERNEL_PACKAGES:  # PLIF before LIF: a subclass first
        base_cls = getattr(sj_neuron, name, None)
        if base_cls is not None and isinstance(neuron_cls, type) and issubclass(neuron_cls, base_cls):
            try:
                return importlib.import_module(f"spikingjelly._ops.{package}")._selection
            except (ImportError, AttributeError):
                return None
    return None


@lru_cache(maxsize=None)
def triton_importable() -> bool:
    return importlib.util.find_spec("triton") is not None


def surrogate_has_kernel(surrogate_function) -> bool:
    """Whether SpikingJelly 2.x's CUDA/Triton kernels cover this surrogate (else it runs the torch reference)."""
    try:  # SpikingJelly 2.x's own table of the surrogates its kernels take (a private function)
        spec = importlib.import_module("spikingjelly._ops.surrogate")._surrogate_spec
    except (ImportError, AttributeError):
        return False
    try:
        return spec(surrogate_function) is not None
    except Exception:
        return False


_override = threading.local()  # per thread: {id(selection): [choice, ...]} (a stack per selection)


def _overrides() -> dict:
    if not hasattr(_override, "stacks"):
        _override.stacks = {}
    return _override.stacks


def _install_override(selection) -> None:
    """Make ``selection`` honour a per-thread kernel choice (pushed by :func:`kernel_scope`) before the
    process-wide ``SJ_<NEURON>_CUDA_IMPLEMENTATION``; each choice keeps its own per-device cache."""
    if getattr(selection, "_sj_sew_per_choice", None) is not None:
        return
    shared = selection._get_cuda_selection
    caches: dict = {}
    lock = threading.Lock()

    def get_cuda_selection(device):
        stack = _overrides().get(id(selection))
        if not stack:
            return shared(device)
        choice = stack[-1]
        index = device.index if device.index is not None else _torch_cuda_index()
        key = (choice, index)
        if key not in caches:
            with lock:
                if key not in caches:
                    requested = selection._requested
                    selection._requested = choice
                    try:
                        caches[key] = selection._select(index)
                    finally:
                        selection._requested = requested
        return caches[key]

    selection._get_cuda_selection = get_cuda_selection
    selection._sj_sew_per_choice = caches


def _torch_cuda_index() -> int:
    import torch

    return torch.cuda.current_device()


def kernel_push(neuron_cls, choice: str) -> None:
    selection = kernel_selection(neuron_cls)
    if selection is not None:
        _install_override(selection)
        _overrides().setdefault(id(selection), []).append(choice)


def kernel_pop(neuron_cls) -> None:
    selection = kernel_selection(neuron_cls)
    stack = _overrides().get(id(selection)) if selection is not None else None
    if stack:
        stack.pop()


def kernel_in_use(neuron_cls, device) -> str:
    """The kernel ('cuda', 'triton' or 'torch') SpikingJelly 2.x runs for ``neuron_cls`` on CUDA ``device`` under
    the current thread's choice; raises RuntimeError when none is available."""
    selection = kernel_selection(neuron_cls)
    if selection is None:
        return "torch"
    _install_override(selection)
    return selection._get_cuda_selection(device).name


class KernelScope:
    """Forward pre-hook and hook of one neuron: its forward (and the backward of the SpikingJelly operator it
    ran) use kernel ``choice`` on CUDA, whatever other neurons and ``SJ_*_CUDA_IMPLEMENTATION`` say."""

    def __init__(self, choice: str):
        self.choice = choice

    def pre(self, module, args):
        if args and getattr(args[0], "is_cuda", False):
            kernel_push(type(module), self.choice)

    def post(self, module, args, output):  # also called when the forward raised (always_call)
        if not (args and getattr(args[0], "is_cuda", False)):
            return None
        kernel_pop(type(module))
        node = _operator_node(output)
        if node is not None:  # the backward runs later, maybe in another thread: scope it too
            cls, choice = type(module), self.choice
            node.register_prehook(lambda grad_outputs: kernel_push(cls, choice))
            node.register_hook(lambda grad_inputs, grad_outputs: kernel_pop(cls))
        return None


def _operator_node(output, depth: int = 4):
    """The autograd node of the SpikingJelly neuron operator behind ``output`` (a few nodes deep at most)."""
    node = getattr(output, "grad_fn", None)
    for _ in range(depth):
        if node is None:
            return None
        if "GeneratedBackwardFor_sj_" in node.name():
            return node
        nexts = [n for n, _ in node.next_functions if n is not None]
        node = nexts[0] if nexts else None
    return None


def bind_kernel(module, choice: str) -> None:
    """Scope kernel ``choice`` (2.x: 'cuda', 'triton' or 'torch') around ``module``'s forward and backward."""
    scope = KernelScope(choice)
    module.register_forward_pre_hook(scope.pre)
    module.register_forward_hook(scope.post, always_call=True)


def kernel_unavailable(neuron_cls, choice: str, device) -> str | None:
    """SpikingJelly 2.x's own error (as text) when it cannot run kernel ``choice`` for ``neuron_cls`` on CUDA
    ``device`` (e.g. 'cuda' in a build without its native kernels), else None; the choice is not kept."""
    kernel_push(neuron_cls, choice)
    try:
        kernel_in_use(neuron_cls, device)
    except (RuntimeError, ValueError) as error:
        return str(error)
    finally:
        kernel_pop(neuron_cls)
    return None
