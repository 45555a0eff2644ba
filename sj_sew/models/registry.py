"""The model registry: ``register_model``, ``register_variant``, ``create_model``, ``list_models``.

A *variant* is a network class with some arguments fixed (the layout that gives it its name, e.g.
``sew_resnet18`` = SpikingResNet with family 'sew' and ResNet-18's stages) and some defaulted; it is a
plain picklable object, not a closure.
"""
from __future__ import annotations

import fnmatch
import inspect
import re
from typing import Any, Callable

import torch.nn as nn

from ..neurons import UnknownNeuronArgument, close_matches
from .weights import load_weights, weights_model_kwargs

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
        return _build(self.__name__, self.builder, {**self.fixed, **{**self.defaults, **kwargs}}, set(self.fixed))

    def __repr__(self) -> str:
        return f"Variant({self.__name__!r})"


def _model_arguments(builder: Callable, exclude=()) -> list[str]:
    try:
        params = inspect.signature(builder).parameters
    except (TypeError, ValueError):
        return []
    return sorted(k for k, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                  and k not in exclude and k != "self")


def _build(name: str, builder: Callable, kwargs: dict, fixed=frozenset()) -> nn.Module:
    """``builder(**kwargs)``; an argument that is neither the model's nor its neuron's is one TypeError that
    says so, with close matches among both."""
    try:
        return builder(**kwargs)
    except UnknownNeuronArgument as e:
        if not set(e.unknown) <= set(kwargs):  # raised for something else than the caller's arguments
            raise
        model_args = _model_arguments(builder, exclude=fixed)
        raise TypeError(f"{name} got {e.unknown}: neither an argument of the model nor a parameter of its neuron "
                        f"{e.cls.__name__}{close_matches(e.unknown, model_args + e.valid)}; model arguments: "
                        f"{model_args}; {e.cls.__name__} parameters: {e.valid}") from None


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


def create_model(name: str, weights=None, **kwargs) -> nn.Module:
    """Build a registered model. Keyword arguments set to None are dropped, so a script's unset
    flags never override a model's own defaults. ``weights`` (a path, a name in :func:`list_weights`, a
    :class:`~sj_sew.models.weights.Weights` or a state dict) is then loaded strictly, its keys mapped from the
    source that wrote it and its checksum checked when known (:mod:`sj_sew.models.weights`); a registered
    entry also supplies the arguments its net was trained with."""
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; registered: {list_models()}{close_matches([name], list_models())}")
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if weights is not None:
        kwargs = {**weights_model_kwargs(weights, name), **kwargs}
    factory = _MODELS[name]
    model = factory(**kwargs) if isinstance(factory, Variant) else _build(name, factory, kwargs)
    return model if weights is None else load_weights(model, name, weights)
