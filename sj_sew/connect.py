"""Element-wise connect functions g(A, S) of the SEW block (paper, Table 1), in a registry.

``A`` is the residual branch's spikes, ``S`` the block input (the shortcut). Identity at init:
ADD and IAND need A == 0, AND needs A == 1 (see :func:`identity_spike`). AND and IAND of two 0/1 tensors are
0/1 (ADD's are sums): called through their :class:`Connect`, they mark such an output for compact storage
(:func:`sj_sew.binary_marks.mark_binary`) when both inputs carry that mark.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .binary_marks import is_marked_binary, mark_binary


@dataclass(frozen=True)
class Connect:
    """A registered g: the function, the residual spike value that makes the block an identity, and whether g
    of two 0/1 tensors is 0/1 (``keeps_binary``). Calling it is g(A, S) with that mark (:meth:`mark_output`)."""

    name: str
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    identity_spike: float
    keeps_binary: bool = False

    def __call__(self, a: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return self.mark_output(self.fn(a, s), a, s)

    def mark_output(self, out: torch.Tensor, *inputs: torch.Tensor) -> torch.Tensor:
        """``out``, marked 0/1 for compact storage (:func:`sj_sew.binary_marks.mark_binary`: packed without a value
        check, no host sync on CUDA) where g keeps 0/1 and each of ``inputs`` (g's inputs that are not 0/1 by
        construction) carries that mark; as mark_binary, only while autograd records."""
        if not self.keeps_binary or torch.compiler.is_compiling() or not torch.is_grad_enabled():
            return out
        if all(is_marked_binary(t) for t in inputs):
            mark_binary(out)
        return out


_CONNECTS: dict[str, Connect] = {}


def register_connect(name: str, fn: Callable, identity_spike: float, keeps_binary: bool = False) -> None:
    """Register g under ``name`` (case-insensitive). ``identity_spike`` is the A with g(A, S) == S;
    ``keeps_binary``: g(A, S) is 0 or 1 wherever A and S are (a promise, used to store such outputs as bits).
    Give a module-level function (not a lambda) if models using it are to be pickled."""
    if not isinstance(name, str) or not name.strip():
        raise TypeError(f"connect name must be a non-empty string, got {name!r}")
    key = name.upper()
    if key in _CONNECTS:
        raise ValueError(f"connect function {key!r} is already registered")
    if isinstance(identity_spike, bool) or identity_spike not in (0.0, 1.0):
        raise ValueError(f"identity_spike must be 0 or 1 (a neuron can only be held silent or firing), got "
                         f"{identity_spike!r}")
    _check_connect_fn(key, fn, bool(keeps_binary))
    _CONNECTS[key] = Connect(key, fn, float(identity_spike), bool(keeps_binary))


def _check_connect_fn(key: str, fn, keeps_binary: bool) -> None:
    """g must be callable and map two spike tensors to one of their shape (of 0/1 values with ``keeps_binary``);
    tried on a 2x3 pair."""
    if not callable(fn):
        raise TypeError(f"connect function {key!r}: fn must be callable as fn(A, S) -> tensor, got {fn!r}")
    a, s = torch.tensor([[0.0, 1.0, 0.0], [1.0, 1.0, 0.0]]), torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 1.0]])
    try:
        out = fn(a, s)
    except Exception as e:
        raise TypeError(f"connect function {key!r}: fn(A, S) failed on two spike tensors of shape (2, 3): "
                        f"{type(e).__name__}: {e}") from None
    if not isinstance(out, torch.Tensor) or out.shape != a.shape:
        got = f"a tensor of shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
        raise TypeError(f"connect function {key!r}: fn(A, S) must return a tensor of A's shape (2, 3), got {got}")
    if keeps_binary and not bool(((out == 0) | (out == 1)).all()):
        raise ValueError(f"connect function {key!r}: keeps_binary=True, but fn(A, S) of two 0/1 tensors gave "
                         f"{out.tolist()}")


def list_connects() -> list[str]:
    """The registered names."""
    return sorted(_CONNECTS)


def get_connect(name: str | Connect) -> Connect:
    """The registered g called ``name`` (case-insensitive)."""
    if isinstance(name, Connect):
        return name
    if not isinstance(name, str):
        raise TypeError(f"connect must be a name, got {type(name).__name__}; valid: {list_connects()}")
    try:
        return _CONNECTS[name.upper()]
    except KeyError:
        raise ValueError(f"unknown connect function {name!r}; valid: {list_connects()}") from None


#: Other names of the ``connect`` argument: SpikingJelly's zoo (``cnf``, ``connection``), the SEW authors' code
#: (``connect_f``).
CONNECT_ALIASES = ("cnf", "connection", "connect_f")


def pop_connect_alias(kwargs: dict, connect=None, default: str = "ADD"):
    """The connect function named by ``connect`` or by one alias in ``kwargs`` (removed from it); ``default``
    when neither is given. Two different names are an error."""
    given = {"connect": connect} if connect is not None else {}
    given.update({k: kwargs.pop(k) for k in CONNECT_ALIASES if k in kwargs})
    given = {k: v for k, v in given.items() if v is not None}
    names = {(v.upper() if isinstance(v, str) else v) for v in given.values()}
    if len(names) > 1:
        raise ValueError(f"conflicting connect functions {given}; {', '.join(CONNECT_ALIASES)} are other "
                         "names of connect=, give one")
    return next(iter(given.values())) if given else default


def add(a: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """ADD: A + S."""
    return a + s


def and_(a: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """AND: A * S."""
    return a * s


def iand(a: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """IAND: (1 - A) * S."""
    return (1.0 - a) * s


register_connect("ADD", add, identity_spike=0.0)
register_connect("AND", and_, identity_spike=1.0, keeps_binary=True)
register_connect("IAND", iand, identity_spike=0.0, keeps_binary=True)
