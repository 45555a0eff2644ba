"""The package's structure rules: no import circle between sj_sew's modules (function-level imports
included), no module importing another's private name, only _compat testing SpikingJelly versions, and no
script loading another script by file path."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "sj_sew"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
PACKAGES = {name for name, p in MODULES.items() if p.name == "__init__.py"}


def _imports(name: str):
    """(imported module, imported names) for every import statement of module ``name``, anywhere in it."""
    path = MODULES[name]
    package = name if name in PACKAGES else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            target = ".".join(p for p in (base if node.level else "", node.module or "") if p)
            yield target, [a.name for a in node.names]


def _dependencies(name: str) -> set[str]:
    """The sj_sew modules ``name`` imports; a package's __init__ only re-exports, so its submodules count."""
    deps = set()
    for target, names in _imports(name):
        for candidate in [f"{target}.{n}" for n in names] + [target]:
            if candidate in MODULES:
                if candidate not in PACKAGES:
                    deps.add(candidate)
                break
    return deps - {name}


def test_no_import_circle():
    graph = {name: _dependencies(name) for name in MODULES if name not in PACKAGES}
    state: dict[str, str] = {}

    def visit(node, trail):
        state[node] = "open"
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == "open":
                pytest.fail("import circle: " + " -> ".join(trail[trail.index(dep):] + [dep]))
            if dep not in state:
                visit(dep, trail + [dep])
        state[node] = "done"

    for name in graph:
        if name not in state:
            visit(name, [name])
    assert len(graph) > 20


def test_no_module_imports_another_modules_private_name():
    offenders = []
    for name in MODULES:
        for target, names in _imports(name):
            for imported in names:
                private = imported.startswith("_") and not imported.startswith("__")
                is_module = f"{target}.{imported}" in MODULES
                if private and not is_module:
                    offenders.append(f"{name} imports {imported} from {target}")
    assert not offenders, offenders


def _version_tests(path: Path) -> list[int]:
    """Lines that branch on the SpikingJelly line: any use of SJ2, or SJ_VERSION inside a comparison/test."""
    def mentions(node, names):
        return any(isinstance(n, ast.Name) and n.id in names or isinstance(n, ast.Attribute) and n.attr in names
                   for n in ast.walk(node))

    lines = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, (ast.Name, ast.Attribute)) and mentions(node, {"SJ2"}):
            lines.append(node.lineno)
        elif isinstance(node, (ast.Compare, ast.If, ast.IfExp)) and mentions(
                node.test if hasattr(node, "test") else node, {"SJ_VERSION"}):
            lines.append(node.lineno)
    return lines


def test_only_compat_tests_spikingjelly_versions():
    offenders = {name: _version_tests(path) for name, path in MODULES.items()
                 if name not in ("sj_sew._compat", "sj_sew")}  # the package re-exports SJ2 for users
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, f"{offenders} test SpikingJelly versions; ask sj_sew._compat instead"


def test_no_script_loads_another_script_by_path():
    offenders = [p.name for p in (ROOT / "scripts").glob("*.py")
                 if "spec_from_file_location" in p.read_text() or "runpy" in p.read_text()]
    assert not offenders, offenders


def test_fingerprints_tell_a_changed_network_apart():
    """scripts/fingerprint_models.py, the check behind 'the refactoring changed no network'."""
    import importlib.util

    import torch

    spec = importlib.util.spec_from_file_location("fingerprint_models", ROOT / "scripts" / "fingerprint_models.py")
    fp = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fp)
    a = {"net": {"keys": ["w"], "out": torch.ones(2), "grads": torch.zeros(1)}}
    assert fp.compare(a, a) == []
    b = {"net": {"keys": ["w"], "out": torch.ones(2) + 1e-7, "grads": torch.zeros(1)}, "new": {}}
    assert fp.compare(a, b) == ["new: new in the second", "net: out differs"]
    assert fp.compare(a, {"net": {**a["net"], "keys": ["v"]}}) == ["net: keys differs"]


#: The layers of the package, lowest first: a module imports only from its own part or from lower layers.
#: _compat knows SpikingJelly's lines (_version, progress, the bars' rule, and binary_marks, the 0/1 tags on tensors,
#: stand beside it); connect's g functions come next (the neuron kernels apply them); neurons and data stand on
#: those side by side; memory stores and recomputes what neurons save; blocks are built from those; models from blocks; the rest
#: (deploy, analysis, conversion, training, experiments, pretrained, the command) use models.
LAYERS = [("_compat", "_version", "progress", "binary_marks"), ("connect",), ("neurons", "data"), ("memory",),
          ("blocks",), ("models",)]


def _layer(module: str) -> tuple[int, str]:
    """(layer index, part) of an sj_sew module: its top-level part's layer; everything else is the top."""
    part = module.split(".")[1] if module.count(".") else ""
    for index, parts in enumerate(LAYERS):
        if part in parts:
            return index, part
    return len(LAYERS), part


def _imported(name: str) -> set[str]:
    """Every sj_sew module or package that module ``name`` imports from (a package counts as itself here)."""
    found = set()
    for target, names in _imports(name):
        for candidate in [f"{target}.{n}" for n in names] + [target]:
            if candidate in MODULES:
                found.add(candidate)
                break
    return found - {name}


def test_imports_go_down_the_layers():
    offenders = []
    for name in MODULES:
        if name == "sj_sew":
            continue
        level, part = _layer(name)
        for dep in sorted(_imported(name)):
            dep_level, dep_part = _layer(dep)
            if dep_part != part and dep_level >= level and level < len(LAYERS):
                offenders.append(f"{name} (layer {level}) imports {dep} (layer {dep_level})")
    assert not offenders, offenders


def test_nothing_inside_the_package_imports_its_root():
    offenders = [f"{name} imports {target or 'sj_sew'} {names}" for name in MODULES if name != "sj_sew"
                 for target, names in _imports(name)
                 if target == "sj_sew" and not all(f"sj_sew.{n}" in MODULES for n in names)]
    assert not offenders, offenders


def test_the_layer_rule_catches_an_upward_import(tmp_path, monkeypatch):
    """The rule itself: a neuron module importing a model is reported."""
    fake = tmp_path / "sj_sew" / "neurons" / "upward.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("from ..models import create_model\n")
    monkeypatch.setitem(MODULES, "sj_sew.neurons.upward", fake)
    with pytest.raises(AssertionError, match="sj_sew.neurons.upward .layer 2. imports sj_sew.models"):
        test_imports_go_down_the_layers()
