"""Stragglers in a transformers batch: rows kept in lockstep against rows paused to make room.

transformers decodes a batch in lockstep: a row that ended keeps being padded until the
longest answer of the batch ends. The engine can instead pause the unfinished rows once
half the batch has ended and other tiles wait; the stream continues them beside fresh
tiles (one more prefill each). Same model, same tiles, same answers, in one run:

- ``lockstep``: the engine is never told that work waits (the behaviour before pausing);
- ``pausing``: the pipeline as shipped.

The model is the real thing (the shipped demo model on the CPU by default; give
``--model`` a Qwen2.5-VL folder and ``--device cuda`` on a GPU). The scenes are
held-out synthetic ones, whose answers run from 5 tokens ("There are none.") to ~100.
Printed: wall time, tiles/s, the answers' tokens and paused rows of each, medians of
``--repeats`` alternating runs, and the ratio; the answers of both are checked identical.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rscovlm.cli import main as rscovlm
from rscovlm.engines.transformers_engine import TransformersEngine
from rscovlm.pipelines.detect import DetectOptions, detect
from rscovlm.responses import read_responses

DEMO_MODEL = Path(__file__).resolve().parents[1] / "resources" / "demo-model"


class Lockstep:
    """The engine, never told that other work waits: its batches run to their longest answer."""

    def __init__(self, engine: TransformersEngine) -> None:
        self.engine = engine

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def generate(self, conversations, max_new_tokens=1024, should_cancel=None, *, resume=None, work_waiting=None):
        return self.engine.generate(conversations, max_new_tokens, should_cancel, resume=resume)


def run(engine, scenes: list[Path], options: DetectOptions, folder: Path, name: str) -> tuple[float, dict]:
    answers = {}
    started = time.perf_counter()
    for scene in scenes:
        responses = folder / f"{name}-{scene.stem}.jsonl"
        detect(scene, engine, options, responses_out=responses)
        answers.update({(scene.stem, r.window): (r.response, r.tokens) for r in read_responses(responses)})
    return time.perf_counter() - started, answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(DEMO_MODEL))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--classes", default="plane,storage tank")
    parser.add_argument("--scenes", type=int, default=4, help="held-out synth scenes (seeds 1001...)")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--tile-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        scenes = []
        for seed in range(1001, 1001 + args.scenes):
            scene = folder / f"scene{seed}.tif"
            rscovlm(["synth", str(scene), "--truth", str(scene.with_suffix(".gpkg")), "--size", str(args.size),
                     "--gsd", "0.5", "--seed", str(seed)])
            scenes.append(scene)
        engine = TransformersEngine.from_pretrained(args.model, device=args.device, batch_size=args.batch_size)
        options = DetectOptions(classes=tuple(args.classes.split(",")), tile_size=args.tile_size,
                                overlap=args.tile_size // 4, max_new_tokens=args.max_new_tokens)
        ways = {"lockstep": Lockstep(engine), "pausing": engine}
        run(engine, scenes[:1], options, folder, "warm-up")
        times: dict[str, list[float]] = {name: [] for name in ways}
        paused: list[int] = []
        answers: dict[str, dict] = {}
        for _ in range(args.repeats):
            for name, way in ways.items():  # alternating, so drifts in machine speed hit both
                before = engine.paused_rows
                seconds, answers[name] = run(way, scenes, options, folder, name)
                times[name].append(seconds)
                if name == "pausing":
                    paused.append(engine.paused_rows - before)
        identical = answers["lockstep"] == answers["pausing"]
        tokens = sorted(t for _, t in answers["pausing"].values())
        tiles = len(tokens)
        print(f"{engine.describe()['model']} on {engine.describe()['device']}, batch {args.batch_size}: "
              f"{tiles} tiles of {args.tile_size} px over {args.scenes} held-out scenes, "
              f"{sum(tokens)} answer tokens (median {statistics.median(tokens)}, longest {tokens[-1]}); "
              f"medians of {args.repeats} runs")
        base = statistics.median(times["lockstep"])
        for name in ways:
            seconds = statistics.median(times[name])
            extra = f", {statistics.median(paused):.0f} rows paused per run" if name == "pausing" else ""
            print(f"  {name:9s} {seconds:7.2f} s  {tiles / seconds:6.1f} tiles/s  x{base / seconds:.2f}{extra}")
        print(f"  answers identical: {identical}")
        if not identical:
            sys.exit(1)


if __name__ == "__main__":
    main()
