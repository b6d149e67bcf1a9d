"""Atomic file writes: a complete new file or the old one, never a partial one.

A write that fails for want of room or permission (a full disk, a read-only file system, a name
too long) raises an ``OSError`` with that ``errno`` and the path it was writing
(:func:`failed_write`), whatever the writer raised: safetensors says "os error 28" in its
message, ``torch.save`` only that its stream failed. The caller turns it into one line
(``recurrent_rl.io.run_folder.storage_error``).

A leaf module, so every part of the package may write through it. May import: nothing of the package
(the standard library only).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

# the errors of a write that the user can fix by choosing where to write, or by freeing space
STORAGE_ERRNOS = (
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EFBIG,
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
    errno.ENAMETOOLONG,
)
LOW_SPACE = 1 << 20  # bytes left on a file system after a write failed there for no stated reason: full
_OS_ERROR = re.compile(r"os error (\d+)")  # how Rust writers (safetensors) name the errno
# how SQLite (an Optuna study's database) says it
_SQLITE = {"database or disk is full": errno.ENOSPC, "attempt to write a readonly database": errno.EROFS}

UMASK = os.umask(0)  # read once: the mode new files get, applied to the temporary files too
os.umask(UMASK)


def fsync(path: Path) -> None:
    """Flush a written file to disk before it is renamed into place."""
    with open(path, "rb") as file:
        os.fsync(file.fileno())


def storage_errno(error: BaseException) -> int | None:
    """The errno among :data:`STORAGE_ERRNOS` that ``error`` (or an error it was raised from) carries
    or names in its message; None if it is not such a failure."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in STORAGE_ERRNOS:
            return current.errno
        text = str(current)
        match = _OS_ERROR.search(text)
        if match and int(match[1]) in STORAGE_ERRNOS:
            return int(match[1])
        for code in STORAGE_ERRNOS:
            if os.strerror(code) in text:
                return code
        for phrase, code in _SQLITE.items():
            if phrase in text:
                return code
        current = current.__cause__ or current.__context__
    return None


def filesystem_errno(path: str | Path) -> int | None:
    """``EROFS`` if the file system holding ``path`` is mounted read-only, ``ENOSPC`` if less than
    :data:`LOW_SPACE` bytes are left on it, else None."""
    folder = Path(path).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        stats = os.statvfs(folder)
    except OSError:
        return None
    if stats.f_flag & os.ST_RDONLY:
        return errno.EROFS
    if stats.f_bavail * stats.f_frsize < LOW_SPACE:
        return errno.ENOSPC
    return None


def failed_write(error: BaseException, path: str | Path) -> OSError | None:
    """``error``, raised while writing ``path``, as an ``OSError`` with the errno of a full disk, a
    read-only file system, a denied permission or a name too long, and ``path`` as its file name;
    None when it is not such a failure (a bug, or a value the writer refused).

    A writer that wraps the failure (safetensors, ``torch.save``) may not say its errno: then the
    file system holding ``path`` is asked (read-only, or all but full).
    """
    if isinstance(error, OSError) and error.errno in STORAGE_ERRNOS and error.filename is not None:
        return error
    code = storage_errno(error)
    if code is None and isinstance(error, (OSError, RuntimeError)) and not isinstance(error, RecursionError):
        code = filesystem_errno(path)
    if code is None:
        return None
    return OSError(code, os.strerror(code), str(path))


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is renamed to ``path``.

    The temporary path has ``path``'s name, in a private folder ``.<name>.<random>.tmp`` next to
    ``path``. A writer that itself writes a temporary file beside the path it is given and renames
    it (safetensors' ``save_file`` does) keeps that file inside the folder, so a kill leaves a
    single leftover whose name says what it is (``runs.folders.remove_leftovers`` deletes it). Such
    a writer creates a private (0600) file; the file gets the usual mode under the process umask
    before it is renamed into place.

    On an exception the temporary folder is removed and ``path`` keeps its previous content; a
    full disk, a read-only file system or a name too long is an ``OSError`` naming ``path``
    (:func:`failed_write`).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as error:
        raise failed_write(error, path) or error from None
    tmp_path = folder / path.name
    try:
        os.close(os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # exists, as mkstemp's file did
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~UMASK)
        fsync(tmp_path)
        os.replace(tmp_path, path)
    except Exception as error:
        failure = failed_write(error, path)  # asked before the temporary file is removed: its blocks count
        if failure is None or failure is error:
            raise
        raise failure from error
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
