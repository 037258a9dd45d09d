"""Time the tile merge on ~100,000 realistic detections.

Run:  cd /work/main && .venv/bin/python bench/bench_merge.py [--objects 65000] [--runs 5]

A virtual 25,000 x 25,000 px image is cut into 512 px tiles with 100 px overlap. Random
oriented objects (10-80 px, 15 classes) are placed on it; every tile that sees enough of
an object reports it: whole and slightly jittered when it lies inside the tile (as a model
would place it a pixel or two differently), or clipped to the tile and flagged as touching
an inner edge when the tile cuts it. Objects are thus seen by 1 to 4 tiles. The script times
``merge_detections`` (median of several runs), prints the figure against the 2 s target and
the throughput, and checks the merge found roughly one detection per object.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import shapely

from rscovlm.geometry import order_quads, touches_inner_edge
from rscovlm.merge import MergeConfig, merge_detections
from rscovlm.tiling import Window, axis_starts

TARGET_S = 2.0
TILE, OVERLAP = 512, 100
MIN_VISIBLE = 0.3  # a tile reports an object only if this share of it lies in the tile


def make_detections(n_objects: int, size: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    cx, cy = rng.uniform(40, size - 40, (2, n_objects))
    w = rng.uniform(10, 80, n_objects)
    h = w * rng.uniform(0.3, 1.0, n_objects)
    angle = rng.uniform(0, np.pi, n_objects)
    classes = rng.integers(0, 15, n_objects)
    ux, uy = np.cos(angle) * w / 2, np.sin(angle) * w / 2
    vx, vy = -np.sin(angle) * h / 2, np.cos(angle) * h / 2
    objects = np.stack(
        [cx - ux - vx, cy - uy - vy, cx + ux - vx, cy + uy - vy, cx + ux + vx, cy + uy + vy, cx - ux + vx, cy - uy + vy],
        axis=1,
    )
    starts = np.asarray(axis_starts(size, TILE, OVERLAP))
    n_cols = len(starts)

    # every (object, tile) pair whose boxes overlap: at most 2 tiles per axis here
    xs, ys = objects[:, 0::2], objects[:, 1::2]
    first_col = np.searchsorted(starts + TILE, xs.min(1), side="right")
    first_row = np.searchsorted(starts + TILE, ys.min(1), side="right")
    obj_idx, tile_cols, tile_rows = [], [], []
    for dc in range(3):
        for dr in range(3):
            col, row = first_col + dc, first_row + dr
            ok = (col < n_cols) & (row < n_cols)
            ok[ok] &= (starts[col[ok]] < xs.max(1)[ok]) & (starts[row[ok]] < ys.max(1)[ok])
            obj_idx.append(np.flatnonzero(ok))
            tile_cols.append(col[ok])
            tile_rows.append(row[ok])
    obj_idx, tile_cols, tile_rows = map(np.concatenate, (obj_idx, tile_cols, tile_rows))

    polygons = shapely.polygons(objects.reshape(-1, 4, 2))
    boxes = shapely.box(starts[tile_cols], starts[tile_rows], starts[tile_cols] + TILE, starts[tile_rows] + TILE)
    pieces = shapely.intersection(polygons[obj_idx], boxes)
    share = shapely.area(pieces) / shapely.area(polygons[obj_idx])
    seen = share >= MIN_VISIBLE
    obj_idx, tile_cols, tile_rows, pieces, share = (v[seen] for v in (obj_idx, tile_cols, tile_rows, pieces, share))

    whole = share > 0.999
    quads = np.empty((len(obj_idx), 8))
    quads[whole] = objects[obj_idx[whole]] + rng.normal(0, 1.0, (whole.sum(), 8))
    quads[~whole] = _clipped_quads(pieces[~whole])
    quads = order_quads(quads)
    tile_ids = tile_rows * n_cols + tile_cols
    inner = np.zeros(len(quads), dtype=bool)
    for tile in np.unique(tile_ids):  # one call per tile, as the pipeline does it
        sel = tile_ids == tile
        window = Window(int(starts[tile % n_cols]), int(starts[tile // n_cols]), TILE, TILE)
        inner[sel] = touches_inner_edge(quads[sel], window, (size, size))
    return quads, classes[obj_idx], tile_ids, inner


def _clipped_quads(pieces: np.ndarray) -> np.ndarray:
    """The model reports a cut object as the rectangle around its visible part."""
    rects = shapely.oriented_envelope(pieces)
    coords = [np.asarray(shapely.get_coordinates(r))[:4].reshape(8) for r in rects]
    return np.asarray(coords)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=65_000)
    parser.add_argument("--size", type=int, default=25_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    t0 = time.perf_counter()
    quads, labels, tile_ids, inner = make_detections(args.objects, args.size)
    print(f"built {len(quads):,} detections of {args.objects:,} objects in {time.perf_counter() - t0:.1f} s "
          f"({inner.mean():.0%} touch an inner tile edge)")

    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        result = merge_detections(quads, labels, tile_ids, inner, MergeConfig())
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    support = np.bincount(result.support)
    print(f"kept {len(result.keep):,} for {args.objects:,} objects; support histogram {support[1:].tolist()}")
    verdict = "OK" if median <= TARGET_S else "TOO SLOW"
    print(f"merge_detections: median {median:.3f} s over {args.runs} runs (target <= {TARGET_S:.1f} s): {verdict}; "
          f"{len(quads) / median:,.0f} quads/s")


if __name__ == "__main__":
    main()
