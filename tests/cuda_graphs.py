"""One check the GPU tests share: a whole training step captured in a CUDA graph equals eager steps."""
from __future__ import annotations

import copy
from contextlib import nullcontext

import torch
from spikingjelly.activation_based import functional


def _step(net, optimizer, x, y):
    functional.reset_net(net)
    loss = torch.nn.functional.cross_entropy(net(x), y)
    loss.backward()
    optimizer.step()
    return loss


def check_training_step_in_a_cuda_graph(model, size: int, classes: int = 5, twin=None, capturing=nullcontext):
    """Capture one training step of ``model`` (reset, forward, cross-entropy, backward, SGD) in a CUDA graph after
    two warm-up steps on a side stream (Triton compiles, cuDNN plans), replay it on 3 new batches of 2
    ``size`` x ``size`` images and compare the losses and final weights with eager steps of ``twin`` (default: a
    copy of the warmed-up model; a given twin gets the warmed-up weights) from the same state. ``capturing``: a
    context entered around the capture only."""
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    static_x, static_y = torch.rand(2, 3, size, size, device="cuda"), torch.tensor([1, 3], device="cuda")
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            opt.zero_grad(set_to_none=True)
            _step(model, opt, static_x, static_y)
    torch.cuda.current_stream().wait_stream(side)
    if twin is None:
        twin = copy.deepcopy(model)
    else:
        twin.load_state_dict(model.state_dict())
    twin_opt = torch.optim.SGD(twin.parameters(), lr=0.05)
    graph = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=True)
    with capturing(), torch.cuda.graph(graph):
        static_loss = _step(model, opt, static_x, static_y)
    # capture recorded the step without running it: the model still holds the twin's weights
    for _ in range(3):
        x, y = torch.rand(2, 3, size, size, device="cuda"), torch.randint(0, classes, (2,), device="cuda")
        static_x.copy_(x), static_y.copy_(y)
        graph.replay()
        twin_opt.zero_grad(set_to_none=True)
        loss = _step(twin, twin_opt, x, y)
        torch.testing.assert_close(static_loss, loss, rtol=1e-4, atol=1e-5)
    for (name, p), q in zip(model.named_parameters(), twin.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5, msg=name)
