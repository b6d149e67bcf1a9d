"""Fault injection: SIGKILL a training at random moments of its checkpoint writes, then check the run.

A kill can come at any instruction, so the atomic writes (:mod:`recurrent_rl.atomic`, the checkpoint
folders of :mod:`recurrent_rl.io.run_folder`) must leave every file under its final name complete:
the previous version or the new one, never a part. After each kill the run folder is checked file
by file (each one loads), then the run is resumed, and the resume is killed in turn, until a resume
finishes the run.

The trainers are forked from one helper process that imported the package once (a fresh
interpreter for each of dozens of kills would spend most of the test importing torch). Inside a
trainer, a hook wraps the calls that write (``tempfile.mkstemp``/``mkdtemp``, ``model.save``,
safetensors' ``save_file``, ``VecNormalize.save``, ``Path.write_text``, ``os.fsync``,
``os.replace``, ``shutil.rmtree``) and SIGKILLs the process at the k-th of them: just before the
call, just after it, or a few milliseconds into it (a timer thread), so that kills land inside the
writes on purpose rather than by luck. One kill in four comes from the helper instead, at a random
wall-clock time, while each write call is slowed by a random millisecond or two. A seeded RNG draws
every kill.

The windows these kills found in the package (a safe copy's two files renamed one after the other,
a checkpoint pruned or replaced under its final name) are each killed on purpose by a test at the
end of this file.
"""

from __future__ import annotations

import json
import os
import random
import re
import select
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from recurrent_rl import RecurrentPPO
from recurrent_rl.atomic import atomic_path, folder_mode
from recurrent_rl.config.loading import load_config
from recurrent_rl.export.safe import load_safe
from recurrent_rl.io import run_folder as runs
from recurrent_rl.runs import checkpoints

ROOT = Path(__file__).resolve().parents[1]
TOTAL = 256
# Tiny rollouts (32 steps), two PPO epochs and a checkpoint after every rollout: the trainer spends
# much of its time writing checkpoints. Stochastic periodic evaluations may make new best models
# (best_model.* rewritten), and keep=2 makes it prune old checkpoints too.
OVERRIDES = [
    f"n_timesteps={TOTAL}",
    "n_envs=2",
    "n_steps=16",
    "batch_size=32",
    "n_epochs=2",
    "torch_threads=1",
    "checkpoint.freq=32",
    "checkpoint.keep=2",
    "eval.freq=64",
    "eval.episodes=2",
    "eval.deterministic=false",
    "eval.final_episodes=2",
]
FILE_MODE = folder_mode(ROOT) & 0o666  # what every file a run keeps gets, as any file the user writes
STEP = re.compile(r"^step_(\d+)$")
# What resume answers when a kill came before the run had anything to continue from.
NOTHING_TO_RESUME = ("no such run folder", "not a run folder", "no checkpoint to continue from")

