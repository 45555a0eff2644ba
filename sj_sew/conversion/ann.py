"""The ReLU ResNet that S-ResNet converts: the ANN twin of the package's CIFAR-style spiking nets."""
from __future__ import annotations

from typing import Iterable

import torch
import torch.nn as nn

from ..models.layouts import cifar_blocks_per_stage
from ..training.loop import fit, make_optimizer, make_scheduler


class ANNBasicBlock(nn.Module):
    """Post-activation basic block with its own ReLU modules (so converters can find each site)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                            nn.BatchNorm2d(out_channels))
        self.relu2 = nn.ReLU()

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu2(self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x))))) + shortcut)


class ANNResNet(nn.Module):
    """CIFAR-style ReLU ResNet of depth 6n + 2: the ANN twin of the package's spiking nets."""

    def __init__(self, depth: int = 8, widths=(16, 32, 64), in_channels: int = 3, num_classes: int = 10):
        super().__init__()
        n = cifar_blocks_per_stage(depth)
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu1 = nn.ReLU()
        blocks, channels = [], widths[0]
        for i, width in enumerate(widths):
            for j in range(n):
                blocks.append(ANNBasicBlock(channels, width, 2 if (i > 0 and j == 0) else 1))
                channels = width
        self.blocks = nn.Sequential(*blocks)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.blocks(self.relu1(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def ann_resnet(depth: int = 8, **kwargs) -> ANNResNet:
    """The ReLU twin of ``ms_resnet``/SEW CIFAR-style nets, for conversion (kwargs: see ANNResNet)."""
    return ANNResNet(depth, **kwargs)


def train_ann(ann: nn.Module, loader: Iterable, epochs: int, lr: float = 1e-3, weight_decay: float = 0.0) -> nn.Module:
    """Adam + cross-entropy with a cosine learning rate, through sj_sew's training loop
    (:func:`sj_sew.training.fit`); returns ``ann`` in eval mode."""
    optimizer = make_optimizer("adam", ann.parameters(), lr, weight_decay=weight_decay)
    fit(ann, loader, optimizer, make_scheduler("cosine", optimizer, max(1, epochs)), epochs=epochs, progress=False)
    return ann.eval()
