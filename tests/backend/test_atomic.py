"""Atomic writes (readers see the old file or the whole new one) and output paths checked early."""

from __future__ import annotations

import os
import stat
import sys
import threading
from pathlib import Path

import pytest

from rscovlm import atomic
from rscovlm.atomic import atomic_open, atomic_write, atomic_write_with
from rscovlm.errors import UserError
from rscovlm.outputs import check_output_path


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_text_and_bytes_replace_the_file(tmp_path):
    target = tmp_path / "a.txt"
    assert atomic_write(target, "first\n") == target
    atomic_write(target, "zweite Fassung\n")
    assert target.read_text(encoding="utf-8") == "zweite Fassung\n"
    atomic_write(target, b"\x00\x01binary")
    assert target.read_bytes() == b"\x00\x01binary"
    atomic_write(target, "a\nb\n", newline="\r\n")
    assert target.read_bytes() == b"a\r\nb\r\n"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_a_failing_writer_leaves_the_old_file_and_no_temp_file(tmp_path):
    target = tmp_path / "records.jsonl"
    atomic_write(target, "old\n")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_open(target) as handle:
            handle.write("new, half")
            raise RuntimeError("disk full")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["records.jsonl"]

    def broken(tmp: Path) -> None:
        tmp.write_text("half a GeoPackage")
        (tmp.parent / (tmp.name + "-journal")).write_text("side file")
        raise OSError("GDAL gave up")

    with pytest.raises(OSError, match="GDAL gave up"):
        atomic_write_with(target, broken)
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["records.jsonl"]


def test_a_failing_writer_of_a_new_file_leaves_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with atomic_open(tmp_path / "new.txt") as handle:
            handle.write("x")
            raise KeyboardInterrupt
    with pytest.raises(FileNotFoundError, match="produced no"):
        atomic_write_with(tmp_path / "new.png", lambda tmp: None)  # wrote nothing at all
    assert list(tmp_path.iterdir()) == []


def test_callback_gets_the_target_name_in_a_staging_folder_next_to_it(tmp_path):
    seen = []

    def write(tmp: Path) -> None:
        seen.append(tmp)
        assert not tmp.exists()  # a fresh name: libraries that refuse to overwrite are happy
        tmp.write_bytes(b"PNG")
        (tmp.parent / "curve.png.aux.xml").write_text("side file")

    atomic_write_with(tmp_path / "curve.png", write)
    (tmp,) = seen
    assert tmp.name == "curve.png" and tmp.parent.parent == tmp_path and tmp.parent != tmp_path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curve.png"]


def test_mode_is_honoured_and_private_from_the_start(tmp_path):
    token = tmp_path / "token"
    with atomic_open(token, mode=0o600) as handle:
        (temp,) = [p for p in tmp_path.iterdir() if p.name.startswith(".token.")]
        assert _mode(temp) == 0o600  # never readable by others, even while being written
        handle.write("secret\n")
    assert _mode(token) == 0o600
    atomic_write(token, "other\n", mode=0o640, fsync=True)
    assert _mode(token) == 0o640
    atomic_write_with(tmp_path / "x.bin", lambda tmp: tmp.write_bytes(b"1"), mode=0o604, fsync=True)
    assert _mode(tmp_path / "x.bin") == 0o604


def test_without_mode_a_file_gets_what_open_would_give_it(tmp_path):
    old = os.umask(0o027)
    try:
        atomic_write(tmp_path / "plain.txt", "x")
        atomic_write_with(tmp_path / "cb.txt", lambda tmp: tmp.write_text("x"))
        with open(tmp_path / "reference.txt", "w") as handle:
            handle.write("x")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "plain.txt") == _mode(tmp_path / "reference.txt") == 0o640
    assert _mode(tmp_path / "cb.txt") == 0o640


def test_companions_move_first_the_main_file_last_and_stale_ones_go(tmp_path, monkeypatch):
    target = tmp_path / "d.shp"
    for suffix in (".shp", ".shx", ".dbf", ".prj"):
        (tmp_path / f"d{suffix}").write_text("old")
    moves = []
    real_replace = os.replace

    def recording_replace(src, dst):
        moves.append(Path(dst).name)
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", recording_replace)

    def write(tmp: Path) -> None:
        for suffix in (".shp", ".shx", ".dbf", ".cpg"):  # no .prj this time
            tmp.with_suffix(suffix).write_text("new")

    atomic_write_with(target, write, companions=(".shx", ".dbf", ".prj", ".cpg", ".shp.xml"))
    assert moves == ["d.cpg", "d.dbf", "d.shx", "d.shp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.cpg", "d.dbf", "d.shp", "d.shx"]
    assert all(p.read_text() == "new" for p in tmp_path.iterdir())


def test_a_missing_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        atomic_write(tmp_path / "nowhere" / "a.txt", "x")
    with pytest.raises(UserError, match="does not exist"):
        atomic_write_with(tmp_path / "nowhere" / "a.png", lambda tmp: None)


def test_a_reader_never_sees_half_a_file(tmp_path):
    target = tmp_path / "big.txt"
    size = 1 << 20
    atomic_write(target, "a" * size)
    stop = threading.Event()

    def keep_writing():
        k = 0
        while not stop.is_set():
            atomic_write(target, "ab"[k % 2] * size)
            k += 1

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        for _ in range(200):
            text = target.read_text()
            assert len(text) == size and text in ("a" * size, "b" * size)
    finally:
        stop.set()
        writer.join()
    assert [p.name for p in tmp_path.iterdir()] == ["big.txt"]


# --------------------------------------------------------------------------- check_output_path


def test_check_output_path_accepts_a_writable_target_and_leaves_no_debris(tmp_path):
    assert check_output_path(tmp_path / "out.gpkg") == tmp_path / "out.gpkg"
    (tmp_path / "old.shp").write_text("an older result")
    check_output_path(tmp_path / "old.shp")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.shp"]


def test_check_output_path_refuses_a_missing_folder(tmp_path):
    with pytest.raises(UserError, match=r"the folder .*nowhere does not exist\.$"):
        check_output_path(tmp_path / "nowhere" / "out.gpkg")


def test_check_output_path_refuses_a_folder_that_is_a_file(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UserError, match="is not a folder"):
        check_output_path(tmp_path / "notes.txt" / "out.gpkg")


def test_check_output_path_refuses_a_target_that_is_a_folder(tmp_path):
    (tmp_path / "out.gpkg").mkdir()
    with pytest.raises(UserError, match="folder of that name"):
        check_output_path(tmp_path / "out.gpkg")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux's")
def test_check_output_path_refuses_a_folder_nobody_can_write():
    # Tests run as root, for whom permission bits do not stop writes; /proc refuses new
    # files even to root, so it stands for a read-only folder (the check really writes).
    with pytest.raises(UserError, match=r"/proc is not writable"):
        check_output_path("/proc/detections.gpkg")


def test_check_output_path_refuses_an_unsupported_extension(tmp_path):
    with pytest.raises(UserError, match=r"'\.kml' is not a supported vector format; use one of"):
        check_output_path(tmp_path / "out.kml")
    with pytest.raises(UserError, match="not a supported vector format"):
        check_output_path(tmp_path / "nowhere" / "out")  # the extension is checked first