# The helper: imports the package once, then forks one trainer per command (a JSON line on stdin) and
# answers with the trainer's exit code (a JSON line on stdout; -9 when it was SIGKILLed).
HELPER = r"""
import json, os, random, re, shutil, signal, sys, tempfile, threading, time, traceback
from pathlib import Path

import safetensors.torch
from stable_baselines3.common.vec_env import VecNormalize

from recurrent_rl.ppo.algorithm import RecurrentPPO
from recurrent_rl.runs import training
from recurrent_rl.io.run_folder import RunError
from recurrent_rl.config.presets import DEFAULT_PRESET, load_preset

WRITES = [(tempfile, "mkstemp"), (tempfile, "mkdtemp"), (RecurrentPPO, "save"), (safetensors.torch, "save_file"),
          (VecNormalize, "save"), (Path, "write_text"), (os, "fsync"), (os, "replace"), (shutil, "rmtree")]


def install(plan, counter):
    # plan: at (the k-th write call), how (before, after, during: a timer of delay seconds), match (a
    # regex on "<function> <first arguments>": only those calls count), jitter (a random sleep in
    # each call, up to that many seconds)
    rng = random.Random(plan.get("seed", 0))
    match = re.compile(plan["match"]) if plan.get("match") else None

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    def wrap(owner, name):
        real = getattr(owner, name)

        def hooked(*args, **kwargs):
            if plan.get("jitter"):
                time.sleep(rng.uniform(0, plan["jitter"]))
            hit = False
            if match is None or match.search(" ".join([name, *map(str, args[:2])])):
                counter[0] += 1
                hit = counter[0] == plan.get("at")
            if hit and plan["how"] == "before":
                die()
            if hit and plan["how"] == "during":
                threading.Timer(plan["delay"], die).start()
            result = real(*args, **kwargs)
            if hit and plan["how"] == "after":
                die()
            return result

        setattr(owner, name, hooked)

    for owner, name in WRITES:
        wrap(owner, name)


def trainer(command):
    counter = [0]
    install(command.get("plan") or {}, counter)
    try:
        if command["action"] == "train":
            config = load_preset(DEFAULT_PRESET, command["overrides"])
            training.train(config, command["runs_dir"], name=command["name"], progress_bar=False)
        else:
            training.resume(command["run"], progress_bar=False)
        code = 0
    except RunError as error:
        print(f"RunError: {error}")
        code = 2
    except BaseException:
        traceback.print_exc()
        code = 1
    print(f"write calls: {counter[0]}")
    return code


def wait(pid, kill_after):
    if kill_after is not None:
        deadline = time.monotonic() + kill_after
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return status
            time.sleep(0.002)
        os.kill(pid, signal.SIGKILL)  # not reaped yet, so the pid is still this child's
    return os.waitpid(pid, 0)[1]


print("ready", flush=True)
for line in sys.stdin:
    command = json.loads(line)
    sys.stdout.flush()
    sys.stderr.flush()
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        log = os.open(command["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        code = trainer(command)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    status = wait(pid, command.get("kill_after"))
    answer = {"code": os.waitstatus_to_exitcode(status), "seconds": time.monotonic() - start}
    print(json.dumps(answer), flush=True)
"""


