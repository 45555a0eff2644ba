"""Compare two runs of one network layer by layer, so that a rounding flip cannot cascade.

A spiking net is discontinuous: a membrane potential within one rounding error of the threshold spikes in one
run and not in the other, and in a deep net, or one whose last layers hold few neurons, that single flip moves
the logits by up to a whole weight (measured: ``wide_net7b`` at the test size moves its logits by 0.47 when its
weights are scaled by 1 + 1e-6 noise). Comparing only the outputs of two devices or precisions therefore says
nothing. Here the second run's every layer (neuron, or module without children) gets the first run's input: its output is checked against the
first run's and then replaced by it, while the gradient flows through its own output (straight-through), so each
layer is compared on equal inputs and the gradients are those of the second run's graph along the first run's
activations.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from spikingjelly.activation_based import functional


@dataclass(frozen=True)
class Tolerance:
    """How far the second run's layers may stray: relative L2 error of a real-valued output, and the fraction
    of elements of a spike output (whole numbers) that may differ, plus ``spare_flips`` elements in any layer."""

    rel_l2: float
    flip_fraction: float
    spare_flips: int = 2


@dataclass
class LayerReport:
    name: str
    call: int
    numel: int
    spikes: bool
    flips: int = 0
    rel_l2: float = 0.0

    def within(self, tol: Tolerance) -> bool:
        if self.spikes:
            return self.flips <= tol.spare_flips + tol.flip_fraction * self.numel
        return self.rel_l2 <= tol.rel_l2


@dataclass
class Comparison:
    reports: list = field(default_factory=list)

    def failures(self, tol: Tolerance) -> list:
        return [r for r in self.reports if not r.within(tol)]

    def assert_within(self, tol: Tolerance, what: str) -> None:
        bad = self.failures(tol)
        assert self.reports, f"{what}: no layer was compared"
        assert not bad, f"{what}: {len(bad)} of {len(self.reports)} layer outputs past {tol}: " + "; ".join(
            f"{r.name}#{r.call} " + (f"{r.flips}/{r.numel} spikes differ" if r.spikes else f"rel L2 {r.rel_l2:.2e}")
            for r in bad[:6])


def _units(model):
    """The modules compared one by one: spiking neurons as a whole (their surrogate is inside them) and every
    other module without children."""
    units, inside = [], ()
    for name, m in model.named_modules():
        if inside and name.startswith(inside):
            continue
        if hasattr(m, "surrogate_function") or not any(True for _ in m.children()):
            units.append((name, m))
            inside = tuple(u + "." for u, _ in units)
    return units


def _is_spikes(t: torch.Tensor) -> bool:
    """Whole numbers only: spikes (0/1) or the spike counts of a multi-level neuron."""
    return bool(torch.equal(t, t.round()))


def _loss(out):
    return (out.float() * torch.linspace(-1, 1, out.shape[-1], device=out.device)).sum()


def record(model, x):
    """Run ``model`` on ``x`` from rest, forward and backward; returns (layer outputs by name as CPU float tensors
    in call order, logits, flat gradient)."""
    outputs: dict = {}
    handles = [m.register_forward_hook(
        lambda mod, args, out, name=name: outputs.setdefault(name, []).append(out.detach().float().cpu().clone())
        if isinstance(out, torch.Tensor) else None) for name, m in _units(model)]
    try:
        logits, grads = forward_backward(model, x)
    finally:
        for h in handles:
            h.remove()
    return outputs, logits, grads


def replay(model, x, recorded: dict, autocast=None):
    """Run ``model`` on ``x`` with every layer's output checked against ``recorded`` and replaced by it (values from
    the record, gradient through the module's own output); returns (Comparison, logits, flat gradient)."""
    comparison = Comparison()
    calls: dict = {}

    def hook(module, args, out, name):
        if not isinstance(out, torch.Tensor) or name not in recorded:
            return None
        i = calls[name] = calls.get(name, -1) + 1
        ref = recorded[name][i].to(out.device)
        assert ref.shape == out.shape, f"{name}#{i}: shape {tuple(out.shape)} vs {tuple(ref.shape)}"
        got = out.detach().float()
        report = LayerReport(name, i, ref.numel(), _is_spikes(ref))
        if report.spikes:
            report.flips = int((got != ref).sum())
        else:
            report.rel_l2 = float((got - ref).norm() / ref.norm().clamp_min(1e-30))
        comparison.reports.append(report)
        return out + (ref.to(out.dtype) - out).detach()

    handles = [m.register_forward_hook(lambda mod, args, out, name=name: hook(mod, args, out, name))
               for name, m in _units(model)]
    try:
        logits, grads = forward_backward(model, x, autocast)
    finally:
        for h in handles:
            h.remove()
    return comparison, logits, grads


def forward_backward(model, x, autocast=None):
    """Forward from rest (under ``autocast`` if given) and backward of a fixed linear loss; returns (logits, flat
    gradient), both float32 on CPU."""
    model.zero_grad(set_to_none=True)
    functional.reset_net(model)
    if autocast is None:
        out = model(x)
    else:
        with autocast:
            out = model(x)
    _loss(out).backward()
    functional.reset_net(model)
    grads = torch.cat([p.grad.flatten().float().cpu() for p in model.parameters() if p.grad is not None])
    return out.detach().float().cpu(), grads


def grad_error(grads, ref) -> float:
    """Relative L2 error of all gradients together."""
    assert grads.shape == ref.shape
    return float((grads - ref).norm() / ref.norm().clamp_min(1e-12))


def without_dropout(model):
    """``model`` with its dropout layers in eval mode (identity): two devices draw different masks."""
    from spikingjelly.activation_based import layer

    kinds = (torch.nn.modules.dropout._DropoutNd,) + tuple(
        getattr(layer, n) for n in ("Dropout", "Dropout2d") if hasattr(layer, n))
    for m in model.modules():
        if isinstance(m, kinds):
            m.eval()
    return model
