"""The masked-transformer prior on small generated code grids: it learns, samples reproducibly, scores honestly."""

from __future__ import annotations

import itertools
import math

import torch

from vqart.prior.blocks import Block, still_masked
from vqart.prior.fit import fit
from vqart.prior.grid import GridConfig, GridModel, fewest_steps
from vqart.prior.spatial import SpatialPrior, as_grids, as_tokens, unigram_bits

torch.set_num_threads(1)

K, H, W = 8, 4, 4


def code_grids(n: int, seed: int, levels: int = 1) -> torch.Tensor:
    """(n, levels, H*W) tokens with spatial structure: a background code and a 2x2 square of a second code; the
    finer levels repeat the first one's code shifted by the level (so they are predictable from it)."""
    g = torch.Generator().manual_seed(seed)
    grids = torch.empty(n, H, W, dtype=torch.long)
    for i in range(n):
        background, square = torch.randperm(K, generator=g)[:2]
        y, x = torch.randint(0, H - 1, (2,), generator=g)
        grids[i] = background
        grids[i, y : y + 2, x : x + 2] = square
    return torch.stack([(grids + level) % K for level in range(levels)], dim=1).flatten(2)


def tiny_prior(levels: int = 1, seed: int = 0) -> GridModel:
    """A prior small enough to train in a few seconds on one thread."""
    torch.manual_seed(seed)
    return GridModel(GridConfig(K, levels, H, W, dim=32, depth=2, heads=2)).eval()


def _fit(model: GridModel, train: torch.Tensor, val: torch.Tensor, steps: int) -> dict:
    loss = lambda g: model.loss(train[torch.randint(0, len(train), (32,), generator=g)], generator=g)
    return fit(model, loss, lambda: float(model.bits(val).sum()), seconds=600, max_steps=steps, lr=3e-3)


def test_the_loss_scores_a_random_share_of_the_masked_cells_and_at_least_one():
    model, g = tiny_prior(), torch.Generator().manual_seed(0)
    mask, scored = model.random_mask(200, torch.device("cpu"), g)
    assert torch.equal(mask, scored)
    for share in (0.5, 0.01):
        mask, scored = model.random_mask(200, torch.device("cpu"), g, share)
        assert not (scored & ~mask).any()
        assert torch.equal(scored.sum(1), (mask.sum(1) * share).ceil().long())
        assert (scored.sum(1) >= 1).all()
        assert share < 0.1 or scored.any(0).all()  # a random share: every cell is scored in some grid


def test_loss_falls_and_beats_the_unigram_baseline_on_every_level():
    train, val = code_grids(256, seed=1, levels=2), code_grids(64, seed=2, levels=2)
    model = tiny_prior(levels=2).train()
    history = _fit(model, train, val, 150)
    losses = history["loss"]
    assert history["steps"] == 150
    assert sum(losses[-20:]) / 20 < 0.8 * sum(losses[:20]) / 20
    ours, base = model.bits(val).sum(0), unigram_bits(train, val, K)
    assert ours.sum() < 0.7 * base.sum()
    assert ours[1] < 0.2 * base[1]  # the second level is a function of the first: the depth head learns that


def test_same_seed_same_grids_other_seed_other_grids():
    model = tiny_prior(levels=2)
    draw = lambda seed: model.sample(4, generator=torch.Generator().manual_seed(seed))
    first = draw(7)
    assert first.shape == (4, 2, H * W) and first.dtype == torch.long
    assert int(first.min()) >= 0 and int(first.max()) < K
    assert torch.equal(first, draw(7))
    assert not torch.equal(first, draw(8))


def test_top_k_one_in_one_step_is_the_argmax_whatever_the_seed():
    model = tiny_prior()
    everything_masked = torch.ones(1, H * W, dtype=torch.bool)
    context = model.hidden(torch.zeros(1, 1, H * W, dtype=torch.long), everything_masked)[0]
    argmax = model.depth_head(context, torch.zeros(H * W, 1, dtype=torch.long))[:, 0].argmax(-1)
    for seed in (0, 1, 2):
        drawn = model.sample(1, steps=1, top_k=1, temperature=0.7, generator=torch.Generator().manual_seed(seed))
        assert torch.equal(drawn[0, 0], argmax)


def test_inpainting_keeps_the_known_cells():
    model = tiny_prior(levels=2)
    tokens = code_grids(3, seed=3, levels=2)
    unknown = torch.zeros(3, H * W, dtype=torch.bool)
    unknown[:, :5] = True
    filled = model.sample(3, steps=3, tokens=tokens, unknown=unknown, generator=torch.Generator().manual_seed(0))
    known = ~unknown[:, None].expand_as(tokens)
    assert torch.equal(filled[known], tokens[known])
    assert filled.shape == tokens.shape


def test_schedule_reveals_everything_and_never_goes_back():
    for unknown, steps in [(256, 8), (16, 8), (5, 2), (1, 4)]:
        counts = still_masked(unknown, steps)
        assert counts[-1] == 0 and counts == sorted(counts, reverse=True) and counts[0] <= unknown


def test_decoding_takes_the_fewest_steps_whose_bits_are_within_the_tolerance_of_the_most():
    bits = {1: 130.0, 2: 104.0, 3: 100.4, 4: 100.2, 5: 100.1, 6: 100.0}
    asked: list[int] = []
    score = lambda steps: asked.append(steps) or bits[steps]
    assert fewest_steps(score, 6) == 3 and asked == [6, 1, 2, 3]  # 100.4 is within 0.5% of 100.0, 104 is not
    assert fewest_steps(score, 6, tolerance=0.0) == 6
    assert fewest_steps(lambda steps: 5.0, 8) == 1


