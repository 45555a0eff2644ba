"""Element-wise connect functions g(A, S) of the SEW block (paper, Table 1), in a registry.

``A`` is the residual branch's spikes, ``S`` the block input (the shortcut). Identity at init:
ADD and IAND need A == 0, AND needs A == 1 (see :func:`identity_spike`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


@dataclass(frozen=True)
class Connect:
    """A registered g: the function and the residual spike value that makes the block an identity."""

    name: str
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    identity_spike: float


_CONNECTS: dict[str, Connect] = {}


def register_connect(name: str, fn: Callable, identity_spike: float) -> None:
    """Register g under ``name`` (case-insensitive). ``identity_spike`` is the A with g(A, S) == S.
    Give a module-level function (not a lambda) if models using it are to be pickled."""
    key = name.upper()
    if key in _CONNECTS:
        raise ValueError(f"connect function {key!r} is already registered")
    if identity_spike not in (0.0, 1.0):
        raise ValueError("identity_spike must be 0 or 1: a neuron can only be held silent or firing")
    _CONNECTS[key] = Connect(key, fn, float(identity_spike))


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
register_connect("AND", and_, identity_spike=1.0)
register_connect("IAND", iand, identity_spike=0.0)
