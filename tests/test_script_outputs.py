"""Where the scripts write and what they print: no default output lands on a committed file, progress bars only
on a terminal (or when asked for), and evaluate.py --firing-rates prints every layer's rate."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"

#: Scripts whose outputs are defined elsewhere: (where they write by default).
DEFINED_ELSEWHERE = {
    "train.py": "runs/<preset>-<time> (sj_sew.training's default out)",
    "export.py": "model.<ext> beside the checkpoint it exports",
    "fingerprint_models.py": "only the file --write names (required)",
}
#: The arguments a script cannot run without.
REQUIRED_ARGS = {
    "evaluate.py": lambda tmp: [str(tmp / "run")],
    "convert_checkpoint.py": lambda tmp: [str(tmp / "weights.pth"), "--arch", "sew_resnet18"],
}


def load(path: Path):
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))
    spec = importlib.util.spec_from_file_location(f"script_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def tracked(path: Path) -> list[str]:
    """The files git tracks at ``path`` (a file, or anything under a directory); none outside the repository."""
    if ROOT not in Path(path).parents:
        return []
    out = subprocess.run(["git", "ls-files", "--", str(path)], cwd=ROOT, capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_no_default_output_is_a_committed_file(tmp_path, monkeypatch):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "best.pt").write_bytes(b"")
    (tmp_path / "weights.pth").write_bytes(b"")
    monkeypatch.chdir(ROOT)  # defaults are relative to where a script runs: the repository root
    scripts = sorted(p for p in SCRIPTS.glob("*.py") if not p.name.startswith("_"))
    assert len(scripts) >= 15
    checked = []
    for path in scripts:
        if path.name in DEFINED_ELSEWHERE:
            continue
        module = load(path)
        assert hasattr(module, "output_paths"), f"{path.name}: declare output_paths(args) (or list it above)"
        argv = REQUIRED_ARGS.get(path.name, lambda tmp: [])(tmp_path)
        args = module.parse_args(argv) if hasattr(module, "parse_args") else module.build_parser().parse_args(argv)
        for out in module.output_paths(args):
            out = Path(out)
            absolute = out if out.is_absolute() else ROOT / out
            assert not tracked(absolute), f"{path.name} writes over committed files by default: {out}"
            assert ROOT / "results" not in absolute.parents, f"{path.name} writes into results/ by default: {out}"
            checked.append((path.name, out))
    assert {name for name, _ in checked} >= {"repro_ablation.py", "repro_degradation.py", "repro_surrogate.py",
                                             "repro_energy.py", "repro_firing_rates.py", "repro_gradients.py",
                                             "convert.py", "compare_systems.py", "evaluate.py",
                                             "convert_checkpoint.py"}
    # the committed results are one explicit --out away, and the check above would have caught them
    args = load(SCRIPTS / "repro_ablation.py").build_parser().parse_args(["--out", "results/ablation"])
    assert tracked(ROOT / load(SCRIPTS / "repro_ablation.py").output_paths(args)[0])


def _firing_rates_quick(tmp_path, *flags) -> str:
    """stderr of repro_firing_rates.py --quick run with stderr to a pipe."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(SCRIPTS / "repro_firing_rates.py"), "--quick", "--out",
                           str(tmp_path), *flags], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "wrote" in done.stdout
    return done.stderr


def test_no_progress_bar_in_a_pipe_unless_asked(tmp_path):
    assert "firing rates at init" not in _firing_rates_quick(tmp_path / "piped")
    assert "firing rates at init" in _firing_rates_quick(tmp_path / "forced", "--progress")


def test_progress_rule():
    from sj_sew.progress import progress_bar, show_progress

    assert show_progress(True) and not show_progress(False)
    assert show_progress(None) == sys.stderr.isatty()
    with progress_bar(total=2, enabled=False) as bar:  # a disabled bar still counts
        bar.update()
    assert list(progress_bar(range(3), enabled=False)) == [0, 1, 2]


def test_evaluate_prints_every_layer_firing_rate(tmp_path, capsys):
    from sj_sew.training import resolve_config, run

    out = tmp_path / "tiny"
    run(resolve_config({"dataset": "events", "data_options": {"per_class": 8}, "epochs": 1, "threads": 1,
                        "notation": "c4k3s1-BN-PLIF-{SEW Block(c4)-MPk2s2}*3-FC10", "T": 4, "out": str(out),
                        "progress": False, "tensorboard": False, "val_fraction": 0.25}))
    capsys.readouterr()
    result = load(SCRIPTS / "evaluate.py").main([str(out), "--firing-rates", "--out", str(tmp_path / "e.json")])
    printed = capsys.readouterr().out.splitlines()
    rates = result["layer_firing_rates"]
    assert len(rates) >= 4 and json.loads((tmp_path / "e.json").read_text())["layer_firing_rates"] == rates
    for name, rate in rates.items():
        assert any(line.split() == [name, f"{rate:.4f}"] for line in printed), name
