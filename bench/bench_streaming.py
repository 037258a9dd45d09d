"""Stragglers: the streaming pipeline against synchronous batches, on heavy-tailed answer lengths.

A scripted engine answers each tile with a realistic number of tokens drawn from a heavy
tail (most tiles empty, some sparse, a few harbour-dense) and takes ``seconds_per_token``
per token, as a server decoding each request at its own pace would. Three ways, same
tiles, same answers, in one run:

- ``batched-8``: today's loop before streaming: 8 tiles read, sent together, the next 8
  only once the slowest of them finished (one engine call holds all 8);
- ``stream-8``: the streaming pipeline with 8 requests in flight and no batch barrier;
- ``stream-64``: the streaming pipeline with 64 in flight (what a vLLM server is given).

Printed: wall time and tiles/s of each, the ratios to ``batched-8``, medians of
``--repeats`` runs. The model is idealised (a request's speed does not fall with the
number in flight), so the figures measure what the pipeline's scheduling wastes, not a GPU.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import write_large_raster  # noqa: E402

from rscovlm.engines.scripted import ScriptedEngine  # noqa: E402
from rscovlm.pipelines.detect import DetectOptions, detect  # noqa: E402


def answer_lengths(count: int, seed: int) -> list[int]:
    """Answer lengths in tokens: 70 % empty fields (4), 25 % sparse (1-10 boxes), 5 % dense (60-160 boxes)."""
    rng = np.random.default_rng(seed)
    kinds = rng.choice(3, size=count, p=[0.70, 0.25, 0.05])
    boxes = np.where(kinds == 0, 0, np.where(kinds == 1, rng.integers(1, 11, count), rng.integers(60, 161, count)))
    return [4 if n == 0 else int(n) * 32 for n in boxes]


def scripted(lengths: list[int], seconds_per_token: float, batch_size: int, concurrency: int) -> ScriptedEngine:
    by_tile: dict[tuple, int] = {}

    def answer(conversation) -> str:
        window = conversation[-1]["content"][0]["image"].info["window"]
        n = by_tile.setdefault(window, lengths[len(by_tile) % len(lengths)])
        return "There are none." if n == 4 else ("1,2,3,4,5,6,7,8 ship\n" * (n // 32)).strip()

    return ScriptedEngine(answer, batch_size=batch_size, concurrency=concurrency,
                          seconds_per_token=seconds_per_token, keep_conversations=False, max_records=0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=4096, help="raster side in pixels (default 4096: 100 tiles)")
    parser.add_argument("--seconds-per-token", type=float, default=0.001)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        raster = write_large_raster(Path(tmp) / "scene.tif", args.size)
        lengths = answer_lengths(10_000, seed=0)
        options = DetectOptions(classes=("ship",), split_min_tile=0)
        ways = {
            "batched-8": dict(batch_size=8, concurrency=1),
            "stream-8": dict(batch_size=1, concurrency=8),
            "stream-64": dict(batch_size=1, concurrency=64),
        }
        times: dict[str, list[float]] = {name: [] for name in ways}
        tiles = 0
        for _ in range(args.repeats):
            for name, shape in ways.items():  # interleaved, so drift affects all alike
                engine = scripted(lengths, args.seconds_per_token, **shape)
                started = time.perf_counter()
                result = detect(raster, engine, options)
                times[name].append(time.perf_counter() - started)
                tiles = result.tiles_total
        base = statistics.median(times["batched-8"])
        total_tokens = sum(lengths[:tiles])
        print(f"workload    {tiles} tiles, {total_tokens:,} answer tokens (heavy tail: max "
              f"{max(lengths[:tiles])}, median {int(statistics.median(lengths[:tiles]))}), "
              f"{args.seconds_per_token * 1000:.2f} ms/token, median of {args.repeats}")
        for name, values in times.items():
            median = statistics.median(values)
            print(f"{name:10s}  {median:7.2f} s   {tiles / median:7.1f} tiles/s   speed-up x{base / median:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
