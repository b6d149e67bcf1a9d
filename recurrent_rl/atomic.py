"""Atomic file writes: a complete new file or the old one, never a partial one.

A leaf module (the standard library only), so every part of the package may write through it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

UMASK = os.umask(0)  # read once: the mode new files get, applied to the temporary files too
os.umask(UMASK)


def fsync(path: Path) -> None:
    """Flush a written file to disk before it is renamed into place."""
    with open(path, "rb") as file:
        os.fsync(file.fileno())


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is renamed to ``path``.

    The temporary path has ``path``'s name, in a private folder ``.<name>.<random>.tmp`` next to
    ``path``. A writer that itself writes a temporary file beside the path it is given and renames
    it (safetensors' ``save_file`` does) keeps that file inside the folder, so a kill leaves a
    single leftover whose name says what it is (``runs.folders.remove_leftovers`` deletes it). Such
    a writer creates a private (0600) file; the file gets the usual mode under the process umask
    before it is renamed into place.

    On an exception the temporary folder is removed and ``path`` keeps its previous content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    tmp_path = folder / path.name
    try:
        os.close(os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # exists, as mkstemp's file did
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~UMASK)
        fsync(tmp_path)
        os.replace(tmp_path, path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """``open`` for writing, atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp, open(tmp, mode, encoding=None if "b" in mode else "utf-8") as file:
        yield file


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_open(path) as file:
        file.write(text)


def atomic_write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")
