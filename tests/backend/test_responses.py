"""Per-tile responses JSONL: round trip, crash safety, and errors that name the line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from rscovlm.errors import UserError
from rscovlm.responses import ResponseRecord, ResponsesWriter, read_responses
from rscovlm.tiling import Window


def record(i: int, text: str = "10,20,30,20,30,40,10,40 plane") -> ResponseRecord:
    return ResponseRecord(412 * i, 0, 512, 512, 504, 504, text)


def test_round_trip_keeps_every_field(tmp_path):
    path = tmp_path / "responses.jsonl"
    records = [record(0), record(1, "There are none."), record(2, "ünïcode,\nnew line \"quoted\"")]
    with ResponsesWriter(path) as writer:
        for r in records:
            writer.write(r)
        assert writer.count == 3
    assert read_responses(path) == records
    assert len(path.read_text(encoding="utf-8").splitlines()) == 3
    assert records[1].window == Window(412, 0, 512, 512)
    assert records[1].input_wh == (504, 504)


def test_each_line_is_on_disk_as_soon_as_it_is_written(tmp_path):
    path = tmp_path / "r.jsonl"
    writer = ResponsesWriter(path)
    writer.write(record(0))
    assert read_responses(path) == [record(0)]  # before close: nothing sits in a buffer
    writer.close()
    with ResponsesWriter(path, append=True) as writer:
        writer.write(record(1))
    assert len(read_responses(path)) == 2
    with ResponsesWriter(path) as writer:  # a new run starts a fresh file
        writer.write(record(5))
    assert read_responses(path) == [record(5)]


def test_a_killed_run_leaves_whole_lines(tmp_path):
    path = tmp_path / "r.jsonl"
    script = textwrap.dedent(
        f"""
        import os, signal
        from rscovlm.responses import ResponseRecord, ResponsesWriter
        writer = ResponsesWriter({str(path)!r})
        for i in range(40):
            writer.write(ResponseRecord(i, 0, 512, 512, 504, 504, "x" * 5000 + str(i)))
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], timeout=60)
    assert result.returncode == -signal.SIGKILL
    records = read_responses(path)
    assert len(records) == 40 and records[-1].response.endswith("39")


@pytest.mark.parametrize(
    "bad, problem",
    [
        ("{not json", "Line 2"),
        (json.dumps({"col_off": 0, "row_off": 0, "width": 512}), "missing field"),
        (json.dumps({**record(0).__dict__, "width": "512"}), "whole number"),
        (json.dumps({**record(0).__dict__, "response": 5}), "must be text"),
        (json.dumps([1, 2]), "JSON object"),
        (json.dumps({**record(0).__dict__, "input_width": 0}), "positive"),
    ],
)
def test_bad_line_is_named(tmp_path, bad, problem):
    path = tmp_path / "r.jsonl"
    good = record(0).to_json_line()
    path.write_text(good + bad + "\n" + good, encoding="utf-8")
    with pytest.raises(UserError, match="Line 2") as info:
        read_responses(path)
    assert problem in str(info.value)


def test_cut_off_last_line_is_explained(tmp_path):
    path = tmp_path / "r.jsonl"
    line = record(0).to_json_line()
    path.write_text(line + line[:30], encoding="utf-8")
    with pytest.raises(UserError, match="Line 2.*cut off"):
        read_responses(path)


def test_missing_file_and_blank_lines(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        read_responses(tmp_path / "none.jsonl")
    path = tmp_path / "r.jsonl"
    path.write_text("\n" + record(3).to_json_line() + "\n\n", encoding="utf-8")
    assert read_responses(path) == [record(3)]


def test_unwritable_location_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="Cannot write"):
        ResponsesWriter(tmp_path / "missing" / "r.jsonl")
    assert os.listdir(tmp_path) == []


def test_log_probabilities_round_trip_and_bad_ones_are_refused(tmp_path):
    import json as _json

    record = ResponseRecord(0, 0, 512, 512, 504, 504, "There are none.", tokens=5,
                            logprobs=(("There", -0.01), (" are", 0.0), (" none", -0.2), (".", 0.0), ("<|im_end|>", -1e-5)))
    path = tmp_path / "r.jsonl"
    with ResponsesWriter(path) as writer:
        writer.write(record)
    assert read_responses(path) == [record]
    bad = _json.loads(path.read_text())
    bad["logprobs"] = [["x", 0.5]]
    path.write_text(_json.dumps(bad) + "\n")
    with pytest.raises(UserError, match="log-probability above 0"):
        read_responses(path)
