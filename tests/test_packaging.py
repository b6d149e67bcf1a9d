"""The package as pip installs it: ``gym.make("pomdp/...")`` with no ``import recurrent_rl`` first.

Gymnasium 1.x dropped its ``gymnasium.envs`` entry-point plugins, so the wheel ships a startup
hook (``_recurrent_rl_gym_hook.pth`` and the module it imports, put there by setup.py) that
registers the ``pomdp/`` envs when gymnasium is imported. test_installed_wheel (about 5 s)
builds an sdist of a copy of the checkout, a wheel from that sdist, installs the wheel into a
fresh venv that borrows the dependencies of this one (without their .pth files, so the
checkout's editable install stays invisible), and runs every check in a fresh interpreter
outside the checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import textwrap
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HOOK = "_recurrent_rl_gym_hook"
HEAVY = ("torch", "stable_baselines3")

MAKE_CARTPOLE = f"""
import sys
import gymnasium as gym
env = gym.make("pomdp/CartPoleNoVel-v1")
obs, _ = env.reset(seed=0)
assert obs[1] == 0 and obs[3] == 0, obs
import recurrent_rl
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {set(HEAVY)!r})
print(json.dumps({{"recurrent_rl": recurrent_rl.__file__, "heavy": heavy, "loader": type(gym.__spec__.loader).__name__}}))
"""


def _run(
    python: str | Path, code: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), "-c", "import json\n" + textwrap.dedent(code)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _clean_env() -> dict[str, str]:
    """This environment without anything that would put the checkout on sys.path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP", "PYTHONHOME")}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def _setuptools_or_skip() -> None:
    try:
        version = metadata.version("setuptools")
    except metadata.PackageNotFoundError:
        pytest.skip("setuptools is not installed in this environment: cannot build the wheel")
    if int(version.split(".")[0]) < 77:
        pytest.skip(f"setuptools {version} is older than the build requirement (>= 77)")


def _copy_checkout(dst: Path) -> Path:
    """The checkout without its environment, build outputs, caches and run folders."""
    top_level = {".git", ".venv", "build", "dist", "runs", ".pytest_cache"}

    def ignore(folder: str, names: list[str]) -> set[str]:
        skipped = {n for n in names if n == "__pycache__" or n.endswith((".egg-info", ".pyc"))}
        return skipped | (top_level & set(names) if Path(folder) == ROOT else set())

    shutil.copytree(ROOT, dst, ignore=ignore)
    return dst