def test_the_likelihood_over_all_levels_sums_to_one():
    # Summed over every possible token grid, 2^-bits must be exactly 1 for an honest likelihood, levels included.
    for levels, (h, w) in [(1, (1, 3)), (2, (1, 2)), (3, (1, 1))]:
        torch.manual_seed(0)
        model = GridModel(GridConfig(3, levels, h, w, dim=16, depth=1, heads=2)).eval()
        n = levels * h * w
        grids = torch.tensor(list(itertools.product(range(3), repeat=n))).view(-1, h * w, levels).transpose(1, 2)
        bits = torch.stack([model.bits(g[None], steps=2).sum() for g in grids])
        assert abs(float((2.0 ** -bits).sum()) - 1.0) < 1e-4


def test_a_sketch_and_its_frame_are_one_likelihood_that_sums_to_one():
    # Bits of (sketch, grid) pairs, the sketch's own bits in the first level: over every pair, 2^-bits sums to 1.
    torch.manual_seed(0)
    model = SpatialPrior(GridConfig(3, 2, 1, 2, dim=16, depth=1, heads=2), ["a", "b", "c"]).eval()
    model.label_logp.copy_(torch.tensor([0.5, 0.3, 0.2]).log())
    grids = torch.tensor(list(itertools.product(range(3), repeat=4))).view(-1, 2, 2).transpose(1, 2)
    bits = torch.stack([model.bits(g[None], torch.tensor([s]), steps=2) for g in grids for s in range(3)])
    assert abs(float((2.0 ** -bits.sum(1)).sum()) - 1.0) < 1e-4
    given = model.grid.bits(grids[:1], steps=2, context=model.label_emb(torch.tensor([1]))[:, None])[0]
    torch.testing.assert_close(bits[1], given + torch.tensor([-math.log2(0.3), 0.0], dtype=torch.float64))


def test_a_sketch_label_picks_which_sketch_the_samples_come_from():
    # Sketch 0 draws its grids from codes 0-3, sketch 1 from codes 4-7: given the label the prior must keep to it.
    train = code_grids(256, seed=1) % 4
    labels = torch.arange(256) % 2
    train[labels == 1] += 4
    torch.manual_seed(0)
    model = SpatialPrior(GridConfig(K, 1, H, W, dim=32, depth=2, heads=2), ["low", "high"])
    loss = lambda g: model.loss(train[(idx := torch.randint(0, 256, (32,), generator=g))], labels[idx], generator=g)
    fit(model, loss, lambda: float(model.bits(train[:32], labels[:32]).sum()), seconds=600, max_steps=150, lr=3e-3)
    g = torch.Generator().manual_seed(0)
    low, high = (model.sample(16, labels=torch.full((16,), s), generator=g, steps=4) for s in (0, 1))
    assert (low < 4).float().mean() > 0.95 and (high >= 4).float().mean() > 0.95


def test_code_grids_and_tokens_round_trip():
    grids = torch.randint(0, K, (5, 3, H, W))
    assert as_tokens(grids).shape == (5, 3, H * W)
    assert torch.equal(as_grids(as_tokens(grids), H, W), grids)
    single = torch.randint(0, K, (5, H, W))
    assert torch.equal(as_grids(as_tokens(single), H, W), single)


def test_block_convolution_mixes_grid_neighbours_only_on_non_square_grids():
    # With attention and MLP silenced a block is x + conv(x): a change at (row 0, col 0) of a 2x3 grid must reach
    # exactly its 3x3 neighbourhood, so rows and columns are not swapped.
    h, w, dim = 2, 3, 4
    torch.manual_seed(0)
    block = Block(dim, heads=2, grid=(h, w)).eval()
    with torch.no_grad():
        for layer in (block.proj, block.mlp[2]):
            layer.weight.zero_()
            layer.bias.zero_()
    x = torch.randn(1, h * w, dim)
    poked = x.clone()
    poked[0, 0] += torch.randn(dim)  # row 0, col 0 (not a constant: LayerNorm would erase it)
    with torch.no_grad():
        changed = (block(poked) - block(x)).abs().sum(-1)[0] > 1e-6
    expected = torch.zeros(h, w, dtype=torch.bool)
    expected[:2, :2] = True
    assert torch.equal(changed, expected.flatten())


def test_the_cached_depth_steps_the_sampler_takes_give_the_logits_training_sees():
    model = tiny_prior(levels=3)
    with torch.no_grad():
        context = torch.randn(5, 32)
        codes = torch.randint(0, K, (5, 3))
        torch.testing.assert_close(model.depth_head.sample(context, 1.0, None, None, codes=codes),
                                   model.depth_head(context, codes))


def test_draw_follows_the_distribution_and_never_picks_a_filtered_code():
    from vqart.prior.blocks import draw

    logits = torch.tensor([[0.0, 1.0, 2.0, -1.0]]).log_softmax(-1).expand(20000, 4)
    counts = torch.bincount(draw(logits, generator=torch.Generator().manual_seed(0)), minlength=4).float()
    torch.testing.assert_close(counts / counts.sum(), logits[0].exp(), atol=0.01, rtol=0)
    assert set(draw(logits, top_k=2, generator=torch.Generator().manual_seed(1)).tolist()) == {1, 2}


def test_a_grid_drawn_with_its_own_generator_is_the_same_alone_or_in_a_batch():
    model = tiny_prior(levels=2)
    gen = lambda seed: torch.Generator().manual_seed(seed)
    alone = model.sample(1, generator=[gen(5)])
    batch = model.sample(3, generator=[gen(9), gen(5), gen(11)])
    assert torch.equal(batch[1], alone[0]) and not torch.equal(batch[0], batch[1])
