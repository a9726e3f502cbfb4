"""The motion prior on a world simple enough to learn in seconds: a square sliding one code cell per frame."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from synthetic import sliding_square

from vqart import generate
from vqart.cli import cli
from vqart.errors import VqartError
from vqart.prior.grid import GridConfig
from vqart.prior.motion import (COHERENCE, MIN_P_RANGE, MotionModel, MotionState, change_rates, drift, frame_change,
                                level_weights, load_motion, motion_data, start_from_spatial, steer, train_motion)
from vqart.prior.spatial import SpatialPrior
from vqart.run import open_run

torch.set_num_threads(1)


def centroid_x(frames: np.ndarray) -> np.ndarray:
    """The x of the bright pixels' centre per frame, unwrapped from the 64-pixel circle as angles."""
    angle = np.arange(frames.shape[2]) / frames.shape[2] * 2 * np.pi
    weight = (frames > 128).sum(axis=1).astype(float)  # (N, W)
    z = (weight * np.exp(1j * angle)).sum(axis=1)
    return np.unwrap(np.angle(z)) / (2 * np.pi) * frames.shape[2]


def test_the_loss_weights_the_coarse_levels_up_and_keeps_a_mean_of_one():
    assert level_weights(1).tolist() == [1.0]
    weights = level_weights(8)
    assert weights.mean().item() == pytest.approx(1.0)
    assert weights[0] == 4 * weights[-1] and weights[1] == 2 * weights[-1] and (weights[2:] == weights[-1]).all()


def test_frame_change_is_the_mean_absolute_difference_of_each_pair_of_frames():
    a = np.zeros((2, 2, 2), np.uint8)
    b = a.copy()
    b[0, 0, 0] = 200  # uint8 frames: 0 - 200 must not wrap around
    assert frame_change(a, b).tolist() == [50.0, 0.0] and frame_change(b, a).tolist() == [50.0, 0.0]


def test_each_sketch_is_held_to_the_change_between_its_consecutive_training_frames(square_run):
    run = open_run(square_run, device="cpu")
    split, rates = run.split(), change_rates(run)
    for name, frames in split.sketches.items():
        train = split.masks[name]["train"]
        pairs = [t for t in range(1, len(frames)) if train[t] and train[t - 1]]
        expected = np.mean([np.abs(frames[t].astype(float) - frames[t - 1]).mean() for t in pairs])
        assert rates[name] == pytest.approx(expected, rel=1e-5) and rates[name] > 0
    assert rates["*"] == pytest.approx(np.median([rates[n] for n in split.sketches]))


def test_the_motion_prior_starts_from_the_spatial_prior_when_their_shapes_agree():
    cfg = GridConfig(codebook_size=16, levels=2, height=4, width=4, dim=32, depth=2, heads=2)
    spatial = SpatialPrior(cfg, ["a", "b"])
    model = MotionModel(replace(cfg, sources=9), context=2, labels=2)
    pointer = model.grid.depth_head.pointer.weight.clone()
    assert start_from_spatial(model, spatial) == "spatial prior"
    ours = model.grid.state_dict()
    for name, weight in spatial.grid.state_dict().items():
        torch.testing.assert_close(ours[name], weight)
    torch.testing.assert_close(model.grid.depth_head.pointer.weight, pointer)  # the spatial prior has none
    other = MotionModel(replace(cfg, sources=9, dim=64), context=2, labels=2)
    before = {k: v.clone() for k, v in other.state_dict().items()}
    assert start_from_spatial(other, spatial) is None and start_from_spatial(other, None) is None
    assert all(torch.equal(before[k], v) for k, v in other.state_dict().items())


def toy_table() -> torch.Tensor:
    """A channel table (3, K, C) of 4 codes of one channel: values -1, 0, 1 and 0.5, with the values rounding to them."""
    values = torch.tensor([[-1.0], [0.0], [1.0], [0.5]])
    return torch.stack([values, values - 0.25, values + 0.25])


