"""The quantizer's machinery and the VQ-VAE's shapes, checked against hand computations."""

from __future__ import annotations

import re

import pytest
import torch

from vqart.config import ModelConfig
from vqart.errors import VqartError
from vqart.model.quantizer import Quantizer, ResidualQuantizer, kmeans
from vqart.model.vqvae import VAE, VQVAE, build_model


def _ready(q: Quantizer, embed: list[list[float]]) -> Quantizer:
    """Give a quantizer a known codebook with unit counts, as if already initialised."""
    q.embed.copy_(torch.tensor(embed))
    q.embed_sum.copy_(q.embed)
    q.cluster_size.fill_(1.0)
    q.initialized.fill_(True)
    return q.train()


def test_ema_update_matches_a_hand_computation():
    q = _ready(Quantizer(size=2, dim=2, decay=0.5, eps=0.1, dead_after=100), [[0.0, 0.0], [10.0, 10.0]])
    x = torch.tensor([[1.0, 1.0], [3.0, 3.0], [9.0, 9.0]])
    vectors, codes, counts = q(x)
    assert codes.tolist() == [0, 0, 1] and counts.tolist() == [2, 1]
    assert vectors.tolist() == [[0.0, 0.0], [0.0, 0.0], [10.0, 10.0]]  # looked up before the update
    # cluster sizes: 0.5*1 + 0.5*2 = 1.5 and 0.5*1 + 0.5*1 = 1.0; sums: 0.5*0 + 0.5*4 = 2, 0.5*10 + 0.5*9 = 9.5
    torch.testing.assert_close(q.cluster_size, torch.tensor([1.5, 1.0]))
    torch.testing.assert_close(q.embed_sum, torch.tensor([[2.0, 2.0], [9.5, 9.5]]))
    # Laplace smoothing: n = 2.5; (1.5 + 0.1) / (2.5 + 2 * 0.1) * 2.5 = 1.481481..., (1.0 + 0.1) / 2.7 * 2.5 = 1.018518...
    torch.testing.assert_close(q.embed, torch.tensor([[2 / 1.4814815] * 2, [9.5 / 1.0185185] * 2]))


def test_eval_mode_and_no_grad_leave_the_codebook_alone():
    q = _ready(Quantizer(size=2, dim=2), [[0.0, 0.0], [10.0, 10.0]])
    before = {k: v.clone() for k, v in q.state_dict().items()}
    x = torch.tensor([[1.0, 1.0], [9.0, 9.0]])
    q.eval()(x)
    with torch.no_grad():
        q.train()(x)
    for key, value in q.state_dict().items():
        torch.testing.assert_close(value, before[key])


def test_non_finite_inputs_never_reach_the_codebook():
    q = _ready(Quantizer(size=2, dim=2, dead_after=1), [[0.0, 0.0], [10.0, 10.0]])
    q(torch.tensor([[1.0, float("nan")], [9.0, 9.0]]))
    assert torch.isfinite(q.embed).all() and q.recoveries == 0
    assert q.embed.tolist() == [[0.0, 0.0], [10.0, 10.0]]


def test_kmeans_finds_separated_clusters():
    torch.manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [0.0, 10.0], [10.0, 0.0], [10.0, 10.0]])  # in sorted order
    x = (centres[:, None] + 0.1 * torch.randn(4, 50, 2)).reshape(-1, 2)
    found, counts = kmeans(x, 4, iters=5)
    order = sorted(range(4), key=lambda i: found[i].tolist())
    torch.testing.assert_close(found[order], centres, atol=0.1, rtol=0)
    assert counts.tolist() == [50.0] * 4


def test_first_training_batch_initialises_the_codebook_by_kmeans():
    torch.manual_seed(0)
    q = Quantizer(size=2, dim=2, kmeans_iters=5).train()
    x = torch.cat([torch.full((20, 2), -5.0), torch.full((30, 2), 5.0)]) + 0.01 * torch.randn(50, 2)
    q(x)
    assert bool(q.initialized)
    assert sorted(round(float(v)) for v in q.embed[:, 0]) == [-5, 5]
    assert sorted(q.cluster_size.round().tolist()) == [20.0, 30.0]


def test_a_code_unused_for_dead_after_steps_is_reseeded_from_encoder_outputs():
    torch.manual_seed(0)
    q = _ready(Quantizer(size=3, dim=2, dead_after=2), [[0.0, 0.0], [10.0, 10.0], [500.0, 500.0]])
    x = torch.tensor([[1.0, 1.0], [9.0, 9.0], [2.0, 2.0]])
    q(x)
    assert q.unused_steps.tolist() == [0, 0, 1] and q.recoveries == 0
    q(x)
    assert q.recoveries == 1 and q.unused_steps.tolist() == [0, 0, 0]
    assert q.embed[2].tolist() in x.tolist()  # the dead code now sits on a real encoder output
    assert q.cluster_size[2] == 1.0


def test_straight_through_gradient_passes_unchanged_and_commitment_pulls_toward_codes():
    rq = ResidualQuantizer(levels=1, size=2, dim=2)
    _ready(rq.layers[0], [[0.0, 0.0], [10.0, 10.0]]).eval()
    z = torch.tensor([[1.0, 2.0], [8.0, 9.0]]).t().reshape(1, 2, 1, 2).requires_grad_()  # (B, D, h, w)
    z_q, codes, commit, _ = rq(z)
    assert codes.tolist() == [[[[0, 1]]]]
    torch.testing.assert_close(z_q.detach(), torch.tensor([[[[0.0, 10.0]], [[0.0, 10.0]]]]))
    weights = torch.randn_like(z)
    (z_q * weights).sum().backward()
    torch.testing.assert_close(z.grad, weights)  # identity: the decoder's gradient reaches the encoder
    z.grad = None
    commit.backward()
    expected = 2 * (z.detach() - z_q.detach()) / z.numel()  # d/dz mean((z - sg(q))^2)
    torch.testing.assert_close(z.grad, expected)


