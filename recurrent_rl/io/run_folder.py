"""Run folders: naming, layout, atomic writes and checkpoints.

A run folder (``runs/<env>__<memory>__seed<seed>__<time>/`` by default) holds everything a run
leaves behind::

    config.yaml                  resolved config: `recurrent-rl train --config config.yaml` reruns it
    run.json                     status, step counter, versions, command line
    tb/                          TensorBoard event files (resumed runs append to the same folder)
    checkpoints/step_<N>/        model.zip (+ vecnormalize.pkl, state.json), newest = resume point,
                                 and its weights-only copy: model.safetensors, model.json,
                                 model.optimizer.safetensors (what --resume reads)
    best_model.zip               best periodic evaluation (+ best_vecnormalize.pkl), + .safetensors/.json
    model.zip                    final model (+ vecnormalize.pkl), + model.safetensors/model.json
    eval.json                    final evaluation report
    encoder.pt                   the pretrained encoder, when the config names one

A pretraining run (``recurrent-rl pretrain``) has the same config.yaml, tb/ and checkpoints/
(``last.pt``, ``best.pt``), with ``model.pt`` (the sequence model) and ``encoder.pt`` instead of
an agent.

Every file is written to a temporary name in the same folder and renamed into place
(``os.replace``), and a checkpoint is a whole folder renamed into place, so a crash during a
write leaves the previous version intact and never a half-written file. A write that fails for
want of room or permission (a full disk, a read-only file system, a name too long) is a
:class:`StorageError` (:func:`storage_error`): one line that names the file and what to do, and
what was written before stays as it was.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from recurrent_rl.atomic import (
    STORAGE_ERRNOS,
    UMASK as _UMASK,
    atomic_open as atomic_open,
    atomic_path as atomic_path,
    atomic_write_json as atomic_write_json,
    atomic_write_text as atomic_write_text,
    failed_write,
    fsync as _fsync,
    storage_errno,
)
from recurrent_rl.errors import UserInputError
from recurrent_rl.received import read_text
from recurrent_rl.versions import package_versions

CONFIG = "config.yaml"
RUN_INFO = "run.json"
TENSORBOARD = "tb"
CHECKPOINTS = "checkpoints"
MODEL = "model.zip"
VECNORMALIZE = "vecnormalize.pkl"
BEST_MODEL = "best_model.zip"
BEST_VECNORMALIZE = "best_vecnormalize.pkl"
EVAL_REPORT = "eval.json"
CHECKPOINT_STATE = "state.json"
LOCK = ".lock"  # the pid of the process training this run
ENCODER = "encoder.pt"
SEQUENCE_MODEL = "model.pt"  # a pretraining run's sequence model (recurrent-rl pretrain)

# mkstemp/mkdtemp create private (0600/0700) entries; renamed into place they should look like
# any other file the user writes, so they get the usual mode under the process umask.
# what atomic_path / write_checkpoint leave when killed mid-write (never a file a run keeps)
_LEFTOVER = re.compile(r"^\.[^/]+\.(?:[A-Za-z0-9_]+\.tmp.*|old-\d+)$")
_CHECKPOINT = re.compile(r"^step_(\d+)$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+=-]*$")


class RunError(UserInputError):
    """A run folder, model file or output path that cannot be used as asked."""


class StorageError(RunError):
    """A write failed for want of room or permission: a full disk, a read-only file system, a
    folder the user may not write in, a name too long. What was written before is intact.

    ``errno`` and ``filename`` say which failure and where, as an ``OSError``'s do.
    """

    def __init__(self, message: str, errno: int | None = None, filename: str | None = None):
        super().__init__(message)
        self.errno, self.filename = errno, filename


# errno -> (what happened, what to do)
_STORAGE_ADVICE = {
    errno.ENOSPC: ("the disk is full", "free some space"),
    errno.EDQUOT: ("the disk quota is used up", "free some space"),
    errno.EFBIG: ("the file is larger than this file system allows", "write elsewhere"),
    errno.EROFS: ("the file system is read-only", "choose a folder on a writable disk"),
    errno.EACCES: ("permission denied", "choose a folder you may write in"),
    errno.EPERM: ("permission denied", "choose a folder you may write in"),
    errno.ENAMETOOLONG: ("the path is too long for the file system", "choose a shorter name or folder"),
}
# the longest file name and path most file systems take (NAME_MAX, PATH_MAX on Linux)
MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 4096


def storage_error(error: BaseException, path: str | Path | None = None, then: str = "") -> StorageError | None:
    """``error`` as one line when it is a write that failed for want of room or permission (see
    :data:`recurrent_rl.atomic.STORAGE_ERRNOS`), else None.

    :param path: what was being written, when ``error`` does not say
    :param then: what the user can do next, after the advice (``"then continue: recurrent-rl train --resume RUN"``)
    """
    code: int | None
    if isinstance(error, StorageError) and error.errno is not None:
        code, name = error.errno, error.filename
    else:
        failure = failed_write(error, path) if path is not None else None
        code = failure.errno if failure is not None else storage_errno(error)
        if code is None:
            return error if isinstance(error, StorageError) else None
        name = failure.filename if failure is not None else _filename(error)
    what, advice = _STORAGE_ADVICE.get(code, (os.strerror(code), "write elsewhere"))
    target = f" {_cut(name, 200)}" if name else ""
    message = f"cannot write{target}: {what} ({os.strerror(code)}); {advice}" + (f", {then}" if then else "")
    return StorageError(message, code, str(name) if name else None)


def _filename(error: BaseException) -> str | None:
    current: BaseException | None = error
    while current is not None:
        if isinstance(current, OSError) and current.filename is not None and current.errno in STORAGE_ERRNOS:
            return str(current.filename)
        current = current.__cause__ or current.__context__
    return None


def check_path_length(path: str | Path, flag: str) -> None:
    """A :class:`RunError` if a folder name in ``path`` is longer than :data:`MAX_NAME_BYTES` bytes or the
    whole path (made absolute) longer than :data:`MAX_PATH_BYTES`: the file system would refuse it."""
    absolute = os.fsencode(Path(path).absolute())
    longest = max((len(os.fsencode(part)) for part in Path(path).parts), default=0)
    if longest > MAX_NAME_BYTES:
        raise RunError(
            f"{flag} {_cut(path)}: a name in it is {longest} bytes long, more than the {MAX_NAME_BYTES} a file system "
            f"takes; choose a shorter {flag}"
        )
    # room for what goes inside: checkpoints/step_<N>/.model.optimizer.safetensors.<random>.tmp/...
    if len(absolute) > MAX_PATH_BYTES - 2 * MAX_NAME_BYTES:
        raise RunError(
            f"{flag} {_cut(path)}: the path is {len(absolute)} bytes long, too long for the files a run writes "
            f"inside it (at most {MAX_PATH_BYTES - 2 * MAX_NAME_BYTES}); choose a shorter {flag}"
        )


def _cut(path: str | Path, limit: int = 80) -> str:
    return clip(str(path), limit)


def clip(text: str, limit: int = 160) -> str:
    """``text`` cut to ``limit`` characters, with the full length, for messages."""
    return text if len(text) <= limit else f"{text[: limit - 3]}... ({len(text)} characters)"


def run_name(env_id: str, memory: str, seed: int, when: float | None = None) -> str:
    """``<env>__<memory>__seed<seed>__<YYYYmmdd-HHMMSS>``.

    For example ``pomdp-CartPoleNoVel-v1__gru__seed0__20260101-120000``.
    """
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(when))
    env = re.sub(r"[^A-Za-z0-9._-]+", "-", env_id)
    return f"{env}__{memory}__seed{seed}__{stamp}"


def is_plain_name(name: str) -> bool:
    """Whether ``name`` can be one folder name: letters, digits and ``. _ + = -``, no slashes."""
    return bool(_NAME.match(name)) and name not in (".", "..")


# a run name leaves room for what is added to it: "-2" for a taken automatic name, ".<name>.<random>.tmp"
MAX_RUN_NAME = 200


def check_run_name(name: str, flag: str = "--name") -> None:
    """A ``--name`` must be one plain folder name, of at most :data:`MAX_RUN_NAME` characters."""
    if not is_plain_name(name):
        raise RunError(
            f"{flag} {_cut(repr(name))} is not a plain folder name: use letters, digits and . _ + = - (no slashes); "
            "use --runs-dir to choose the parent folder"
        )
    if len(name) > MAX_RUN_NAME:
        raise RunError(
            f"{flag} {_cut(name)} is too long for a folder name ({len(name)} characters, at most {MAX_RUN_NAME}); "
            f"choose a shorter {flag}"
        )


def create_run_dir(runs_dir: str | Path, name: str, unique: bool) -> Path:
    """Create ``runs_dir/name`` and return it; never reuses an existing folder.

    :param unique: add ``-2``, ``-3``, ... when the name is taken (automatic names); otherwise a
        taken name is an error (a name the user chose).
    """
    runs_dir = Path(runs_dir)
    check_path_length(runs_dir, "--runs-dir")
    if len(name) > MAX_RUN_NAME:
        raise RunError(
            f"the run folder name {_cut(name)} is too long ({len(name)} characters, at most {MAX_RUN_NAME}); "
            "choose a shorter --name (or name config key)"
        )
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RunError(f"cannot create the runs folder {runs_dir}: {error.strerror or error}") from None
    for attempt in range(1, 1000):
        path = runs_dir / (name if attempt == 1 else f"{name}-{attempt}")
        try:
            path.mkdir()  # atomic: fails if another process took the name first
            return path
        except OSError as error:
            if not isinstance(error, FileExistsError):
                raise storage_error(error, then="nothing was written") or error from None
            if not unique:
                raise RunError(
                    f"run folder {path} already exists; nothing was changed. Choose another --name, "
                    f"or continue that run with: recurrent-rl train --resume {path}"
                ) from None
    raise RunError(f"could not find a free run folder name for {name!r} in {runs_dir}")


def is_run_dir(path: str | Path) -> bool:
    return (Path(path) / CONFIG).is_file()


def check_not_pretraining_run(path: str | Path, flag: str = "") -> None:
    """:class:`RunError` if ``path`` is a pretraining run folder (``model.pt`` and ``encoder.pt``, no agent)."""
    path = Path(path)
    if (path / SEQUENCE_MODEL).is_file() and (path / ENCODER).is_file() and not (path / MODEL).is_file():
        raise RunError(
            f"{flag + ' ' if flag else ''}{path} is a pretraining run (recurrent-rl pretrain): it holds a "
            f"sequence model, not an agent; train one with its encoder: recurrent-rl train --encoder "
            f"{path / ENCODER}"
        )


# --- paths to create -------------------------------------------------------------------------


def file_in_the_way(path: str | Path) -> Path | None:
    """The file that stands where the folder ``path``, or a folder above it, would be; None if there is none."""
    ancestor = Path(path).absolute()
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if ancestor.exists() and not ancestor.is_dir():
        if not Path(path).is_absolute():  # shown as given: relative to the current folder
            with contextlib.suppress(ValueError):
                return ancestor.relative_to(Path.cwd())
        return ancestor
    return None


def check_can_create(path: str | Path, flag: str = "--runs-dir") -> None:
    """A :class:`UserInputError` unless the folder ``path`` exists or can be created (no file in the way,
    names the file system takes, permission to write in its nearest existing folder, which is on a
    writable file system). Nothing is created."""
    check_path_length(path, flag)
    blocker = file_in_the_way(path)
    if blocker is not None:
        where = "is a file" if blocker.absolute() == Path(path).absolute() else f"is under {blocker}, a file"
        raise UserInputError(f"{flag} {path} {where}, not a folder: choose another {flag}")
    ancestor = Path(path).absolute()
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not os.access(ancestor, os.W_OK | os.X_OK):
        try:
            read_only = bool(os.statvfs(ancestor).f_flag & os.ST_RDONLY)
        except OSError:
            read_only = False
        why = "a read-only file system" if read_only else "permission denied"
        raise UserInputError(f"{flag} {path}: cannot write in {ancestor} ({why}): choose another {flag}")


# --- atomic writes: recurrent_rl.atomic (atomic_path, atomic_open, atomic_write_text, atomic_write_json)


# --- checkpoints --------------------------------------------------------------------------------


def checkpoint_dirs(run_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run as ``(step, folder)``, oldest first."""
    folder = Path(run_dir) / CHECKPOINTS
    if not folder.is_dir():
        return []
    found = []
    for child in folder.iterdir():
        match = _CHECKPOINT.match(child.name)
        if match and (child / MODEL).is_file():
            found.append((int(match[1]), child))
    return sorted(found)


