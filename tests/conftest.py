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


