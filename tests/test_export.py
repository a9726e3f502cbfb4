"""GIF / MP4 / PNG writers: read every output back with imageio and check what an artist would notice."""

from __future__ import annotations

import logging

import imageio.v2 as imageio_v2
import imageio.v3 as iio
import numpy as np
import pytest

from vqart.errors import VqartError
from vqart.export import contact_sheet, save


@pytest.fixture
def frames() -> np.ndarray:
    """12 frames of 10x14 with a bright square moving right, so frames differ and sizes are checkable."""
    out = np.full((12, 10, 14), 30, dtype=np.uint8)
    for i in range(12):
        out[i, 3:7, i : i + 3] = 220
    return out


def test_gif_loops_forever_at_the_asked_fps(frames, tmp_path):
    out = save(frames, tmp_path / "dream.gif", fps=25, scale=3)
    read = iio.imread(out, index=None)
    assert read.shape[:3] == (12, 30, 42)
    meta = iio.immeta(out)
    assert meta["loop"] == 0  # 0 = forever
    assert meta["duration"] == 40  # ms per frame at 25 fps
    # Nearest-neighbour upscaling: every 3x3 block is one grey level, and greys survive the palette.
    gray = read[..., 0] if read.ndim == 4 else read
    np.testing.assert_array_equal(gray[:, ::3, ::3], frames)


def test_smooth_upscaling_blends_edges(frames, tmp_path):
    crisp = iio.imread(save(frames, tmp_path / "crisp.gif", scale=4), index=None)
    smooth = iio.imread(save(frames, tmp_path / "smooth.gif", scale=4, smooth=True), index=None)
    assert len(np.unique(smooth)) > len(np.unique(crisp))


def test_mp4_is_h264_yuv420p_with_every_frame(frames, tmp_path):
    out = save(frames, tmp_path / "dream.mp4", fps=24, scale=4)
    reader = imageio_v2.get_reader(out)
    meta = reader.get_meta_data()
    assert meta["codec"] == "h264" and meta["pix_fmt"].startswith("yuv420p")
    assert meta["fps"] == 24 and meta["size"] == (56, 40)
    assert reader.count_frames() == 12
    video = iio.imread(out)
    assert np.abs(video[..., 0].astype(int)[:, ::4, ::4] - frames).mean() < 8  # lossy, but the picture is there


def test_mp4_odd_size_is_padded_with_a_note(frames, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        out = save(frames[:, :9, :13], tmp_path / "odd.mp4", fps=30, scale=1)
    assert imageio_v2.get_reader(out).get_meta_data()["size"] == (14, 10)
    assert "padded 13x9 to 14x10" in caplog.text


def test_png_is_a_contact_sheet(frames, tmp_path):
    sheet = iio.imread(save(frames, tmp_path / "sheet.png", scale=2))
    # 12 frames -> 4 columns x 3 rows of 28x20 tiles with 2-pixel gaps.
    assert sheet.shape == (3 * 20 + 2 * 2, 4 * 28 + 3 * 2)
    np.testing.assert_array_equal(contact_sheet(frames[:2], cols=2, gap=1)[:, 15:], frames[1])


def test_folder_of_pngs_replaces_an_old_one_whole(frames, tmp_path):
    out = tmp_path / "frames"
    save(frames, out, scale=1)
    save(frames[:3], out, scale=1)
    files = sorted(out.iterdir())
    assert [f.name for f in files] == ["frame_00000.png", "frame_00001.png", "frame_00002.png"]
    np.testing.assert_array_equal(iio.imread(files[2]), frames[2])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]  # no temporary leftovers


def test_unsupported_extension_lists_the_supported_ones(frames, tmp_path):
    with pytest.raises(VqartError, match=r"\.gif.*\.mp4.*\.png.*folder"):
        save(frames, tmp_path / "dream.avi")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("bad", "kwargs", "match"),
    [
        (np.zeros((0, 8, 8), np.uint8), {}, "N >= 1"),
        (np.zeros((2, 8, 8), np.float32), {}, "uint8"),
        (np.zeros((2, 8, 8), np.uint8), {"fps": 0}, "fps"),
        (np.zeros((2, 8, 8), np.uint8), {"scale": 0}, "scale"),
    ],
)
def test_bad_frames_or_options_write_nothing(bad, kwargs, match, tmp_path):
    with pytest.raises(VqartError, match=match):
        save(bad, tmp_path / "x.gif", **kwargs)
    assert not list(tmp_path.iterdir())


def test_a_failing_write_leaves_no_partial_file(frames, tmp_path, monkeypatch):
    from vqart import export

    def explode(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(export.imageio, "get_writer", explode)
    with pytest.raises(RuntimeError):
        save(frames, tmp_path / "dream.mp4")
    assert not list(tmp_path.iterdir())
