"""The model registry: ``register_model``, ``create_model``, ``list_models``."""
from __future__ import annotations

import fnmatch
from typing import Callable

import torch.nn as nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module] | None = None, *, name: str | None = None):
    """Register a factory under its function name (or ``name``). Registering a name twice is an error."""

    def wrap(f):
        key = name or f.__name__
        if key in _MODELS:
            raise ValueError(f"model {key!r} is already registered")
        _MODELS[key] = f
        return f

    return wrap(fn) if fn is not None else wrap


def list_models(pattern: str | None = None) -> list[str]:
    """Registered names, sorted; ``pattern`` is a shell-style filter such as ``'sew_*'``."""
    names = sorted(_MODELS)
    return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model. Keyword arguments set to None are dropped, so a script's unset
    flags never override a model's own defaults."""
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; registered: {list_models()}")
    return _MODELS[name](**{k: v for k, v in kwargs.items() if v is not None})
