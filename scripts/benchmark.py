"""Training-step time, peak memory and inference throughput of sj_sew against SpikingJelly's zoo and the ANN.

One process, one run: every comparison interleaves its models (A B C A B C ...) so that load drift from
other processes cancels in the ratios, and reports medians. Compared at each setting:

- ``sj_sew``          create_model('sew_resnet{depth}', T=T) fed the static image (stem computed once);
- ``sj_sew+memsave``  the same model after sj_sew.memory_saving;
- ``zoo``             spikingjelly...model.sew_resnet.SEWResNet, IF + ATan, detach_reset, step mode 'm',
                      fed the image repeated T times, with the same weights as sj_sew;
- ``ann``             torchvision resnet{depth} at batch N*T.

A training step is forward + cross-entropy + backward + SGD step (+ functional.reset_net for the SNNs).
Peak memory is the process's peak RSS during one training step above its RSS before the step, with
glibc's mmap threshold fixed at 64 KiB so that freed tensors are returned at once (activations,
gradients, temporaries; parameters and optimizer state excluded). Inference throughput is images per second in eval mode: the zoo under
torch.no_grad, sj_sew as sj_sew.inference_model.

The report covers the SpikingJelly line the interpreter imports. scripts/setup_env.sh installs SpikingJelly
2.0.0 in .venv and 0.0.0.0.14 in .venv/sj014 (put that folder first on PYTHONPATH to use it); from the
repository root:

    .venv/bin/python scripts/benchmark.py --quick                          # SpikingJelly 2.0.0
    PYTHONPATH=.venv/sj014 .venv/bin/python scripts/benchmark.py --quick   # SpikingJelly 0.0.0.0.14
    .venv/bin/python scripts/benchmark.py --write BENCHMARKS.md
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import signal
import statistics
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torchvision

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from spikingjelly.activation_based import functional, neuron, surrogate  # noqa: E402
from spikingjelly.activation_based.model import sew_resnet  # noqa: E402

import sj_sew  # noqa: E402
from sj_sew.deploy import inference_model  # noqa: E402
from sj_sew.memory import freeze_batchnorm, memory_saving, time_chunked_backward  # noqa: E402
from sj_sew.models import RESNET_LAYOUTS  # noqa: E402
from sj_sew.progress import add_progress_flag, progress_bar  # noqa: E402

NUM_CLASSES = 1000
#: progress bars: None (the default) draws them only on a terminal; --progress/--no-progress set it
PROGRESS: bool | None = None


# --------------------------------------------------------------------------------------------------
# The compared models
# --------------------------------------------------------------------------------------------------

def zoo_model(depth: int) -> nn.Module:
    block, layers = RESNET_LAYOUTS[depth]
    zoo_block = getattr(sew_resnet, block.__name__)
    net = sew_resnet.SEWResNet(zoo_block, list(layers), num_classes=NUM_CLASSES, cnf="ADD",
                               spiking_neuron=partial(neuron.IFNode, surrogate_function=surrogate.ATan(),
                                                      detach_reset=True))
    functional.set_step_mode(net, "m")
    return net


def sj_sew_model(depth: int, T: int, reference: nn.Module | None = None) -> nn.Module:
    net = sj_sew.create_model(f"sew_resnet{depth}", connect="ADD", neuron="if", T=T, num_classes=NUM_CLASSES)
    if reference is not None:
        net.load_state_dict(reference.state_dict(), strict=True)
    return net


@dataclass
class Contender:
    """A model with the input it takes and how to run it."""

    name: str
    model: nn.Module
    x: torch.Tensor
    spiking: bool
    time_dim: bool = False  # output is [T, N, classes] (the zoo): average it
    label_repeats: int = 1  # the ANN sees the N images T times
    optimizer: torch.optim.Optimizer | None = field(default=None, repr=False)
    time_chunks: bool = False  # backward over chunks of time steps (sj_sew.memory.time_chunked_backward)

    def logits(self) -> torch.Tensor:
        out = self.model(self.x)
        return out.mean(0) if self.time_dim else out

    def train_step(self, labels: torch.Tensor, after_forward: Callable[[], None] | None = None) -> None:
        if self.optimizer is None:
            self.optimizer = torch.optim.SGD(self.model.parameters(), lr=1e-3, momentum=0.9)
        self.optimizer.zero_grad(set_to_none=False)  # gradients stay allocated, like the weights
        if self.time_chunks:  # its own forward passes; leaves the neurons at rest
            time_chunked_backward(self.model, self.x, labels)
            if after_forward is not None:  # no whole forward pass to stop after: what the step leaves held
                after_forward()
            self.optimizer.step()
            return
        loss = nn.functional.cross_entropy(self.logits(), labels.repeat(self.label_repeats))
        if after_forward is not None:
            after_forward()
        loss.backward()
        self.optimizer.step()
        if self.spiking:
            functional.reset_net(self.model)


def training_contenders(depth: int, T: int, N: int, size: int, which: tuple[str, ...]) -> list[Contender]:
    """The contenders named in ``which``. A name ending in '/frozen' is that contender with every BatchNorm
    frozen (eval mode), and '+time' before it trains with the backward over chunks of time steps, e.g.
    'sj_sew:memory+time/frozen'."""
    parsed = []  # (base name, frozen, time chunks)
    for name in which:
        frozen = name.endswith("/frozen")
        base_name = name[: -len("/frozen")] if frozen else name
        time_chunks = frozen and base_name.endswith("+time")
        parsed.append((base_name[: -len("+time")] if time_chunks else base_name, frozen, time_chunks))
    out = _plain_contenders(depth, T, N, size, tuple(base_name for base_name, _, _ in parsed))
    for c, name, (_, frozen, time_chunks) in zip(out, which, parsed):
        c.name, c.time_chunks = name, time_chunks
        if frozen:
            freeze_batchnorm(c.model)
    return out


def _plain_contenders(depth: int, T: int, N: int, size: int, which: tuple[str, ...]) -> list[Contender]:
    torch.manual_seed(0)
    img = torch.rand(N, 3, size, size) * 2
    zoo = zoo_model(depth)
    out = []
    for name in which:
        if name == "zoo":
            out.append(Contender("zoo", zoo, img.unsqueeze(0).repeat(T, 1, 1, 1, 1), True, time_dim=True))
        elif name == "sj_sew":
            out.append(Contender("sj_sew", sj_sew_model(depth, T, zoo), img, True))
        elif name == "sj_sew+memsave":
            out.append(Contender(name, memory_saving(sj_sew_model(depth, T, zoo)), img, True))
        elif name.startswith("zoo+memopt"):  # SpikingJelly 2.x's memory optimiser, e.g. 'zoo+memopt1'
            out.append(Contender(name, memopt_model(depth, T, N, size, int(name[len("zoo+memopt"):])),
                                 img.unsqueeze(0).repeat(T, 1, 1, 1, 1), True, time_dim=True))
        elif name.startswith("sj_sew:"):  # an sj_sew memory budget, e.g. 'sj_sew:memory'
            net = memory_saving(sj_sew_model(depth, T, zoo), budget=name.split(":", 1)[1])
            out.append(Contender(name, net, img, True))
        elif name == "ann":
            ann = getattr(torchvision.models, f"resnet{depth}")(num_classes=NUM_CLASSES)
            out.append(Contender("ann", ann, img.repeat(T, 1, 1, 1), False, label_repeats=T))
        else:
            raise ValueError(f"unknown contender {name!r}")
    for c in out:
        c.model.train()
    return out


def memopt_levels() -> list[int]:
    """The levels of SpikingJelly's memopt.optimize_memory this machine runs (none on 0.0.0.0.14;
    levels 2-4 search with CUDA peak memory, so only level 1 on a CPU)."""
    try:
        from spikingjelly.activation_based import memopt  # noqa: F401
    except ImportError:
        return []
    return [1, 2, 3, 4] if torch.cuda.is_available() else [1]


def memopt_model(depth: int, T: int, N: int, size: int, level: int) -> nn.Module:
    """The zoo's SEW ResNet under memopt.optimize_memory(level, checkpoint_budget='memory'), its blocks as
    targets, probed with a batch of the benchmark's shape."""
    from spikingjelly.activation_based import memopt

    net = zoo_model(depth)
    block = getattr(sew_resnet, RESNET_LAYOUTS[depth][0].__name__)
    probe = torch.rand(T, N, 3, size, size)

    def example_forward(m):
        out = m(probe)
        functional.reset_net(m)
        return out

    return memopt.optimize_memory(net, block, example_forward, level=level, checkpoint_budget="memory")


