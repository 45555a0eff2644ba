"""One check the kernel tests share: a step through ``torch.compile(fullgraph=True)`` equals the eager step."""
from __future__ import annotations

from contextlib import nullcontext

import torch
from spikingjelly.activation_based import functional


def check_compiled_equals_eager(step, params, make_args, context=nullcontext, rtol: float = 0.0, atol: float = 0.0,
                                reset=None):
    """Run ``step(*make_args())`` -> (loss, output) eagerly, then compiled in one graph (``aot_eager``: the traced
    graph without Inductor's code generation), each inside ``context`` with the grads of ``params`` cleared and the
    network ``reset`` (SpikingJelly's reset_net, eagerly, as a training loop calls it: traced, its module cache
    becomes a guard that a later compile in the process trips over), and backpropagate the loss after leaving it.
    The outputs must be equal bit for bit; the losses and the gradients (``params``, then every argument that
    requires grad) within ``rtol``/``atol`` (default: exactly). Returns the eager output."""
    torch._dynamo.reset()
    results = []
    for fn in (step, torch.compile(step, fullgraph=True, backend="aot_eager")):
        for p in params:
            p.grad = None
        args = make_args()
        if reset is not None:
            functional.reset_net(reset)
        with context():
            loss, out = fn(*args)
        loss.backward()
        inputs = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
        results.append((loss.detach(), out.detach(), [t.grad.clone() for t in (*params, *inputs)]))
    (loss0, out0, grads0), (loss1, out1, grads1) = results
    assert torch.equal(out1, out0)
    torch.testing.assert_close(loss1, loss0, rtol=rtol, atol=atol)
    assert len(grads1) == len(grads0)
    for a, b in zip(grads1, grads0):
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol)
    return out0
