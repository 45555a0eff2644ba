import random

import numpy as np
import pytest
import torch
from spikingjelly.activation_based import functional


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """The tests' tensors are tiny: one thread is as fast, and OpenMP threads spinning on a busy
    2-core machine made them many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    yield


def spikes(*shape, p=0.5):
    """Random binary spikes of ``shape``."""
    return (torch.rand(*shape) < p).float()


def run(net, x):
    """One forward from rest."""
    functional.reset_net(net)
    out = net(x)
    functional.reset_net(net)
    return out




def train_forward_backward(net, x, time_mean=False):
    """A training-mode forward from rest and the backward of a fixed, non-uniform loss; returns the output."""
    functional.reset_net(net)
    out = net(x)
    out = out.mean(0) if time_mean else out
    (out * torch.linspace(-1, 1, out.shape[-1])).sum().backward()
    functional.reset_net(net)
    return out.detach()


def grads(net):
    """Parameter name -> a copy of its gradient."""
    return {k: p.grad.clone() for k, p in net.named_parameters() if p.grad is not None}


def model_pair(name, **kwargs):
    """A registered model with non-trivial BatchNorm affine parameters, and a deep copy of it."""
    import copy

    import sj_sew

    torch.manual_seed(0)
    base = sj_sew.create_model(name, **kwargs)
    for m in base.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.6, 1.6)
            m.bias.data.uniform_(0.0, 0.4)
    return base, copy.deepcopy(base)


@pytest.fixture
def one_preprocessing_thread(monkeypatch):
    """SpikingJelly converts DVS files in a thread pool; CPython 3.11's parser is not thread-safe when numpy reads
    .npz headers from several threads (seen once on a loaded machine: "SystemError: AST constructor recursion
    depth mismatch"), so the loader tests convert with one thread."""
    from spikingjelly import configure

    monkeypatch.setattr(configure, "max_threads_number_for_datasets_preprocess", 1)