# --------------------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------------------

def interleaved_medians(fns: dict[str, Callable[[], None]], warmup: int, reps: int, desc: str) -> dict[str, float]:
    """Median seconds per call of each function, run round-robin after ``warmup`` rounds."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {k: [] for k in fns}
    for _ in progress_bar(range(reps), PROGRESS, desc=desc, leave=False):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def _status_bytes(key: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))


def step_memory(contender: Contender, labels: torch.Tensor) -> tuple[int, int]:
    """(bytes held for backward after the forward pass, peak bytes during the step), both as resident
    memory above the resident memory before the step.

    Linux's peak-RSS counter is reset first (/proc/self/clear_refs); glibc's mmap threshold is fixed at
    64 KiB by :func:`memory_in_child`, so a freed tensor leaves RSS at once and RSS follows the
    bytes actually live. Weights, gradients and optimizer state exist before the step and are not counted.
    """
    import gc

    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _status_bytes("VmRSS")
    held = []
    contender.train_step(labels, after_forward=lambda: held.append(_status_bytes("VmRSS") - before))
    return held[0], _status_bytes("VmHWM") - before


def memory_in_child(depth, T, N, size, which, threads) -> dict[str, tuple[int, int]]:
    """:func:`step_memory` of each contender, measured after one warm-up step in a child process whose
    glibc mmap threshold is fixed at 64 KiB (set at its start; timing stays in this process, whose
    allocator is left at its defaults)."""
    import json
    import subprocess

    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    cmd = [sys.executable, os.path.abspath(__file__), "--memory-child", json.dumps([depth, T, N, size, list(which), threads])]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return {k: tuple(v) for k, v in json.loads(out.strip().splitlines()[-1]).items()}


def _memory_child(spec: str) -> None:
    import json

    depth, T, N, size, which, threads = json.loads(spec)
    if threads:
        torch.set_num_threads(threads)
    contenders = training_contenders(depth, T, N, size, tuple(which))
    labels = torch.randint(0, NUM_CLASSES, (N,))
    result = {}
    for c in contenders:
        c.train_step(labels)
        result[c.name] = step_memory(c, labels)
        del c.model, c.optimizer  # free before the next contender
    print(json.dumps(result))


def exponent(xs, ys) -> float:
    """Slope of log(ys) against log(xs): the power law's exponent (NaN from one point)."""
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0]) if len(xs) > 1 else float("nan")


def linear_fit(xs, ys) -> tuple[float, float, float]:
    """Slope, intercept and R^2 of a least-squares line."""
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    slope, intercept = np.polyfit(xs, ys, 1)
    residual = ys - (slope * xs + intercept)
    r2 = 1 - (residual ** 2).sum() / ((ys - ys.mean()) ** 2).sum()
    return float(slope), float(intercept), float(r2)


def training_comparison(depth, T, N, size, which, warmup, reps, memory=True, threads=None):
    contenders = training_contenders(depth, T, N, size, which)
    labels = torch.randint(0, NUM_CLASSES, (N,))
    steps = {c.name: partial(c.train_step, labels) for c in contenders}
    seconds = interleaved_medians(steps, warmup, reps, f"train d{depth} T{T}")
    peaks = memory_in_child(depth, T, N, size, which, threads) if memory else {}
    return seconds, peaks


def inference_comparison(depth, T, N, size, warmup, reps):
    torch.manual_seed(0)
    img = torch.rand(N, 3, size, size) * 2
    zoo = zoo_model(depth).eval()
    for m in zoo.modules():  # BatchNorm statistics as after training, so that folding them matters
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.uniform_(0.7, 1.3)
            m.bias.data.uniform_(0.0, 0.2)
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.7, 1.3)
    ours = sj_sew_model(depth, T, zoo)
    deployed = inference_model(ours)
    seq = img.unsqueeze(0).repeat(T, 1, 1, 1, 1)

    def zoo_infer():
        with torch.no_grad():
            out = zoo(seq).mean(0)
        functional.reset_net(zoo)
        return out

    def ours_eval():
        with torch.no_grad():
            out = ours.eval()(img)
        functional.reset_net(ours)
        return out

    same = bool(torch.equal(zoo_infer().argmax(1), deployed(img).argmax(1)))
    diff = float((zoo_infer() - deployed(img)).abs().max())
    channels_last = inference_model(ours).to(memory_format=torch.channels_last)  # a candidate, measured
    img_cl = img.contiguous(memory_format=torch.channels_last)
    seconds = interleaved_medians({"zoo": zoo_infer, "sj_sew eval": ours_eval, "sj_sew inference_model": partial(deployed, img),
                                   "sj_sew inference_model, channels_last": partial(channels_last, img_cl)},
                                  warmup, reps, f"infer d{depth} T{T}")
    return {k: N / v for k, v in seconds.items()}, same, diff


