"""sj_sew: SEW ResNet and the residual spiking networks it competes with, on SpikingJelly.

    import sj_sew
    net = sj_sew.create_model("sew_resnet18", connect="ADD", neuron="if", T=4)
"""
from ._compat import SJ2, SJ_VERSION
from .blocks import BasicBlock, Bottleneck, ResidualBlock
from .connect import get_connect, list_connects, register_connect
from .models import NotationNet, SpikingResNet, create_model, list_models, register_model
from .neurons import NeuronSpec, list_neurons
from .surrogate import Constant, Rectangular

__version__ = "0.1.0"

__all__ = [
    "create_model", "list_models", "register_model",
    "register_connect", "get_connect", "list_connects",
    "NeuronSpec", "list_neurons", "Rectangular", "Constant",
    "BasicBlock", "Bottleneck", "ResidualBlock", "SpikingResNet", "NotationNet",
    "SJ_VERSION", "SJ2", "__version__",
]
