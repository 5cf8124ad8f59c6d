"""Convolutional networks with a CIFAR stem (3x3 conv, stride 1, no max-pool), written in-house.

timm's ResNet, VGG and DenseNet carry the ImageNet stem (7x7 stride-2 conv + max-pool, or VGG's
4096-wide FC stack), which wastes a 32-px input, so the CIFAR variants that the paper's CNN runs use
(the paper's CIFAR-100 networks) are defined here. ``width`` scales every stage (64 = the published networks; the
DenseNet's growth rate is ``width // 2``, 32 published), so quick tiers can run the same shapes thin.

- ResNet: He et al., "Deep Residual Learning for Image Recognition", CVPR 2016, https://arxiv.org/abs/1512.03385
- VGG: Simonyan & Zisserman, ICLR 2015, https://arxiv.org/abs/1409.1556, with batch norm and one linear
  classifier (the CIFAR variant, "no FC stack")
- DenseNet-BC: Huang et al., CVPR 2017, https://arxiv.org/abs/1608.06993
"""

from __future__ import annotations

import torch
from torch import nn


def _conv_bn(cin: int, cout: int, kernel: int = 3, stride: int = 1) -> list:
    return [nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, bias=False), nn.BatchNorm2d(cout)]


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        cout = width * self.expansion
        self.body = nn.Sequential(*_conv_bn(cin, width, 3, stride), nn.ReLU(inplace=True), *_conv_bn(width, cout))
        self.shortcut = nn.Sequential(*_conv_bn(cin, cout, 1, stride)) if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x):
        return torch.relu(self.body(x) + self.shortcut(x))


class Bottleneck(BasicBlock):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int):
        nn.Module.__init__(self)
        cout = width * self.expansion
        self.body = nn.Sequential(
            *_conv_bn(cin, width, 1),
            nn.ReLU(inplace=True),
            *_conv_bn(width, width, 3, stride),
            nn.ReLU(inplace=True),
            *_conv_bn(width, cout, 1),
        )
        self.shortcut = nn.Sequential(*_conv_bn(cin, cout, 1, stride)) if stride != 1 or cin != cout else nn.Identity()


class ResNet(nn.Module):
    """CIFAR-stem ResNet: stages of ``width * (1, 2, 4, 8)`` channels, strides (1, 2, 2, 2)."""

    def __init__(self, block, layers, num_classes: int, width: int = 64):
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn(3, width), nn.ReLU(inplace=True))
        stages, cin = [], width
        for i, n in enumerate(layers):
            for j in range(n):
                stages.append(block(cin, width * 2**i, 2 if (i > 0 and j == 0) else 1))
                cin = width * 2**i * block.expansion
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes))

    def forward(self, x):
        return self.head(self.stages(self.stem(x)))


VGG_LAYERS = {  # channels at width 64; "M" = 2x2 max-pool
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}


class VGG(nn.Module):
    """VGG with batch norm, CIFAR variant: conv stack, global average pool, one linear classifier."""

    def __init__(self, layers, num_classes: int, width: int = 64):
        super().__init__()
        mods, cin = [], 3
        for v in layers:
            if v == "M":
                mods.append(nn.MaxPool2d(2))
            else:
                cout = v * width // 64
                mods += [*_conv_bn(cin, cout), nn.ReLU(inplace=True)]
                cin = cout
        self.features = nn.Sequential(*mods)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes))

    def forward(self, x):
        return self.head(self.features(x))


class _DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(cin),
            nn.ReLU(inplace=True),
            nn.Conv2d(cin, 4 * growth, 1, bias=False),
            nn.BatchNorm2d(4 * growth),
            nn.ReLU(inplace=True),
            nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False),
        )

    def forward(self, x):
        return torch.cat([self.body(x), x], 1)


class DenseNet(nn.Module):
    """DenseNet-BC (bottleneck, compression 0.5) with a 3x3 stem of ``2 * growth`` channels."""

    def __init__(self, blocks, num_classes: int, growth: int = 32, reduction: float = 0.5):
        super().__init__()
        cin = 2 * growth
        mods = [nn.Conv2d(3, cin, 3, padding=1, bias=False)]
        for i, n in enumerate(blocks):
            for _ in range(n):
                mods.append(_DenseLayer(cin, growth))
                cin += growth
            if i < len(blocks) - 1:
                cout = int(cin * reduction)
                mods += [
                    nn.BatchNorm2d(cin),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(cin, cout, 1, bias=False),
                    nn.AvgPool2d(2),
                ]
                cin = cout
        mods += [nn.BatchNorm2d(cin), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*mods)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes))

    def forward(self, x):
        return self.head(self.features(x))


def cifar_cnn(arch: str, num_classes: int, width: int = 64) -> nn.Module:
    """``resnet18|resnet34|resnet50|vgg11|vgg16|densenet121`` (batch norm throughout) with a CIFAR stem."""
    if arch == "resnet18":
        return ResNet(BasicBlock, (2, 2, 2, 2), num_classes, width)
    if arch == "resnet34":
        return ResNet(BasicBlock, (3, 4, 6, 3), num_classes, width)
    if arch == "resnet50":
        return ResNet(Bottleneck, (3, 4, 6, 3), num_classes, width)
    if arch in VGG_LAYERS:
        return VGG(VGG_LAYERS[arch], num_classes, width)
    if arch == "densenet121":
        return DenseNet((6, 12, 24, 16), num_classes, growth=width // 2)
    raise ValueError(f"unknown CNN {arch!r}; use resnet18, resnet34, resnet50, vgg11, vgg16 or densenet121")
