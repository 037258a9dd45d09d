"""End-to-end detection through a vLLM server against the server alone, in one run.

``engine alone``: the raster's tiles are read and encoded beforehand, then sent to the
server as raw concurrent chat requests (the same bodies the engine sends, ``--in-flight``
at a time) and only the server's answering is timed. ``rscovlm detect``: the whole
pipeline (read, resize, encode, request, parse, merge, georeference) through
:class:`rscovlm.engines.openai_engine.OpenAIEngine` with the same number in flight.
The ratio of their tiles/s is what the pipeline costs on top of the server (target ≥ 0.9).
Medians of ``--repeats`` interleaved runs.

    bench/bench_vllm.py --base-url http://127.0.0.1:8000/v1 --model demo --raster scene.tif \\
        --tile-size 256 --overlap 64 --classes "plane,storage tank" --max-new-tokens 512

``make test-vllm`` builds the CPU vLLM this was measured with (see bench/README.md).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import statistics
import time

import httpx


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--model", required=True, help="the name the server serves")
    parser.add_argument("--raster", required=True)
    parser.add_argument("--tile-size", type=int, default=512)
    parser.add_argument("--overlap", type=int, default=100)
    parser.add_argument("--classes", default="plane,storage tank")
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--in-flight", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from rscovlm.engines.openai_engine import OpenAIEngine
    from rscovlm.formats.prompts import detection_prompt, messages
    from rscovlm.pipelines.detect import DetectOptions, detect, plan_windows, tile_input
    from rscovlm.raster import RasterSource

    options = DetectOptions.build(classes=[c.strip() for c in args.classes.split(",")], tile_size=args.tile_size,
                                  overlap=args.overlap, max_new_tokens=args.max_new_tokens, split_min_tile=0)
    engine = OpenAIEngine(args.base_url, args.model, concurrency=args.in_flight)
    system, user = detection_prompt(options.classes, options.form)
    with RasterSource.open(args.raster) as source:
        windows = plan_windows(source, options)
        images = [tile_input(source, w, options, engine.pixel_bounds) for w in windows]
    bodies = []
    for image in images:
        if image is None:
            continue
        body = engine._body(messages(system, user, image), [image], options.max_new_tokens)
        body.update(stream=False)
        body.pop("stream_options", None)
        bodies.append(body)
    client = httpx.Client(timeout=600, limits=httpx.Limits(max_connections=args.in_flight + 2))

    cpu: dict[str, list[float]] = {"raw": [], "pipeline": []}

    def client_cpu() -> float:
        t = os.times()
        return t.user + t.system

    def raw() -> float:
        started, cpu0 = time.perf_counter(), client_cpu()
        with cf.ThreadPoolExecutor(args.in_flight) as pool:
            for response in pool.map(lambda b: client.post(f"{args.base_url}/chat/completions", json=b), bodies):
                response.raise_for_status()
        cpu["raw"].append(client_cpu() - cpu0)
        return time.perf_counter() - started

    def pipeline() -> float:
        started, cpu0 = time.perf_counter(), client_cpu()
        detect(args.raster, engine, options)
        cpu["pipeline"].append(client_cpu() - cpu0)
        return time.perf_counter() - started

    raw()  # warm-up: the server compiles and caches on first use
    alone, whole = [], []
    for _ in range(args.repeats):
        alone.append(raw())
        whole.append(pipeline())
    n = len(bodies)
    a, w = statistics.median(alone), statistics.median(whole)
    print(f"workload        {n} tiles of {args.tile_size} px, {args.in_flight} in flight, median of {args.repeats}")
    print(f"engine alone    {n / a:7.2f} tiles/s  ({a:.2f} s)")
    print(f"rscovlm detect  {n / w:7.2f} tiles/s  ({w:.2f} s)")
    print(f"ratio           {a / w:.3f}   (target >= 0.9)")
    for name in ("raw", "pipeline"):
        print(f"client CPU      {name:8s} {statistics.median(cpu[name]) / n * 1000:6.1f} ms per tile "
              f"(on a machine whose cores the server shares, this is taken from the server)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