def variant_comparison(depth, T, N, size, warmup, reps, compile_budget_s):
    """channels_last and torch.compile against the default sj_sew training step."""
    torch.manual_seed(0)
    img = torch.rand(N, 3, size, size) * 2
    labels = torch.randint(0, NUM_CLASSES, (N,))
    base = Contender("sj_sew", sj_sew_model(depth, T), img, True)
    cl_model = sj_sew_model(depth, T).to(memory_format=torch.channels_last)
    cl_model.load_state_dict(base.model.state_dict())
    cl = Contender("sj_sew channels_last", cl_model, img.contiguous(memory_format=torch.channels_last), True)
    fns = {c.name: partial(c.train_step, labels) for c in (base, cl)}
    notes = {}
    compiled_model = sj_sew_model(depth, T)
    compiled_model.load_state_dict(base.model.state_dict())
    compiled = Contender("sj_sew torch.compile", compiled_model, img, True)
    compiled.model.forward = torch.compile(compiled.model.forward)
    t0 = time.perf_counter()

    def out_of_budget(signum, frame):
        raise TimeoutError

    previous = signal.signal(signal.SIGALRM, out_of_budget)
    signal.alarm(int(compile_budget_s))
    try:
        compiled.train_step(labels)
        signal.alarm(0)
        notes["compile"] = f"first step (compilation) {time.perf_counter() - t0:.1f} s"
        fns[compiled.name] = partial(compiled.train_step, labels)
    except TimeoutError:
        notes["compile"] = f"first step (compilation) not done after {compile_budget_s:.0f} s: left out"
    except Exception as e:  # report, don't hide: compilation may be unavailable on this machine
        notes["compile"] = f"failed after {time.perf_counter() - t0:.1f} s: {type(e).__name__}: {str(e)[:200]}"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    return interleaved_medians(fns, warmup, reps, "variants"), notes


def profile_top_ops(depth, T, N, size, name, k=8):
    """The ``k`` ops with the most self CPU time in one training step of contender ``name``."""
    from torch.profiler import ProfilerActivity, profile

    (c,) = training_contenders(depth, T, N, size, (name,))
    labels = torch.randint(0, NUM_CLASSES, (N,))
    c.train_step(labels)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        c.train_step(labels)
    rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in prof.key_averages())
    return [(e.key, e.self_cpu_time_total / 1e3, e.self_cpu_time_total / total) for e in rows[:k]]


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------

def machine() -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{cpu}, {os.cpu_count()} cores visible, torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"SpikingJelly {sj_sew.SJ_VERSION}, Python {platform.python_version()}")


def mb(b: float) -> str:
    return f"{b / 2 ** 20:.1f}"


TRIO = ("zoo", "sj_sew", "sj_sew+memsave", "ann")


def section_main(args) -> list[str]:
    """Training step time and memory of the four contenders at one depth and T."""
    sec, peak = training_comparison(args.depth, args.T, args.N, args.size, TRIO, args.warmup, args.reps,
                                    threads=args.threads)
    z, d = sec["zoo"], sec["sj_sew"]
    lines = [f"### Training step, SEW ResNet-{args.depth}, T={args.T} (ANN: batch {args.N * args.T})", "",
             "| model | step (s) | / zoo | / sj_sew | / ANN | held after forward (MiB) | / zoo | "
             "peak in step (MiB) | / zoo |", "|---" * 9 + "|"]
    for name in TRIO:
        (held, top), (zheld, ztop) = peak[name], peak["zoo"]
        lines.append(f"| {name} | {sec[name]:.3f} | {sec[name] / z:.2f} | {sec[name] / d:.2f} | "
                     f"{sec[name] / sec['ann']:.2f} | {mb(held)} | {held / zheld:.2f} | {mb(top)} | {top / ztop:.2f} |")
    return lines + [""]


def section_inference(args) -> list[str]:
    """Eval-mode images per second: the zoo, sj_sew in eval mode and as the inference model."""
    ips, same, diff = inference_comparison(args.depth, args.T, args.N, args.size, args.warmup, args.reps)
    lines = [f"### Inference (eval), SEW ResNet-{args.depth}, T={args.T}", "",
             "| model | images/s | / zoo |", "|---|---|---|"]
    lines += [f"| {k} | {v:.1f} | {v / ips['zoo']:.2f} |" for k, v in ips.items()]
    return lines + ["", f"Same predictions as the zoo: {same}; max |logit difference| {diff:.2e} (BN folding rounds).", ""]


def section_T(args) -> list[str]:
    """Step time and peak memory against T, with a straight-line fit of step time per contender."""
    rows = {}
    for T in progress_bar(args.Ts, PROGRESS, desc="T sweep"):
        rows[T] = training_comparison(args.depth, T, args.N, args.size, TRIO, args.warmup, args.reps,
                                      threads=args.threads)
    lines = [f"### Step time and memory against T, SEW ResNet-{args.depth}", "",
             "| T | zoo (s) | sj_sew (s) | sj_sew/zoo | memsave (s) | memsave/sj_sew | ANN batch N*T (s) | "
             "sj_sew/ANN | peak MiB: zoo | sj_sew | memsave |", "|---" * 11 + "|"]
    for T, (s, m) in rows.items():
        lines.append(f"| {T} | {s['zoo']:.3f} | {s['sj_sew']:.3f} | {s['sj_sew'] / s['zoo']:.2f} | "
                     f"{s['sj_sew+memsave']:.3f} | {s['sj_sew+memsave'] / s['sj_sew']:.2f} | {s['ann']:.3f} | "
                     f"{s['sj_sew'] / s['ann']:.2f} | {mb(m['zoo'][1])} | {mb(m['sj_sew'][1])} | {mb(m['sj_sew+memsave'][1])} |")
    lines.append("")
    for name in TRIO:
        slope, icpt, r2 = linear_fit(list(rows), [rows[T][0][name] for T in rows])
        lines.append(f"- {name}: step time = {icpt:.3f} s + {slope:.4f} s x T, R^2 = {r2:.4f}")
    return lines + [""]


