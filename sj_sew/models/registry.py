"""The model registry: ``register_model``, ``register_variant``, ``create_model``, ``list_models``.

A *variant* is a network class with some arguments fixed (the layout that gives it its name, e.g.
``sew_resnet18`` = SpikingResNet with family 'sew' and ResNet-18's stages) and some defaulted; it is a
plain picklable object, not a closure.
"""
from __future__ import annotations

import difflib
import fnmatch
import inspect
import re
from typing import Any, Callable

import torch.nn as nn

from ..neurons import NEURONS, UnknownNeuronArgument, close_matches
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


def _model_arguments(builder: Callable, exclude=()) -> tuple[list[str], bool]:
    """(the named arguments ``builder`` takes, other than ``exclude``; whether it also takes ``**kwargs``)."""
    try:
        params = inspect.signature(builder).parameters
    except (TypeError, ValueError):
        return [], True
    named = sorted(k for k, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                   and k not in exclude and k != "self")
    return named, any(p.kind is p.VAR_KEYWORD for p in params.values())


def _neurons_taking(argument: str) -> list[str]:
    """The ``neuron=`` names whose neuron class takes ``argument`` (``tau`` is ``init_tau`` for PLIF)."""
    names = []
    for short, cls in sorted(NEURONS.items()):
        params = inspect.signature(cls.__init__).parameters
        if argument in params or (argument == "tau" and "init_tau" in params):
            names.append(short)
    return names


def _unknown_arguments(name: str, unknown: list[str], model_args: list[str], neuron=None) -> TypeError:
    """The error for arguments ``name`` does not take: each named with its close match among the model's
    arguments. The neuron's parameters (``neuron``: an UnknownNeuronArgument) come in only for names that
    match no model argument: a close match among them, the neurons that take the name, their list."""
    one = len(unknown) == 1
    message = f"{name} got {'an unknown argument' if one else 'unknown arguments'} {', '.join(map(repr, unknown))}"
    for_model = [u for u in unknown if difflib.get_close_matches(u, model_args, n=1)]
    rest = [u for u in unknown if u not in for_model]
    message += close_matches(for_model, model_args, "{match}" if one else "{match} (for {name})")
    if neuron is not None and rest:
        neuron_name = neuron.cls.__name__
        message += close_matches(rest, neuron.valid, f"{{match}} (a parameter of its neuron {neuron_name}"
                                 + (")" if one else ", for {name})"))
        for u in rest:
            takers = [n for n in _neurons_taking(u) if NEURONS[n] is not neuron.cls]
            if takers and u not in neuron.valid:
                message += f"; {u} is a parameter of neuron={' or '.join(map(repr, takers))}, not of {neuron_name}"
    message += f"{' ' if message.endswith('?') else '. '}Its arguments: {model_args}"
    if neuron is not None and rest:
        message += f", and the parameters of its neuron {neuron.cls.__name__}: {neuron.valid}"
    return TypeError(message)


def _build(name: str, builder: Callable, kwargs: dict, fixed=frozenset()) -> nn.Module:
    """``builder(**kwargs)``; arguments it does not take are one TypeError naming each with its close match."""
    model_args, open_ended = _model_arguments(builder, exclude=fixed)
    unknown = sorted(k for k in kwargs if k not in model_args and k not in fixed)
    if unknown and not open_ended:
        raise _unknown_arguments(name, unknown, model_args)
    try:
        return builder(**kwargs)
    except UnknownNeuronArgument as e:
        if not set(e.unknown) <= set(kwargs):  # raised for something else than the caller's arguments
            raise
        raise _unknown_arguments(name, e.unknown, model_args, e) from None


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


def create_model(name: str, weights=None, trusted: bool = False, **kwargs) -> nn.Module:
    """Build a registered model. Keyword arguments set to None are dropped, so a script's unset
    flags never override a model's own defaults. ``weights`` (a path, a name in :func:`list_weights`, a
    :class:`~sj_sew.models.weights.Weights` or a state dict) is then loaded strictly, its keys mapped from the
    source that wrote it, its checksum checked when known and the arguments it records (connect, model) checked
    against this net (:mod:`sj_sew.models.weights`); a registered entry also supplies the arguments its net was
    trained with. ``trusted=True`` allows a file that pickles its training arguments (the SEW authors',
    SpikingJelly's ``train_classify``), which ``weights_only=True`` refuses."""
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; registered: {list_models()}{close_matches([name], list_models())}")
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if trusted and weights is None:
        raise TypeError("trusted=True applies to weights=, and no weights were given")
    if weights is not None:
        kwargs = {**weights_model_kwargs(weights, name), **kwargs}
    factory = _MODELS[name]
    model = factory(**kwargs) if isinstance(factory, Variant) else _build(name, factory, kwargs)
    return model if weights is None else load_weights(model, name, weights, trusted=trusted)
