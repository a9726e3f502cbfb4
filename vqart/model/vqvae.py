"""The VQ-VAE: encoder, (residual) EMA quantizer and decoder joined."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vqart.config import ModelConfig
from vqart.errors import VqartError
from vqart.model.autoencoder import Decoder, Encoder
from vqart.model.quantizer import ResidualQuantizer


@dataclass
class VQOutput:
    """What one forward pass yields for the training loop."""

    recon: torch.Tensor  # (B, 1, H, W)
    codes: torch.Tensor  # (B, h, w), or (B, L, h, w) when levels > 1
    commit: torch.Tensor  # scalar commitment loss
    counts: torch.Tensor  # (L, K) codes used in this batch, per level


class VQVAE(nn.Module):
    """Grayscale spatial VQ-VAE: (B, 1, H, W) in [0, 1] -> a (H/ds, W/ds) grid of codes -> back."""

    def __init__(self, config: ModelConfig | None = None):
        super().__init__()
        config = config or ModelConfig()
        config.validate()
        self.config = config
        self.codebook_size, self.levels, self.downsample = config.codebook_size, config.levels, config.downsample
        args = (config.channels, config.res_blocks, config.downsample, config.code_dim)
        self.encoder, self.decoder = Encoder(*args), Decoder(*args)
        self.quantizer = ResidualQuantizer(
            config.levels, config.codebook_size, config.code_dim, decay=config.ema_decay, eps=config.ema_eps, kmeans_iters=config.kmeans_iters,
            dead_after=config.dead_after,
        )

    def check_size(self, height: int, width: int) -> None:
        """Raise VqartError unless both sides divide by the downsampling factor."""
        if height % self.downsample or width % self.downsample:
            raise VqartError(
                f"frame size {width}x{height} is not divisible by the model's downsampling {self.downsample}; "
                f"capture frames whose sides are multiples of {self.downsample} or change model.downsample"
            )

    def _squeeze(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, L, h, w) -> (B, h, w) for a single level, so plain VQ has plain code grids."""
        return codes[:, 0] if self.levels == 1 else codes

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, 1, H, W) in [0, 1] -> continuous latents z_e (B, D, h, w), unit length when normalize is on."""
        self.check_size(*x.shape[-2:])
        z = self.encoder(x)
        # Part of the encoder, not the quantizer, so z_e itself decodes sensibly (interpolation, slerp).
        return F.normalize(z.float(), dim=1) if self.config.normalize else z

    def quantize(self, z_e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Latents -> (z_q (B, D, h, w), codes (B, h, w) or (B, L, h, w))."""
        z_q, codes, _, _ = self.quantizer(z_e)
        return z_q, self._squeeze(codes)

    def decode(self, z_q: torch.Tensor) -> torch.Tensor:
        """Latents (B, D, h, w) -> images (B, 1, H, W), roughly in [0, 1]."""
        return self.decoder(z_q)

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Code grids (B, h, w) or (B, L, h, w) -> images (B, 1, H, W)."""
        if codes.dim() == 3:
            codes = codes[:, None]
        if codes.shape[1] != self.levels:
            raise VqartError(f"code grids have {codes.shape[1]} levels but the model has {self.levels}")
        if int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size:
            raise VqartError(f"codes must lie in [0, {self.codebook_size - 1}]")
        return self.decoder(self.quantizer.lookup(codes))

    def forward(self, x: torch.Tensor) -> VQOutput:
        """Encode, quantize (updating the codebook in training mode) and decode."""
        z_q, codes, commit, counts = self.quantizer(self.encode(x))
        return VQOutput(self.decoder(z_q), self._squeeze(codes), commit, counts)