def section_depth(args) -> list[str]:
    """Step time and memory against depth, with fits of peak memory against the number of blocks."""
    reps = max(3, args.reps // 3)
    rows = {}
    for depth in progress_bar(args.depths, PROGRESS, desc="depth sweep"):
        rows[depth] = training_comparison(depth, args.T, args.N, args.size, TRIO, 1, reps, threads=args.threads)
    lines = [f"### Step time and memory against depth, T={args.T} ({reps} repetitions)", "",
             "| depth | zoo (s) | sj_sew (s) | sj_sew/zoo | memsave/sj_sew | sj_sew/ANN | peak MiB: zoo | sj_sew | "
             "memsave | memsave/zoo | held MiB: zoo | sj_sew | memsave |", "|---" * 13 + "|"]
    for depth, (s, m) in rows.items():
        lines.append(f"| {depth} | {s['zoo']:.3f} | {s['sj_sew']:.3f} | {s['sj_sew'] / s['zoo']:.2f} | "
                     f"{s['sj_sew+memsave'] / s['sj_sew']:.2f} | {s['sj_sew'] / s['ann']:.2f} | {mb(m['zoo'][1])} | "
                     f"{mb(m['sj_sew'][1])} | {mb(m['sj_sew+memsave'][1])} | {m['sj_sew+memsave'][1] / m['zoo'][1]:.2f} | "
                     f"{mb(m['zoo'][0])} | {mb(m['sj_sew'][0])} | {mb(m['sj_sew+memsave'][0])} |")
    lines.append("")
    blocks = [sum(RESNET_LAYOUTS[d][1]) for d in rows]
    for name in ("zoo", "sj_sew", "sj_sew+memsave"):
        mem = [rows[d][1][name][1] for d in rows]
        slope, icpt, r2 = linear_fit(blocks, [x / 2 ** 20 for x in mem])
        lines.append(f"- {name}: peak step MiB = {icpt:.1f} + {slope:.2f} x blocks (R^2 {r2:.3f}); "
                     f"log-log exponent against blocks {exponent(blocks, mem):.2f}")
    return lines + [""]


def section_variants(args) -> list[str]:
    """channels_last and torch.compile against the default training step."""
    sec, notes = variant_comparison(args.depth, args.T, args.N, args.size, args.warmup, args.reps,
                                    args.compile_budget)
    lines = [f"### Candidate speed-ups measured (training step, SEW ResNet-{args.depth}, T={args.T})", "",
             "| variant | step (s) | / default |", "|---|---|---|"]
    lines += [f"| {k} | {v:.3f} | {v / sec['sj_sew']:.2f} |" for k, v in sec.items()]
    return lines + ["", f"- torch.compile: {notes['compile']}", ""]


def section_profile(args) -> list[str]:
    """The ops with the most self CPU time in one training step of sj_sew and of the zoo."""
    lines = [f"### Top ops by self CPU time in one training step, SEW ResNet-{args.depth}, T={args.T}", ""]
    for name in ("sj_sew", "zoo"):
        top = profile_top_ops(args.depth, args.T, args.N, args.size, name)
        lines.append(f"- {name}: " + "; ".join(f"{k} {ms:.0f} ms ({share:.0%})" for k, ms, share in top))
    return lines + [""]


def section_memory(args) -> list[str]:
    """Peak memory and step time of the zoo, the zoo under memopt (each level the device runs), sj_sew's default
    and each memory budget, against T (ResNet-18) and depth (T=4), with log-log exponents and the targets.
    Grid: T in {4, 16, 64} and depth in {18, 50, 152} (``--quick``: T in {4, 16}, depth in {18, 50}); at most 3
    repetitions after 1 warm-up round, so that it ends in about 15 minutes on a 2-core CPU."""
    levels = memopt_levels()
    budgets = ("sj_sew:speed", "sj_sew:balanced", "sj_sew:memory")
    which = ("zoo",) + tuple(f"zoo+memopt{lv}" for lv in levels) + ("sj_sew",) + budgets
    Ts, depths = ((4, 16), (18, 50)) if args.quick else ((4, 16, 64), (18, 50, 152))
    reps = min(args.reps, 3)
    grid = [(18, T) for T in Ts] + [(d, Ts[0]) for d in depths if d != 18]
    rows = {key: training_comparison(key[0], key[1], args.N, args.size, which, 1, reps, threads=args.threads)
            for key in progress_bar(grid, PROGRESS, desc="memory grid")}
    lines = [f"### Memory: peak in a training step and step time ({reps} repetitions; memopt levels run here: "
             f"{levels or 'none, SpikingJelly ' + sj_sew.SJ_VERSION + ' has no memopt'})", "",
             "| depth | T | " + " | ".join(f"{n} MiB (s)" for n in which) + " |", "|---" * (len(which) + 2) + "|"]
    for (d, T), (sec, peak) in rows.items():
        lines.append(f"| {d} | {T} | " + " | ".join(f"{mb(peak[n][1])} ({sec[n]:.3f})" for n in which) + " |")
    lines.append("")

    slopes = {}
    for n in which:
        in_T = exponent(list(Ts), [rows[(18, T)][1][n][1] for T in Ts])
        in_depth = exponent([sum(RESNET_LAYOUTS[d][1]) for d in depths], [rows[(d, Ts[0])][1][n][1] for d in depths])
        slopes[n] = (in_T, in_depth)
        lines.append(f"- {n}: peak memory grows like T^{in_T:.2f} (T {Ts[0]} -> {Ts[-1]}, ResNet-18) and "
                     f"blocks^{in_depth:.2f} (ResNet-{depths[0]} -> {depths[-1]}, T={Ts[0]})")
    sec, peak = rows[(18, Ts[0])]
    if levels:
        best = min((f"zoo+memopt{lv}" for lv in levels), key=lambda n: peak[n][1])
        for n in budgets:
            m, t = peak[n][1] / peak[best][1], sec[n] / sec[best]
            lines.append(f"- target at ResNet-18, T={Ts[0]}: {n} peak {m:.2f}x {best} (target <= 0.5) at {t:.2f}x its "
                         f"step time (target <= 1.0): {'met' if m <= 0.5 and t <= 1.0 else 'NOT met'}")
    in_T, in_depth = slopes["sj_sew:memory"]
    verdict = {True: "met", False: "NOT met"}
    lines.append(f"- target: 'memory' budget exponents <= 0.6: in T {in_T:.2f} ({verdict[in_T <= 0.6]}), "
                 f"in depth {in_depth:.2f} ({'met' if in_depth <= 0.6 else 'NOT met'})")
    return lines + [""]


def section_memory_time(args) -> list[str]:
    """Checkpointing over time: peak memory and step time against T (ResNet-18) of sj_sew with every BatchNorm
    frozen (the regime where time chunks are exact), whole-sequence backward against
    sj_sew.memory.time_chunked_backward (chunks of ceil(sqrt(T)) steps), alone and with the 'memory' budget;
    log-log exponents. T in {4, 16, 64} (``--quick``: {4, 16}); at most 3 repetitions."""
    which = ("sj_sew/frozen", "sj_sew+time/frozen", "sj_sew:memory/frozen", "sj_sew:memory+time/frozen")
    Ts = (4, 16) if args.quick else (4, 16, 64)
    reps = min(args.reps, 3)
    rows = {T: training_comparison(args.depth, T, args.N, args.size, which, 1, reps, threads=args.threads)
            for T in progress_bar(Ts, PROGRESS, desc="memory over time")}
    lines = [f"### Memory over time: frozen BatchNorm, ResNet-{args.depth} ({reps} repetitions)", "",
             "| T | " + " | ".join(f"{n} MiB (s)" for n in which) + " |", "|---" * (len(which) + 1) + "|"]
    for T, (sec, peak) in rows.items():
        lines.append(f"| {T} | " + " | ".join(f"{mb(peak[n][1])} ({sec[n]:.3f})" for n in which) + " |")
    lines.append("")
    for n in which:
        lines.append(f"- {n}: peak ~ T^{exponent(Ts, [rows[T][1][n][1] for T in Ts]):.2f}")
    return lines + [""]


# --------------------------------------------------------------------------------------------------
# GPU (--device cuda): scripts/gpu_check.sh runs it; --device cpu runs the same code as a dry run
# --------------------------------------------------------------------------------------------------

def gpu_zoo_model(depth: int, device: torch.device) -> nn.Module:
    """The zoo's SEW ResNet with this line's fastest GPU kernels: SpikingJelly 2.x picks its own (CUDA, then
    Triton); on 0.0.0.0.14 every IF neuron gets backend='cupy' on a GPU where CuPy is installed."""
    net = zoo_model(depth)
    if (device.type == "cuda" and sj_sew._compat.cupy_backend_exists(neuron.IFNode)
            and sj_sew._compat.cupy_importable()):
        for m in net.modules():
            if isinstance(m, neuron.IFNode):
                m.backend = "cupy"
    return net


def gpu_contenders(depth, T, N, size, which, device) -> list[Contender]:
    """Training contenders on ``device``: sj_sew (backend 'auto'), its memory-saving mode (legacy, or
    'sj_sew:<budget>' for a memory_saving budget), the zoo with the line's fastest kernels, the zoo under memopt level k ('zoo+memoptk'), the torchvision ANN at batch N*T."""
    torch.manual_seed(0)
    img = torch.rand(N, 3, size, size, device=device) * 2
    zoo = gpu_zoo_model(depth, device)
    seq = img.unsqueeze(0).repeat(T, 1, 1, 1, 1)
    out = []
    for name in which:
        if name == "zoo":
            out.append(Contender(name, zoo.to(device), seq, True, time_dim=True))
        elif name == "sj_sew":
            out.append(Contender(name, sj_sew_model(depth, T, zoo).to(device), img, True))
        elif name == "sj_sew+memsave":
            out.append(Contender(name, memory_saving(sj_sew_model(depth, T, zoo).to(device)), img, True))
        elif name.startswith("sj_sew:"):  # a memory_saving budget, e.g. 'sj_sew:memory'
            net = memory_saving(sj_sew_model(depth, T, zoo).to(device), budget=name.split(":", 1)[1])
            out.append(Contender(name, net, img, True))
        elif name.startswith("zoo+memopt"):
            from spikingjelly.activation_based import memopt

            net = gpu_zoo_model(depth, device).to(device)
            block = getattr(sew_resnet, RESNET_LAYOUTS[depth][0].__name__)

            def example_forward(m, probe=seq):
                result = m(probe)
                functional.reset_net(m)
                return result

            net = memopt.optimize_memory(net, block, example_forward, level=int(name[len("zoo+memopt"):]),
                                         checkpoint_budget="memory")
            out.append(Contender(name, net, seq, True, time_dim=True))
        elif name == "ann":
            ann = getattr(torchvision.models, f"resnet{depth}")(num_classes=NUM_CLASSES).to(device)
            out.append(Contender(name, ann, img.repeat(T, 1, 1, 1), False, label_repeats=T))
        else:
            raise ValueError(f"unknown contender {name!r}")
    for c in out:
        c.model.train()
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gpu_measure(fns: dict[str, Callable[[], None]], device, warmup: int, reps: int) -> tuple[dict, dict]:
    """(median seconds, peak bytes allocated during one call above the bytes before it) of each function,
    interleaved; peaks come from torch.cuda.max_memory_allocated (None on CPU)."""
    peaks = {}
    for name, fn in fns.items():
        for _ in range(warmup):
            fn()
        _sync(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            before = torch.cuda.memory_allocated(device)
            fn()
            _sync(device)
            peaks[name] = torch.cuda.max_memory_allocated(device) - before
        else:
            peaks[name] = None
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}, peaks


def _autocast_step(step, device, dtype):
    def run():
        with torch.autocast(device_type=device.type, dtype=dtype, enabled=dtype is not None):
            step()
    return run


def _gpu_setting(depth, T, args, device, dtype, which):
    contenders = gpu_contenders(depth, T, args.N, args.size, which, device)
    labels = torch.randint(0, NUM_CLASSES, (args.N,), device=device)
    fns = {c.name: _autocast_step(partial(c.train_step, labels), device, dtype) for c in contenders}
    result = gpu_measure(fns, device, args.warmup, args.reps)
    del contenders, fns
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def _peak(p) -> str:
    return "n/a" if p is None else mb(p)


def section_cuda(args) -> list[str]:
    """On the device of ``--device``: training step time and peak CUDA memory of sj_sew, the zoo with the line's
    fastest kernels and the torchvision ANN (batch N*T) at each depth in --cuda-depths and T in --cuda-Ts, fp32
    and bf16 autocast; sj_sew's memory saving against memopt levels 0-4 (ResNet-18, first T); inference
    throughput. Ratios are within this run. A JSON copy of the numbers goes to --json when given."""
    import json

    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True  # how one trains on a GPU
    torch.backends.cudnn.benchmark = device.type == "cuda"
    kernel = "n/a"
    if device.type == "cuda" and sj_sew._compat.kernel_chosen_by_device():
        kernel = sj_sew._compat.kernel_in_use(neuron.IFNode, device)
    elif device.type == "cuda":
        kernel = "cupy" if sj_sew._compat.cupy_importable() else "torch"
    which = ("zoo", "sj_sew", "sj_sew+memsave", "ann")
    lines = [f"### GPU training step on {torch.cuda.get_device_name(device) if device.type == 'cuda' else device} "
             f"(SpikingJelly {sj_sew.SJ_VERSION}, IF kernel: {kernel}; N={args.N}, {args.size}x{args.size})", "",
             "| depth | T | precision | model | step (s) | / zoo | / ANN | peak (MiB) | / zoo |", "|---" * 9 + "|"]
    record = {"device": str(device), "spikingjelly": sj_sew.SJ_VERSION, "kernel": kernel, "N": args.N,
              "size": args.size, "training": [], "memory": [], "inference": []}
    for depth in args.cuda_depths:
        for T in args.cuda_Ts:
            for precision, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
                try:
                    sec, peak = _gpu_setting(depth, T, args, device, dtype, which)
                except Exception as e:  # one failing setting (e.g. a kernel without bf16) must not end the run
                    lines.append(f"| {depth} | {T} | {precision} | all | error: {type(e).__name__}: "
                                 f"{str(e).splitlines()[0][:160] if str(e) else ''} | | | | |")
                    record["training"].append(dict(depth=depth, T=T, precision=precision, error=repr(e)[:300]))
                    continue
                for n in which:
                    ratio = "n/a" if peak[n] is None else f"{peak[n] / peak['zoo']:.2f}"
                    lines.append(f"| {depth} | {T} | {precision} | {n} | {sec[n]:.4f} | {sec[n] / sec['zoo']:.2f} | "
                                 f"{sec[n] / sec['ann']:.2f} | {_peak(peak[n])} | {ratio} |")
                    record["training"].append(dict(depth=depth, T=T, precision=precision, model=n, seconds=sec[n],
                                                   peak_bytes=peak[n]))
    levels = [0, 1, 2, 3, 4] if device.type == "cuda" else [lv for lv in memopt_levels()]
    if not memopt_levels():
        levels = []
    depth, T = args.cuda_depths[0], args.cuda_Ts[0]
    budgets = ("sj_sew:balanced", "sj_sew:memory")
    mem_which = ("zoo", "sj_sew", "sj_sew+memsave") + budgets + tuple(f"zoo+memopt{lv}" for lv in levels)
    sec, peak = _gpu_setting(depth, T, args, device, None, mem_which[:3 + len(budgets)])
    for n in mem_which[3 + len(budgets):]:  # each memopt level alone: one that fails is reported, the others run
        try:
            more = _gpu_setting(depth, T, args, device, None, (n,))
            sec[n], peak[n] = more[0][n], more[1][n]
        except Exception as e:
            record["memory"].append(dict(depth=depth, T=T, model=n, error=repr(e)[:300]))
    lines += ["", f"Memory saving vs memopt (ResNet-{depth}, T={T}, fp32; levels run: {levels or 'none'}):", ""]
    for n in mem_which:
        if n not in sec:
            lines.append(f"- {n}: failed, see the JSON")
            continue
        lines.append(f"- {n}: {sec[n]:.4f} s/step, peak {_peak(peak[n])} MiB")
        record["memory"].append(dict(depth=depth, T=T, model=n, seconds=sec[n], peak_bytes=peak[n]))
    ran = [f"zoo+memopt{lv}" for lv in levels if f"zoo+memopt{lv}" in sec]
    if ran and device.type == "cuda":
        best = min(ran, key=lambda n: peak[n])
        m, t = peak["sj_sew+memsave"] / peak[best], sec["sj_sew+memsave"] / sec[best]
        lines.append(f"- target: sj_sew+memsave peak {m:.2f}x {best} (target <= 1) at {t:.2f}x its step time "
                     f"(target <= 1): {'met' if m <= 1 and t <= 1 else 'NOT met'}")
        m, t = peak["sj_sew:memory"] / peak[best], sec["sj_sew:memory"] / sec[best]
        lines.append(f"- issue 13: 'memory' budget peak {m:.2f}x {best} (target <= 0.5) at {t:.2f}x its step "
                     f"time (target <= 1): {'met' if m <= 0.5 and t <= 1 else 'NOT met'}")
    z, s = sec["zoo"], sec["sj_sew"]
    lines.append(f"- target: sj_sew step <= 0.8x the zoo's (ResNet-{depth}, T={T}, fp32): {s / z:.2f}x "
                 f"({'met' if s / z <= 0.8 else 'NOT met'})")
    # inference: eval-mode images per second, the zoo against sj_sew's inference model
    torch.manual_seed(0)
    img = torch.rand(args.N, 3, args.size, args.size, device=device)
    zoo = gpu_zoo_model(depth, device).eval()
    deployed = inference_model(sj_sew_model(depth, T, zoo)).to(device)
    zoo = zoo.to(device)
    seq = img.unsqueeze(0).repeat(T, 1, 1, 1, 1)

    def zoo_infer():
        with torch.no_grad():
            zoo(seq)
        functional.reset_net(zoo)

    sec, _ = gpu_measure({"zoo": zoo_infer, "sj_sew inference_model": partial(deployed, img)}, device,
                         args.warmup, args.reps)
    ips = {k: args.N / v for k, v in sec.items()}
    lines.append(f"- inference (ResNet-{depth}, T={T}): zoo {ips['zoo']:.0f} img/s, sj_sew inference_model "
                 f"{ips['sj_sew inference_model']:.0f} img/s ({ips['sj_sew inference_model'] / ips['zoo']:.2f}x; "
                 f"target >= 1.5x)")
    record["inference"] = ips
    if args.json:
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1)
    return lines + [""]


