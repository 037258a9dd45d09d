"""Writing a file so that readers see the old file or the whole new one, never half of one.

Every writer in the backend (vector outputs, DOTA text, evaluation reports, training
records, loss curves, synthetic scenes, the server's token) goes through here. The new
content is written to a temporary name in the target's own folder (so the final
``os.replace`` is a rename on one file system, which POSIX makes atomic), then moved over
the target. When writing fails, the temporary file is removed and the old target is left
as it was; the exception goes on to the caller.

Three shapes of one idea:

- :func:`atomic_write` — the content is in memory (``str`` or ``bytes``).
- :func:`atomic_open` — a context manager yielding an open file, for content written in
  pieces (JSON lines).
- :func:`atomic_write_with` — a callback writes to a path, for libraries that want a
  file name rather than a handle (GDAL/OGR, rasterio, matplotlib). The callback gets a
  path with the target's own file name inside a private staging folder next to the
  target, so extension-sniffing libraries behave as for the target and any side files
  they make (journals, ``.aux.xml``) go away with the folder. ``companions`` moves a
  multi-file format into place member by member, the main file last (Shapefile: ``.shx``,
  ``.dbf``, ``.prj``… before the ``.shp``, so a reader never finds a ``.shp`` without
  its sidecars), and removes companions of an older version that the new one lacks.

Permissions: without ``mode`` a new file gets what ``open()`` would give it (0666 less
the umask); with ``mode`` it gets exactly that mode, and a file written through
:func:`atomic_write` / :func:`atomic_open` is owner-only from its creation, so a secret
is never readable by others even for an instant. ``fsync=True`` flushes the content to
disk before the rename (a crash then cannot leave an empty file under the new name);
it costs a disk flush, so it is off by default.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO

from rscovlm.errors import UserError

__all__ = ["atomic_write", "atomic_open", "atomic_write_with"]

_ATTEMPTS = 100


def _folder_of(path: Path) -> Path:
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise UserError(f"Cannot write {path}: the folder {folder} does not exist.")
    return folder


def _create_temp(path: Path, private: bool) -> tuple[int, Path]:
    """A new, empty, exclusively created file next to ``path``: ``.<name>.<random>.tmp``."""
    folder = _folder_of(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(_ATTEMPTS):
        candidate = folder / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(candidate, flags, 0o600 if private else 0o666), candidate
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name next to {path}")  # pragma: no cover


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike[str],
    binary: bool = False,
    *,
    mode: int | None = None,
    encoding: str = "utf-8",
    newline: str | None = None,
    fsync: bool = False,
) -> Iterator[IO]:
    """``with atomic_open(p) as f: f.write(...)`` — ``p`` changes only when the block ends well.

    ``binary`` opens the file for bytes; ``encoding`` and ``newline`` are ``open()``'s
    (text mode only). ``mode`` sets the permission bits (e.g. ``0o600``).
    """
    target = Path(path)
    fd, tmp = _create_temp(target, private=mode is not None)
    handle = None
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        handle = os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding=encoding, newline=newline)
        with handle:
            yield handle
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        if handle is None:  # fdopen never took the descriptor over
            os.close(fd)
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(
    path: str | os.PathLike[str],
    data: str | bytes,
    *,
    mode: int | None = None,
    encoding: str = "utf-8",
    newline: str | None = None,
    fsync: bool = False,
) -> Path:
    """Replace ``path`` with ``data`` (text for ``str``, as is for ``bytes``); returns the path."""
    with atomic_open(
        path, isinstance(data, (bytes, bytearray, memoryview)), mode=mode, encoding=encoding,
        newline=newline, fsync=fsync,
    ) as handle:
        handle.write(data)
    return Path(path)


def atomic_write_with(
    path: str | os.PathLike[str],
    write: Callable[[Path], object],
    *,
    mode: int | None = None,
    fsync: bool = False,
    companions: Sequence[str] = (),
) -> Path:
    """Replace ``path`` with what ``write(tmp_path)`` writes to ``tmp_path``; returns the path.

    ``tmp_path`` has the target's file name, in a staging folder created next to the
    target and removed afterwards whatever happens. ``companions`` are suffixes of side
    files of a multi-file format, each appended to the target's path without its suffix
    (``".dbf"``, ``".shp.xml"``): those the writer produced are moved into place first,
    in sorted order, those it did not are removed from the target's folder, and the main
    file is moved last.
    """
    target = Path(path)
    folder = _folder_of(target)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder))
    try:
        staged = staging / target.name
        write(staged)
        if not staged.exists():
            raise FileNotFoundError(f"the writer produced no {target.name}")
        members = [Path(f"{staged.with_suffix('')}{s}") for s in companions]
        produced = {s for s, member in zip(companions, members) if member.exists()}
        for suffix in [*sorted(produced), ""]:
            member = Path(f"{staged.with_suffix('')}{suffix}") if suffix else staged
            if mode is not None:
                os.chmod(member, mode)
            if fsync:
                _fsync_file(member)
        stem = target.with_suffix("")
        for suffix in companions:  # a sidecar of an older version must not outlive it
            old = Path(f"{stem}{suffix}")
            if suffix not in produced and (old.exists() or old.is_symlink()):
                old.unlink()
        for suffix in sorted(produced):
            os.replace(f"{staged.with_suffix('')}{suffix}", f"{stem}{suffix}")
        os.replace(staged, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
