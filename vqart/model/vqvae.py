"""The autoencoders: the VQ-VAE (encoder, residual EMA quantizer, decoder) and the Gaussian VAE baseline."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vqart.config import ModelConfig
from vqart.errors import VqartError
from vqart.model.autoencoder import Decoder, Encoder
from vqart.model.fsq import FSQ
from vqart.model.quantizer import ResidualQuantizer


@dataclass
class AEOutput:
    """What one forward pass yields for the training loop."""

    recon: torch.Tensor  # (B, 1, H, W)
    reg: torch.Tensor  # scalar: commitment loss (VQ) or KL per pixel (VAE)
    latents: torch.Tensor  # (B, D, h, w) encoder outputs, detached: what the live view projects
    codes: torch.Tensor | None = None  # (B, h, w), or (B, L, h, w) when levels > 1; None for a VAE
    counts: torch.Tensor | None = None  # (L, K) codes used in this batch, per level; None for a VAE


class _Autoencoder(nn.Module):
    """What both autoencoders share: the frame-size rule, the encoder and the decoder."""

    quantized: bool

    def __init__(self, config: ModelConfig, encoder_out: int):
        super().__init__()
        config.validate()
        self.config, self.downsample = config, config.downsample
        self.encoder = Encoder(config.channels, config.res_blocks, config.downsample, encoder_out)
        self.decoder = Decoder(config.channels, config.res_blocks, config.downsample, config.code_dim)

    def check_size(self, height: int, width: int) -> None:
        """Raise VqartError unless both sides divide by the downsampling factor."""
        if height % self.downsample or width % self.downsample:
            raise VqartError(
                f"frame size {width}x{height} is not divisible by the model's downsampling {self.downsample}; "
                f"capture frames whose sides are multiples of {self.downsample} or change model.downsample"
            )

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents (B, D, h, w) -> images (B, 1, H, W), roughly in [0, 1]."""
        return self.decoder(z)


class VQVAE(_Autoencoder):
    """Grayscale spatial VQ-VAE: (B, 1, H, W) in [0, 1] -> a (H/ds, W/ds) grid of codes (residual VQ or FSQ) -> back."""

    quantized = True

    def __init__(self, config: ModelConfig | None = None):
        config = config or ModelConfig()
        super().__init__(config, config.code_dim)
        self.codebook_size, self.levels = config.codes_per_level, config.levels
        self.quantizer: ResidualQuantizer | FSQ
        if config.quantizer == "fsq":
            self.quantizer = FSQ(config.levels, config.fsq_levels, config.code_dim, decay=config.ema_decay)
        else:
            self.quantizer = ResidualQuantizer(
                config.levels, config.codebook_size, config.code_dim, decay=config.ema_decay, eps=config.ema_eps,
                kmeans_iters=config.kmeans_iters, dead_after=config.dead_after,
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

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Code grids (B, h, w) or (B, L, h, w) -> images (B, 1, H, W)."""
        if codes.dim() == 3:
            codes = codes[:, None]
        if codes.shape[1] != self.levels:
            raise VqartError(f"code grids have {codes.shape[1]} levels but the model has {self.levels}")
        if int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size:
            raise VqartError(f"codes must lie in [0, {self.codebook_size - 1}]")
        return self.decoder(self.quantizer.lookup(codes))

    def forward(self, x: torch.Tensor) -> AEOutput:
        """Encode, quantize (updating the codebook in training mode) and decode."""
        z_e = self.encode(x)
        z_q, codes, commit, counts = self.quantizer(z_e)
        return AEOutput(self.decoder(z_q), commit, z_e.detach(), self._squeeze(codes), counts)


class VAE(_Autoencoder):
    """The continuous baseline: the same encoder and decoder around a Gaussian latent, sampled from N(0, I)."""

    quantized = False

    def __init__(self, config: ModelConfig):
        super().__init__(config, 2 * config.code_dim)

    def _moments(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance (B, D, h, w) of q(z | x)."""
        self.check_size(*x.shape[-2:])
        mean, logvar = self.encoder(x).float().chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images -> the posterior means (B, D, h, w): the latent a frame is interpolated and decoded from."""
        return self._moments(x)[0]

    def quantize(self, z_e: torch.Tensor) -> tuple[torch.Tensor, None]:
        """Nothing to snap to: latents pass through (so interpolation code treats both models alike)."""
        return z_e, None

    def forward(self, x: torch.Tensor) -> AEOutput:
        """Encode, draw z ~ q(z | x) in training mode (the mean otherwise) and decode; reg is the KL per pixel."""
        mean, logvar = self._moments(x)
        z = mean + torch.randn_like(mean) * (0.5 * logvar).exp() if self.training else mean
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum() / x.numel()
        return AEOutput(self.decoder(z), kl, mean.detach())


def build_model(config: ModelConfig) -> VQVAE | VAE:
    """The autoencoder a config asks for: the VQ-VAE, or the VAE baseline for quantizer "none"."""
    return VAE(config) if config.quantizer == "none" else VQVAE(config)
