"""CIFAR-style ResNet-50 of OPPSD's CIFAR-100 ROAR runs (weiaicunzai/pytorch-cifar100 resnet50).

He et al. (2016)'s bottleneck ResNet-50 adapted to 32 px inputs: a 3x3 stride-1 stem without
max-pooling, four bottleneck stages of 3/4/6/3 blocks (widths 64/128/256/512, expansion 4,
strides 1/2/2/2, the stride in the 3x3 conv), global average pooling and a linear head, so a
32 px image ends in a 4x4 map of 2048 channels. Module names are the reference code's
(``conv1``, ``conv2_x`` .. ``conv5_x``, ``avg_pool``, ``fc``; inside a block
``residual_function`` and ``shortcut``), so its state dicts load unchanged. Every ReLU is a
module of its own (not in place) so that hooks see each call.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

#: blocks per stage and stage widths of ResNet-50
RESNET50_DEPTHS = (3, 4, 6, 3)
RESNET50_WIDTHS = (64, 128, 256, 512)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (strided) -> 1x1 (x``expansion``) conv-BN, plus a 1x1 conv-BN shortcut when
    the stride or the width changes; ReLU after the sum."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1) -> None:
        super().__init__()
        out = width * self.expansion
        self.residual_function = nn.Sequential(
            nn.Conv2d(in_channels, width, kernel_size=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, width, kernel_size=3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, out, kernel_size=1, bias=False),
            nn.BatchNorm2d(out),
        )
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out),
            )
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:  # [B, C, H, W] -> [B, 4 w, H / s, W / s]
        return self.relu(self.residual_function(x) + self.shortcut(x))


class CIFARResNet(nn.Module):
    """Bottleneck ResNet for 32 px images (the CIFAR ResNet-50 of OPPSD's CIFAR-100 runs).

    Args:
        num_classes: outputs.
        in_channels: input channels.
        depths: bottleneck blocks per stage (ResNet-50: 3, 4, 6, 3).
        widths: stage widths before the x4 expansion (ResNet-50: 64, 128, 256, 512); the stem
            has ``widths[0]`` channels.
    """

    def __init__(
        self,
        num_classes: int = 100,
        in_channels: int = 3,
        depths: Sequence[int] = RESNET50_DEPTHS,
        widths: Sequence[int] = RESNET50_WIDTHS,
    ) -> None:
        super().__init__()
        if len(depths) != 4 or len(widths) != 4 or min(*depths, *widths) < 1:
            raise ValueError(
                f"depths and widths need 4 positive entries each, got {list(depths)}, "
                f"{list(widths)}"
            )
        stem = int(widths[0])
        self.conv1 = nn.Sequential(
            nn.Conv2d(in_channels, stem, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(stem),
            nn.ReLU(),
        )
        channels = stem
        stages = []
        for depth, width, stride in zip(depths, widths, (1, 2, 2, 2), strict=True):
            blocks = []
            for i in range(int(depth)):
                blocks.append(Bottleneck(channels, int(width), stride if i == 0 else 1))
                channels = int(width) * Bottleneck.expansion
            stages.append(nn.Sequential(*blocks))
        self.conv2_x, self.conv3_x, self.conv4_x, self.conv5_x = stages
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:  # [B, C, H, W] -> [B, K]
        x = self.conv5_x(self.conv4_x(self.conv3_x(self.conv2_x(self.conv1(x)))))
        return self.fc(torch.flatten(self.avg_pool(x), 1))


def resnet50_cifar(num_classes: int = 100, in_channels: int = 3) -> CIFARResNet:
    """The CIFAR ResNet-50 (23.7 M parameters for 100 classes)."""
    return CIFARResNet(num_classes=num_classes, in_channels=in_channels)
