"""Models a user might bring: each built and trained by its own code and recipe, not by
obliviate's ``fit`` — the deletion policy never sees these loops, only the trained module.

Each entry: ``build(seed) -> nn.Module`` and ``train(model, x, y, seed) -> model`` on model-ready
float tensors. ``DEV`` entries are the ones the deletion policy's settings were chosen on;
``REPORT`` entries are only ever measured.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class UserModel:
    name: str
    data: str  # "cifar10" or "digits_tabular"
    summary: str  # what it is and how it was trained
    build: Callable[[int], nn.Module]
    train: Callable[[nn.Module, torch.Tensor, torch.Tensor, int], nn.Module]


def _batches(n: int, bs: int, g: torch.Generator) -> list[torch.Tensor]:
    return list(torch.randperm(n, generator=g).split(bs))


def _flip_crop(x: torch.Tensor, g: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random horizontal flip and pad-and-crop on a batch (N, C, H, W)."""
    n, _, h, w = x.shape
    flip = torch.rand(n, generator=g) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    xp = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    i, j = torch.randint(0, 2 * pad + 1, (2,), generator=g).tolist()
    return xp[:, :, i : i + h, j : j + w]


# -- 1. torchvision's ResNet-18, SGD + momentum, cosine, flip/crop ----------------------------------


def build_resnet18(seed: int) -> nn.Module:
    from torchvision.models import resnet18

    torch.manual_seed(seed)
    m = resnet18(num_classes=10)  # the ImageNet stem as shipped: 7x7 stride-2 conv + max-pool
    return m


def train_resnet18(model: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    epochs, bs = 10, 128
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    total = epochs * math.ceil(len(y) / bs)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, total)
    model.train()
    for _ in range(epochs):
        for b in _batches(len(y), bs, g):
            loss = F.cross_entropy(model(_flip_crop(x[b], g)), y[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


# -- 2. a timm Vision Transformer, AdamW with warm-up and cosine --------------------------------------


def build_vit(seed: int) -> nn.Module:
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(seed)
    return VisionTransformer(
        img_size=32, patch_size=4, num_classes=10, embed_dim=96, depth=4, num_heads=4, mlp_ratio=2.0
    )


def train_vit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    epochs, bs = 20, 128
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    steps = epochs * math.ceil(len(y) / bs)
    warm = steps // 10
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / (steps - warm)))
    )
    model.train()
    for _ in range(epochs):
        for b in _batches(len(y), bs, g):
            loss = F.cross_entropy(model(_flip_crop(x[b], g)), y[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


# -- 3. a small CNN, Adam, label smoothing 0.1, step decay, no augmentation -------------------------


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(128, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build_cnn(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return SmallCNN()


def train_cnn(model: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    epochs, bs = 24, 64
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=8, gamma=0.3)
    model.train()
    for _ in range(epochs):
        for b in _batches(len(y), bs, g):
            loss = F.cross_entropy(model(x[b]), y[b], label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
    return model.eval()


# -- 4. an MLP on tabular features (scikit-learn's digits: 64 pixel intensities, standardised) --------


def build_mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))


def train_mlp(model: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    epochs, bs = 60, 32
    opt = torch.optim.RMSprop(model.parameters(), lr=1e-3, weight_decay=1e-4)
    model.train()
    for _ in range(epochs):
        for b in _batches(len(y), bs, g):
            loss = F.cross_entropy(model(x[b]), y[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.eval()


# -- dev models: the deletion policy's settings were chosen on these, never on the four above --------


class DevCNN(nn.Module):
    """A VGG-style CNN with batch norm (a different family from SmallCNN: BN, no global pooling)."""

    def __init__(self) -> None:
        super().__init__()

        def block(i: int, o: int) -> list[nn.Module]:
            return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU()]

        self.net = nn.Sequential(
            *block(3, 32),
            nn.MaxPool2d(2),
            *block(32, 64),
            nn.MaxPool2d(2),
            *block(64, 96),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(96 * 16, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def build_dev_cnn(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return DevCNN()


def train_dev_cnn(model: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    epochs, bs = 15, 128
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 0.1, total_steps=epochs * math.ceil(len(y) / bs))
    model.train()
    for _ in range(epochs):
        for b in _batches(len(y), bs, g):
            loss = F.cross_entropy(model(_flip_crop(x[b], g)), y[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


class IssueCNN(nn.Module):
    """The shape of the small CNN a new user first tried (two conv layers, a linear head, Adam)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(16, 32, 3, padding=1)
        self.fc = nn.Linear(32 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc(x.flatten(1))


def build_issue_cnn(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return IssueCNN()


def train_issue_cnn(model: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(5):
        for b in _batches(len(y), 64, g):
            loss = F.cross_entropy(model(x[b]), y[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.eval()


REPORT = (
    UserModel(
        "resnet18_sgd",
        "cifar10",
        "torchvision ResNet-18 (ImageNet stem, 11.2 M params), SGD momentum 0.9, "
        "lr 0.05 cosine, wd 5e-4, flip + crop, 10 epochs",
        build_resnet18,
        train_resnet18,
    ),
    UserModel(
        "vit_adamw",
        "cifar10",
        "timm VisionTransformer (patch 4, dim 96, depth 4), AdamW lr 2e-3 wd 0.05, "
        "10 % warm-up + cosine, flip + crop, 20 epochs",
        build_vit,
        train_vit,
    ),
    UserModel(
        "cnn_adam_ls",
        "cifar10",
        "3-conv CNN without batch norm, dropout, Adam lr 2e-3, label smoothing 0.1, "
        "step decay, no augmentation, 24 epochs",
        build_cnn,
        train_cnn,
    ),
    UserModel(
        "mlp_tabular",
        "digits_tabular",
        "3-layer MLP on scikit-learn's digits as 64 standardised features, RMSprop lr 1e-3, 60 epochs",
        build_mlp,
        train_mlp,
    ),
)
DEV = (
    UserModel(
        "dev_vgg_bn",
        "cifar10",
        "VGG-style CNN with batch norm, SGD Nesterov one-cycle lr 0.1, flip + crop, 15 epochs",
        build_dev_cnn,
        train_dev_cnn,
    ),
    UserModel(
        "dev_issue_cnn",
        "cifar10",
        "2-conv CNN, Adam lr 1e-3, 5 epochs (the first user's model)",
        build_issue_cnn,
        train_issue_cnn,
    ),
)
MODELS = {m.name: m for m in REPORT + DEV}
