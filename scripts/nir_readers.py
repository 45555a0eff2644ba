"""Run sj_sew's NIR graphs in the NIR readers people use and compare them with sj_sew's own streaming model.

For each family (SEW-ADD, Spiking, Plain, MS), shape (a NotationNet with identity shortcuts only, one with a
downsampling block, or the family's registered ResNet-18 at width 4) and neuron (IF, LIF, PLIF with a random w
per neuron) a small net with non-trivial BatchNorm statistics is exported with :func:`sj_sew.deploy.to_nir`
(the spec-literal graph, or ``--graph target``: the graph ``to_nir(..., target=reader)`` writes for that
reader) and loaded by each reader: a reader of the NIR spec's definitions taken literally
(:class:`SpecReader`), sj_sew's ``from_nir``, SpikingJelly 2.x's importer, snnTorch, Norse, Sinabs and
Rockpool. Each reader runs a batch of N samples for T steps from rest; its per-step logits and the spikes of every neuron node (forward hooks on the reader's modules) are
compared with :class:`sj_sew.deploy.StreamingModel` on the same BatchNorm-folded network.

A cell's status: ``exact`` (logits and all spikes torch.equal), ``close`` (every neuron layer's spikes agree on at
least 99.9% of entries and the argmax of the mean logits is the same for every sample), ``wrong`` (it runs and
disagrees), ``error`` (loading or running raised), ``n/a`` (no such graph for this reader).

``--patched`` copies the installed readers, applies the diffs in ``upstream/<reader>/`` and reruns this script on
the copies (a subprocess with them first on ``sys.path``): the "works with the upstream patch" column.

    python scripts/nir_readers.py                      # spec-literal graphs, readers as released
    python scripts/nir_readers.py --graph target       # to_nir(..., target=reader)
    python scripts/nir_readers.py --patched            # spec-literal graphs, patched readers
    python scripts/nir_readers.py --json out.json      # also write the cells
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import inspect
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
UPSTREAM = ROOT / "upstream"
FAMILIES = ("sew", "spiking", "plain", "ms")
NEURONS = ("if", "lif", "plif")
#: shape -> notation (NEURON is replaced by the neuron), or None for the family's registered ResNet-18 (width 4,
#: the stem's 3x3 max pooling as average pooling: max_pool_to_avg); 2 input channels, 5 classes
SHAPES = {
    "identity": "c8k3s1-BN-NEURON-{Block(c8)}*2-APk2s2-FC5",
    "downsample": "c8k3s1-BN-NEURON-Block(c8)-Block(c16)-APk4s4-FC5",
    "resnet18": None,
}
SIDES = {"identity": 8, "downsample": 8, "resnet18": 16}
#: the ranges of the BatchNorm weights and biases drawn for IF and for LIF/PLIF nets: a leaky neuron (tau 2 or
#: 1/sigmoid(w), decay_input) settles at its input, so it needs a larger drive for its layers to fire at all
#: (measured mean firing rates per layer: mostly 5-45%; a few layers of the deeper nets stay silent)
BN_RANGES = {"if": ((0.5, 1.5), (-0.2, 0.3)), "leaky": ((1.0, 3.0), (0.6, 1.3))}
BATCH, STEPS = 8, 4
SPIKE_AGREEMENT = 0.999
STATUSES = ("exact", "close", "wrong", "error", "n/a")


# --------------------------------------------------------------------------------------------------
# The networks and sj_sew's reference
# --------------------------------------------------------------------------------------------------

def build_net(family: str, shape: str, neuron: str, seed: int = 0) -> torch.nn.Module:
    """A small net of :data:`SHAPES` in eval mode with random BatchNorm statistics (and random PLIF w in
    [-2, 2])."""
    import sj_sew
    from sj_sew.deploy import max_pool_to_avg

    torch.manual_seed(seed)
    if SHAPES[shape] is None:
        width = dict(widths=(4, 4, 8, 8)) if family == "ms" else dict(width=4)
        net = max_pool_to_avg(sj_sew.create_model(f"{family}_resnet18", neuron=neuron, in_channels=2, num_classes=5,
                                                  **width)).eval()
    else:
        notation = SHAPES[shape].replace("NEURON", neuron.upper())
        net = sj_sew.NotationNet(notation, family=family, neuron=neuron, in_channels=2, input_size=SIDES[shape],
                                 num_classes=5).eval()
    g = torch.Generator().manual_seed(seed + 1)
    weight, bias = BN_RANGES["if" if neuron == "if" else "leaky"]
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                for t, (lo, hi) in ((m.weight, weight), (m.bias, bias), (m.running_mean, (-0.2, 0.2)),
                                    (m.running_var, (0.5, 2.0))):
                    t.copy_(torch.rand(t.shape, generator=g) * (hi - lo) + lo)
            if hasattr(m, "w") and isinstance(m.w, torch.Tensor):  # PLIF: sigmoid(w) is not a power of two
                m.w.copy_(torch.rand(m.w.shape, generator=g) * 4 - 2)
    return net


def example_input(side: int = 8, seed: int = 2) -> torch.Tensor:
    """``[T, N, 2, side, side]``, uniform in [0, 3)."""
    return torch.rand(STEPS, BATCH, 2, side, side, generator=torch.Generator().manual_seed(seed)) * 3


def _spikes_of(output) -> torch.Tensor:
    out = output[0] if isinstance(output, (tuple, list)) else output
    return out.detach().clone()


@contextlib.contextmanager
def _recording(modules: dict[str, torch.nn.Module]):
    """Collects each module's output (spikes) per call, by node key."""
    seen: dict[str, list[torch.Tensor]] = {k: [] for k in modules}
    handles = [m.register_forward_hook(lambda mod, args, out, k=k: seen[k].append(_spikes_of(out)))
               for k, m in modules.items()]
    try:
        yield seen
    finally:
        for h in handles:
            h.remove()


