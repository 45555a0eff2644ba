"""Network layouts: torchvision's ResNet stages, CIFAR-style depths, and the one stage builder."""
from __future__ import annotations

from typing import Sequence

from ..blocks import BasicBlock, Bottleneck, ResidualBlock
from ..memory import SegmentedSequential

#: depth -> (block, blocks per stage), as in torchvision.
RESNET_LAYOUTS = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}


def cifar_blocks_per_stage(depth: int) -> int:
    """n for a CIFAR-style ResNet of depth 6n + 2 (three stages of n two-conv blocks, stem, FC)."""
    if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"CIFAR-style depth must be 6n + 2 with n >= 1 (8, 14, 20, 32, 44, 56, 110, 482, ...), "
                         f"got {depth!r}")
    return (depth - 2) // 6


def build_stages(block: type[ResidualBlock], in_channels: int, planes: Sequence[int], blocks: Sequence[int],
                 first_stride: int = 1, **block_kwargs) -> tuple[list[SegmentedSequential], int]:
    """Stages of residual blocks: stage i has ``blocks[i]`` blocks of width ``planes[i]``; its first block
    has stride ``first_stride`` (stage 0) or 2 (later stages). Returns the stages and the output channels."""
    if len(planes) != len(blocks) or not blocks or any(int(n) < 1 for n in blocks):
        raise ValueError(f"stages {tuple(blocks)} and widths {tuple(planes)} must be equally long, "
                         "with at least one block per stage")
    stages, channels = [], in_channels
    for i, (width, n_blocks) in enumerate(zip(planes, blocks)):
        stage = []
        for j in range(n_blocks):
            stride = (first_stride if i == 0 else 2) if j == 0 else 1
            stage.append(block(channels, width, stride, **block_kwargs))
            channels = width * block.expansion
        stages.append(SegmentedSequential(*stage))
    return stages, channels
