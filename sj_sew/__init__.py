"""sj_sew: SEW ResNet and the residual spiking networks it competes with, on SpikingJelly.

    import sj_sew
    net = sj_sew.create_model("sew_resnet18", connect="ADD", neuron="if", T=4)

Module map (see README, "Architecture"): ``neurons`` (specs, surrogates, fused IF/LIF, MLF), ``connect``
(g of SEW blocks), ``blocks`` (one block contract, the family table), ``models`` (registry and networks),
``memory`` (exact gradient checkpointing), ``deploy`` (BN folding, inference model), ``conversion``
(ANN-to-SNN), ``training`` (run configuration, loop, checkpoints), ``data``, ``analysis``, ``_compat``
(every SpikingJelly version difference).
"""
from ._compat import SJ2, SJ_VERSION
from ._version import __version__
from .blocks import BasicBlock, Bottleneck, ResidualBlock, list_families, register_family
from .connect import get_connect, list_connects, register_connect
from .deploy import inference_model
from .memory import memory_saving
from .models import (DSResNet, MSResNet, NotationNet, SpikingResNet, create_model, list_models, register_model,
                     register_variant)
from .neurons import Constant, MLFNode, NeuronSpec, Rectangular, list_neurons, list_surrogates
from .pretrained import load_pretrained
from .training.load import load_checkpoint


__all__ = [
    "create_model", "list_models", "register_model", "register_variant",
    "register_connect", "get_connect", "list_connects",
    "NeuronSpec", "list_neurons", "list_surrogates", "Rectangular", "Constant", "MLFNode",
    "BasicBlock", "Bottleneck", "ResidualBlock", "list_families", "register_family",
    "SpikingResNet", "MSResNet", "DSResNet", "NotationNet",
    "memory_saving", "inference_model", "load_pretrained", "load_checkpoint",
    "SJ_VERSION", "SJ2", "__version__",
]
