"""CIFAR-style convolutional nets (32×32 input) with a width multiplier for CPU runs.

* ``vgg16_bn`` — VGG16 with batch norm (Simonyan & Zisserman 2015), CIFAR variant: 13 conv
  layers, 5 max-pools down to 1×1, a 512-unit hidden layer and the classifier.
* ``resnet18`` — ResNet18 (He et al. 2016) with a 3×3 stride-1 stem and no max-pool.
* ``resnet9`` — the DAWNBench ResNet9 (Page 2018): prep, three conv-pool stages, two residuals.
* ``small_cnn`` — a three-layer net for 8×8 digits (and any size, via adaptive pooling).
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import register_model


def _w(channels: int, width: float) -> int:
    if width <= 0:
        raise ValueError(f"width multiplier must be > 0, got {width}")
    return max(4, int(round(channels * width)))


def conv_bn(cin: int, cout: int, pool: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """VGG with batch norm; ``features`` ends at 1×1 for 32×32 input."""

    CFG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")

    def __init__(self, num_classes: int, in_chans: int = 3, width: float = 1.0, hidden: int = 512) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_chans
        for v in self.CFG16:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                out = _w(int(v), width)
                layers += [nn.Conv2d(c, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
                c = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        h = _w(hidden, width)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(c, h), nn.ReLU(inplace=True), nn.Linear(h, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    def __init__(self, num_classes: int, in_chans: int = 3, width: float = 1.0) -> None:
        super().__init__()
        widths = [_w(c, width) for c in (64, 128, 256, 512)]
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, widths[0], 3, padding=1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)
        )
        blocks: list[nn.Module] = []
        c = widths[0]
        for i, w in enumerate(widths):
            stride = 1 if i == 0 else 2
            blocks += [BasicBlock(c, w, stride), BasicBlock(w, w, 1)]
            c = w
        self.layers = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.layers(self.stem(x))).flatten(1))


class Residual(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_bn(c, c), conv_bn(c, c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResNet9(nn.Module):
    def __init__(self, num_classes: int, in_chans: int = 3, width: float = 1.0) -> None:
        super().__init__()
        c1, c2, c3, c4 = (_w(c, width) for c in (64, 128, 256, 512))
        self.net = nn.Sequential(
            conv_bn(in_chans, c1),
            conv_bn(c1, c2, pool=True),
            Residual(c2),
            conv_bn(c2, c3, pool=True),
            conv_bn(c3, c4, pool=True),
            Residual(c4),
            nn.AdaptiveMaxPool2d(1),
            nn.Flatten(),
        )
        self.fc = nn.Linear(c4, num_classes)

    # DAWNBench's ResNet9 scales the logits by 1/8: max-pooled features are large, and without
    # it the first steps at lr ≈ 0.1 diverge.
    logit_scale = 0.125

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.net(x)) * self.logit_scale


class SmallCNN(nn.Module):
    """Three conv layers and a hidden layer; sized for 8×8 digits, works on any input size."""

    def __init__(self, num_classes: int, in_chans: int = 1, width: float = 1.0) -> None:
        super().__init__()
        c1, c2, c3 = (_w(c, width) for c in (32, 64, 64))
        self.features = nn.Sequential(
            conv_bn(in_chans, c1), conv_bn(c1, c2, pool=True), conv_bn(c2, c3), nn.AdaptiveAvgPool2d(2)
        )
        h = _w(128, width)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(c3 * 4, h), nn.ReLU(inplace=True), nn.Linear(h, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register_model("vgg16_bn", "VGG16 with batch norm, CIFAR variant (Table I of the paper)")
def vgg16_bn(num_classes: int, in_chans: int = 3, width: float = 1.0) -> nn.Module:
    return VGG(num_classes, in_chans, width)


@register_model("resnet18", "ResNet18, CIFAR variant: 3×3 stem, no max-pool")
def resnet18(num_classes: int, in_chans: int = 3, width: float = 1.0) -> nn.Module:
    return ResNet18(num_classes, in_chans, width)


@register_model("resnet9", "ResNet9 (DAWNBench), CIFAR")
def resnet9(num_classes: int, in_chans: int = 3, width: float = 1.0) -> nn.Module:
    return ResNet9(num_classes, in_chans, width)


@register_model("small_cnn", "small 3-layer CNN for the digits dataset", family="small", input_size=(8, 8))
def small_cnn(num_classes: int, in_chans: int = 1, width: float = 1.0) -> nn.Module:
    return SmallCNN(num_classes, in_chans, width)
