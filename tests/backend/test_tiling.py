from __future__ import annotations

import numpy as np
import pytest

from rscovlm.errors import UserError
from rscovlm.tiling import Window, axis_starts, tile_windows


@pytest.mark.parametrize(
    ("length", "expected"),
    [
        (1200, [0, 412, 688]),  # last start clamped to 1200 - 512
        (924, [0, 412]),  # (924 - 512) / 412 == 1 exactly: two windows
        (925, [0, 412, 413]),  # one pixel more needs a third, clamped window
        (512, [0]),
        (300, [0]),
    ],
)
def test_axis_starts_follow_the_mmrotate_rule(length, expected):
    assert axis_starts(length, 512, 100) == expected


def test_window_helpers():
    w = Window(10, 20, 30, 40)
    assert (w.col_end, w.row_end) == (40, 60)
    assert w.as_tuple() == (10, 20, 30, 40)
    with pytest.raises(AttributeError):
        w.col_off = 0  # frozen


@pytest.mark.parametrize(("width", "height"), [(1200, 900), (512, 512), (1537, 513), (5000, 700), (300, 2000)])
def test_windows_cover_every_pixel_and_stay_inside(width, height):
    windows = tile_windows(width, height, size=512, overlap=100)
    seen = np.zeros((height, width), dtype=np.int32)
    for w in windows:
        assert 0 <= w.col_off and w.col_end <= width and 0 <= w.row_off and w.row_end <= height
        assert w.width == min(512, width) and w.height == min(512, height)
        seen[w.row_off : w.row_end, w.col_off : w.col_end] += 1
    assert seen.min() >= 1
    assert len(set(windows)) == len(windows)


def test_windows_are_row_major():
    windows = tile_windows(1200, 1000)
    keys = [(w.row_off, w.col_off) for w in windows]
    assert keys == sorted(keys)
    assert [w.col_off for w in windows[:3]] == [0, 412, 688]
    assert len(windows) == 3 * 3


def test_small_raster_gives_one_window_of_its_own_size():
    assert tile_windows(300, 200) == [Window(0, 0, 300, 200)]


def test_region_is_clamped_and_tiled_inside():
    region = Window(-50, 100, 900, 10_000)  # hangs over the left and bottom edges
    windows = tile_windows(2000, 1500, region=region)
    assert min(w.col_off for w in windows) == 0
    assert max(w.col_end for w in windows) == 850
    assert min(w.row_off for w in windows) == 100
    assert max(w.row_end for w in windows) == 1500
    seen = np.zeros((1500, 2000), dtype=bool)
    for w in windows:
        seen[w.row_off : w.row_end, w.col_off : w.col_end] = True
    assert seen[100:1500, 0:850].all()
    assert not seen[:100].any() and not seen[:, 850:].any()


def test_small_region_gives_one_window():
    assert tile_windows(2000, 2000, region=Window(100, 200, 50, 60)) == [Window(100, 200, 50, 60)]


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        (dict(size=512, overlap=512), "smaller than the tile size"),
        (dict(size=0, overlap=0), "positive"),
        (dict(size=512, overlap=-1), "overlap"),
    ],
)
def test_bad_grid_arguments_raise_user_sentences(kwargs, needle):
    with pytest.raises(UserError, match=needle) as info:
        tile_windows(1000, 1000, **kwargs)
    assert str(info.value).endswith(".")


def test_region_outside_the_image_is_a_user_error():
    with pytest.raises(UserError, match="does not overlap the image"):
        tile_windows(1000, 1000, region=Window(2000, 0, 100, 100))
