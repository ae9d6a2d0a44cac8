"""Small networks built here: CIFAR-style ResNet-8, the 3x1024 MLP and an embedded ViT."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a 1x1 conv-BN shortcut when the shape changes (He et al.)."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )
        self.relu2 = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class ResNet8(nn.Module):
    """ResNet-8 for 32 px inputs as used by PruneGrad's CIFAR-10 experiments (spec §1.4).

    A 3x3 stem, three one-block stages (strides 1/2/2), global average pooling and a linear
    head. ``widths`` defaults to the paper's 64/128/256; the embedded default uses 16/32/64.
    Every ReLU is its own module so that hooks see each call once.
    """

    def __init__(
        self, num_classes: int = 10, in_channels: int = 3, widths: Sequence[int] = (64, 128, 256)
    ) -> None:
        super().__init__()
        w1, w2, w3 = (int(w) for w in widths)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, w1, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(w1),
            nn.ReLU(),
        )
        self.layer1 = BasicBlock(w1, w1, stride=1)
        self.layer2 = BasicBlock(w1, w2, stride=2)
        self.layer3 = BasicBlock(w2, w3, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(w3, num_classes)

    def forward(self, x: Tensor) -> Tensor:  # [B, C, H, W] -> [B, K]
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


class MLP(nn.Module):
    """Fully connected ReLU network, 784-1024-1024-1024-10 in Kindermans et al. (UNREL §2).

    Inputs of any shape are flattened. Layers are ``fc0`` .. ``fc3`` with ReLUs ``relu0`` ..
    ``relu2``, so that the input-invariance experiment can change ``fc0.bias``.
    """

    def __init__(
        self,
        in_features: int = 784,
        hidden: Sequence[int] = (1024, 1024, 1024),
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        sizes = [int(in_features), *(int(h) for h in hidden)]
        for i in range(len(sizes) - 1):
            self.add_module(f"fc{i}", nn.Linear(sizes[i], sizes[i + 1]))
            self.add_module(f"relu{i}", nn.ReLU())
        self.add_module(f"fc{len(sizes) - 1}", nn.Linear(sizes[-1], num_classes))
        self.depth = len(sizes)

    def forward(self, x: Tensor) -> Tensor:  # [B, ...] -> [B, K]
        x = torch.flatten(x, 1)
        for i in range(self.depth - 1):
            x = getattr(self, f"relu{i}")(getattr(self, f"fc{i}")(x))
        return getattr(self, f"fc{self.depth - 1}")(x)


def small_vit(
    num_classes: int = 8,
    img_size: int = 32,
    in_chans: int = 3,
    patch_size: int = 4,
    embed_dim: int = 96,
    depth: int = 4,
    num_heads: int = 4,
    mlp_ratio: float = 2.0,
) -> nn.Module:
    """A few-layer timm VisionTransformer with small patches for 32-64 px images."""
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(
        img_size=img_size,
        patch_size=patch_size,
        in_chans=in_chans,
        num_classes=num_classes,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads,
        mlp_ratio=mlp_ratio,
    )
