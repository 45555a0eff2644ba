"""Model registry and the network families; importing this registers every factory."""
from ._registry import create_model, list_models, register_model
from .base import SpikingNetwork
from .notation import PAPER_NETS, NotationNet, parse_notation
from .resnet import RESNET_LAYOUTS, SpikingResNet

__all__ = ["create_model", "list_models", "register_model", "SpikingNetwork", "SpikingResNet",
           "NotationNet", "parse_notation", "PAPER_NETS", "RESNET_LAYOUTS"]