# --------------------------------------------------------------------------------------------------
# The shapes people train (issue 23): --sections shapes (--device cuda; --device cpu --tiny is its dry run)
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Workload:
    """A training setting: sj_sew model ``model`` on [N, channels, size, size] images (ResNets: the static image,
    stem once) or [T, N, channels, size, size] frames (the DVS net); ``depth`` names the zoo's SEW ResNet and the
    torchvision ResNet of the same layout (None: the zoo has no such net, and there is no ANN twin)."""

    key: str
    label: str
    model: str
    channels: int
    size: int
    N: int
    T: int
    depth: int | None
    classes: int = NUM_CLASSES

    def tiny(self) -> "Workload":
        """This setting at N=2, T=2 and 32x32 (the DVS net keeps 128x128: its 7 poolings need it)."""
        size = 32 if self.depth is not None else self.size
        return Workload(self.key, self.label + " (tiny)", self.model, self.channels, size, 2, 2, self.depth,
                        self.classes)


WORKLOADS = (Workload("imagenet18", "ImageNet", "sew_resnet18", 3, 224, 32, 4, 18),
             Workload("imagenet34", "ImageNet", "sew_resnet34", 3, 224, 32, 4, 34),
             Workload("imagenet50", "ImageNet", "sew_resnet50", 3, 224, 32, 4, 50),
             Workload("dvs", "DVS128 Gesture", "net7b", 2, 128, 16, 16, None, 11),
             Workload("cifar", "CIFAR", "sew_resnet18", 3, 32, 64, 4, 18, 10))
