"""Weight initialisation of every sj_sew network, in one place."""
from __future__ import annotations

import torch
import torch.nn as nn

from ..blocks import ResidualBlock


@torch.no_grad()
def init_weights(model: nn.Module, *, kaiming_convs: bool = True, bn_weight: float = 1.0,
                 zero_init_residual: bool = False, last_bn_weight: float | None = None) -> None:
    """Initialise ``model`` in place.

    Args:
        kaiming_convs: Kaiming-normal conv weights (fan_out, ReLU gain, as torchvision); False keeps
            PyTorch's default init (MS-ResNet's authors).
        bn_weight: every BatchNorm's weight (bias 0): 1 (torchvision), Vth (MS-ResNet), theta_1 (DS-ResNet).
        zero_init_residual: start every residual block as an identity mapping (:meth:`ResidualBlock.zero_init_last`).
        last_bn_weight: otherwise, the weight of each block's last BN (MS-ResNet: 0.2 Vth); None leaves it.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and kaiming_convs:
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, bn_weight)
            nn.init.zeros_(m.bias)
    for m in model.modules():
        if isinstance(m, ResidualBlock):
            if zero_init_residual:
                m.zero_init_last()
            elif last_bn_weight is not None:
                nn.init.constant_(m.last_bn.weight, last_bn_weight)
