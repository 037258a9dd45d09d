"""A long answer does not hold its transformers batch: finished rows make room for new tiles.

The demo model on a held-out scene answers "There are none." (5 tokens) for most tiles and
up to ~100 tokens for busy ones. With pausing, a batch whose rows have half ended hands
back its unfinished rows, the stream continues them beside fresh tiles, and the answers
must be exactly those of tiles asked one at a time (where nothing can pause).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rscovlm.cli import main
from rscovlm.engines.transformers_engine import TransformersEngine, _RowStops
from rscovlm.formats.prompts import detection_prompt, messages
from rscovlm.pipelines.detect import DetectOptions, detect, plan_windows, tile_input
from rscovlm.raster import RasterSource
from rscovlm.responses import read_responses

DEMO_MODEL = Path(__file__).resolve().parents[2] / "resources" / "demo-model"


@pytest.fixture(scope="module")
def held_out_scene(tmp_path_factory):
    scene = tmp_path_factory.mktemp("pausing") / "scene.tif"
    assert main(["synth", str(scene), "--truth", str(scene.with_suffix(".gpkg")), "--size", "1024", "--gsd", "0.5",
                 "--seed", "1001"]) == 0
    return scene


def answers(scene: Path, batch_size: int, tmp_path: Path, budget: int):
    engine = TransformersEngine.from_pretrained(str(DEMO_MODEL), device="cpu", batch_size=batch_size)
    engine.pause_cost_factor = 0  # pause whenever a row has ended and tiles wait, whatever the timing
    options = DetectOptions(classes=("plane", "storage tank"), tile_size=256, overlap=64,
                            max_new_tokens=budget, split_min_tile=0)
    responses = tmp_path / f"batch{batch_size}-{budget}.jsonl"
    result = detect(scene, engine, options, responses_out=responses)
    return engine, result, {r.window: r for r in read_responses(responses)}


@pytest.mark.parametrize("budget", [512, 20])
def test_paused_answers_continue_to_the_answers_asked_alone(held_out_scene, tmp_path, budget):
    batched, result, together = answers(held_out_scene, 8, tmp_path, budget)
    _, alone_result, alone = answers(held_out_scene, 1, tmp_path, budget)

    assert batched.paused_rows > 0  # the scene has short and long answers: some rows waited
    assert together.keys() == alone.keys() and len(together) == 25
    lengths = sorted(r.tokens for r in alone.values())
    assert lengths[-1] >= 4 * lengths[0]  # short and long answers in one scene
    for window, record in together.items():
        single = alone[window]
        assert (record.response, record.finished, record.tokens) == (single.response, single.finished, single.tokens)
        # A continued answer carries the log-probabilities from before and after its pause.
        assert [t for t, _ in record.logprobs] == [t for t, _ in single.logprobs]
        assert np.allclose([v for _, v in record.logprobs], [v for _, v in single.logprobs], atol=1e-3)
    if budget == 20:  # a continued row stops at its own remaining budget, not the batch's
        cut = [r for r in together.values() if not r.finished]
        assert cut and all(r.tokens == 20 for r in cut)
        assert result.tiles_incomplete == alone_result.tiles_incomplete
    assert result.summary() == alone_result.summary()


def test_rows_pause_only_when_work_waits_and_continue_where_they_stopped(held_out_scene):
    """Pausing is only worth its second prefill when other work can take the room."""
    engine = TransformersEngine.from_pretrained(str(DEMO_MODEL), device="cpu", batch_size=8)
    engine.pause_cost_factor = 0
    options = DetectOptions(classes=("plane", "storage tank"), tile_size=256, overlap=64)
    system, user = detection_prompt(options.classes)
    with RasterSource.open(held_out_scene) as source:
        windows = plan_windows(source, options)[:8]
        conversations = [messages(system, user, tile_input(source, w, options, engine.pixel_bounds)) for w in windows]

    idle = engine.generate(conversations, max_new_tokens=64, work_waiting=lambda: False)
    assert engine.paused_rows == 0 and not any(a.paused for a in idle)
    busy = engine.generate(conversations, max_new_tokens=64, work_waiting=lambda: True)
    paused = [a for a in busy if a.paused]
    assert paused and engine.paused_rows == len(paused) < len(conversations)  # some rows had ended
    assert all(not a.finished and a.tokens < 64 for a in paused)
    # Continued with nothing else waiting, each paused answer becomes the unpaused one.
    continued = engine.generate([c for c, a in zip(conversations, busy) if a.paused], max_new_tokens=64,
                                resume=paused)
    assert [a.text for a in continued] == [a.text for a, b in zip(idle, busy) if b.paused]
    assert [a.tokens for a in continued] == [a.tokens for a, b in zip(idle, busy) if b.paused]
    assert not any(a.paused for a in continued)
    with pytest.raises(ValueError, match="one entry"):
        engine.generate(conversations, resume=[None])


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def steps_until_pause(factor: float, work_waits: bool = True) -> int | None:
    """Two rows; row 0 ends at the first token; prefill 0.01 s per token, 0.1 s per step."""
    clock = Clock()
    stops = _RowStops({9}, budgets=[50, 50], held=[5, 5], should_cancel=None,
                      work_waiting=lambda: work_waits, cost_factor=factor, clock=clock)
    clock.now = 0.1  # the prefill of 10 tokens
    for step in range(1, 50):
        done = stops(torch.tensor([[1, 9 if step == 1 else 0], [1, 2]]), None)
        clock.now += 0.1
        if done.all():
            assert stops.reasons == ["end", "pause"] and stops.lengths == [1, step]
            return step
    return None


def test_a_batch_pauses_once_idling_has_cost_as_much_as_prefilling_again():
    # Row 0 idles half of each 0.1 s step; prefilling row 1 again costs (5 + steps) x 0.01 s:
    # idle 0.05 x (s - 1) reaches 0.01 x (5 + s) at the third step.
    assert steps_until_pause(1.0) == 3
    assert steps_until_pause(0.0) == 1  # as soon as a row has ended
    assert steps_until_pause(3.0) > 3  # dearer prefills wait longer
    assert steps_until_pause(1.0, work_waits=False) is None  # nothing to make room for