#: Each ratio of issue 23 with its target: (name, contender, references in order of preference, bound, at most
#: (True) or at least the bound). Without a zoo net (the DVS 7B-Net), SpikingJelly's fastest kernel is sj_sew 'auto'.
SHAPE_TARGETS = (("train step / zoo", "sj_sew fused", ("zoo", "sj_sew"), 0.6, True),
                 ("train step / ANN (batch N*T)", "sj_sew fused", ("ann",), 1.2, True))


def shape_contenders(w: Workload, which, device) -> list[Contender]:
    """Training contenders of workload ``w`` on ``device``: 'zoo' (SpikingJelly's SEW ResNet, the line's fastest
    kernels), 'sj_sew' (backend 'auto'), 'sj_sew fused' (sj_sew's own kernels), 'sj_sew:memory' (the memory
    budget), 'zoo+memoptK' and 'ann' (torchvision, batch N*T)."""
    torch.manual_seed(0)
    if w.depth is None:  # frames [T, N, C, H, W]
        img = (torch.rand(w.T, w.N, w.channels, w.size, w.size, device=device) < 0.2).float()
    else:
        img = torch.rand(w.N, w.channels, w.size, w.size, device=device) * 2

    def ours(backend):
        kwargs = dict(connect="ADD", T=w.T, num_classes=w.classes, backend=backend)
        if w.depth is not None:
            kwargs["neuron"] = "if"
        return sj_sew.create_model(w.model, **kwargs).to(device)

    out = []
    for name in which:
        if name == "sj_sew":
            out.append(Contender(name, ours("auto"), img, True))
        elif name == "sj_sew fused":
            out.append(Contender(name, ours("fused"), img, True))
        elif name == "sj_sew:memory":
            out.append(Contender(name, memory_saving(ours("auto"), budget="memory"), img, True))
        elif w.depth is None:
            continue  # no zoo net, no ANN twin
        elif name in ("zoo", "ann") or name.startswith("zoo+memopt"):
            out += gpu_contenders(w.depth, w.T, w.N, w.size, (name,), device)
        else:
            raise ValueError(f"unknown contender {name!r}")
    for c in out:
        c.model.train()
    return out


def _shape_setting(w: Workload, which, device, dtype, warmup, reps):
    contenders = shape_contenders(w, which, device)
    labels = torch.randint(0, w.classes, (w.N,), device=device)
    fns = {c.name: _autocast_step(partial(c.train_step, labels), device, dtype) for c in contenders}
    try:
        return gpu_measure(fns, device, warmup, reps)
    finally:
        del contenders, fns
        if device.type == "cuda":
            torch.cuda.empty_cache()