def _backend(hook: str, project: Path, out: Path) -> Path:
    """Call setuptools' PEP 517 hook (what pip and `python -m build` call) in a subprocess."""
    out.mkdir(parents=True, exist_ok=True)
    code = f"from setuptools import build_meta; print(build_meta.{hook}({str(out)!r}))"
    result = subprocess.run([sys.executable, "-c", code], cwd=project, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    return out / result.stdout.strip().splitlines()[-1]


def test_editable_wheel_carries_the_hook(tmp_path: Path) -> None:
    """`pip install -e .` (scripts/setup.sh) gets the .pth and a copy of the hook module too."""
    _setuptools_or_skip()
    project = _copy_checkout(tmp_path / "src")
    wheel = _backend("build_editable", project, tmp_path / "out")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        assert archive.read(f"{HOOK}.pth").decode() == f"import {HOOK}\n"
        assert archive.read(f"{HOOK}.py") == (ROOT / f"{HOOK}.py").read_bytes()
        entry_points = archive.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert "[gymnasium.envs]\npomdp = recurrent_rl.envs.registry:register_all" in entry_points
    assert not any(n.split("/")[0] == "envs" for n in names)


def test_this_environment_registers_on_import_gymnasium(tmp_path: Path) -> None:
    """The install that runs these tests (editable, from scripts/setup.sh) has the hook working."""
    purelib = Path(sysconfig.get_paths()["purelib"])
    if not list(purelib.glob("recurrent_rl-*.dist-info")):
        pytest.skip(f"recurrent_rl is not installed in {purelib} (tests run from the source tree only)")
    assert (purelib / f"{HOOK}.pth").is_file(), (
        "the installed recurrent_rl predates the gymnasium hook: re-run scripts/setup.sh"
    )
    result = _run(sys.executable, MAKE_CARTPOLE, cwd=tmp_path, env=_clean_env())
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["heavy"] == [] and report["loader"] != "_Loader"


def _build_and_install(tmp: Path) -> dict[str, Path]:
    """A wheel built from an sdist of the checkout, installed with --no-deps into a fresh venv."""
    sdist = _backend("build_sdist", _copy_checkout(tmp / "checkout"), tmp / "sdist")
    with tarfile.open(sdist) as archive:
        archive.extractall(tmp / "unpacked", **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    (unpacked,) = (tmp / "unpacked").iterdir()
    wheels = tmp / "wheels"
    pip_wheel = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "-q",
        "-w",
        str(wheels),
        str(unpacked),
    ]
    result = subprocess.run(pip_wheel, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    (wheel,) = wheels.glob("recurrent_rl-*.whl")

    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = Path(_run(python, "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp).stdout.strip())
    # the dependencies of this environment, as a plain sys.path entry: the .pth files there (the
    # editable install's finder and hook among them) are not run
    (purelib / "_borrowed_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = [
        sys.executable,
        "-m",
        "pip",
        "--python",
        str(python),
        "install",
        "--no-deps",
        "--no-index",
        "-q",
        str(wheel),
    ]
    result = subprocess.run(install, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    outside = tmp / "elsewhere"
    outside.mkdir()
    return {"python": python, "purelib": purelib, "wheel": wheel, "cwd": outside, "tmp": tmp}


def _wheel_version(installed: dict[str, Path]) -> str:
    return installed["wheel"].name.split("-")[1]  # recurrent_rl-<version>-py3-none-any.whl


def _check_wheel_contents(installed: dict[str, Path]) -> None:
    with zipfile.ZipFile(installed["wheel"]) as archive:
        names = set(archive.namelist())
    top = {n.split("/")[0] for n in names}
    dist_info = f"recurrent_rl-{_wheel_version(installed)}.dist-info"
    assert top == {"recurrent_rl", f"{HOOK}.py", f"{HOOK}.pth", dist_info}, top
    assert f"{dist_info}/licenses/LICENSE" in names, sorted(n for n in names if n.startswith(dist_info))
    # every module and data file on disk made it in (a new subpackage must be listed in pyproject.toml)
    on_disk = {
        f"recurrent_rl/{p.relative_to(ROOT / 'recurrent_rl').as_posix()}"
        for p in (ROOT / "recurrent_rl").rglob("*")
        if p.is_file()
    }
    on_disk |= {
        f"recurrent_rl/envs/{p.relative_to(ROOT / 'envs').as_posix()}"
        for p in (ROOT / "envs").rglob("*")
        if p.is_file()
    }
    missing = {n for n in on_disk if "__pycache__" not in n} - names
    assert missing == set(), f"not in the wheel (list new subpackages in pyproject.toml): {sorted(missing)}"
    # (c) nothing named envs in site-packages
    assert [p.name for p in installed["purelib"].iterdir() if p.name.split(".")[0] == "envs"] == []


def _check_gym_make(installed: dict[str, Path]) -> None:
    """(a) gym.make in a fresh interpreter outside the checkout, with no import of recurrent_rl."""
    result = _run(installed["python"], MAKE_CARTPOLE, cwd=installed["cwd"], env=_clean_env())
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    # recurrent_rl comes from the fresh venv, not from the checkout; the hook loaded nothing heavy
    assert Path(report["recurrent_rl"]).is_relative_to(installed["purelib"]), report
    assert report["heavy"] == [], report
    assert report["loader"] != "_Loader", report  # gymnasium's own loader is put back after the import


def _check_version(installed: dict[str, Path]) -> None:
    """``recurrent_rl.__version__`` is the installed distribution's, pyproject.toml's ``version``."""
    code = "import recurrent_rl; from importlib import metadata; print(recurrent_rl.__version__, metadata.version('recurrent_rl'))"
    result = _run(installed["python"], code, cwd=installed["cwd"], env=_clean_env())
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [_wheel_version(installed)] * 2, result.stdout


def _check_other_envs_package(installed: dict[str, Path]) -> None:
    """(b) another project's top-level `envs` package, as the cwd and on PYTHONPATH."""
    other = installed["tmp"] / "other"
    (other / "envs").mkdir(parents=True)
    (other / "envs" / "__init__.py").write_text('NAME = "other"\n')
    code = """
    import envs
    assert envs.NAME == "other", envs.__file__
    import gymnasium as gym
    gym.make("pomdp/TMaze-v0").reset(seed=0)
    import recurrent_rl.envs
    import envs as again
    assert again is envs and recurrent_rl.envs is not envs
    print("ok")
    """
    as_cwd = _run(installed["python"], code, cwd=other, env=_clean_env())
    assert as_cwd.returncode == 0 and as_cwd.stdout.strip() == "ok", as_cwd.stderr
    on_path = _run(installed["python"], code, cwd=installed["cwd"], env={**_clean_env(), "PYTHONPATH": str(other)})
    assert on_path.returncode == 0 and on_path.stdout.strip() == "ok", on_path.stderr


def _check_startup_loads_the_hook_only(installed: dict[str, Path]) -> None:
    """Interpreters that never import gymnasium get one small module and nothing else."""
    code = "import sys; print(json.dumps(sorted(sys.modules)))"
    pth = installed["purelib"] / f"{HOOK}.pth"
    with_hook = set(json.loads(_run(installed["python"], code, cwd=installed["cwd"], env=_clean_env()).stdout))
    pth.rename(pth.with_suffix(".off"))
    try:
        without = set(json.loads(_run(installed["python"], code, cwd=installed["cwd"], env=_clean_env()).stdout))
    finally:
        pth.with_suffix(".off").rename(pth)
    assert with_hook - without == {HOOK}


def _check_missing_or_broken_package(installed: dict[str, Path]) -> None:
    """The hook stays behind if recurrent_rl is gone or broken; `import gymnasium` still works."""
    from recurrent_rl import envs

    count = "import gymnasium as gym; print(sum(k.startswith('pomdp/') for k in gym.registry))"
    python, cwd, env = installed["python"], installed["cwd"], _clean_env()
    package = installed["purelib"] / "recurrent_rl"
    moved = package.with_name("recurrent_rl.moved")
    init = package / "__init__.py"
    original = init.read_text()
    package.rename(moved)
    try:
        gone = _run(python, count, cwd=cwd, env=env)
    finally:
        moved.rename(package)
    assert gone.returncode == 0 and gone.stdout.strip() == "0" and gone.stderr == "", gone.stderr
    try:
        init.write_text('raise RuntimeError("broken on purpose")\n')
        broken = _run(python, count, cwd=cwd, env=env)
    finally:
        init.write_text(original)
    assert broken.returncode == 0 and broken.stdout.strip() == "0", broken.stderr
    assert "RuntimeWarning" in broken.stderr and "broken on purpose" in broken.stderr, broken.stderr
    again = _run(python, count, cwd=cwd, env=env)
    registered = len(envs.masked_ids()) + len(envs.memory_task_ids()) + len(envs.action_mask_task_ids())
    registered += len(envs.registry.DEPRECATED_IDS)  # still registered, warning once, until they go
    assert again.stdout.strip() == str(registered), again.stderr


def test_installed_wheel(tmp_path: Path) -> None:
    """sdist -> wheel -> fresh venv; then the checks above, each in a fresh interpreter."""
    _setuptools_or_skip()
    installed = _build_and_install(tmp_path)
    _check_wheel_contents(installed)
    _check_gym_make(installed)
    _check_version(installed)
    _check_other_envs_package(installed)
    _check_startup_loads_the_hook_only(installed)
    _check_missing_or_broken_package(installed)
