"""Model registry and the network families; importing this registers every factory."""
from ._registry import create_model, list_models, register_model
from .base import SpikingNetwork
from .notation import PAPER_NETS, NotationNet, parse_notation
from .resnet import RESNET_LAYOUTS, SpikingResNet
from .ms_resnet import MSResNet  # noqa: F401  (registers ms_resnet*)
from .ds_resnet import DSResNet  # noqa: F401  (registers ds_resnet*)

__all__ = ["create_model", "list_models", "register_model", "SpikingNetwork", "SpikingResNet",
           "NotationNet", "parse_notation", "PAPER_NETS", "RESNET_LAYOUTS"]