def test_quantizer_math_stays_fp32_under_bf16_autocast():
    model = VQVAE(ModelConfig(channels=16, res_blocks=1, quantizer="vq", codebook_size=16, code_dim=8)).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z_e = model.encode(torch.rand(2, 1, 32, 32))
        z_q, _ = model.quantize(z_e)
    assert z_q.dtype == torch.float32
    assert model.quantizer.layers[0].embed.dtype == torch.float32


@pytest.mark.parametrize(
    ("size", "levels", "downsample", "grid"),
    [((64, 64), 1, 4, (16, 16)), ((72, 128), 1, 4, (18, 32)), ((64, 64), 3, 4, (16, 16)), ((32, 48), 1, 8, (4, 6))],
)
def test_shapes_for_square_non_square_and_residual_levels(size, levels, downsample, grid):
    cfg = ModelConfig(channels=16, res_blocks=1, quantizer="vq", codebook_size=16, code_dim=8, levels=levels,
                      downsample=downsample)
    model = VQVAE(cfg).train()
    x = torch.rand(2, 1, *size)
    out = model(x)
    code_shape = (2, *grid) if levels == 1 else (2, levels, *grid)
    assert out.recon.shape == x.shape and out.codes.shape == code_shape
    assert out.counts.shape == (levels, 16) and int(out.counts.sum()) == levels * 2 * grid[0] * grid[1]
    model.eval()
    z_e = model.encode(x)
    assert z_e.shape == (2, 8, *grid)
    z_q, codes = model.quantize(z_e)
    assert codes.shape == code_shape and codes.dtype == torch.long
    torch.testing.assert_close(model.decode(z_q), model.decode_codes(codes))


def test_residual_levels_each_reduce_the_quantization_error():
    torch.manual_seed(0)
    model = VQVAE(ModelConfig(channels=16, res_blocks=1, quantizer="vq", codebook_size=8, code_dim=4, levels=3)).train()
    x = torch.rand(4, 1, 32, 32)
    model(x)  # initialises each level's codebook by k-means on its own residuals
    model.eval()
    z = model.encode(x)
    flat = z.permute(0, 2, 3, 1).reshape(-1, 4)
    residual, errors = flat.detach(), []
    for layer in model.quantizer.layers:
        q, _, _ = layer(residual)
        residual = residual - q
        errors.append(float(residual.pow(2).mean()))
    assert errors[0] > errors[1] > errors[2]


def test_sizes_the_downsampling_does_not_divide_are_refused():
    model = VQVAE(ModelConfig(channels=16, res_blocks=1, quantizer="vq", codebook_size=16, code_dim=8))
    with pytest.raises(VqartError, match="not divisible by the model's downsampling 4"):
        model.encode(torch.rand(1, 1, 66, 64))


@pytest.mark.parametrize(("setting", "message"), [
    ({"downsample": 3}, "model.downsample must be a power of two from 2 to 64, got 3"),
    ({"codebook_size": 1}, "model.codebook_size must be between 2 and 65536, got 1"),
    ({"levels": 0}, "model.levels must be between 1 and 16, got 0"),
    ({"levels": 17}, "model.levels must be between 1 and 16, got 17"),
    ({"quantizer": "pq"}, "model.quantizer must be one of vq, fsq, none, got 'pq'"),
    ({"kl_weight": 0.0}, "model.kl_weight must be > 0"),
])
def test_impossible_shapes_are_refused_naming_the_key_and_its_range(setting, message):
    with pytest.raises(VqartError, match=re.escape(message)):
        build_model(ModelConfig(**setting))


def test_decode_codes_refuses_codes_outside_the_codebook():
    model = VQVAE(ModelConfig(channels=16, res_blocks=1, quantizer="vq", codebook_size=16, code_dim=8, levels=2))
    with pytest.raises(VqartError, match=r"codes must lie in \[0, 15\]"):
        model.decode_codes(torch.full((1, 2, 4, 4), 16))
    with pytest.raises(VqartError, match="code grids have 1 levels but the model has 2"):
        model.decode_codes(torch.zeros((1, 4, 4), dtype=torch.long))


def test_the_vae_baseline_draws_latents_in_training_and_uses_the_mean_otherwise():
    torch.manual_seed(0)
    model = build_model(ModelConfig(channels=16, res_blocks=1, code_dim=8, quantizer="none"))
    assert isinstance(model, VAE) and not model.quantized
    x = torch.rand(2, 1, 32, 32)
    a, b = model.train()(x), model(x)
    assert not torch.equal(a.recon, b.recon) and a.reg > 0 and a.codes is None and a.counts is None
    model.eval()
    torch.testing.assert_close(model(x).recon, model.decode(model.encode(x)))
    assert model.quantize(model.encode(x))[0].shape == (2, 8, 8, 8)


def test_normalized_latents_have_unit_length_and_decode_like_their_codes():
    torch.manual_seed(0)
    cfg = ModelConfig(channels=16, res_blocks=1, quantizer="vq", codebook_size=16, code_dim=8, normalize=True)
    model = VQVAE(cfg).train()
    x = torch.rand(2, 1, 32, 32)
    model(x)
    z_e = model.eval().encode(x)
    torch.testing.assert_close(z_e.norm(dim=1), torch.ones(2, 8, 8))
    codebook = model.quantizer.layers[0].embed
    assert codebook.norm(dim=1).max() <= 1.0 + 1e-5  # EMA means of unit vectors stay inside the sphere
