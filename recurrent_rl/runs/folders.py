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
write leaves the previous version intact and never a half-written file.
"""

from __future__ import annotations

import contextlib
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
    UMASK as _UMASK,
    atomic_open as atomic_open,
    atomic_path as atomic_path,
    atomic_write_json as atomic_write_json,
    atomic_write_text as atomic_write_text,
    fsync as _fsync,
)
from recurrent_rl.errors import UserInputError
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


def check_run_name(name: str) -> None:
    """A ``--name`` must be one plain folder name."""
    if not is_plain_name(name):
        raise RunError(
            f"--name {name!r} is not a plain folder name: use letters, digits and . _ + = - (no slashes); "
            "use --runs-dir to choose the parent folder"
        )


def create_run_dir(runs_dir: str | Path, name: str, unique: bool) -> Path:
    """Create ``runs_dir/name`` and return it; never reuses an existing folder.

    :param unique: add ``-2``, ``-3``, ... when the name is taken (automatic names); otherwise a
        taken name is an error (a name the user chose).
    """
    runs_dir = Path(runs_dir)
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RunError(f"cannot create the runs folder {runs_dir}: {error}") from None
    for attempt in range(1, 1000):
        path = runs_dir / (name if attempt == 1 else f"{name}-{attempt}")
        try:
            path.mkdir()  # atomic: fails if another process took the name first
            return path
        except FileExistsError:
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
    """A :class:`UserInputError` unless the folder ``path`` exists or can be created (no file in the way, and
    permission to write in its nearest existing folder). Nothing is created."""
    blocker = file_in_the_way(path)
    if blocker is not None:
        where = "is a file" if blocker.absolute() == Path(path).absolute() else f"is under {blocker}, a file"
        raise UserInputError(f"{flag} {path} {where}, not a folder: choose another {flag}")
    ancestor = Path(path).absolute()
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UserInputError(f"{flag} {path}: cannot write in {ancestor} (permission denied): choose another {flag}")


# --- atomic writes: recurrent_rl.atomic (atomic_path, atomic_open, atomic_write_text, atomic_write_json)


def save_model(model: Any, path: str | Path) -> None:
    """``model.save`` atomically (SB3 writes the zip in place otherwise), and its safe copy beside it.

    The safe copy (``<name>.safetensors`` and ``<name>.json``: weights, config, spaces and the
    VecNormalize statistics; see :mod:`recurrent_rl.export.safe`) opens without unpickling.
    """
    with atomic_open(path, "wb") as file:
        model.save(file)
    save_safe_copy(model, Path(path).with_suffix(""))


def save_safe_copy(model: Any, prefix: str | Path, optimizer: bool = False) -> None:
    """Write the weights-only copy ``<prefix>.safetensors`` + ``<prefix>.json`` (with ``optimizer``:
    also ``<prefix>.optimizer.safetensors``, which ``--resume`` reads); a model that the format
    cannot describe (a policy option naming a class outside its allow-list) gets a warning and
    keeps its zip only."""
    import warnings

    from recurrent_rl.export.safe import SafeFormatError, save_safe

    try:
        save_safe(model, prefix, optimizer=optimizer)
    except SafeFormatError as error:
        warnings.warn(f"no safe copy of the model at {prefix}: {error}", stacklevel=2)


def save_vecnormalize(vec_normalize: Any, path: str | Path) -> None:
    """``VecNormalize.save`` atomically."""
    with atomic_path(path) as tmp:
        vec_normalize.save(str(tmp))


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
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"step_{step:010d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=folder))
    os.chmod(tmp, 0o777 & ~_UMASK)
    try:
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


def write_model_checkpoint(run_dir: str | Path, model: Any, keep: int = 0) -> Path:
    """Checkpoint a training model: ``checkpoints/step_<N>/`` with model.zip, vecnormalize.pkl (if
    used) and state.json (written by :func:`write_checkpoint`), and the step in run.json.

    :param model: a :class:`~recurrent_rl.RecurrentPPO` (anything with SB3's ``save``,
        ``get_vec_normalize_env`` and ``num_timesteps``)
    """
    run_dir = Path(run_dir)

    def write(folder: Path) -> None:
        model.save(folder / MODEL)
        save_safe_copy(model, (folder / MODEL).with_suffix(""), optimizer=True)  # what --resume reads
        vec_normalize = model.get_vec_normalize_env()
        if vec_normalize is not None:
            vec_normalize.save(str(folder / VECNORMALIZE))
        (folder / CHECKPOINT_STATE).write_text(
            json.dumps({"num_timesteps": int(model.num_timesteps), "time": time.time()}) + "\n", encoding="utf-8"
        )

    path = write_checkpoint(run_dir, int(model.num_timesteps), write, keep)
    update_run_info(run_dir, num_timesteps=int(model.num_timesteps), last_checkpoint=str(path.relative_to(run_dir)))
    return path


# --- run.json -----------------------------------------------------------------------------------


def versions() -> dict[str, str]:
    """Python's and the main packages' versions, for run.json."""
    return package_versions(python=True)


def read_run_info(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / RUN_INFO
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def update_run_info(run_dir: str | Path, **fields: Any) -> dict[str, Any]:
    """Merge ``fields`` into run.json (written atomically) and return the result."""
    info = read_run_info(run_dir)
    info.update(fields)
    atomic_write_json(Path(run_dir) / RUN_INFO, info)
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
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
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
        if pid and pid != os.getpid():  # a stale lock: its trainer was killed, so run.json may still say running
            _mark_killed(Path(run_dir), pid)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        break
    else:
        raise RunError(f"cannot lock run {run_dir} ({path})")
    try:
        yield
    finally:
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
    from recurrent_rl.export.safe import complete_pending_config

    for child in run_dir.glob("*.safetensors"):
        if child.is_file():
            complete_pending_config(child)


def _mark_killed(run_dir: Path, pid: int) -> None:
    try:
        status = read_run_info(run_dir).get("status")
    except (OSError, ValueError):
        return
    if status in ("running", "created"):
        update_run_info(run_dir, status=f"killed (process {pid} ended without closing the run)")


def _lock_pid(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 0)
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