class Helper:
    """The helper process, and the trainers it forks."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.attempts = 0
        self.reference: tuple[Path, int, float] | None = None  # an unkilled run, its write calls and seconds
        self.stderr = open(folder / "helper.err", "w")  # noqa: SIM115 closed in close()
        self.process = subprocess.Popen(
            [sys.executable, "-c", HELPER],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
        )
        assert self._answer(180) == "ready"

    def _answer(self, timeout: float) -> str:
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            self.close()
            pytest.fail(f"the helper did not answer within {timeout} s:\n{(self.folder / 'helper.err').read_text()}")
        return line.strip()

    def run(self, **command: object) -> tuple[int, str, float]:
        """Run one trainer: its exit code (-9: SIGKILLed), what it printed and how long it ran."""
        self.attempts += 1
        log = self.folder / f"attempt{self.attempts:03d}.log"
        self.process.stdin.write(json.dumps({**command, "log": str(log)}) + "\n")
        self.process.stdin.flush()
        answer = json.loads(self._answer(300))
        return answer["code"], log.read_text() if log.exists() else "", answer["seconds"]

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.stderr.close()


@pytest.fixture(scope="module")
def helper(tmp_path_factory):
    helper = Helper(tmp_path_factory.mktemp("helper"))
    yield helper
    helper.close()


# --- what a killed run folder must hold -----------------------------------------------------------


def check_files(run: Path) -> list[str]:
    """What is wrong in ``run``: every file under its final name must load and have the usual mode,
    every checkpoint folder must be whole, and any other name must be a leftover of an interrupted
    write (``.<name>.<random>.tmp*``, ``.step_<N>.old-<pid>``)."""
    from safetensors.torch import load_file
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from recurrent_rl.runs.evaluation import make_env

    if not run.exists():  # killed before it created the folder
        return []
    if not (run / runs.CONFIG).exists():
        names = [p.name for p in run.iterdir() if not (runs._LEFTOVER.match(p.name) or p.name == runs.LOCK)]
        return [f"{run.name} has no config.yaml but holds {names}"] if names else []
    problems: list[str] = []
    config = load_config(run / runs.CONFIG)
    venv = DummyVecEnv([lambda: make_env(config.env, config.env_kwargs)])

    def loads(path: Path, load) -> None:
        try:
            load()
        except Exception as error:  # any failure to load is the finding, whatever its type
            problems.append(f"{path.relative_to(run)}: {type(error).__name__}: {error}")

    def check(path: Path) -> None:
        where = path.relative_to(run)
        if path.stat().st_size == 0:
            problems.append(f"{where} is empty")
        if stat.S_IMODE(path.stat().st_mode) != FILE_MODE:
            problems.append(f"{where} has mode {stat.S_IMODE(path.stat().st_mode):o}, not {FILE_MODE:o}")
        if path.suffix == ".zip":
            loads(path, lambda: RecurrentPPO.load(path, device="cpu"))
            if path.with_suffix(".safetensors").exists() and path.with_suffix(".json").exists():
                loads(path.with_suffix(".safetensors"), lambda: load_safe(path.with_suffix(""), device="cpu"))
        elif path.suffix == ".safetensors":
            loads(path, lambda: load_file(str(path)))
        elif path.suffix == ".json":
            loads(path, lambda: json.loads(path.read_text()))
        elif path.suffix == ".pkl":
            loads(path, lambda: VecNormalize.load(str(path), venv))
        elif path.suffix == ".yaml":
            loads(path, lambda: load_config(path))
        elif path.suffix in (".pt", ".pth"):
            import torch as th

            loads(path, lambda: th.load(path, map_location="cpu", weights_only=True))

    def check_checkpoint(folder: Path, step: int) -> None:
        names = sorted(p.name for p in folder.iterdir())
        missing = {runs.MODEL, runs.CHECKPOINT_STATE, "model.safetensors", "model.json"} - set(names)
        if missing:
            problems.append(f"checkpoints/{folder.name} is incomplete: it holds {names}")
        for file in sorted(folder.iterdir()):
            check(file)
        if not missing:
            state = folder / runs.CHECKPOINT_STATE
            loads(state, lambda: _same(json.loads(state.read_text())["num_timesteps"], step))
            zip_file = folder / runs.MODEL
            loads(zip_file, lambda: _same(RecurrentPPO.load(zip_file, device="cpu").num_timesteps, step))

    try:
        for path in sorted(run.iterdir()):
            if path.name in (runs.LOCK, runs.TENSORBOARD) or runs._LEFTOVER.match(path.name):
                continue  # the lock of the killed trainer; TensorBoard's files are appended to
            if path.name.startswith("."):
                problems.append(f"{path.name}: an unexpected hidden file (no leftover name resume removes)")
            elif path.name == runs.CHECKPOINTS:
                for folder in sorted(path.iterdir()):
                    step = STEP.match(folder.name)
                    if step:
                        check_checkpoint(folder, int(step[1]))
                    elif not runs._LEFTOVER.match(folder.name):
                        problems.append(f"checkpoints/{folder.name}: an unexpected name")
            else:
                check(path)
    finally:
        venv.close()
    return problems


def _same(found: int, expected: int) -> None:
    if found != expected:
        raise ValueError(f"step {found}, expected {expected}")


def hidden(run: Path) -> list[str]:
    return [
        str(p.relative_to(run))
        for folder in (run, run / runs.CHECKPOINTS)
        if folder.is_dir()
        for p in folder.iterdir()
        if p.name.startswith(".")
    ]


def check_finished(run: Path) -> list[str]:
    """What is wrong with ``run`` as a finished run (after a resume returned)."""
    problems = []
    info = json.loads((run / runs.RUN_INFO).read_text())
    if info.get("status") != "finished":
        problems.append(f"run.json says {info.get('status')!r}, not finished")
    report = run / runs.EVAL_REPORT
    if not report.is_file() or json.loads(report.read_text())["num_timesteps"] < TOTAL:
        problems.append("no eval.json of the whole run")
    if RecurrentPPO.load(run / runs.MODEL, device="cpu").num_timesteps < TOTAL:
        problems.append("model.zip is not the model of the whole run")
    if hidden(run):
        problems.append(f"the finished run keeps {hidden(run)}")
    return problems


# --- kill, check, resume, ... ---------------------------------------------------------------------


def reference(helper: Helper, runs_dir: Path) -> tuple[Path, int, float]:
    """An unkilled run (made once): its folder, how many write calls it made, how long it took."""
    if helper.reference is None:
        code, out, seconds = helper.run(action="train", overrides=OVERRIDES, runs_dir=str(runs_dir), name="reference")
        assert code == 0, out
        assert check_files(runs_dir / "reference") == [] and check_finished(runs_dir / "reference") == []
        helper.reference = runs_dir / "reference", int(re.search(r"write calls: (\d+)", out)[1]), seconds
    return helper.reference


def fault_injection(helper: Helper, runs_dir: Path, kills: int, seed: int) -> dict[str, object]:
    """Train runs and kill them ``kills`` times in all (resume after each kill, kill the resume, ...);
    what was found wrong is in the result's ``problems``."""
    rng = random.Random(seed)
    tally: dict[str, object] = {
        "kills": 0,
        "by_call": 0,
        "by_clock": 0,
        "runs": 0,
        "finished": 0,
        "before_a_checkpoint": 0,
    }
    problems: list[tuple[str, str]] = []  # (attempt, what was wrong after it), each the first time it was

    def found(attempt: str, wrong: list[str]) -> None:
        problems.extend((attempt, w) for w in wrong if w not in {seen for _, seen in problems})

    _, calls, seconds = reference(helper, runs_dir)
    while tally["kills"] < kills:
        tally["runs"] += 1
        name = f"run{tally['runs']}"
        run = runs_dir / name
        command: dict[str, object] = dict(action="train", overrides=OVERRIDES, runs_dir=str(runs_dir), name=name)
        done = 0
        while True:
            left = (TOTAL - done + 64) / (TOTAL + 64)  # about the share of the run's writes still to come
            plan: dict[str, object] = {}
            kill_after = None
            if tally["kills"] >= kills:  # enough: this resume runs to the end
                pass
            elif tally["kills"] % 4 == 3:  # one kill in four at a random time, three at a random write call
                kill_after = rng.uniform(0.05, seconds * left)
                plan = {"jitter": 0.002, "seed": rng.randrange(1 << 30)}
            else:
                how = rng.choice(["before", "after", "during", "during"])
                plan = {"at": rng.randint(1, max(1, round(calls * left))), "how": how, "delay": rng.uniform(0, 0.01)}
            code, out, _ = helper.run(**command, plan=plan, kill_after=kill_after)
            attempt = f"attempt {helper.attempts}: {command['action']} {name}, {plan or 'no kill'}"
            attempt += f", killed after {kill_after:.3f} s" if kill_after is not None else ""
            print(attempt, "exit code", code)
            if code == -signal.SIGKILL:
                tally["kills"] += 1
                tally["by_clock" if kill_after is not None else "by_call"] += 1
                found(attempt, check_files(run))
                latest = runs.latest_checkpoint(run) if (run / runs.CONFIG).exists() else None
                if latest is None:  # killed before the first checkpoint: resume says so, start anew
                    tally["before_a_checkpoint"] += 1
                    code, out, _ = helper.run(action="resume", run=str(run))
                    assert code == 2 and any(answer in out for answer in NOTHING_TO_RESUME), out
                    break
                done = int(json.loads((latest / runs.CHECKPOINT_STATE).read_text())["num_timesteps"])
                command = {"action": "resume", "run": str(run)}
                continue
            if code == 2 and "already at" in out and "finished" in out:  # killed after run.json said finished
                code = 0
            if code != 0:
                found(attempt, [f"exit code {code}:\n{out}"])
                break
            found(attempt, check_files(run) + check_finished(run))
            tally["finished"] += 1
            break
    print(f"reference run: {calls} write calls in {seconds:.1f} s; {tally}")
    tally["problems"] = problems
    return tally


