"""Model registry and the network families; importing this registers every model.

- :mod:`.registry` -- ``create_model``/``list_models``/``register_model``/``register_variant``.
- :mod:`.base` -- :class:`SpikingNetwork`, the input contract and gradient checkpointing.
- :mod:`.init` -- weight initialisation; :mod:`.layouts` -- stage layouts and the stage builder.
- :mod:`.resnet`, :mod:`.ms_resnet`, :mod:`.ds_resnet`, :mod:`.notation` -- the networks.
"""
from .base import SpikingNetwork
from .ds_resnet import DSResNet
from .init import init_weights
from .layouts import RESNET_LAYOUTS, build_stages, cifar_blocks_per_stage
from .ms_resnet import MSResNet
from .notation import PAPER_NETS, NotationNet, parse_notation
from .registry import Variant, create_model, list_models, register_model, register_variant
from .resnet import SpikingResNet

__all__ = ["create_model", "list_models", "register_model", "register_variant", "Variant", "SpikingNetwork",
           "SpikingResNet", "MSResNet", "DSResNet", "NotationNet", "parse_notation", "PAPER_NETS",
           "RESNET_LAYOUTS", "cifar_blocks_per_stage", "build_stages", "init_weights"]
