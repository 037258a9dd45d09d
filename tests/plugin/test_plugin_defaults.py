"""The plugin's own copies of backend facts (it imports nothing from the backend) stay equal."""

from __future__ import annotations

from rscovlm import defaults
from rscovlm_qgis import settings
from rscovlm_qgis.tasks import format_outcome


def test_tiling_defaults_and_limits_match_the_backend():
    assert (settings.TILE_SIZE, settings.OVERLAP) == (defaults.TILE_SIZE, defaults.OVERLAP)
    assert (settings.TILE_SIZE_MIN, settings.TILE_SIZE_MAX) == (defaults.TILE_SIZE_MIN, defaults.TILE_SIZE_MAX)


def test_the_message_says_split_cut_and_failed_tiles(qgis_app):
    message, complete = format_outcome(12, "ortho", {"rscovlm": {"tiles_split": 3}})
    assert complete and message.startswith("12 objects found in ortho.") and "3 dense tiles" in message
    message, complete = format_outcome(5, "ortho", {"rscovlm": {
        "tiles_incomplete": ["c0_r0"], "tiles_failed": [{"tile": "c412_r0", "error": "server down"}]}})
    assert not complete and "1 answers were still cut" in message and "1 tiles failed" in message
    assert format_outcome(0, "x", {}) == ("0 objects found in x.", True)


def test_the_plugins_tile_count_is_the_backends_grid():
    from rscovlm.tiling import tile_windows
    from rscovlm_qgis.params import tile_count

    for width, height, size, overlap in [(1200, 1200, 512, 100), (20000, 20000, 512, 100), (300, 5000, 256, 64),
                                         (512, 513, 512, 100), (100, 100, 512, 100)]:
        assert tile_count(width, height, size, overlap) == len(tile_windows(width, height, size, overlap))
    assert settings.LARGE_RUN_TILES == defaults.LARGE_RUN_TILES