def _shape_inference(w: Workload, device, warmup, reps) -> dict[str, float]:
    """Eval-mode images per second: the zoo (no_grad) and sj_sew's inference model, 'auto' and 'fused'."""
    torch.manual_seed(0)
    fns = {}
    for c in shape_contenders(w, ("zoo", "sj_sew", "sj_sew fused"), device):
        model = c.model.eval() if c.name == "zoo" else inference_model(c.model)

        def infer(model=model, x=c.x):
            with torch.no_grad():
                model(x)
            functional.reset_net(model)

        fns[c.name] = infer
    sec, _ = gpu_measure(fns, device, warmup, reps)
    return {k: w.N / v for k, v in sec.items()}


def _shape_profile(w: Workload, name: str, device, dtype, k: int = 10) -> list[tuple[str, float, float]]:
    """The ``k`` ops with the most self device time (CPU time on a CPU) in one training step of contender
    ``name`` at workload ``w``: (op, ms, share of the step)."""
    from torch.profiler import ProfilerActivity, profile

    (c,) = shape_contenders(w, (name,), device)
    labels = torch.randint(0, w.classes, (w.N,), device=device)
    step = _autocast_step(partial(c.train_step, labels), device, dtype)
    step()
    _sync(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        step()
        _sync(device)
    attr = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    events = [e for e in prof.key_averages() if getattr(e, attr) > 0]
    total = sum(getattr(e, attr) for e in events) or 1
    events.sort(key=lambda e: getattr(e, attr), reverse=True)
    return [(e.key, getattr(e, attr) / 1e3, getattr(e, attr) / total) for e in events[:k]]


def section_shapes(args) -> list[str]:
    """Issue 23's benchmark: training step time and peak CUDA memory at the shapes people train (ImageNet SEW
    ResNet-18/34/50 N=32 224x224 T=4; the DVS 7B-Net 128x128 T=16; CIFAR 32x32 T=4), fp32 and bf16 autocast, of
    sj_sew ('auto' and 'fused'), the zoo with the line's fastest kernel, the torchvision ANN at batch N*T (same
    precision, eager) and, at the first setting, memopt's levels against the 'memory' budget; inference
    throughput; a profile of sj_sew's fused step at the first setting; every ratio against its target. Stops
    starting new settings once --budget-s is spent (said in the report). ``--tiny`` shrinks every setting (N=2,
    32x32, T=2; the DVS net keeps 128x128): the CPU dry run."""
    import json

    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = device.type == "cuda"
    start = time.perf_counter()
    workloads = [w for w in WORKLOADS if w.key in args.shape_settings]
    workloads = [w.tiny() for w in workloads] if args.tiny else workloads
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{device} ({machine()})"
    dry = " -- a dry run at toy sizes: its ratios say nothing about a GPU" if args.tiny else ""
    lines = [f"### Training at the shapes people train, on {card} (SpikingJelly {sj_sew.SJ_VERSION}){dry}", "",
             "| setting | N | T | precision | model | step (s) | / zoo | / ANN | peak (MiB) | / zoo |",
             "|---" * 10 + "|"]
    record = {"device": card, "spikingjelly": sj_sew.SJ_VERSION, "training": [], "inference": [], "skipped": []}
    which = ("zoo", "sj_sew", "sj_sew fused", "sj_sew:memory", "ann")
    targets, memory_done = [], False
    for w in workloads:
        if time.perf_counter() - start > args.budget_s:
            record["skipped"].append(f"{w.label} {w.model}")
            continue
        setting = f"{w.label} {w.model} {w.size}x{w.size}"
        seconds = {}
        for precision, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
            try:
                sec, peak = _shape_setting(w, which, device, dtype, args.warmup, args.reps)
            except Exception as e:  # one failing setting must not end the run
                lines.append(f"| {setting} | {w.N} | {w.T} | {precision} | all | error: {type(e).__name__}: "
                             f"{str(e).splitlines()[0][:160] if str(e) else ''} | | | | |")
                record["training"].append(dict(setting=setting, precision=precision, error=repr(e)[:300]))
                continue
            seconds[precision] = sec
            for n in sec:
                vs = {ref: f"{sec[n] / sec[ref]:.2f}" if ref in sec else "n/a" for ref in ("zoo", "ann")}
                mem = "n/a" if peak[n] is None or peak.get("zoo") is None else f"{peak[n] / peak['zoo']:.2f}"
                lines.append(f"| {setting} | {w.N} | {w.T} | {precision} | {n} | {sec[n]:.4f} | {vs['zoo']} | "
                             f"{vs['ann']} | {_peak(peak[n])} | {mem} |")
                record["training"].append(dict(setting=setting, precision=precision, model=n, seconds=sec[n],
                                               peak_bytes=peak[n]))
            for name, ours, refs, bound, at_most in SHAPE_TARGETS:
                ref = next((r for r in refs if r in sec), None)
                if ours in sec and ref is not None:
                    name = name if ref == refs[0] else f"{name} (here: {ref}, SpikingJelly's kernel)"
                    targets.append((f"{setting} {precision}: {name}", sec[ours] / sec[ref], bound, at_most))
        if {"fp32", "bf16"} <= set(seconds):
            for n in ("sj_sew", "sj_sew fused"):
                targets.append((f"{setting}: bf16 speed-up of {n} (fp32 / bf16 step)",
                                seconds["fp32"][n] / seconds["bf16"][n], 1.5, False))
        if w.depth is not None:
            try:
                ips = _shape_inference(w, device, args.warmup, args.reps)
                record["inference"].append(dict(setting=setting, images_per_s=ips))
                lines.append("")
                lines.append(f"Inference, {setting}: " + ", ".join(f"{k} {v:.0f} img/s" for k, v in ips.items()))
                lines.append("")
                targets.append((f"{setting}: inference of sj_sew fused / zoo", ips["sj_sew fused"] / ips["zoo"], 2.0,
                                False))
            except Exception as e:
                record["inference"].append(dict(setting=setting, error=repr(e)[:300]))
        if w.depth is not None and not memory_done and memopt_levels():  # the memory target, first zoo setting, fp32
            memory_done = True
            levels = args.memopt_levels if device.type == "cuda" else memopt_levels()
            mem = {}
            for n in ("sj_sew:memory",) + tuple(f"zoo+memopt{lv}" for lv in levels):
                if time.perf_counter() - start > args.budget_s:
                    break
                try:
                    sec, peak = _shape_setting(w, (n,), device, None, 1, max(1, args.reps // 2))
                    mem[n] = (sec[n], peak[n])
                except Exception as e:
                    record["training"].append(dict(setting=setting, model=n, error=repr(e)[:300]))
            lines += ["", f"Memory, {setting} fp32: " + "; ".join(f"{n} {s:.4f} s, {_peak(p)} MiB"
                                                               for n, (s, p) in mem.items()), ""]
            ran = [n for n in mem if n.startswith("zoo+memopt") and mem[n][1] is not None]
            if ran and mem.get("sj_sew:memory", (0, None))[1] is not None:
                best = min(ran, key=lambda n: mem[n][1])
                targets.append((f"{setting}: 'memory' budget peak / {best} (the lowest)",
                                mem["sj_sew:memory"][1] / mem[best][1], 0.5, True))
                targets.append((f"{setting}: 'memory' budget step / {best}", mem["sj_sew:memory"][0] / mem[best][0],
                                1.0, True))
    if workloads and time.perf_counter() - start <= args.budget_s:  # what the fused step spends its time on
        w = workloads[0]
        for precision, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
            try:
                top = _shape_profile(w, "sj_sew fused", device, dtype)
                record.setdefault("profile", {})[precision] = top
                lines.append(f"- profile of one sj_sew fused step, {w.label} {w.model}, {precision} (self "
                             f"{'device' if device.type == 'cuda' else 'CPU'} time): "
                             + "; ".join(f"{op} {ms:.1f} ms ({share:.0%})" for op, ms, share in top))
            except Exception as e:
                lines.append(f"- profile, {precision}: failed: {type(e).__name__}: {str(e)[:160]}")
    lines += ["", "Ratios against the targets of issue 23 (step time: smaller is faster; speed-ups: larger):", ""]
    for name, value, bound, at_most in targets:
        met = value <= bound if at_most else value >= bound
        verdict = "met" if met else "NOT met"
        lines.append(f"- {name}: {value:.2f} (target {'<=' if at_most else '>='} {bound}): {verdict}")
    record["targets"] = [dict(name=n, value=v, target=b, at_most=a) for n, v, b, a in targets]
    if record["skipped"]:
        lines.append(f"- not run (--budget-s {args.budget_s:.0f} spent): {', '.join(record['skipped'])}")
    lines.append(f"- section time: {time.perf_counter() - start:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1)
    return lines + [""]


#: The report's sections in the order they run; ``--sections`` picks among them.
SECTIONS: dict[str, Callable[[argparse.Namespace], list[str]]] = {
    "main": section_main,
    "inference": section_inference,
    "T": section_T,
    "depth": section_depth,
    "variants": section_variants,
    "profile": section_profile,
    "memory": section_memory,
    "memory_time": section_memory_time,
    "cuda": section_cuda,
    "shapes": section_shapes,
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="reduced sweep: T in {1,2,4}, depth in {18,34}, fewer reps")
    p.add_argument("--N", type=int, default=8)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--T", type=int, default=4, help="T of the main comparison and the depth sweep")
    p.add_argument("--depth", type=int, default=18, help="depth of the main comparison and the T sweep")
    p.add_argument("--reps", type=int, default=9)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--Ts", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    p.add_argument("--depths", type=int, nargs="+", default=[18, 34, 50, 101, 152])
    p.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=list(SECTIONS))
    p.add_argument("--compile-budget", type=float, default=180.0,
                   help="seconds torch.compile's first step may take before it is stopped and left out")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--note", default="", help="a line for the report, e.g. that the machine was shared")
    p.add_argument("--write", metavar="PATH", help="append the report (markdown) to this file")
    p.add_argument("--device", default="cpu", help="cpu (the CPU sections) or cuda / cuda:N (the GPU section; "
                   "with --device cpu --sections cuda, the same code runs on CPU as a dry run)")
    p.add_argument("--cuda-depths", type=int, nargs="+", default=[18, 50], help="depths of the GPU section")
    p.add_argument("--cuda-Ts", type=int, nargs="+", default=[4, 16], help="T of the GPU section")
    p.add_argument("--json", metavar="PATH", help="the GPU section's numbers as JSON")
    p.add_argument("--shape-settings", nargs="+", default=[w.key for w in WORKLOADS],
                   choices=[w.key for w in WORKLOADS], help="the settings of the shapes section (default: all)")
    p.add_argument("--memopt-levels", type=int, nargs="+", default=[0, 1, 2, 3, 4], choices=range(5),
                   help="memopt levels the shapes section measures on a GPU (the CPU runs level 1 only)")
    p.add_argument("--tiny", action="store_true", help="the shapes section at toy sizes (N=2, 32x32, T=2): its dry run")
    p.add_argument("--budget-s", type=float, default=420.0,
                   help="seconds after which the shapes section starts no new setting (default 420: fits 8 minutes)")
    add_progress_flag(p)
    args = p.parse_args(argv)
    try:
        device = torch.device(args.device)
    except (RuntimeError, ValueError):
        p.error(f"--device {args.device!r} is not a device; valid: cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error(f"--device {args.device}: CUDA is not available on this machine (torch.cuda.is_available() is "
                "False); run on a GPU machine (scripts/gpu_check.sh), or use --device cpu")
    if device.type not in ("cpu", "cuda"):
        p.error(f"--device {args.device!r}: valid: cpu, cuda or cuda:N")
    gpu_sections = {"cuda", "shapes"}  # they run on --device (on CPU: a dry run)
    if args.sections == list(SECTIONS):  # the default: the GPU section on a GPU, the CPU sections on CPU
        args.sections = ["cuda"] if device.type == "cuda" else [s for s in SECTIONS if s not in gpu_sections]
    elif device.type == "cuda" and set(args.sections) - gpu_sections:
        p.error(f"--device cuda runs only the 'cuda' and 'shapes' sections; "
                f"{sorted(set(args.sections) - gpu_sections)} measure the CPU")
    bad = [d for d in args.cuda_depths if d not in RESNET_LAYOUTS]
    if bad:
        p.error(f"--cuda-depths must be in {sorted(RESNET_LAYOUTS)}, got {bad}")
    if args.quick:
        args.Ts, args.depths, args.reps, args.warmup = [1, 2, 4], [18, 34], 3, 1
    bad = [d for d in args.depths + [args.depth] if d not in RESNET_LAYOUTS]
    if bad:
        p.error(f"depths must be in {sorted(RESNET_LAYOUTS)}, got {bad}")
    return args


def report_header(args, argv=None) -> list[str]:
    """Title, machine, the command that reproduces the run, and the setting."""
    started = datetime.datetime.now(datetime.timezone.utc)
    cmd = "PYTHONPATH=" + os.environ.get("PYTHONPATH", "") + " python " + " ".join(["scripts/benchmark.py"] + (argv or sys.argv[1:]))
    setting = f"N={args.N}, 3x{args.size}x{args.size}, IF + ATan(alpha=2), detach_reset, ADD, {NUM_CLASSES} classes"
    lines = [f"## SpikingJelly {sj_sew.SJ_VERSION}: {started:%Y-%m-%d %H:%M} UTC", "",
             f"- machine: {machine()}", f"- command: `{cmd}`", f"- setting: {setting}; medians of {args.reps} "
             f"interleaved repetitions after {args.warmup} warm-up rounds"]
    if args.note:
        lines.append(f"- note: {args.note}")
    return lines + [""]


def output_paths(args) -> list[str]:
    """The files it writes: only those --write and --json name (the report goes to stdout by default)."""
    return [path for path in (args.write, args.json) if path]


def main(argv=None) -> str:
    global PROGRESS
    args = parse_args(argv)
    PROGRESS = args.progress
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    lines = report_header(args, argv)
    for name, section in SECTIONS.items():
        if name in args.sections:
            lines += section(args)
    report = "\n".join(lines)
    print(report)
    if args.write:
        with open(args.write, "a") as f:
            f.write(report + "\n")
    return report


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--memory-child":
        _memory_child(sys.argv[2])
    else:
        main()
