"""Forward hooks that exist only inside a ``with`` block: the base of every analysis tool here."""
from __future__ import annotations

from typing import Callable

import torch.nn as nn


class ForwardHooks:
    """A set of forward hooks (and forward pre-hooks) registered on ``__enter__`` and removed on
    ``__exit__``, also when the body raises. Use it directly::

        with ForwardHooks().add(model.fc, lambda m, args, out: print(out.shape)):
            model(x)

    or subclass it and :meth:`add` the hooks in ``__init__``; ``with tool as t`` gives the tool itself.
    A set is not re-entrant: entering it while it is active raises ``RuntimeError``.
    """

    def __init__(self):
        self._hooks: list[tuple[nn.Module, Callable, bool]] = []
        self._handles: list = []

    def add(self, module: nn.Module, hook: Callable, pre: bool = False) -> "ForwardHooks":
        """Hook ``module``: ``hook(module, args, output)``, or ``hook(module, args)`` before the forward
        with ``pre=True``. Takes effect on the next ``__enter__``."""
        self._hooks.append((module, hook, pre))
        return self

    @property
    def active(self) -> bool:
        """Whether the hooks are registered now."""
        return bool(self._handles)

    def __enter__(self):
        if self.active:
            raise RuntimeError(f"{type(self).__name__} is already active")
        try:
            for module, hook, pre in self._hooks:
                register = module.register_forward_pre_hook if pre else module.register_forward_hook
                self._handles.append(register(hook))
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._remove()

    def _remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
