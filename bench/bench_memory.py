"""Peak resident memory of detection on a 30000x30000 vs a 10000x10000 RGB GeoTIFF.

    .venv/bin/python bench/bench_memory.py [--sizes 10000 30000]

Targets: <= 1.5 GB, and the larger within 20 % of the smaller (memory must not grow
with raster size). Each size runs in its own process so peaks don't mix; the engine
answers at once, so this measures the pipeline's memory, not a model's.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import InstantEngine, peak_rss_mb, write_large_raster  # noqa: E402


def measure(raster: Path) -> dict:
    from rscovlm.pipelines.detect import DetectOptions, detect

    before = peak_rss_mb()
    start = time.perf_counter()
    result = detect(raster, InstantEngine(), DetectOptions())
    return {"tiles": result.tiles_total, "objects": len(result.gdf), "seconds": time.perf_counter() - start,
            "baseline_mb": before, "peak_mb": peak_rss_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10000, 30000])
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child)))
        return
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            raster = Path(tmp) / f"r{size}.tif"
            t0 = time.perf_counter()
            write_large_raster(raster, size)
            print(f"wrote {size}x{size} test raster in {time.perf_counter() - t0:.0f} s", flush=True)
            out = subprocess.run([sys.executable, __file__, "--child", str(raster)], check=True,
                                 capture_output=True, text=True).stdout.strip().splitlines()[-1]
            figures[size] = json.loads(out)
            f = figures[size]
            print(f"{size}x{size}: {f['tiles']} tiles in {f['seconds']:.0f} s, peak RSS {f['peak_mb']:.0f} MiB "
                  f"(after imports {f['baseline_mb']:.0f} MiB)", flush=True)
            raster.unlink()
    small, large = figures[min(figures)], figures[max(figures)]
    ratio = large["peak_mb"] / small["peak_mb"]
    print(f"peak ratio largest/smallest: {ratio:.3f} [target <= 1.20] {'OK' if ratio <= 1.2 else 'OVER TARGET'}; "
          f"largest peak {large['peak_mb']:.0f} MiB [target <= 1536] {'OK' if large['peak_mb'] <= 1536 else 'OVER TARGET'}")


if __name__ == "__main__":
    main()
