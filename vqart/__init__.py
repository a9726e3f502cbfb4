"""vqart: teach a small VQ-VAE the motion of p5.js sketches, then sample, interpolate and dream."""

__version__ = "0.1.0"
