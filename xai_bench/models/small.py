"""Small networks built here: CIFAR-style ResNet-8, a narrow VGG-16, the 3x1024 MLP and an
embedded ViT."""

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
    """ResNet-8 for 32 px inputs as used by PruneGrad's CIFAR-10 experiments.

    A 3x3 stem, three one-block stages (strides 1/2/2), global average pooling and a linear
    head. ``widths`` defaults to the paper's 64/128/256; the embedded default uses 16/32/64.
    Every ReLU is its own module so that hooks see each call once. (Channels-last training,
    1.3x faster per step on one CPU thread, crashed torch's CPU backward in the fine-tuning
    tests, so ResNet-8 trains channels-first.)
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


VGG16_BLOCKS = (2, 2, 3, 3, 3)  # 3x3 conv + ReLU layers per block, each block then max-pooled


class SmallVGG(nn.Module):
    """VGG-16's layout (Simonyan & Zisserman 2015) at narrow widths for 32-64 px inputs.

    13 conv3x3+ReLU layers in five blocks of 2, 2, 3, 3, 3 with 2x2 max-pooling after each block,
    adaptive average pooling and a classifier FC+ReLU, FC+ReLU, FC: 15 ReLU layers and no
    residuals, so that positive aggregation acts through as many ReLUs as in VGG-16 (POSAGG
    §1.6) and every method for plain ReLU CNNs applies (guided backprop, RectGrad, LRP,
    PatternNet). Module names are torchvision's: ``features.N`` (relu5_3 = ``features.29``; the
    block outputs B1..B5 = ``features.3/8/15/22/29``), ``avgpool`` and ``classifier.0/3/6``, so
    that layer names of ``model=vgg16`` work unchanged. Convs are initialised as torchvision's
    (Kaiming normal, fan-out), linears Kaiming normal (fan-in; torchvision's N(0, 0.01) stalls
    narrow heads), biases zero.

    ``batch_norm=True`` adds a ``BatchNorm2d`` after every conv, kept in ``norms`` (keyed by the
    conv's index in ``features``) so that the other names do not move. It is for training
    only: a plain ``SmallVGG`` loading such a state dict folds each norm into its conv
    (:meth:`fold_norms`, exact in eval mode), so that the evaluated network is again
    conv/ReLU/pool/linear. A plain narrow VGG without it stalls for thousands of steps on
    ``shapes_multi``. In training mode the input is made channels-last (faster on CPU).

    Args:
        num_classes: outputs.
        in_channels: input channels.
        widths: channels of the five conv blocks (VGG-16: 64, 128, 256, 512, 512).
        hidden: width of the two hidden FC layers (VGG-16: 4096).
        pool_size: side of ``avgpool``'s output (VGG-16: 7; 1 = global average pooling, which
            takes any input of at least 32 px).
        dropout: dropout before the second and third FC layers (VGG-16: 0.5).
        batch_norm: train with batch norm after each conv (folded into the convs on loading).
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        widths: Sequence[int] = (8, 16, 32, 32, 32),
        hidden: int = 64,
        pool_size: int = 1,
        dropout: float = 0.0,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        if len(widths) != len(VGG16_BLOCKS):
            raise ValueError(f"widths needs {len(VGG16_BLOCKS)} entries, got {list(widths)}")
        layers: list[nn.Module] = []
        norms: dict[str, nn.Module] = {}
        c = int(in_channels)
        for width, n in zip((int(w) for w in widths), VGG16_BLOCKS, strict=True):
            for _ in range(n):
                if batch_norm:
                    norms[str(len(layers))] = nn.BatchNorm2d(width)
                layers += [nn.Conv2d(c, width, 3, padding=1), nn.ReLU(inplace=False)]
                c = width
            layers.append(nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*layers)
        self.norms = nn.ModuleDict(norms) if batch_norm else None
        self.avgpool = nn.AdaptiveAvgPool2d(int(pool_size))
        self.classifier = nn.Sequential(
            nn.Linear(c * int(pool_size) ** 2, int(hidden)),
            nn.ReLU(inplace=False),
            nn.Dropout(dropout),
            nn.Linear(int(hidden), int(hidden)),
            nn.ReLU(inplace=False),
            nn.Dropout(dropout),
            nn.Linear(int(hidden), num_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
        if not batch_norm:
            self.register_load_state_dict_pre_hook(_fold_on_load)

    def forward(self, x: Tensor) -> Tensor:  # [B, C, H, W] -> [B, K]
        if self.training:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.norms is None:
            x = self.features(x)
        else:
            for i, layer in enumerate(self.features):
                x = layer(x)
                if str(i) in self.norms:
                    x = self.norms[str(i)](x)
        x = self.avgpool(x)
        return self.classifier(torch.flatten(x, 1))

    @staticmethod
    def fold_norms(state: dict[str, Tensor], prefix: str = "") -> dict[str, Tensor]:
        """Fold the ``norms.N`` batch norms of a ``batch_norm=True`` state dict into the convs
        ``features.N`` (in place; also returned): ``w' = w s``, ``b' = (b - mean) s + beta``
        with ``s = gamma / sqrt(var + eps)``. Computed in float64; ``eps`` is BatchNorm2d's."""
        norm = f"{prefix}norms."
        indices = {k[len(norm) :].split(".")[0] for k in state if k.startswith(norm)}
        for i in sorted(indices, key=int):
            bn = {k: state.pop(f"{norm}{i}.{k}", None) for k in _BN_KEYS}
            conv_w, conv_b = f"{prefix}features.{i}.weight", f"{prefix}features.{i}.bias"
            w, b = state[conv_w], state[conv_b]
            scale = bn["weight"].double() / (bn["running_var"].double() + 1e-5).sqrt()
            state[conv_w] = (w.double() * scale[:, None, None, None]).to(w.dtype)
            shift = (b.double() - bn["running_mean"].double()) * scale + bn["bias"].double()
            state[conv_b] = shift.to(b.dtype)
        return state


def _fold_on_load(module: nn.Module, state: dict[str, Tensor], prefix: str, *args: object) -> None:
    SmallVGG.fold_norms(state, prefix)


_BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


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
    global_pool: str = "token",
) -> nn.Module:
    """A few-layer timm VisionTransformer with small patches for 32-64 px images.

    ``global_pool="avg"`` drops the class token and averages the patch tokens (trains faster on
    a few thousand images; set ``model.num_prefix_tokens: 0`` with it).
    """
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
        global_pool=global_pool,
        class_token=global_pool == "token",
    )