MAX_STEPS = 10**15  # a step count no run reaches (configs stop at 10**12)


def checkpoint_step(checkpoint: str | Path) -> int:
    """The step count in a checkpoint's state.json; ``ValueError`` (a short reason) when it holds none."""
    path = Path(checkpoint) / CHECKPOINT_STATE
    try:
        data = json.loads(read_text(path, CHECKPOINT_STATE, limit=1 << 16))
        step = data["num_timesteps"]
    except (UserInputError, ValueError, RecursionError, KeyError, TypeError) as error:
        raise ValueError(clip(str(error) or type(error).__name__)) from None
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= MAX_STEPS:
        raise ValueError(f"num_timesteps is {clip(repr(step))}, not a step count")
    return step


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    found = checkpoint_dirs(run_dir)
    return found[-1][1] if found else None


def write_checkpoint(run_dir: str | Path, step: int, write: Callable[[Path], None], keep: int = 0) -> Path:
    """Write a checkpoint folder ``checkpoints/step_<step>`` atomically and prune old ones.

    :param write: fills a temporary folder (``model.zip``, ``vecnormalize.pkl``, ...); the folder
        is renamed into place only after it returns, so a crash leaves the previous checkpoints
        untouched and no partial one.
    :param keep: how many checkpoints to keep, newest first (0: all)
    """
    folder = Path(run_dir) / CHECKPOINTS
    final = folder / f"step_{step:010d}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=folder))
    except OSError as error:
        raise storage_error(error, final) or error from None
    try:
        os.chmod(tmp, 0o777 & ~_UMASK)
        write(tmp)
        for child in tmp.iterdir():
            _fsync(child)
        if final.exists():  # the same step again (e.g. interrupted right after a periodic checkpoint)
            old = folder / f".{final.name}.old-{os.getpid()}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except Exception as error:
        failure = failed_write(error, final)  # asked before the partial checkpoint is removed: its blocks count
        if failure is None:
            raise
        code = failure.errno or errno.EIO  # named by the checkpoint folder, not the temporary file inside it
        named = storage_error(OSError(code, os.strerror(code), str(final)))
        raise (named or failure) from error
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    if keep > 0:
        for _, old in checkpoint_dirs(run_dir)[:-keep]:
            _remove_checkpoint(old)
    return final


