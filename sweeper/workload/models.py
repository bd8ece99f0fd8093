"""The seed's models, built from torchvision with random weights (nothing is downloaded)."""

from __future__ import annotations

import math
from functools import partial
from typing import Any

from torch import nn
from torchvision import models
from torchvision.models.efficientnet import MBConv, MBConvConfig, _efficientnet_conf
from torchvision.ops import Conv2dNormActivation

MODEL_NAMES = (
    "resnet50",
    "resnext101",
    "efficientnet_b0",
    "efficientnet_b4",
    "efficientnet_b4_g16",
)
# EfficientNet scaling: (arch whose width/depth torchvision knows, dropout).
_EFFICIENTNET = {
    "efficientnet_b0": ("efficientnet_b0", 0.2),
    "efficientnet_b4": ("efficientnet_b4", 0.4),
    "efficientnet_b4_g16": ("efficientnet_b4", 0.4),
}
_WIDTH_DEPTH = {"efficientnet_b0": (1.0, 1.0), "efficientnet_b4": (1.4, 1.8)}
_TORCHVISION_EXPAND_RATIO = 6


class GroupedMBConv(MBConv):
    """MBConv whose spatial convolution has `group_dim` channels per group instead of one
    (depthwise), as in Graphcore's "Group Dim 16" EfficientNet. A layer whose width is not
    a multiple of group_dim (B4's first stage has 24 channels) uses the largest group size
    dividing both."""

    def __init__(self, cnf: MBConvConfig, *args: Any, group_dim: int, **kwargs: Any) -> None:
        super().__init__(cnf, *args, **kwargs)
        expanded = cnf.adjust_channels(cnf.input_channels, cnf.expand_ratio)
        per_group = math.gcd(expanded, group_dim)
        # The block is [expand?, depthwise, squeeze-excitation, project].
        index = 1 if expanded != cnf.input_channels else 0
        depthwise = self.block[index]
        self.block[index] = Conv2dNormActivation(
            expanded,
            expanded,
            kernel_size=cnf.kernel,
            stride=cnf.stride,
            groups=expanded // per_group,
            norm_layer=type(depthwise[1]),
            activation_layer=nn.SiLU,
        )


def efficientnet(name: str, group_dim: int, expand_ratio: int) -> nn.Module:
    arch, dropout = _EFFICIENTNET[name]
    width, depth = _WIDTH_DEPTH[arch]
    settings, last_channel = _efficientnet_conf(arch, width_mult=width, depth_mult=depth)
    for cnf in settings:
        assert isinstance(cnf, MBConvConfig)
        if cnf.expand_ratio == _TORCHVISION_EXPAND_RATIO:
            cnf.expand_ratio = expand_ratio
        if group_dim > 1:
            cnf.block = partial(GroupedMBConv, group_dim=group_dim)
    return models.EfficientNet(settings, dropout, last_channel=last_channel)


def build_model(name: str, group_dim: int = 1, expand_ratio: int = 6) -> nn.Module:
    if name == "resnet50":
        return models.resnet50(weights=None)
    if name == "resnext101":
        # ResNeXt-101 32x4d: torchvision ships 32x8d and 64x4d; the seed's is 32x4d.
        return models.ResNet(models.resnet.Bottleneck, [3, 4, 23, 3], groups=32, width_per_group=4)
    if name in _EFFICIENTNET:
        return efficientnet(name, group_dim, expand_ratio)
    raise ValueError(f"unknown model '{name}': choose one of {', '.join(MODEL_NAMES)}")
