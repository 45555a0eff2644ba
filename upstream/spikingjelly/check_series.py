#!/usr/bin/env python
"""Apply the SpikingJelly patch series to a source tree and check that each patch's test fails before it
and passes after it.

A tree is a directory holding ``spikingjelly/`` (the package) and, once the series is applied,
``test/activation_based/test_sew_resnet.py``: a SpikingJelly checkout, or a copy of an installed package
(:func:`copy_installed`). The patches apply with ``git apply``, which needs no repository.

    python check_series.py --tree /tmp/sj-master   # a fresh export of SpikingJelly's master; changes it
    python check_series.py                          # a temporary copy of the installed SpikingJelly

For each patch in order: apply only its test changes and run the series' test file (it must fail), then the
rest of the patch (it must pass). Exit status 0 when every patch behaves so.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: The series, in the order it applies.
PATCHES = sorted(HERE.glob("[0-9][0-9][0-9][0-9]-*.patch"))
#: The test file the series adds, relative to the tree.
SERIES_TESTS = "test/activation_based/test_sew_resnet.py"
TEST_PATHS = "test/*"


def copy_installed(dest: Path) -> Path:
    """Copy the importable ``spikingjelly`` package into ``dest/spikingjelly`` (bytecode included, so the
    copy imports as fast as the original); return ``dest``."""
    import spikingjelly

    shutil.copytree(Path(spikingjelly.__file__).parent, dest / "spikingjelly")
    return dest


def git_apply(tree: Path, patch: Path, *options: str) -> subprocess.CompletedProcess:
    """``git apply OPTIONS PATCH`` in ``tree``, never in a repository around it (which would make git apply
    the patch relative to that repository's root)."""
    env = dict(os.environ, GIT_CEILING_DIRECTORIES=str(Path(tree).resolve().parent))
    return subprocess.run(["git", "apply", *options, str(patch)], cwd=tree, env=env, capture_output=True,
                          text=True)


def run_series_tests(tree: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    """The series' test file under pytest, in a subprocess that imports ``spikingjelly`` from ``tree``."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tree), os.environ.get("PYTHONPATH", "")]).rstrip(
        os.pathsep), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--noconftest", "--rootdir", str(tree),
         SERIES_TESTS], cwd=tree, env=env, capture_output=True, text=True, timeout=timeout)


def summary(result: subprocess.CompletedProcess) -> str:
    """pytest's last line ("3 failed, 5 passed in 2.1s"), without the time, or the tail of its output."""
    lines = [ln for ln in result.stdout.splitlines() if ln.strip()]
    last = lines[-1].strip("= ") if lines else result.stderr.strip()[-300:]
    return re.sub(r" in [\d.]+s.*$", "", last)


def _must_apply(tree: Path, patch: Path, *options: str) -> None:
    result = git_apply(tree, patch, *options)
    if result.returncode != 0:
        raise RuntimeError(f"git apply {' '.join(options)} {patch.name} fails in {tree}:\n{result.stderr}")


def check_before_after(tree: Path) -> list[tuple[str, str, str, bool]]:
    """Apply the series to ``tree`` patch by patch; for each, the pytest summary with only its test changes
    (must fail) and with the whole patch (must pass). Returns ``(patch, before, after, as_expected)`` rows."""
    rows = []
    for patch in PATCHES:
        _must_apply(tree, patch, "--check")
        _must_apply(tree, patch, f"--include={TEST_PATHS}")
        before = run_series_tests(tree)
        _must_apply(tree, patch, "-R", f"--include={TEST_PATHS}")
        _must_apply(tree, patch)
        after = run_series_tests(tree)
        rows.append((patch.name, summary(before), summary(after), before.returncode == 1 and after.returncode == 0))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tree", type=Path, help="source tree to patch in place (default: a temporary copy of "
                        "the installed spikingjelly)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tree = args.tree or copy_installed(Path(tmp))
        rows = check_before_after(tree)
        print("Each patch passed `git apply --check` on the tree with the patches before it applied.\n")
        print("patch | tests before the patch | tests after it | as expected")
        print("--- | --- | --- | ---")
        for row in rows:
            print(" | ".join(map(str, row)))
    return 0 if all(row[3] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
