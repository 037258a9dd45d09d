"""Shared pieces of the benchmarks: a large test raster and an instant engine.

The instant engine (``rscovlm.engines.scripted.ScriptedEngine`` with a fixed answer)
answers every tile at once with a realistic detection text, so the figures measure the
pipeline itself (reads, resizing, parsing, merging, georeferencing, writing), not a model.
"""

from __future__ import annotations

import resource
from pathlib import Path

import numpy as np

from rscovlm.engines.scripted import ScriptedEngine


class InstantEngine(ScriptedEngine):
    """The scripted engine with a fixed, plausible answer per tile: a few oriented boxes of two classes.

    ``seconds_per_token`` (default 0: instant) makes each batch take as long as a model
    writing its longest answer would, for benchmarks that model stragglers.
    """

    def __init__(self, objects_per_tile: int = 6, batch_size: int = 8, seconds_per_token: float = 0.0):
        rng = np.random.default_rng(0)
        lines = []
        for i in range(objects_per_tile):
            cx, cy = rng.uniform(40, 460, size=2)
            w, h, a = rng.uniform(10, 40), rng.uniform(5, 20), rng.uniform(0, np.pi)
            c, s = np.cos(a), np.sin(a)
            corners = [(cx + dx * c - dy * s, cy + dx * s + dy * c) for dx, dy in ((-w, -h), (w, -h), (w, h), (-w, h))]
            coords = ",".join(f"{round(x)},{round(y)}" for x, y in corners)
            lines.append(f"{coords} {'small vehicle' if i % 2 else 'ship'}")
        self.answer = "\n".join(lines)
        super().__init__(self.answer, batch_size=batch_size, seconds_per_token=seconds_per_token,
                         name="instant (benchmark)", keep_conversations=False, max_records=0)


def write_large_raster(path: Path, size: int, block: int = 512) -> Path:
    """A tiled, compressed RGB GeoTIFF of size x size, written block by block (bounded memory)."""
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(1)
    pattern = rng.integers(40, 200, size=(3, block, block), dtype=np.uint8)
    pattern[:, ::16, :] = 230  # some structure so compression behaves like imagery, not noise
    profile = dict(
        driver="GTiff", width=size, height=size, count=3, dtype="uint8", crs="EPSG:32633",
        transform=from_origin(500000, 5000000 + size * 0.5, 0.5, 0.5),
        tiled=True, blockxsize=block, blockysize=block, compress="deflate", photometric="RGB",
        BIGTIFF="IF_SAFER",
    )
    with rasterio.open(path, "w", **profile) as dst:
        for row in range(0, size, block):
            for col in range(0, size, block):
                h, w = min(block, size - row), min(block, size - col)
                data = np.roll(pattern, (row // block) * 37 + (col // block) * 11, axis=2)[:, :h, :w]
                dst.write(data, window=rasterio.windows.Window(col, row, w, h))
    return path


def peak_rss_mb() -> float:
    """Peak resident memory of this process, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