def reference(net: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """sj_sew's streaming model of the BN-folded network: per-step logits ``[T, N, K]`` and the spikes of each
    neuron ``[T, N, ...]`` by NIR node key."""
    from spikingjelly.activation_based import base

    from sj_sew.deploy import inference_model, streaming

    inf = inference_model(net)
    neurons = {name.replace(".", "_"): m for name, m in inf.model.named_modules() if isinstance(m, base.MemoryModule)}
    stream = streaming(inf)
    with _recording(neurons) as seen:
        logits = torch.stack([stream(frame).clone() for frame in x])
    return logits, {k: torch.stack([s[0] for s in v]) for k, v in seen.items()}


# --------------------------------------------------------------------------------------------------
# The readers
# --------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Reader:
    """How to load a graph into one reader: ``load(graph, batch, dt)`` returns a module called as
    ``out, state = module(frame, state)``; ``target`` is the ``to_nir`` target written for it (None: none)."""
    name: str
    package: str
    load: object
    target: str | None = None


def _load_sj_sew(graph, batch, dt):
    from sj_sew.deploy import from_nir
    return from_nir(graph, dt=dt)


def _load_spikingjelly(graph, batch, dt):
    from sj_sew.deploy import from_nir_spikingjelly
    return from_nir_spikingjelly(graph, dt=dt)


def _load_snntorch(graph, batch, dt):
    from snntorch.import_nir import import_from_nir
    return import_from_nir(graph)


def _load_norse(graph, batch, dt):
    import norse.torch
    return norse.torch.from_nir(graph, dt=dt)


def _load_sinabs(graph, batch, dt):
    import sinabs
    if "dt" in inspect.signature(sinabs.from_nir).parameters:  # upstream/sinabs adds it
        return sinabs.from_nir(graph, batch_size=batch, dt=dt)
    return sinabs.from_nir(graph, batch_size=batch)


def _load_rockpool(graph, batch, dt):
    from rockpool.nn.modules.torch.nir import from_nir
    return from_nir(graph)


class SpecReader(torch.nn.Module):
    """NIR's definitions read literally, written here from the spec alone (no reader's code): nodes run in a
    topological order of the edges, a node's input is the sum of its incoming edges, Flatten's dims count
    without the batch axis, and each neuron takes one forward-Euler step of ``dt`` with the step's input held:
    IF ``v += dt * r * I``, LIF ``v += dt / tau * ((v_leak - v) + r * I)``, then ``z = v > v_threshold`` and
    ``v = v_reset`` where ``z``. The spec fixes no initial state; this reader starts at ``v_reset``.
    ``out, state = reader(frame, state)``; the neuron nodes are submodules named by key (for the hooks)."""

    class Neuron(torch.nn.Module):
        def __init__(self, node, dt):
            super().__init__()
            self.node, self.dt = node, dt

        def forward(self, current, v):
            n, f = self.node, lambda a: torch.as_tensor(np.asarray(a), dtype=current.dtype)
            v = f(n.v_reset).expand_as(current) if v is None else v
            if type(n).__name__ == "IF":
                v = v + self.dt * f(n.r) * current
            else:
                v = v + self.dt / f(n.tau) * ((f(n.v_leak) - v) + f(n.r) * current)
            z = v > f(n.v_threshold)
            return z.to(current.dtype), torch.where(z, f(n.v_reset).expand_as(v), v)

    def __init__(self, graph, dt: float):
        super().__init__()
        import nir

        self.graph, self.nir = graph, nir
        self.parents = {k: [a for a, b in graph.edges if b == k] for k in graph.nodes}
        self.order, seen = [], set()

        def visit(key):  # depth-first post-order over the parents: a topological order
            if key not in seen:
                seen.add(key)
                for parent in self.parents[key]:
                    visit(parent)
                self.order.append(key)

        for key in graph.nodes:
            visit(key)
        for key, node in graph.nodes.items():
            if isinstance(node, (nir.IF, nir.LIF)):
                self.add_module(key, SpecReader.Neuron(node, dt))

    def forward(self, frame, state=None):
        import torch.nn.functional as F

        nir, state, out = self.nir, dict(state or {}), {}
        for key in self.order:
            node = self.graph.nodes[key]
            x = frame if isinstance(node, nir.Input) else sum(out[p] for p in self.parents[key])
            t = lambda a: torch.as_tensor(np.asarray(a), dtype=frame.dtype)  # noqa: E731
            if isinstance(node, (nir.Input, nir.Output)):
                out[key] = x
            elif isinstance(node, nir.Conv2d):
                out[key] = F.conv2d(x, t(node.weight), t(node.bias), tuple(np.asarray(node.stride).tolist()),
                                    tuple(np.asarray(node.padding).tolist()),
                                    tuple(np.asarray(node.dilation).tolist()), int(node.groups))
            elif isinstance(node, (nir.Affine, nir.Linear)):
                out[key] = x @ t(node.weight).T + (t(node.bias) if isinstance(node, nir.Affine) else 0)
            elif isinstance(node, nir.AvgPool2d):
                out[key] = F.avg_pool2d(x, tuple(np.asarray(node.kernel_size).tolist()),
                                        tuple(np.asarray(node.stride).tolist()),
                                        tuple(np.asarray(node.padding).tolist()))
            elif isinstance(node, nir.Flatten):
                start, end = (d + 1 if d >= 0 else d for d in (node.start_dim, node.end_dim))
                out[key] = x.flatten(start, end)
            elif isinstance(node, (nir.IF, nir.LIF)):
                out[key], state[key] = getattr(self, key)(x, state.get(key))
            else:
                raise NotImplementedError(f"{key}: {type(node).__name__} is not read by this reader")
        outputs = [k for k, n in self.graph.nodes.items() if isinstance(n, nir.Output)]
        return out[outputs[0]], state


def _load_spec(graph, batch, dt):
    return SpecReader(graph, dt)


READERS = {r.name: r for r in (
    Reader("spec", "nir", _load_spec),
    Reader("sj_sew", "nirtorch", _load_sj_sew),
    Reader("spikingjelly", "spikingjelly.activation_based.nir_exchange", _load_spikingjelly),
    Reader("snntorch", "snntorch", _load_snntorch, target="snntorch"),
    Reader("norse", "norse", _load_norse, target="norse"),
    Reader("sinabs", "sinabs", _load_sinabs, target="sinabs"),
    Reader("rockpool", "rockpool.nn.modules.torch.nir", _load_rockpool),
)}


def reader_available(name: str) -> str | None:
    """None if the reader imports here, else why not."""
    package = READERS[name].package
    try:
        if importlib.util.find_spec(package.split(".")[0]) is None:
            return f"{package} is not installed"
        importlib.import_module(package)
    except Exception as e:  # noqa: BLE001 - any import failure means "not available", with its reason
        return f"{package} does not import: {type(e).__name__}: {e}"
    return None


def _neuron_modules(module: torch.nn.Module, keys) -> dict[str, torch.nn.Module]:
    """The reader's module of each neuron node (nirtorch's executor and fx graphs name them by node key); its
    output is the spikes, or a tuple that starts with them."""
    named = dict(module.named_modules())
    return {k: named[k] for k in keys if k in named}


@dataclasses.dataclass
class Cell:
    """One reader on one net: status, the least spike agreement over neuron layers, logits difference,
    argmax agreement and the error (if any)."""
    reader: str
    family: str
    shape: str
    neuron: str
    graph: str
    status: str
    spike_agreement: float | None = None
    max_logit_diff: float | None = None
    argmax_same: bool | None = None
    error: str | None = None

    def text(self) -> str:
        if self.status in ("error", "n/a"):
            return self.status
        agree = "-" if self.spike_agreement is None else f"{100 * self.spike_agreement:.2f}%"
        return f"{self.status} ({agree}, argmax {'=' if self.argmax_same else '!='})"


def _quiet():
    """Readers print and log while loading (snnTorch's prints, Norse's warnings): keep the table readable."""
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    stack.callback(logging.disable, logging.NOTSET)
    return stack


def run_cell(reader_name: str, family: str, shape: str, neuron: str, graph_kind: str = "default") -> Cell:
    """Export one net of the matrix, load it into one reader, run it and compare (see the module docstring)."""
    cell = dict(reader=reader_name, family=family, shape=shape, neuron=neuron, graph=graph_kind)
    if graph_kind == "target" and READERS[reader_name].target is None:
        return Cell(**cell, status="n/a", error=f"to_nir has no target for {reader_name}")
    return Cell(**cell, **measure(reader_name, build_net(family, shape, neuron), example_input(SIDES[shape]),
                                  graph_kind))


def measure(reader_name: str, net: torch.nn.Module, x: torch.Tensor, graph_kind: str = "default") -> dict:
    """Export ``net`` (``graph_kind`` 'default' or 'target'), run it in one reader on ``x`` ``[T, N, C, H, W]``
    and compare with the streaming model: the fields of a :class:`Cell` after its name fields."""
    from sj_sew.deploy import to_nir

    reader = READERS[reader_name]
    target = reader.target if graph_kind == "target" else None
    ref_logits, ref_spikes = reference(net, x)
    side = x.shape[-2:]
    try:
        with _quiet():
            graph = to_nir(net, tuple(side), target=target)
            module = reader.load(graph, x.shape[1], float(graph.metadata["dt"]))
            neurons = _neuron_modules(module, ref_spikes)
            state, logits = None, []
            with _recording(neurons) as seen, torch.no_grad():
                for frame in x:
                    out, state = module(frame, state)
                    logits.append(out.detach().clone())
            logits = torch.stack(logits)
    except Exception as e:  # noqa: BLE001 - a reader that fails is a measured outcome
        return dict(status="error", error=f"{type(e).__name__}: {str(e).splitlines()[0][:200]}" if str(e)
                    else type(e).__name__)
    if logits.shape != ref_logits.shape:
        return dict(status="wrong", error=f"logits of shape {tuple(logits.shape)}, expected {tuple(ref_logits.shape)}")
    missing = sorted(set(ref_spikes) - set(seen))
    agreements, exact = [], torch.equal(logits, ref_logits)
    for key, ref in ref_spikes.items():
        if key not in seen or len(seen[key]) != len(x):
            exact = False
            continue
        got = torch.stack(seen[key]).reshape(ref.shape)
        exact = exact and torch.equal(got, ref)
        agreements.append((got == ref).float().mean().item())
    agreement = min(agreements) if agreements else None
    argmax_same = bool((logits.mean(0).argmax(-1) == ref_logits.mean(0).argmax(-1)).all())
    diff = (logits - ref_logits).abs().max().item()
    if exact and not missing:
        status = "exact"
    elif not missing and agreement is not None and agreement >= SPIKE_AGREEMENT and argmax_same:
        status = "close"
    else:
        status = "wrong"
    return dict(status=status, spike_agreement=agreement, max_logit_diff=diff, argmax_same=argmax_same,
                error=f"neuron layers not found in the reader's module: {missing}" if missing else None)


def run_matrix(readers, graph_kind: str = "default", families=FAMILIES, shapes=tuple(SHAPES),
               neurons=NEURONS) -> list[Cell]:
    cells = []
    for reader in readers:
        why = reader_available(reader)
        for family in families:
            for shape in shapes:
                for neuron in neurons:
                    if why:
                        cells.append(Cell(reader, family, shape, neuron, graph_kind, "n/a", error=why))
                    else:
                        cells.append(run_cell(reader, family, shape, neuron, graph_kind))
    return cells


def table(cells: list[Cell]) -> str:
    """A markdown table: one row per net and neuron, one column per reader."""
    readers = list(dict.fromkeys(c.reader for c in cells))
    rows = {}
    for c in cells:
        rows.setdefault((c.family, c.shape, c.neuron), {})[c.reader] = c.text()
    lines = ["| net | neuron | " + " | ".join(readers) + " |", "|---|---|" + "---|" * len(readers)]
    for (family, shape, neuron), by_reader in rows.items():
        lines.append(f"| {family} ({shape}) | {neuron} | " + " | ".join(by_reader.get(r, "") for r in readers) + " |")
    errors = sorted({(c.reader, c.error) for c in cells if c.error})
    lines += ["", "Errors and notes:"] + [f"- {r}: {e}" for r, e in errors]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Patched readers
# --------------------------------------------------------------------------------------------------

#: reader folder in upstream/ -> the installed top-level packages its diffs patch (paths in the diffs are
#: relative to site-packages: ``a/<package>/...``)
PATCHED_PACKAGES = {"nirtorch": ("nirtorch",), "snntorch": ("snntorch",), "norse": ("norse",),
                    "sinabs": ("sinabs",)}


def patches(reader: str) -> list[Path]:
    """The diffs of ``upstream/<reader>/`` in order."""
    return sorted((UPSTREAM / reader).glob("*.diff"))


def patched_tree(dest: Path, readers=tuple(PATCHED_PACKAGES), check_only: bool = False) -> Path:
    """Copy the installed packages of ``readers`` to ``dest`` and apply their diffs there (``patch -p1``);
    raises CalledProcessError if a diff does not apply."""
    dest.mkdir(parents=True, exist_ok=True)
    for reader in readers:
        for package in PATCHED_PACKAGES[reader]:
            spec = importlib.util.find_spec(package)
            if spec is None:
                raise ModuleNotFoundError(f"{package} is not installed")
            src = Path(spec.origin).parent
            shutil.copytree(src, dest / package, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
        for diff in patches(reader):
            args = ["patch", "-p1", "--forward", "--batch", "-d", str(dest), "-i", str(diff)]
            subprocess.run(args + (["--dry-run"] if check_only else []), check=True, capture_output=True, text=True)
    return dest


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--graph", choices=("default", "target"), default="default")
    parser.add_argument("--patched", action="store_true", help="run the readers patched with upstream/*/*.diff")
    parser.add_argument("--readers", nargs="*", default=list(READERS), choices=list(READERS))
    parser.add_argument("--families", nargs="*", default=list(FAMILIES), choices=FAMILIES)
    parser.add_argument("--shapes", nargs="*", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--neurons", nargs="*", default=list(NEURONS), choices=NEURONS)
    parser.add_argument("--json", help="also write the cells there")
    return parser


def output_paths(args) -> list[str]:
    """The files it writes: only the one --json names (the table goes to stdout)."""
    return [args.json] if args.json else []


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(1)
    if args.patched and not os.environ.get("SJ_SEW_PATCHED_READERS"):
        with tempfile.TemporaryDirectory() as tmp:
            tree = patched_tree(Path(tmp) / "site")
            env = dict(os.environ, SJ_SEW_PATCHED_READERS=str(tree),
                       PYTHONPATH=os.pathsep.join(p for p in (str(tree), os.environ.get("PYTHONPATH")) if p))
            rest = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--patched"]
            return subprocess.run([sys.executable, __file__, "--patched", *rest], env=env).returncode
    if os.environ.get("SJ_SEW_PATCHED_READERS"):
        print(f"readers patched from {UPSTREAM}: imported from {os.environ['SJ_SEW_PATCHED_READERS']}")
    cells = run_matrix(args.readers, args.graph, args.families, args.shapes, args.neurons)
    print(f"graph: {args.graph}; N={BATCH}, T={STEPS}; {'patched' if args.patched else 'released'} readers")
    print(table(cells))
    if args.json:
        Path(args.json).write_text(json.dumps([dataclasses.asdict(c) for c in cells], indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