def test_the_past_channel_values_reach_the_context_through_a_convolution_that_starts_silent():
    cfg = GridConfig(codebook_size=4, levels=2, height=4, width=4, dim=16, depth=1, heads=2)
    torch.manual_seed(0)
    model = MotionModel(cfg, context=2, labels=1, table=toy_table())
    past, label = torch.randint(0, 4, (3, 2, 2, 16)), model.label_vectors(torch.zeros(3, dtype=torch.long))
    values = model.centres(past)
    plain = MotionModel(cfg, context=2, labels=1)
    plain.load_state_dict({k: v for k, v in model.state_dict().items()
                           if k.split(".")[0] not in ("moves", "placer") and "pointer" not in k}, strict=False)
    torch.testing.assert_close(model.context(past, label, values), plain.context(past, label))  # silent at first
    with torch.no_grad():
        model.moves.weight.normal_()
    nudged = values.clone()
    nudged[0, -1, 0, 5] += 0.1  # one channel of the last frame moves, its code unchanged
    with torch.no_grad():
        change = (model.context(past, label, nudged) - model.context(past, label, values)).abs().sum(-1)  # (B, P)
    near = {p for p in range(16) if abs(p // 4 - 1) <= 1 and abs(p % 4 - 1) <= 1}  # cell 5 and its neighbours
    assert set(change[0].nonzero().flatten().tolist()) == near and float(change[1:].abs().sum()) == 0.0


def test_the_head_may_point_at_the_code_each_channel_reaches_by_keeping_its_last_step():
    cfg = GridConfig(codebook_size=4, levels=1, height=2, width=2, dim=16, depth=1, heads=2)
    model = MotionModel(cfg, context=2, labels=1, table=toy_table())
    assert model.cfg.sources == 10 and MotionModel(cfg, context=2, labels=1).cfg.sources == 9
    values = torch.tensor([-0.3, 0.0, 0.4, 0.9]).view(1, 1, 1, 4, 1)  # four cells, each one step on
    past_values = torch.cat([values - 0.2, values], dim=1)  # (B, K, L, P, C): each channel rose 0.2 last frame
    past = model.nearest(past_values)
    onward = model.candidates(past, past_values)[0, :, 0, -1]  # -0.1, 0.2, 0.6, 1.1 -> their nearest codes
    assert onward.tolist() == [1, 1, 3, 2]
    bias = model.grid.depth_head.pointer.bias.detach().view(1, 10)
    assert float(bias[0, 0]) == float(bias[0, -1]) == 2.0  # as favoured as the cell's own code at first


def test_placed_channels_stay_within_their_codes_and_start_where_the_last_step_leads():
    cfg = GridConfig(codebook_size=4, levels=1, height=2, width=2, dim=16, depth=1, heads=2)
    model = MotionModel(cfg, context=2, labels=1, table=toy_table())
    past_values = torch.tensor([[-0.1, 0.0], [0.0, 0.1], [0.3, 0.6], [0.9, 0.95]]).T.reshape(1, 2, 1, 4, 1)
    tokens = torch.tensor([[[1, 1, 3, 2]]])  # 0.2 -> code 1 (0), 0.2 -> code 1, 0.9 -> code 3 (0.5), 1.0 -> code 2 (1)
    with torch.no_grad():
        placed = model.place(past_values, tokens)[0, 0, :, 0]
    low, high = model.table[1][tokens][0, 0, :, 0], model.table[2][tokens][0, 0, :, 0]
    assert bool(((placed >= low) & (placed <= high)).all())
    assert placed[0] == pytest.approx(0.1, abs=1e-5)  # inside its code: exactly where the step leads
    assert placed[1] == pytest.approx(0.2, abs=1e-5)
    assert placed[2] == pytest.approx(0.74, abs=1e-5)  # past its code: held near the edge it was heading for
    with torch.no_grad():
        model.placer[-1].bias.fill_(5.0)  # what the placer learns moves them, within the codes still
        moved = model.place(past_values, tokens)[0, 0, :, 0]
    assert bool((moved > placed).all()) and bool(((moved >= low) & (moved <= high)).all())


def stream(target: float, levels: int = 1, cells: int = 1) -> MotionState:
    """A stream of one frame of `cells` cells and `levels` levels (one by default) held to `target`: all the guard
    and the draws look at."""
    return MotionState(torch.zeros(1, levels, cells), np.zeros((1, 1), np.uint8), (0, 0, 0.0), 1.0, torch.Generator(),
                       target)


def test_the_guard_opens_min_p_then_warms_a_stalled_stream_and_cools_it_first_when_it_boils():
    state = stream(target=1.0)
    for _ in range(40):
        steer(state, 0.0)
    assert state.min_p < 1.3 * MIN_P_RANGE[0] and state.heat > 2.0
    floor, heat = state.min_p, state.heat
    steer(state, 50.0)
    assert state.heat < heat and state.min_p == floor  # the heat goes first
    for _ in range(80):
        steer(state, 50.0)
    assert state.heat == 1.0 and state.min_p == MIN_P_RANGE[1]
    still = stream(target=0.0)  # a still sketch
    steer(still, 0.0)
    assert still.heat == 1.0 and still.min_p >= MotionState.min_p  # nothing to divide by zero; it holds still


def test_a_streams_draws_drift_from_frame_to_frame_and_stay_standard_normal():
    state, other = stream(1.0, levels=64, cells=256), stream(1.0, levels=64, cells=256)
    state.generator.manual_seed(7)
    other.generator.manual_seed(7)
    first, second = drift(state).clone(), drift(state).clone()
    assert first.shape == (256, 64)
    for _ in range(30):
        last = drift(state)
    assert np.corrcoef(first.flatten(), second.flatten())[0, 1] == pytest.approx(COHERENCE, abs=0.02)
    assert float(last.std()) == pytest.approx(1.0, abs=0.05) and abs(float(last.mean())) < 0.05
    assert torch.equal(drift(other), first)  # its own generator alone: the same seed, the same draws


@pytest.mark.slow
def test_the_motion_prior_beats_copying_and_a_rollout_keeps_the_square_moving(square_run):
    metrics = json.loads((square_run / "motion.json").read_text())
    assert metrics["bits_per_code"] < 0.7 * metrics["baselines"]["copy previous frame"]
    run = open_run(square_run, device="cpu")
    frames = generate.motion(run, 24, seed=0, start="high:20")
    assert frames.shape == (24, 64, 64)
    steps = np.diff(centroid_x(frames))
    assert np.median(steps) == pytest.approx(4, abs=1.5)  # one cell to the right per frame, as in the data
    assert (frames[-8:] > 128).sum(axis=(1, 2)).min() > 30  # the square (144 pixels) is still there, if fainter
    own = load_motion(run).change["high"]  # the guard holds the rollout near its sketch's change per frame
    assert 0.5 * own <= frame_change(frames[1:], frames[:-1]).mean() <= 2 * own


def test_rollouts_are_deterministic_by_seed_and_start_anywhere(square_run, tmp_path):
    run = open_run(square_run, device="cpu")
    first = generate.motion(run, 6, seed=3, start="low:10")
    np.testing.assert_array_equal(first, generate.motion(run, 6, seed=3, start="low:10"))
    # This toy world is nearly certain of its next frame: another seed shows where there is room to differ.
    hot = lambda seed: generate.motion(run, 6, seed=seed, start="low:10", temperature=4.0)
    assert not np.array_equal(hot(3), hot(4))
    np.testing.assert_array_equal(first[0], generate.reconstruct(run, "low:10"))
    drawing = tmp_path / "drawing.png"
    from PIL import Image

    Image.fromarray(sliding_square(1, row=30)[0]).save(drawing)
    assert generate.motion(run, 4, seed=0, start=str(drawing)).shape == (4, 64, 64)
    assert generate.motion(run, 4, seed=0, like="high", morph_to="low", guidance=2.0).shape == (4, 64, 64)
    prior = load_motion(run)
    assert prior.model.cfg.levels == 2 and prior.sketches == ["high", "low"]
    assert prior.model.moves is None  # learned residual codebooks: their codes have no order to show


def test_dream_motion_writes_a_gif_and_the_bad_inputs_are_one_line(square_run, tmp_path):
    out = tmp_path / "m.gif"
    ok = CliRunner().invoke(cli, ["dream", str(square_run), "-o", str(out), "--mode", "motion", "--frames", "5",
                                  "--start", "high:3", "--like", "low", "--seed", "1", "--device", "cpu"])
    assert ok.exit_code == 0, ok.output
    alias = CliRunner().invoke(cli, ["dream", str(square_run), "-o", str(tmp_path / "a.gif"), "--mode", "motion",
                                     "--frames", "3", "--a", "high:3", "--device", "cpu"])
    assert alias.exit_code == 0, alias.output
    for args, message in [(["--start", "nowhere:3"], "unknown sketch 'nowhere'"),
                          (["--like", "nowhere"], "the motion prior knows high, low"),
                          (["--morph-to", "nowhere"], "the motion prior knows high, low")]:
        bad = CliRunner().invoke(cli, ["dream", str(square_run), "-o", str(tmp_path / "x.gif"), "--mode", "motion",
                                       "--frames", "3", *args, "--device", "cpu"])
        assert bad.exit_code == 1 and message in bad.output and "Traceback" not in bad.output
    elsewhere = CliRunner().invoke(cli, ["dream", str(square_run), "-o", str(tmp_path / "w.gif"), "--mode", "walk",
                                         "--like", "low", "--device", "cpu"])
    assert elsewhere.exit_code == 1 and "--like picks the sketch of --mode sample or motion, not of --mode walk" in elsewhere.output
    assert not (tmp_path / "w.gif").exists()
    spatial = CliRunner().invoke(cli, ["prior", str(square_run), "--context", "3", "--device", "cpu"])
    assert spatial.exit_code == 1 and "--context is the motion prior's; add --motion" in spatial.output


@pytest.mark.parametrize("older", ["code distance guard", "rounded values"])
def test_a_motion_prior_of_an_older_version_says_how_to_retrain_it(square_run, tmp_path, older):
    old = tmp_path / "old"
    shutil.copytree(square_run, old)
    saved = torch.load(old / "motion.pt", weights_only=True)
    if older == "code distance guard":
        saved["movement"] = saved.pop("change")  # that version held the distance between code vectors
    else:
        saved["format"] = 2  # that version read its past's FSQ values rounded and placed nothing
    torch.save(saved, old / "motion.pt")
    with pytest.raises(VqartError, match=r"another version of vqart; retrain it with `vqart prior .* --motion`"):
        generate.motion(open_run(old, device="cpu"), 4, seed=0)


def test_motion_without_a_motion_prior_names_the_command_that_trains_one(tiny_run, tmp_path):
    bad = CliRunner().invoke(cli, ["dream", str(tiny_run), "-o", str(tmp_path / "x.gif"), "--mode", "motion",
                                   "--device", "cpu"])
    assert bad.exit_code == 1 and f"vqart prior {tiny_run} --motion" in bad.output


def test_too_few_consecutive_frames_say_how_many_are_needed(tiny_run):
    run = open_run(tiny_run, device="cpu")  # 40 frames a sketch, held-out segments in between
    with pytest.raises(VqartError, match=r"needs 41 consecutive training frames .* the longest run here is \d+"):
        motion_data(run, context=40)
    with pytest.raises(VqartError, match="--context must be between 1 and 16"):
        train_motion(run, minutes=0.01, context=0)


def test_a_walk_through_dataset_frames_plays_their_motion_and_still_closes_its_loop(square_run):
    run = open_run(square_run, device="cpu")
    keys = ["high:10", "low:30"]
    steps = lambda loop: np.array([np.abs(loop[(i + 1) % 16].astype(int) - loop[i].astype(int)).mean() for i in range(16)])
    moving = steps(generate.walk(run, keys, frames=16))  # the last step is the seam: frame 15 -> frame 0
    still = steps(generate.walk(run, [generate.dataset_frame(run, k) for k in keys], frames=16))
    # Easing into a keyframe, a walk between still images (as before) hardly moves; one between dataset frames
    # keeps moving with its sketches.
    near_keys = [0, 7, 8, 15]
    assert moving[near_keys].min() > 2 * still[near_keys].max(), (moving, still)
    assert moving[-1] < 3 * np.median(moving[:-1])  # no jump at the seam
    same = lambda a, b: np.testing.assert_allclose(a.astype(int), b.astype(int), rtol=0, atol=1)
    same(generate.walk(run, keys, frames=16)[8], generate.reconstruct(run, "low:30"))  # B at its own frame
