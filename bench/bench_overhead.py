"""Pipeline overhead per tile outside the model (target: <= 10 ms on a 2-core machine).

    .venv/bin/python bench/bench_overhead.py [--size 6000] [--repeats 3]

Runs the real detection pipeline on a tiled GeoTIFF with an engine that answers at once
(six oriented boxes per tile), so the time is everything except the model: windowed
reads, resizing to the model input, parsing, mapping, merging, georeferencing, and
writing a GeoPackage. Prints the median over repeats.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import InstantEngine, write_large_raster  # noqa: E402

from rscovlm.outputs import write_vector  # noqa: E402
from rscovlm.pipelines.detect import DetectOptions, detect  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=6000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        raster = write_large_raster(Path(tmp) / "bench.tif", args.size)
        per_tile = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            result = detect(raster, InstantEngine(), DetectOptions())
            write_vector(result.gdf, Path(tmp) / "out.gpkg")
            elapsed = time.perf_counter() - start
            per_tile.append(elapsed / result.tiles_total * 1000)
        median = statistics.median(per_tile)
    print(f"raster {args.size}x{args.size} px, {result.tiles_total} tiles, {len(result.gdf)} merged objects")
    print(f"pipeline overhead per tile (median of {args.repeats}): {median:.2f} ms  "
          f"[target <= 10 ms] {'OK' if median <= 10 else 'OVER TARGET'}")
    print("breakdown of the last run (s): " + ", ".join(f"{k}={v:.2f}" for k, v in result.timings.items()))


if __name__ == "__main__":
    main()