def assert_no_problems(problems: list[tuple[str, str]]) -> None:
    assert problems == [], "\n".join(f"{attempt}: {problem}" for attempt, problem in problems)


def test_a_few_sigkills_during_checkpoint_writes_leave_loadable_files_and_resume_finishes(helper, tmp_path):
    tally = fault_injection(helper, tmp_path, kills=3, seed=1)
    assert tally["kills"] >= 3 and tally["finished"] >= 1
    assert_no_problems(tally["problems"])


@pytest.mark.slow
def test_sigkills_during_checkpoint_writes_leave_loadable_files_and_resume_finishes(helper, tmp_path):
    tally = fault_injection(helper, tmp_path, kills=24, seed=0)
    assert tally["kills"] >= 24 and tally["by_call"] >= 18 and tally["by_clock"] >= 6 and tally["finished"] >= 1
    assert_no_problems(tally["problems"])


def test_the_check_finds_a_truncated_or_torn_file(helper, tmp_path):
    import shutil

    run = Path(shutil.copytree(reference(helper, tmp_path)[0], tmp_path / "copy"))
    checkpoint = runs.latest_checkpoint(run)
    damaged = [
        run / runs.MODEL,
        run / "best_model.safetensors",
        run / runs.EVAL_REPORT,
        checkpoint / runs.VECNORMALIZE,
        checkpoint / "model.json",
    ]
    for path in damaged:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    (run / ".tmpXyZ123").write_bytes(b"")
    problems = check_files(run)
    for path in [*damaged, run / ".tmpXyZ123"]:
        assert any(problem.startswith(str(path.relative_to(run))) for problem in problems), (path, problems)


