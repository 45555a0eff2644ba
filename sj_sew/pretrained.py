"""Published checkpoints into sj_sew's networks: :func:`load_pretrained` and :func:`convert_checkpoint`.

The key mapping of each source, the strict checks and the weights table live in :mod:`sj_sew.models.weights`.
"""
from __future__ import annotations

import torch.nn as nn

from .models import create_model
from .models.weights import (SOURCES, CheckpointMismatch, Weights, get_weights, list_weights, load_weights,
                             register_weights, weights_model_kwargs)

__all__ = ["load_pretrained", "convert_checkpoint", "CheckpointMismatch", "Weights", "SOURCES", "list_weights",
           "get_weights", "register_weights"]


def load_pretrained(path, arch: str, source: str = "auto", trusted: bool = False, **model_kwargs) -> nn.Module:
    """``arch`` with the checkpoint ``path`` (a file, a registered weights name or a state dict) loaded strictly.

    ``source`` names who wrote it (``'auto'`` finds out; see :data:`SOURCES`); a key that does not map or a
    shape that differs raises :class:`CheckpointMismatch` naming each. ``model_kwargs`` build the net (a
    registered name supplies its own); ``trusted=True`` allows training checkpoints that pickle their arguments,
    which ``weights_only=True`` refuses. The arguments a file records (connect, model) must agree with the net."""
    model = create_model(arch, **{**weights_model_kwargs(path, arch), **model_kwargs})
    return load_weights(model, arch, path, None if source == "auto" else source, trusted)


def convert_checkpoint(path, arch: str, source: str = "auto", trusted: bool = False, **model_kwargs) -> dict:
    """The checkpoint's state dict under sj_sew's names for ``arch`` (checked as :func:`load_pretrained` does)."""
    return load_pretrained(path, arch, source, trusted, **model_kwargs).state_dict()
