"""README.md runs as written: every fenced Python and shell block is parsed from README.md at test time and run,
or skipped with a reason that says why (it needs data, a GPU, or it is set-up that CI itself runs).

How a block runs:
- Everything runs in a fresh temporary directory in which ``.venv`` (this interpreter's environment) and
  ``scripts`` are links to the real ones, so each shell line runs through bash exactly as printed, and whatever it
  writes (``runs/...``, ``net.onnx``) lands in the temporary directory.
- A run first: the fixture ``workdir`` runs the Training block's main-job line ``.venv/bin/python
  scripts/train.py`` with ``SHORT`` appended (1 epoch on 8 samples per class) and ``--out runs/run``.
- **The only change made to a block is that ``<run>`` becomes ``run``** (so ``runs/<run>`` is that run), except
  where ``SHELL`` below says otherwise, by this rule: a line that trains a new net gets ``SHORT`` appended
  (``run+short``); the ``--weights`` line's ``<run>`` is the run the same line without ``--weights`` made
  (fine-tuning needs a run of the same net); ``copied/<run>`` is a copy of the run and ``DIR`` an empty folder (the
  embedded set needs no data root). ``--config run.toml`` runs as printed: the test writes ``run.toml`` (a file of
  the user's) with 1 epoch, 8 per class. ``--resume`` continues the finished fixture run as printed. Lines that
  need a raw data set (the presets with ``--data-root``, torchrun on ImageNet) or GPUs are skipped, saying so.
- Python blocks of one section run in order in one fresh subprocess (a later block uses an earlier one's names).
- Shell blocks: each line must be in ``SHELL`` (keyed by the line without its comment) mapped to how it runs or
  why it is skipped; a line the table does not know fails the test, as does a fenced block in a language other
  than python or bash (unlabelled blocks are layout, e.g. the architecture tree, and are not run).
"""
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from sj_sew.data.idx import FASHION_MNIST_DIR

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SHORT = "--epochs 1 --data-option per_class=8"
RUN_TOML = "epochs = 1\n[data_options]\nper_class = 8\n"

RUN, SHORTENED, COPIED = "run", "run+short", "copied run"
FINE_TUNE = "run+short, --weights runs/<run> = the run of the same line without --weights"
SETUP = "skip: set-up; CI runs it (scripts/setup_env.sh builds the environment this test runs in)"
NEEDS_DATA = "skip: needs the raw data set (--data-root) and hours of training"
# Every shell line of README.md, without its comment: how it runs here (see the module docstring) or why not.
SHELL = {
    "bash scripts/setup_env.sh && .venv/bin/python scripts/train.py":
        SETUP + "; its train.py is the Training block's first line, run by the fixture with SHORT",
    "bash scripts/setup_env.sh && bash scripts/run_tests.sh": SETUP + ", and this test is part of run_tests.sh",
    ".venv/bin/python scripts/train.py": "fixture",
    ".venv/bin/python scripts/train.py --preset dvs128_gesture --data-root DIR --connect IAND": NEEDS_DATA,
    ".venv/bin/python scripts/train.py --dataset fashion_events --model sew_resnet18": SHORTENED,
    ".venv/bin/python scripts/train.py --config run.toml --lr 0.01": RUN,
    ".venv/bin/python scripts/train.py --dataset fashion_events --model sew_resnet18 --weights runs/<run>": FINE_TUNE,
    ".venv/bin/python scripts/train.py --resume --out runs/<run>": RUN,
    ".venv/bin/python scripts/train.py --list-models 'sew_*'": RUN,
    ".venv/bin/torchrun --nproc_per_node 2 scripts/train.py --preset imagenet --data-root /data/imagenet":
        NEEDS_DATA + " (ImageNet) and GPUs",
    ".venv/bin/python scripts/evaluate.py runs/<run>": RUN,
    ".venv/bin/python scripts/evaluate.py runs/<run>/checkpoint.pt --split val --firing-rates": RUN,
    ".venv/bin/python scripts/evaluate.py copied/<run> --data-root DIR": COPIED,
    ".venv/bin/python scripts/export.py runs/<run> --format onnx": RUN,
}
NEEDS_FASHION = ("--dataset fashion_events",)


def readme_blocks():
    """(section, language, text, line number) of every fenced block of README.md, in order."""
    blocks, section, lang, start, lines = [], "", None, 0, []
    for number, line in enumerate(README.read_text().splitlines(), 1):
        if lang is None and line.startswith("## "):
            section = line[3:].strip()
        elif line.startswith("```"):
            if lang is None:
                lang, start, lines = line[3:].strip(), number, []
            else:
                blocks.append((section, lang, "\n".join(lines) + "\n", start))
                lang = None
        elif lang is not None:
            lines.append(line)
    assert lang is None, f"README.md: the block opened at line {start} is never closed"
    return blocks


