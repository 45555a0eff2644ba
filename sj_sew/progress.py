"""Progress bars for every loop of sj_sew and its scripts: shown on a terminal, never in a pipe or a log file,
unless asked for explicitly. It depends on nothing else in sj_sew, so every layer may use it."""
from __future__ import annotations

import argparse
import sys

from tqdm.auto import tqdm


def show_progress(enabled: bool | None = None) -> bool:
    """Whether to draw progress bars: ``enabled`` as given, else (None) only when stderr, where tqdm draws, is a
    terminal."""
    return sys.stderr.isatty() if enabled is None else bool(enabled)


def progress_bar(iterable=None, enabled: bool | None = None, **tqdm_kwargs):
    """``tqdm(iterable, **tqdm_kwargs)``, drawn only where :func:`show_progress` says (``enabled=None``: tqdm's
    own ``disable=None``, a terminal test of the stream it draws on, stderr by default); otherwise the same
    object draws nothing (iteration, ``update`` and ``with`` still work)."""
    return tqdm(iterable, disable=None if enabled is None else not enabled, **tqdm_kwargs)  # None: tqdm's tty test


def add_progress_flag(parser) -> None:
    """``--progress/--no-progress`` on a script's argparse parser (default None: bars only on a terminal)."""
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bars (default: only when stderr is a terminal)")
