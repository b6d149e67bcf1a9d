"""Any OS: no POSIX-only module imported unguarded, the process umask never set, the run lock
through ``filelock``, and training without the compiled backend.

The suite runs on Linux only; these checks keep the code free of what would fail at import or at
the first write on another OS (``fcntl``, ``os.statvfs``, ``os.umask``)."""

import ast
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
POSIX_ONLY_MODULES = {"fcntl", "termios", "pwd", "grp", "resource", "posix"}
POSIX_ONLY_CALLS = {"statvfs", "umask", "fork", "getuid", "killpg", "setsid"}


def _guarded(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Whether ``node`` sits in a ``try`` that handles ImportError / AttributeError / OSError."""
    current = parents.get(node)
    while current is not None:
        if isinstance(current, ast.Try):
            for handler in current.handlers:
                names = ast.dump(handler.type) if handler.type is not None else "bare"
                if any(name in names for name in ("ImportError", "AttributeError", "bare")):
                    return True
        current = parents.get(current)
    return False


def posix_only_uses(source: str) -> list[str]:
    tree = ast.parse(source)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for name in names:
                if name.split(".")[0] in POSIX_ONLY_MODULES and not _guarded(node, parents):
                    found.append(f"line {node.lineno}: import {name}")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os":
            if node.attr in POSIX_ONLY_CALLS and not _guarded(node, parents):
                found.append(f"line {node.lineno}: os.{node.attr}")
    return found


def test_the_check_finds_posix_only_code():
    assert posix_only_uses("import fcntl\n") == ["line 1: import fcntl"]
    assert posix_only_uses("import os\nUMASK = os.umask(0)\n") == ["line 2: os.umask"]
    assert posix_only_uses("import os\nos.statvfs('.')\n") == ["line 2: os.statvfs"]
    assert posix_only_uses("try:\n    import resource\nexcept ImportError:\n    pass\n") == []
    assert posix_only_uses("import os\nf = getattr(os, 'statvfs', None)\n") == []


def test_no_posix_only_code_in_the_package():
    hits = []
    for path in sorted((ROOT / "recurrent_rl").rglob("*.py")) + sorted((ROOT / "envs").rglob("*.py")):
        hits += [f"{path.relative_to(ROOT)} {hit}" for hit in posix_only_uses(path.read_text(encoding="utf-8"))]
    assert not hits, "POSIX-only code outside a guard:\n" + "\n".join(hits)


def test_importing_and_writing_never_set_the_umask(tmp_path):
    """``os.umask`` reads the umask only by setting it, for every thread of the process: never at
    import, never to write. A file written atomically gets ``0o666`` less the umask all the same."""
    script = textwrap.dedent(
        f"""
        import os, stat
        os.umask(0o027)
        calls = []
        real = os.umask
        os.umask = lambda mask: calls.append(mask) or real(mask)
        import recurrent_rl.atomic, recurrent_rl.io.run_folder, recurrent_rl.io.safe, recurrent_rl.cli.main
        from recurrent_rl.atomic import atomic_write_text, folder_mode
        atomic_write_text({str(tmp_path / "a.txt")!r}, "x")
        mode = stat.S_IMODE(os.stat({str(tmp_path / "a.txt")!r}).st_mode)
        assert calls == [], calls
        assert mode == 0o640, oct(mode)
        assert folder_mode({str(tmp_path)!r}) == 0o750, oct(folder_mode({str(tmp_path)!r}))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr


def test_the_run_lock_contends_with_filelock(tmp_path):
    """The run lock is filelock's lock on ``.lock``: a process holding ``filelock.FileLock`` on it
    keeps ``run_lock`` out, and once it lets go the run can be locked."""
    from filelock import FileLock, Timeout

    from recurrent_rl.io import run_folder as runs

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import sys, filelock; lock = filelock.FileLock({str(tmp_path / runs.LOCK)!r}); lock.acquire(); "
            "print('held', flush=True); sys.stdin.readline()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(runs.RunError, match="is being trained by process"):
            with runs.run_lock(tmp_path):
                pass
    finally:
        holder.communicate("\n", timeout=30)
    with runs.run_lock(tmp_path):
        assert (tmp_path / runs.LOCK).read_text().strip() == str(os.getpid())
        with pytest.raises(Timeout):
            FileLock(str(tmp_path / runs.LOCK)).acquire(timeout=0)


def test_training_without_compilers_falls_back_with_one_warning(tmp_path, monkeypatch):
    """No C compiler on the PATH (as on a machine without build tools): the speed backend runs its
    NumPy loops after one RuntimeWarning that names the cause, and training completes."""
    from stable_baselines3.common.env_util import make_vec_env

    from recurrent_rl import RecurrentPPO
    from recurrent_rl.accel import native

    for name in ("CC", "CXX"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no cc, gcc, clang
    monkeypatch.setenv("RECURRENT_RL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("RECURRENT_RL_NATIVE", "1")
    native.library.cache_clear()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            env = make_vec_env("pomdp/CartPoleNoVel-v1", n_envs=2, seed=0)
            model = RecurrentPPO("MlpGruPolicy", env, n_steps=16, batch_size=32, n_epochs=1, seed=0)
            model.learn(64)
        native_warnings = [w for w in caught if "compiled kernels unavailable" in str(w.message)]
        assert len(native_warnings) == 1 and "no C compiler found" in str(native_warnings[0].message)
        assert model.num_timesteps >= 64 and model.policy.backend_name == "cpu-kernels"
        assert not native.available()
    finally:
        native.library.cache_clear()