def _remove_checkpoint(path: Path) -> None:
    """Delete a checkpoint folder: first renamed to a leftover name, so that a kill in the middle of
    the deletion leaves no partial ``step_<N>/`` under its final name (remove_leftovers ends it)."""
    doomed = path.with_name(f".{path.name}.old-{os.getpid()}")
    try:
        os.replace(path, doomed)
    except OSError:
        return
    shutil.rmtree(doomed, ignore_errors=True)


# --- run.json -----------------------------------------------------------------------------------


def versions() -> dict[str, str]:
    """Python's and the main packages' versions, for run.json."""
    return package_versions(python=True)


def read_run_info(run_dir: str | Path) -> dict[str, Any]:
    """The run's run.json (empty when it is missing, unreadable, too large or not a JSON object)."""
    path = Path(run_dir) / RUN_INFO
    try:
        info = json.loads(read_text(path, RUN_INFO))
    except (OSError, ValueError, RecursionError, UserInputError):
        return {}
    return info if isinstance(info, dict) else {}


def update_run_info(run_dir: str | Path, **fields: Any) -> dict[str, Any]:
    """Merge ``fields`` into run.json (written atomically) and return the result."""
    info = read_run_info(run_dir)
    info.update(fields)
    path = Path(run_dir) / RUN_INFO
    try:
        atomic_write_json(path, info)
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT) or not path.is_file():
            raise
        # a full disk: run.json (a few hundred bytes) is rewritten in the blocks it holds, so that it
        # still says what happened; not atomic, but nothing else can be written
        data = (json.dumps(info, indent=2) + "\n").encode()
        try:
            with open(path, "r+b") as file:
                file.write(data)
                file.truncate()
                file.flush()
                os.fsync(file.fileno())
        except OSError:
            raise error from None
    return info


