"""The model registry: ``register_model``, ``register_variant``, ``create_model``, ``list_models``.

A *variant* is a network class with some arguments fixed (the layout that gives it its name, e.g.
``sew_resnet18`` = SpikingResNet with family 'sew' and ResNet-18's stages) and some defaulted; it is a
plain picklable object, not a closure.
"""
from __future__ import annotations

import fnmatch
import re
from typing import Any, Callable

import torch.nn as nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}


class Variant:
    """``builder(**fixed, **{**defaults, **kwargs})``; overriding a fixed argument is an error."""

    def __init__(self, name: str, builder: Callable[..., nn.Module], doc: str,
                 fixed: dict[str, Any] | None = None, defaults: dict[str, Any] | None = None):
        self.__name__ = name
        self.__doc__ = doc
        self.builder = builder
        self.fixed = dict(fixed or {})
        self.defaults = dict(defaults or {})

    def __call__(self, **kwargs) -> nn.Module:
        clash = sorted(k for k in kwargs if k in self.fixed)
        if clash:
            fixed = ", ".join(f"{k}={self.fixed[k]!r}" for k in clash)
            raise TypeError(f"{self.__name__} fixes {fixed}; choose another registered model "
                            f"(sj_sew.list_models()) or build {self.builder.__name__} directly")
        return self.builder(**self.fixed, **{**self.defaults, **kwargs})

    def __repr__(self) -> str:
        return f"Variant({self.__name__!r})"


def register_model(fn: Callable[..., nn.Module] | None = None, *, name: str | None = None):
    """Register a factory under its function name (or ``name``). Registering a name twice is an error."""

    def wrap(f):
        key = name or f.__name__
        if key in _MODELS:
            raise ValueError(f"model {key!r} is already registered")
        _MODELS[key] = f
        return f

    return wrap(fn) if fn is not None else wrap


def register_variant(name: str, builder: Callable[..., nn.Module], doc: str, fixed: dict | None = None,
                     defaults: dict | None = None) -> Variant:
    """Register ``builder`` with ``fixed`` (not overridable) and ``defaults`` (overridable) arguments."""
    return register_model(Variant(name, builder, doc, fixed, defaults), name=name)


def _natural_key(name: str):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def list_models(pattern: str | None = None) -> list[str]:
    """Registered names in natural order (``resnet18`` before ``resnet101``); ``pattern`` is a shell-style
    filter such as ``'sew_*'``."""
    names = sorted(_MODELS, key=_natural_key)
    return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model. Keyword arguments set to None are dropped, so a script's unset
    flags never override a model's own defaults."""
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; registered: {list_models()}")
    return _MODELS[name](**{k: v for k, v in kwargs.items() if v is not None})
