"""Training benchmark with residual levels: vqart's RQ-VAE against vector-quantize-pytorch's ResidualVQ, same minutes.

The default model gives each 4x4 patch one of 128 codes (1,792 bits per 64x64 frame), and PSNR stops near
22 dB on the bundled sketches whatever the minutes; residual levels are the lever for faithful reconstructions.
"""

from __future__ import annotations

import sys

from bench_train import compare
from vqart.config import ModelConfig

LEVELS = 8
TITLE = (
    f"Training with {LEVELS} residual levels: vqart RQ-VAE vs vector-quantize-pytorch ResidualVQ, "
    "same encoder/decoder and minutes (CPU, 64x64)"
)


def run(quick: bool = False) -> list[dict]:
    """The default model with LEVELS residual levels of 128 codes, against ResidualVQ."""
    return compare(quick, ModelConfig(levels=LEVELS), name=f"_levels{LEVELS}")


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(f"{row['measure']:<60} {row['value']:>10.3f} {row['unit']:<10} {row['target']:<8} {row['ok']}")
