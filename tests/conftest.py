import random

import numpy as np
import pytest
import torch
from spikingjelly.activation_based import functional


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


