"""The masked-transformer prior on small generated code grids: it learns, samples reproducibly, scores honestly."""

from __future__ import annotations

import itertools

import torch

from vqart.prior import Block, Prior, PriorConfig, fit, still_masked, unigram_bits_per_code

torch.set_num_threads(1)

K, H, W = 8, 4, 4


def code_grids(n: int, seed: int) -> torch.Tensor:
    """(n, H*W) tokens with spatial structure: a background code and a 2x2 square of a second code."""
    g = torch.Generator().manual_seed(seed)
    grids = torch.empty(n, H, W, dtype=torch.long)
    for i in range(n):
        background, square = torch.randperm(K, generator=g)[:2]
        y, x = torch.randint(0, H - 1, (2,), generator=g)
        grids[i] = background
        grids[i, y : y + 2, x : x + 2] = square
    return grids.flatten(1)


def tiny_prior(levels: int = 1, seed: int = 0) -> Prior:
    """A prior small enough to train in a few seconds on one thread."""
    torch.manual_seed(seed)
    return Prior(PriorConfig(K, levels, H, W, dim=32, depth=2, heads=2, dropout=0.0)).eval()


def test_loss_falls_and_beats_the_unigram_baseline():
    train, val = code_grids(256, seed=1), code_grids(64, seed=2)
    model = tiny_prior().train()
    history = fit(model, train, val, seconds=60, max_steps=150, batch_size=32, lr=3e-3)
    losses = history["loss"]
    assert history["steps"] == 150
    assert sum(losses[-20:]) / 20 < 0.8 * sum(losses[:20]) / 20
    assert model.bits_per_code(val) < 0.7 * unigram_bits_per_code(train, val, K, 1)


def test_same_seed_same_grids_other_seed_other_grids():
    model = tiny_prior()
    draw = lambda seed: model.sample(4, generator=torch.Generator().manual_seed(seed))
    first = draw(7)
    assert first.shape == (4, H * W) and first.dtype == torch.long
    assert int(first.min()) >= 0 and int(first.max()) < K
    assert torch.equal(first, draw(7))
    assert not torch.equal(first, draw(8))


def test_top_k_one_in_one_step_is_the_argmax_whatever_the_seed():
    model = tiny_prior()
    everything_masked = torch.ones(1, H * W, dtype=torch.bool)
    argmax = model(torch.zeros(1, H * W, dtype=torch.long), everything_masked).argmax(-1)
    for seed in (0, 1, 2):
        drawn = model.sample(1, steps=1, top_k=1, temperature=0.7, generator=torch.Generator().manual_seed(seed))
        assert torch.equal(drawn, argmax)


def test_inpainting_keeps_the_known_codes():
    model = tiny_prior()
    tokens = code_grids(3, seed=3)
    unknown = torch.zeros_like(tokens, dtype=torch.bool)
    unknown[:, :5] = True
    filled = model.sample(3, steps=3, tokens=tokens, unknown=unknown, generator=torch.Generator().manual_seed(0))
    assert torch.equal(filled[~unknown], tokens[~unknown])
    assert filled.shape == tokens.shape


def test_schedule_reveals_everything_and_never_goes_back():
    for unknown, steps in [(256, 8), (16, 8), (5, 2), (1, 4)]:
        counts = still_masked(unknown, steps)
        assert counts[-1] == 0 and counts == sorted(counts, reverse=True) and counts[0] <= unknown


def test_bits_per_code_is_a_normalised_likelihood():
    # Summed over every possible grid, 2^-bits must be exactly 1 for an honest likelihood, also with levels.
    for levels in (1, 2):
        config = PriorConfig(3, levels, 1, 2, dim=16, depth=1, heads=2, dropout=0.0)
        torch.manual_seed(0)
        model = Prior(config).eval()
        t = model.seq_len
        grids = torch.tensor(list(itertools.product(range(3), repeat=t)))
        bits = torch.tensor([model.bits_per_code(g[None], steps=2) for g in grids])
        assert abs(float((2.0 ** (-bits * t)).sum()) - 1.0) < 1e-4


def test_levels_are_one_sequence_and_unflatten_back():
    model = tiny_prior(levels=2)
    grids = torch.randint(0, K, (5, 2, H, W))
    tokens = model.flatten(grids)
    assert tokens.shape == (5, 2 * H * W)
    assert torch.equal(model.unflatten(tokens), grids)
    assert model.sample(2, generator=torch.Generator().manual_seed(0)).shape == (2, 2 * H * W)


def test_block_convolution_mixes_grid_neighbours_only_per_level_on_non_square_grids():
    # With attention and MLP silenced a block is x + conv(x): a change at (level 1, row 0, col 0) of a 2x3 grid
    # must reach exactly its 3x3 neighbourhood on that level, so rows and columns are not swapped.
    levels, h, w, dim = 2, 2, 3, 4
    torch.manual_seed(0)
    block = Block(dim, heads=2, dropout=0.0, grid=(levels, h, w)).eval()
    with torch.no_grad():
        for layer in (block.proj, block.mlp[2]):
            layer.weight.zero_()
            layer.bias.zero_()
    x = torch.randn(1, levels * h * w, dim)
    poked = x.clone()
    poked[0, h * w] += torch.randn(dim)  # level 1, row 0, col 0 (not a constant: LayerNorm would erase it)
    with torch.no_grad():
        changed = (block(poked) - block(x)).abs().sum(-1)[0] > 1e-6
    expected = torch.zeros(levels, h, w, dtype=torch.bool)
    expected[1, :2, :2] = True
    assert torch.equal(changed, expected.flatten())
