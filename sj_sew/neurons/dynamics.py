"""Charge, fire and reset of sj_sew's neurons, written once as functions on tensors.

One time step of an IF, LIF or PLIF neuron, in SpikingJelly's notation:

- ``v``: the membrane potential V[t-1] after the previous step's reset; ``x``: the input X[t];
- charge, ``h`` = H[t]: IF :func:`charge_if`, LIF :func:`charge_lif` (membrane time constant ``tau`` in
  steps), PLIF :func:`charge_plif` (its learned ``inv_tau`` = sigmoid(w) = 1/tau, as a product);
- fire: :func:`fire`, S[t] = H[t] >= ``v_threshold``;
- reset: :func:`reset_hard` to ``v_reset``, or :func:`reset_soft` by subtracting ``v_threshold``
  (``v_reset=None``).

Each function evaluates the operations of SpikingJelly 2.x's reference neurons (``spikingjelly._ops``) in their
order, so results are bit-identical to them; SpikingJelly 0.0.0.0.14 writes the charge without ``decay_input``
at ``v_reset`` 0 or None as ``v * (1 - 1/tau) + x``, equal up to rounding. The functions ending in ``_`` are
in-place forms of the same operations for :mod:`sj_sew.neurons.fused` (preallocated outputs, no temporaries).

MLF (:class:`~sj_sew.neurons.MLFNode`) charges with :func:`charge_mlf` and resets with :func:`reset_by_product`.
"""
from __future__ import annotations

import torch


# --- charge -------------------------------------------------------------------------------------------
def charge_if(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """H = V + X."""
    return v + x


def charge_lif(v: torch.Tensor, x: torch.Tensor, tau: float, v_reset: float | None,
               decay_input: bool = True) -> torch.Tensor:
    """H = V + (X - (V - V_reset)) / tau (``decay_input``) or V - (V - V_reset) / tau + X; V_reset None
    (soft reset) leaks towards 0."""
    return _leaky_charge(v, x, v_reset, decay_input, lambda d: d / tau)


def charge_plif(v: torch.Tensor, x: torch.Tensor, inv_tau: torch.Tensor | float, v_reset: float | None,
                decay_input: bool = True) -> torch.Tensor:
    """PLIF's charge: LIF's with the leak a product, H = V + (X - (V - V_reset)) * inv_tau (``decay_input``) or
    V - (V - V_reset) * inv_tau + X, ``inv_tau`` = sigmoid(w) (:func:`plif_inv_tau`)."""
    return _leaky_charge(v, x, v_reset, decay_input, lambda d: d * inv_tau)


def _leaky_charge(v, x, v_reset, decay_input: bool, leak_of):
    above_rest = v if v_reset is None else v - v_reset
    if decay_input:
        return v + leak_of(x - above_rest)
    return v - leak_of(above_rest) + x


def plif_inv_tau(w: torch.Tensor) -> torch.Tensor:
    """1/tau of a ParametricLIFNode from its parameter ``w``: sigmoid(w)."""
    return w.sigmoid()


def plif_tau(w: torch.Tensor) -> float:
    """The membrane time constant (in steps) of a ParametricLIFNode with parameter ``w``: 1 / sigmoid(w)."""
    return 1.0 / float(plif_inv_tau(w))


def charge_mlf(v: torch.Tensor, x: torch.Tensor, decay: float) -> torch.Tensor:
    """MLF's charge: H = decay * V + X (``decay``: the fraction of the membrane kept from one step to the next)."""
    return decay * v + x


# --- fire ---------------------------------------------------------------------------------------------
def fire(h: torch.Tensor, v_threshold) -> torch.Tensor:
    """Where the neuron fires: H >= V_th (bool)."""
    return h >= v_threshold


# --- reset --------------------------------------------------------------------------------------------
def reset_hard(h: torch.Tensor, fired: torch.Tensor, v_reset: float) -> torch.Tensor:
    """V = V_reset where the neuron fired (``fired``, bool), else H."""
    return h.masked_fill(fired, v_reset)


def reset_soft(h: torch.Tensor, spikes: torch.Tensor, v_threshold: float) -> torch.Tensor:
    """V = H - V_th * S (reset by subtraction; ``spikes`` in {0, 1} of H's dtype)."""
    return h - spikes * v_threshold


def reset_by_product(h: torch.Tensor, spikes: torch.Tensor) -> torch.Tensor:
    """V = H * (1 - S): a hard reset to 0 through which gradients flow (MLF)."""
    return h * (1.0 - spikes)


def fire_and_reset(h: torch.Tensor, v_threshold: float, v_reset: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(spikes S in H's dtype, membrane V after the reset) of one step: hard reset to ``v_reset``, soft for None."""
    fired = fire(h, v_threshold)
    spikes = fired.to(h.dtype)
    v = reset_soft(h, spikes, v_threshold) if v_reset is None else reset_hard(h, fired, v_reset)
    return spikes, v


# --- in place, for the fused autograd function ----------------------------------------------------------
def charge_(out: torch.Tensor, v: torch.Tensor, x: torch.Tensor, tau: float | None, v_reset: float | None,
            scratch: torch.Tensor | None) -> torch.Tensor:
    """:func:`charge_if` (``tau`` None) or :func:`charge_lif` with ``decay_input``, written into ``out``
    (``scratch``: a buffer of ``out``'s shape, needed for LIF)."""
    if tau is None:
        return torch.add(v, x, out=out)
    torch.sub(v, 0.0 if v_reset is None else v_reset, out=scratch)  # V - V_reset (V - 0 = V exactly)
    torch.sub(x, scratch, out=scratch).div_(tau)
    return torch.add(v, scratch, out=out)


def fire_(out: torch.Tensor, h: torch.Tensor, v_threshold: float) -> torch.Tensor:
    """:func:`fire` written into ``out`` as 0/1 of ``out``'s dtype."""
    return torch.ge(h, v_threshold, out=out)


def reset_(out: torch.Tensor, h: torch.Tensor, spikes: torch.Tensor, v_threshold: float,
           v_reset: float | None) -> torch.Tensor:
    """:func:`reset_soft` (``v_reset`` None) or :func:`reset_hard`, written into ``out``; ``spikes`` 0/1."""
    if v_reset is None:
        return torch.sub(h, spikes, alpha=v_threshold, out=out)  # H - Vth * S
    if v_reset == 0.0:
        return torch.addcmul(h, h, spikes, value=-1.0, out=out)  # H - H * S: exactly 0 or H
    return out.copy_(h).masked_fill_(spikes.bool(), v_reset)
