"""Per-block probes for the SEW paper's analyses: firing rates of S, A, O (Figs. 4, 5, 11) and the
gradient amplitude ||dL/dS^l|| at each block input (Figs. 6-8)."""
from __future__ import annotations

import torch

from ..blocks import ResidualBlock
from .hooks import ForwardHooks


def _store_mean(rates: list[float], i: int):
    """A forward hook that stores the mean of the module's output in ``rates[i]``."""
    def hook(module, args, out):
        rates[i] = out.detach().float().mean().item()
    return hook


class BlockProbe(ForwardHooks):
    """Hooks on every :class:`ResidualBlock` of a model; use as a context manager around one forward
    (and backward, with ``gradients=True``).

    For block l it records the mean of its input S^l, of the output of its ``residual_neuron`` (A^l for
    SEW and DS blocks, O^l for Spiking and Plain blocks, the neuron before the last conv for MS blocks)
    and of its output O^l, averaged over all time steps, samples and positions, and after ``backward``
    the L2 norm of dL/dS^l.
    """

    def __init__(self, model: torch.nn.Module, gradients: bool = False):
        super().__init__()
        self.blocks = [m for m in model.modules() if isinstance(m, ResidualBlock)]
        if not self.blocks:
            raise ValueError("the model has no sj_sew ResidualBlock to probe")
        self.gradients = gradients
        self._inputs: list[torch.Tensor | None] = [None] * len(self.blocks)
        self.rate_s = [float("nan")] * len(self.blocks)
        self.rate_a = [float("nan")] * len(self.blocks)
        self.rate_o = [float("nan")] * len(self.blocks)
        for i, block in enumerate(self.blocks):
            self.add(block, self._on_input(i), pre=True)
            self.add(block, _store_mean(self.rate_o, i))
            self.add(block.residual_neuron, _store_mean(self.rate_a, i))

    @property
    def downsample(self) -> list[bool]:
        """Whether block l changes shape (see ``ResidualBlock.changes_shape``)."""
        return [b.changes_shape for b in self.blocks]

    def _on_input(self, i):
        def hook(module, args):
            x = args[0]
            self.rate_s[i] = x.detach().float().mean().item()
            if self.gradients and x.requires_grad:
                x.retain_grad()
                self._inputs[i] = x
        return hook

    def grad_norms(self) -> list[float]:
        """||dL/dS^l||_2 per block; call after ``loss.backward()``."""
        if not self.gradients:
            raise RuntimeError("create the probe with gradients=True to record dL/dS")
        norms = []
        for x in self._inputs:
            norms.append(float("nan") if x is None or x.grad is None else x.grad.norm().item())
        return norms

    def summary(self) -> dict:
        out = {"rate_s": self.rate_s, "rate_a": self.rate_a, "rate_o": self.rate_o, "downsample": self.downsample}
        if self.gradients:
            out["grad_norm"] = self.grad_norms()
        return out


def real_image_batch(n: int, size: int, seed: int = 0, channels: int = 3):
    """``n`` real test images ``[n, channels, size, size]`` (standardised) and labels, for probing at init:
    Fashion-MNIST where installed, else scikit-learn digits; resized and repeated over channels."""
    import torch.nn.functional as F

    from ..data import build_dataset

    try:
        ds = build_dataset("fashion_mnist", train=False)
    except Exception:
        ds = build_dataset("digits", train=False)
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(ds), generator=g)[:n].tolist()
    xs, ys = zip(*(ds[i] for i in idx))
    x = torch.stack([torch.as_tensor(v, dtype=torch.float32) for v in xs])
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = (x - x.mean()) / (x.std() + 1e-8)
    return x.expand(-1, channels, -1, -1).contiguous(), torch.as_tensor(ys)


def probe(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor | None = None) -> dict:
    """One forward from rest (and, given labels, a cross-entropy backward) under a :class:`BlockProbe`."""
    import torch.nn.functional as F
    from spikingjelly.activation_based import functional

    functional.reset_net(model)
    with BlockProbe(model, gradients=y is not None) as p:
        if y is None:
            with torch.no_grad():
                model(x)
        else:
            F.cross_entropy(model(x), y).backward()
    functional.reset_net(model)
    return p.summary()