# --- the windows found, each killed on purpose ------------------------------------------------------


def test_a_writer_that_replaces_its_file_still_leaves_the_usual_mode(tmp_path):
    # safetensors' save_file writes a private temporary file of its own and renames it over the path
    import torch as th
    from safetensors.torch import save_file

    with atomic_path(tmp_path / "w.safetensors") as tmp:
        save_file({"w": th.zeros(2)}, str(tmp))
    assert stat.S_IMODE((tmp_path / "w.safetensors").stat().st_mode) == FILE_MODE


def test_a_kill_inside_a_writer_that_renames_its_own_temporary_file_leaves_a_removable_leftover(tmp_path):
    # as safetensors' save_file does: a `.tmpXXXXXX` beside the path it was given, renamed at the end
    script = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from recurrent_rl.atomic import atomic_path, atomic_write_text\n"
        "path = Path(sys.argv[1])\n"
        "atomic_write_text(path, 'old')\n"
        "with atomic_path(path) as tmp:\n"
        "    (tmp.parent / '.tmpAbC123').write_bytes(b'half a tens')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    path = tmp_path / "model.safetensors"
    process = subprocess.run([sys.executable, "-c", script, str(path)], cwd=ROOT, capture_output=True, text=True)
    assert process.returncode == -signal.SIGKILL, process.stderr
    assert path.read_text() == "old"
    left = [p.name for p in tmp_path.iterdir() if p != path]
    assert left and all(runs._LEFTOVER.match(name) for name in left), left
    runs.remove_leftovers(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_a_kill_between_the_two_files_of_a_safe_copy_leaves_a_loadable_pair(tmp_path, monkeypatch):
    """save_safe renames the weights into place, then the JSON; between the two the new JSON waits in
    its leftover folder, where read_safe_config finds it (and remove_leftovers puts it in place)."""
    import torch as th

    model = RecurrentPPO("MlpGruPolicy", "pomdp/CartPoleNoVel-v1", n_steps=16, batch_size=16)
    checkpoints.save_model(model, tmp_path / runs.BEST_MODEL)  # the best model so far
    with th.no_grad():
        for parameter in model.policy.parameters():
            parameter.add_(1.0)
    replace = os.replace

    def replace_then_die(src, dst, *args, **kwargs):
        replace(src, dst, *args, **kwargs)
        if Path(dst).name == "best_model.safetensors":  # the process dies right after this rename
            raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", replace_then_die)
    with pytest.raises(KeyboardInterrupt):
        checkpoints.save_model(model, tmp_path / runs.BEST_MODEL)  # a new best
    monkeypatch.undo()
    load_safe(tmp_path / "best_model", device="cpu")  # the old pair or the new one, either will do


def test_a_kill_while_old_checkpoints_are_pruned_leaves_no_partial_checkpoint(tmp_path, monkeypatch):
    """A pruned checkpoint is renamed to a leftover name before it is deleted: a kill in the middle of
    the deletion leaves no partial step_<N>/ that nothing would list or remove."""
    import shutil

    def write(folder: Path) -> None:
        for name in (runs.MODEL, "model.safetensors", "model.json", runs.CHECKPOINT_STATE):
            (folder / name).write_text(name)

    runs.write_checkpoint(tmp_path, 64, write, keep=1)
    rmtree = shutil.rmtree

    def remove_one_file_then_die(path, *args, **kwargs):
        if Path(path).parent.name == runs.CHECKPOINTS and (Path(path) / runs.MODEL).is_file():  # the pruned one
            (Path(path) / runs.MODEL).unlink()  # rmtree deletes file by file; the process dies after one
            raise KeyboardInterrupt
        rmtree(path, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", remove_one_file_then_die)
    with pytest.raises(KeyboardInterrupt):
        runs.write_checkpoint(tmp_path, 96, write, keep=1)  # step_64 is pruned
    monkeypatch.undo()
    runs.remove_leftovers(tmp_path)  # what resume does first
    runs.write_checkpoint(tmp_path, 128, write, keep=1)  # and the next checkpoint prunes
    assert [p.name for p in (tmp_path / runs.CHECKPOINTS).iterdir()] == ["step_0000000128"]


def test_a_kill_while_a_checkpoint_of_the_same_step_is_rewritten_keeps_a_checkpoint(helper, tmp_path):
    """Rewriting a step's checkpoint moves the old one to .step_<N>.old-<pid> first; killed before the
    new one takes its place, remove_leftovers puts the old one back (with keep=1 it is the only one)."""
    overrides = [*OVERRIDES, "checkpoint.keep=1"]
    # killed in its final writes, after the last checkpoint: the resume only finishes the run
    plan = {"match": r"^replace \S+ \S+/run/model\.zip$", "at": 1, "how": "before"}
    code, out, _ = helper.run(action="train", overrides=overrides, runs_dir=str(tmp_path), name="run", plan=plan)
    assert code == -signal.SIGKILL, out
    assert runs.latest_checkpoint(tmp_path / "run").name == f"step_{TOTAL:010d}"
    # that resume rewrites checkpoints/step_<TOTAL>: killed between its two renames
    plan = {"match": r"^replace \S+/step_\d+ \S+\.old-\d+$", "at": 1, "how": "after"}
    code, out, _ = helper.run(action="resume", run=str(tmp_path / "run"), plan=plan)
    assert code == -signal.SIGKILL, out
    code, out, _ = helper.run(action="resume", run=str(tmp_path / "run"))
    assert code == 0, out
    assert check_files(tmp_path / "run") == [] and check_finished(tmp_path / "run") == []