def shell_lines():
    """(command without its comment, line number) of every shell line of README.md."""
    out = []
    for section, lang, text, start in readme_blocks():
        if lang == "bash":
            for i, line in enumerate(text.splitlines(), start + 1):
                command = re.sub(r"\s+#\s.*$", "", line).strip()
                if command:
                    out.append((command, i))
    return out


def python_sections():
    """{section: its python blocks joined in order} of README.md."""
    out = {}
    for section, lang, text, start in readme_blocks():
        if lang == "python":
            out[section] = out.get(section, "") + text
    return out


def test_every_block_is_python_bash_or_layout_and_every_shell_line_is_known():
    langs = {lang for _, lang, _, _ in readme_blocks()}
    assert langs <= {"python", "bash", ""}, f"README.md: blocks this test cannot run: {langs - {'python', 'bash', ''}}"
    unknown = [f"line {n}: {c}" for c, n in shell_lines() if c not in SHELL]
    assert not unknown, "README.md shell lines this test does not know (add them to SHELL):\n" + "\n".join(unknown)
    assert python_sections(), "no python block found in README.md"


def skip_reason(command):
    """Why a known shell line does not run here, or None."""
    if SHELL[command].startswith("skip: "):
        return SHELL[command][len("skip: "):]
    if any(flag in command for flag in NEEDS_FASHION) and \
            not (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").exists():
        return "needs Debian's dataset-fashion-mnist (setup_env.sh installs it), not installed here"
    return None


@pytest.mark.parametrize("command", [c for c, _ in shell_lines() if c in SHELL and skip_reason(c)])
def test_skipped_shell_lines_say_why(command):
    """One skip per shell line that does not run here, with its reason (pytest -rs lists them)."""
    pytest.skip(f"{command}: {skip_reason(command)}")


def _sh(workdir, command, timeout=300):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if env.get("PYTHONPATH"):   # the 0.0.0.0.14 line: keep it for the subprocesses, wherever they run
        env["PYTHONPATH"] = os.pathsep.join(str(Path(p).absolute()) for p in env["PYTHONPATH"].split(os.pathsep))
    done = subprocess.run(["bash", "-c", command], cwd=workdir, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)
    assert done.returncode == 0, f"{command}\nexited with {done.returncode}:\n{done.stdout[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A temporary directory with .venv and scripts linked in, a trained run at runs/run and a run.toml."""
    work = tmp_path_factory.mktemp("readme")
    (work / ".venv").symlink_to(Path(sys.executable).parent.parent)
    (work / "scripts").symlink_to(ROOT / "scripts")
    (work / "run.toml").write_text(RUN_TOML)
    main_job = ".venv/bin/python scripts/train.py"
    assert SHELL[main_job] == "fixture"
    _sh(work, f"{main_job} {SHORT} --out runs/run")
    return work


def test_shell_lines_run_as_written(workdir):
    """Every runnable shell line, with only the substitutions the module docstring lists, in README order within
    each of two lanes that run side by side (to keep the test short): the lines that read or extend the
    fixture's run, and the others (which make runs of their own)."""
    lanes = ([], [])
    for command, number in shell_lines():
        how = SHELL[command]
        if how == "fixture" or skip_reason(command):
            continue
        lanes["<run>" in command and how != FINE_TUNE].append(command)
    assert sum(map(len, lanes)) >= 8

    def run_lane(commands):
        made = {}   # shell line -> the run directory it made (only this lane makes new ones)
        for command in commands:
            how, line = SHELL[command], command.replace("<run>", "run")
            if how == FINE_TUNE:
                line = command.replace("runs/<run>", f"runs/{made[command.replace(' --weights runs/<run>', '')]}")
            if how in (SHORTENED, FINE_TUNE):
                line += " " + SHORT
            if how == COPIED:
                shutil.copytree(workdir / "runs" / "run", workdir / "copied" / "run", dirs_exist_ok=True)
                (workdir / "DIR").mkdir(exist_ok=True)   # the embedded event set needs no data root
            before = set((workdir / "runs").iterdir())
            _sh(workdir, line)
            new = set((workdir / "runs").iterdir()) - before
            if len(new) == 1:
                made[command] = new.pop().name

    with ThreadPoolExecutor(2) as pool:
        for done in [pool.submit(run_lane, lane) for lane in lanes]:
            done.result()
    assert (workdir / "runs" / "run" / "model.onnx").exists()


@pytest.mark.parametrize("section", sorted(python_sections()))
def test_python_blocks_run_as_written(workdir, section):
    """Each section's python blocks in order, in one fresh interpreter; ``<run>`` -> ``run`` is the only change."""
    (workdir / "block.py").write_text(python_sections()[section].replace("<run>", "run"))
    _sh(workdir, f"{sys.executable} block.py")