# --- one trainer per run --------------------------------------------------------------------------


@contextlib.contextmanager
def run_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold ``run_dir/.lock`` while training: a second process (say, a --resume) is refused.

    The lock is an exclusive ``flock`` on the file, which the kernel releases when its process
    dies, plus the holder's pid written inside (for the message, and so that a live pid left
    by a holder that does not ``flock`` still counts). A lock whose process is gone is taken over.
    Two processes that enter at once never both hold it: the one that does not get the
    ``flock`` is refused, and one that locked a file already unlinked by its releasing holder
    tries again on the new file.
    """
    path = Path(run_dir) / LOCK
    for _ in range(5):
        try:
            created = not path.exists()
            fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
        except OSError as error:
            raise storage_error(error, path, "or copy the run folder to one") or error from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunError(
                f"run {run_dir} is being trained by process {_lock_pid(path) or '(starting)'}; "
                "wait for it or stop it first"
            ) from None
        try:
            same_file = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same_file = False
        if not same_file:  # unlinked by the holder that just released it: lock the new file
            os.close(fd)
            continue
        pid = _lock_pid(path)
        if pid and pid != os.getpid() and _alive(pid):
            os.close(fd)
            raise RunError(f"run {run_dir} is being trained by process {pid}; wait for it or stop it first")
        try:
            if pid and pid != os.getpid():  # a stale lock: its trainer was killed, so run.json may still say running
                _mark_killed(Path(run_dir), pid)
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError as error:  # a full disk: no lock without a pid is left behind
            if created or not _lock_pid(path):
                path.unlink(missing_ok=True)
            os.close(fd)
            raise storage_error(error, path) or error from None
        break
    else:
        raise RunError(f"cannot lock run {run_dir} ({path})")
    try:
        yield
    finally:
        with contextlib.suppress(OSError):  # a file system gone read-only: the lock names a dead pid, taken over later
            path.unlink(missing_ok=True)
        os.close(fd)


def remove_leftovers(run_dir: str | Path) -> list[Path]:
    """Delete what interrupted atomic writes leave in a run folder: ``.<name>.<random>.tmp*`` files
    and checkpoint folders, and ``.step_<N>.old-<pid>`` folders. Call it holding the run's lock.

    :return: the paths removed
    """
    run_dir = Path(run_dir)
    removed = []
    _restore_replaced_checkpoints(run_dir)
    _complete_safe_copies(run_dir)
    for folder in (run_dir, run_dir / CHECKPOINTS):
        if not folder.is_dir():
            continue
        for child in folder.iterdir():
            if _LEFTOVER.match(child.name):
                if child.is_dir():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
                removed.append(child)
    return removed


_OLD_CHECKPOINT = re.compile(r"^\.(step_\d+)\.old-\d+$")


def _restore_replaced_checkpoints(run_dir: Path) -> None:
    """Put back a checkpoint that a rewrite of the same step moved aside (``.step_<N>.old-<pid>``)
    when the kill came before the new one took its place: otherwise the run would lose it."""
    folder = run_dir / CHECKPOINTS
    if not folder.is_dir():
        return
    for child in sorted(folder.iterdir()):
        match = _OLD_CHECKPOINT.match(child.name)
        if match and child.is_dir() and (child / MODEL).is_file() and not (folder / match[1]).exists():
            os.replace(child, folder / match[1])


def _complete_safe_copies(run_dir: Path) -> None:
    """Finish a safe copy of the run folder (final or best model) whose weights were renamed into
    place but whose JSON was not (a kill between the two renames of ``save_safe``): its JSON waits
    in the leftover folder. Checkpoints need none of this: each is a folder renamed into place whole."""
    from recurrent_rl.io.safe import complete_pending_config

    for child in run_dir.glob("*.safetensors"):
        if child.is_file():
            complete_pending_config(child)


def _mark_killed(run_dir: Path, pid: int) -> None:
    mark_killed(run_dir, f"process {pid} ended without closing the run")


def mark_killed(run_dir: str | Path, why: str) -> None:
    """Set run.json's status to ``killed (<why>)`` if it still says the run is running."""
    status = read_run_info(run_dir).get("status")
    if status in ("running", "created"):
        update_run_info(run_dir, status=f"killed ({why})")


def _lock_pid(path: Path) -> int:
    try:
        with open(path, "rb") as file:
            return int(file.read(32).strip() or 0)  # a pid, whatever else the file holds
    except (OSError, ValueError):
        return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
