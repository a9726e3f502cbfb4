"""Convolutional encoder and decoder with residual blocks, mirror images of each other."""

from __future__ import annotations

import math
from itertools import pairwise

import torch
from torch import nn


class ResBlock(nn.Module):
    """x + conv1x1(act(conv3x3(act(x)))), as in the original VQ-VAE."""

    def __init__(self, channels: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
            nn.SiLU(), nn.Conv2d(channels, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual update."""
        return x + self.net(x)


def widths(channels: int, downsample: int) -> list[int]:
    """Channel count at each resolution, full size first: halves per level up from the trunk (min 8)."""
    levels = int(math.log2(downsample))
    return [max(8, channels >> (levels - i)) for i in range(levels + 1)]


class Encoder(nn.Module):
    """(B, 1, H, W) in [0, 1] -> (B, out_dim, H/ds, W/ds)."""

    def __init__(self, channels: int, res_blocks: int, downsample: int, out_dim: int):
        super().__init__()
        w = widths(channels, downsample)
        layers: list[nn.Module] = [nn.Conv2d(1, w[0], 3, padding=1)]
        for cin, cout in pairwise(w):
            layers += [nn.SiLU(), nn.Conv2d(cin, cout, 4, stride=2, padding=1)]
        layers += [ResBlock(w[-1]) for _ in range(res_blocks)]
        layers += [nn.SiLU(), nn.Conv2d(w[-1], out_dim, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode images centred around zero."""
        return self.net(x * 2.0 - 1.0)


class Decoder(nn.Module):
    """(B, code_dim, h, w) -> (B, 1, h*ds, w*ds), roughly in [0, 1]."""

    def __init__(self, channels: int, res_blocks: int, downsample: int, code_dim: int):
        super().__init__()
        w = widths(channels, downsample)[::-1]
        layers: list[nn.Module] = [nn.Conv2d(code_dim, w[0], 3, padding=1)]
        layers += [ResBlock(w[0]) for _ in range(res_blocks)]
        for cin, cout in pairwise(w):
            layers += [nn.SiLU(), nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1)]
        layers += [nn.SiLU(), nn.Conv2d(w[-1], 1, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Decode latents to images."""
        return self.net(z) * 0.5 + 0.5
