"""The memory scoreboard: which memory learns which delay, scored the same way on every task.

Every memory (``gru``, ``lstm``, ``mingru``, ``minlstm``, ``ffm``, ``transformer``) and an MLP on 4
stacked frames (``mlp-stack4``), on the suite's memory tasks from short to long delays
(:data:`SUITE`), each at a fixed budget, several seeds. Each task's PPO settings are its shipped
GRU preset's, the same for every agent; only the memory changes (the transformer's window covers
the task's delay; ffm and the transformer take no ``gate_bias``). The score of a run is the mean
return of 100 deterministic evaluation episodes, normalised per task: 0 is the best memoryless
return, 1 the optimal one (exact values, :func:`recurrent_rl.envs.reference_returns`). The report
gives, per agent, the interquartile mean (IQM) of the normalised scores per task and over the
suite, with 95% stratified-bootstrap intervals (:mod:`recurrent_rl.sweeps.stats`).

Variants change one thing about an agent, named after a ``+``: ``gru+refresh``
(``state_refresh``), ``gru+t32`` (chunks of 32 steps), ``gru+t32+refresh``, ``gru+t32+burnin``
(32 steps of burn-in), ``gru+context`` (burn-in over the task's delay, with gradient),
``mingru+l2`` (two layers), ``ffm+c32`` (32 slots per channel): see :data:`VARIANTS`.

    python -m benchmarks.scoreboard run results.jsonl                  # the whole scoreboard, seeds 0-4
    python -m benchmarks.scoreboard run results.jsonl --agents gru ffm --seeds 0 1 --tasks RepeatFirst-Hard-v0
    python -m benchmarks.scoreboard report results.jsonl               # the tables (Markdown)
    python -m benchmarks.scoreboard docs results.jsonl                 # docs/memories.md's tables, presets' figures

Runs go one at a time, torch on one thread (run the command under ``nice`` on a shared machine).
Each finished run is appended to the JSON-lines file as it ends, and runs already in the file
are skipped, so a stopped study resumes where it stopped. Each line records the date, the CPU
and the seconds of training.
"""

from __future__ import annotations

import argparse
import inspect
import json
import re
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.machine import cpu_model


@dataclass(frozen=True)
class Task:
    env: str  # without the pomdp/ namespace
    preset: str  # the shipped GRU preset whose PPO settings every agent uses
    budget: int  # env steps per run
    delay: int  # steps from the cue to the last step that needs it (the transformer's window covers it)


# short to long delays; the last five are the long-horizon table's tasks at the transformer's budgets
SUITE = (
    Task("RepeatPrevious-k4-v0", "repeat-previous-k4-gru", 100_000, 4),
    Task("RepeatFirst-Medium-v0", "repeat-first-medium-gru", 100_000, 64),
    Task("CountRecall-Medium-v0", "count-recall-medium-gru", 150_000, 32),
    Task("RepeatPrevious-k16-v0", "repeat-previous-k16-gru", 100_000, 16),
    Task("TMaze-L100-v0", "tmaze-l100-gru", 150_000, 101),
    Task("TMaze-L200-v0", "tmaze-l200-gru", 150_000, 201),
    Task("RepeatFirst-Hard-v0", "repeat-first-hard-gru", 200_000, 256),
)
TASKS = {task.env: task for task in SUITE}
MEMORIES = ("gru", "lstm", "mingru", "minlstm", "ffm", "transformer")
AGENTS = (*MEMORIES, "mlp-stack4")
WINDOWS = (32, 64, 128, 256)  # the transformer's window: the first that covers the delay


# shipped presets that carry a scoreboard agent (the pick for a task in docs/memories.md): each is
# the task's GRU preset with the agent's overrides at the task's budget; its description ends with
# the agent's IQM there (:func:`quote`), which ``docs`` rewrites and a test holds to the results
PRESETS = {
    "repeat-first-medium-mingru": ("RepeatFirst-Medium-v0", "mingru+l2"),
    "tmaze-l100-mingru": ("TMaze-L100-v0", "mingru+l2"),
    "repeat-first-hard-mingru": ("RepeatFirst-Hard-v0", "mingru+l2"),
    "count-recall-medium-ffm": ("CountRecall-Medium-v0", "ffm+l2"),
    "repeat-previous-k16-ffm": ("RepeatPrevious-k16-v0", "ffm+l2+c32"),
    "repeat-previous-k16-transformer": ("RepeatPrevious-k16-v0", "transformer"),
    "tmaze-l100-transformer": ("TMaze-L100-v0", "transformer"),
    "tmaze-l200-transformer": ("TMaze-L200-v0", "transformer"),
    "repeat-first-hard-transformer": ("RepeatFirst-Hard-v0", "transformer"),
}
QUOTE = re.compile(r" \(scoreboard IQM (-?\d+\.\d\d), (\d+) seeds?\)$")


def _burn_in(task: Task, n_steps: int) -> int:
    return min(task.delay, n_steps)


# variant -> the config overrides it adds for a task (given the task and its n_steps)
VARIANTS: dict[str, Callable[[Task, int], tuple[str, ...]]] = {
    "refresh": lambda task, n: ("state_refresh=true",),
    "t32": lambda task, n: ("sequence_length=32",),
    "burnin": lambda task, n: ("burn_in=32",),
    "context": lambda task, n: (f"burn_in={_burn_in(task, n)}", "burn_in_gradient=true"),
    "l2": lambda task, n: ("policy_kwargs.num_layers=2",),
    "c32": lambda task, n: ("policy_kwargs.memory_kwargs.context_size=32",),  # ffm: 32 slots per channel
}


def split_agent(agent: str) -> tuple[str, list[str]]:
    """``"gru+t32+refresh"`` -> ``("gru", ["t32", "refresh"])``, checked."""
    base, *variants = agent.split("+")
    if base not in AGENTS:
        raise SystemExit(f"unknown agent {base!r} in {agent!r}; choose from {list(AGENTS)}")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or (variants and base not in MEMORIES):
        raise SystemExit(f"{agent!r}: variants {list(VARIANTS)} apply to the memories {list(MEMORIES)}")
    return base, variants


def agent_overrides(task: Task, agent: str) -> tuple[str, ...]:
    """The config overrides that turn the task's GRU preset into ``agent``'s settings."""
    from recurrent_rl.config.presets import load_preset

    base, variants = split_agent(agent)
    overrides: list[str] = []
    if base in MEMORIES:
        overrides.append(f"policy_kwargs.memory={base}")
    if base in ("ffm", "transformer"):
        overrides.append("policy_kwargs.gate_bias=null")  # no gate that keeps a state
    if base == "transformer":
        window = next((w for w in WINDOWS if w >= task.delay), WINDOWS[-1])
        overrides.append(f"policy_kwargs.memory_kwargs.memory_length={window}")
    n_steps = load_preset(task.preset).n_steps
    for variant in variants:
        overrides.extend(VARIANTS[variant](task, n_steps))
    return tuple(overrides)


def run_one(task: Task, agent: str, seed: int, budget_scale: float = 1.0) -> dict[str, Any]:
    """Train ``agent`` on ``task`` for its budget (times ``budget_scale``) with ``seed``; evaluate 100 episodes."""
    import torch as th

    th.set_num_threads(1)
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.policies import ActorCriticPolicy
    from stable_baselines3.common.vec_env import VecFrameStack

    import recurrent_rl.envs  # noqa: F401  registers pomdp/
    from benchmarks.memory_tasks import evaluate
    from recurrent_rl import RecurrentPPO
    from recurrent_rl.config.presets import load_preset
    from recurrent_rl.envs import reference_returns

    base, _ = split_agent(agent)
    overrides = agent_overrides(task, agent)
    config = load_preset(task.preset, overrides)
    env_id = f"pomdp/{task.env}"

    def make(n: int, s: int) -> Any:
        env = make_vec_env(env_id, n_envs=n, seed=s)
        return VecFrameStack(env, 4) if base == "mlp-stack4" else env

    kwargs = config.algorithm_kwargs()
    policy = kwargs.pop("policy")
    start = time.perf_counter()
    if base in MEMORIES:
        model = RecurrentPPO(policy, make(config.n_envs, seed), seed=seed, **kwargs)
    else:
        for key in ("sequence_length", "state_refresh", "burn_in", "burn_in_gradient"):
            kwargs.pop(key)
        # the policy_kwargs SB3's ActorCriticPolicy takes (the memory's own, such as backend or
        # kernel_threads, are dropped)
        accepted = inspect.signature(ActorCriticPolicy.__init__).parameters
        kwargs["policy_kwargs"] = {k: v for k, v in kwargs["policy_kwargs"].items() if k in accepted}
        model = PPO("MlpPolicy", make(config.n_envs, seed), seed=seed, **kwargs)
    budget = int(task.budget * budget_scale)
    model.learn(budget)
    seconds = time.perf_counter() - start
    ret, success = evaluate(model, base, make, 100, seed + 10_000)
    ref = reference_returns(env_id)
    return dict(
        task=task.env,
        agent=agent,
        seed=seed,
        budget=budget,
        overrides=list(overrides),
        ret=ret,
        success=success,
        score=(ret - ref["memoryless"]) / (ref["optimal"] - ref["memoryless"]),
        seconds=round(seconds, 1),
        steps_per_second=round(budget / seconds, 1),
        date=time.strftime("%Y-%m-%d %H:%M"),
        cpu=cpu_model(),
    )


def read_results(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            row, reason = None, error.msg
        else:
            reason = "no task, agent, seed and score"
        if not isinstance(row, dict) or not {"task", "agent", "seed", "score"} <= row.keys():
            raise SystemExit(
                f"{path} line {number} is not a scoreboard result ({reason}): delete or repair it "
                "(a run stopped while writing leaves a partial last line; the run is redone when it is gone)"
            )
        rows.append(row)
    return rows


def run(path: Path, tasks: list[str], agents: list[str], seeds: list[int], budget_scale: float = 1.0) -> None:
    for agent in agents:
        split_agent(agent)
    done = {(r["task"], r["agent"], r["seed"]) for r in read_results(path)}
    # seed-major (a study stopped early has every agent on the first seeds), agents in the order given
    jobs = [(t, a, s) for s in seeds for a in agents for t in tasks if (t, a, s) not in done]
    print(f"{time.strftime('%Y-%m-%d %H:%M')}: {len(jobs)} runs to go, {len(done)} in {path}", flush=True)
    for task, agent, seed in jobs:
        result = run_one(TASKS[task], agent, seed, budget_scale)
        with path.open("a") as file:
            file.write(json.dumps(result) + "\n")
        print(
            f"{result['date']} {task:22s} {agent:18s} seed {seed}: return {result['ret']:.2f} "
            f"score {result['score']:.2f} ({result['seconds']:.0f} s)",
            flush=True,
        )


def _fmt(estimate: Any, runs: int) -> str:
    """``value [low, high]``; a single run's interval collapses to its value, so it is left out."""
    return f"{estimate.value:.2f}" if runs == 1 else f"{estimate.value:.2f} [{estimate.low:.2f}, {estimate.high:.2f}]"


def report(
    path: Path, agents: list[str] | None = None, tasks: list[str] | None = None, seeds: list[int] | None = None
) -> str:
    """Markdown, as docs/memories.md shows it: per task the IQM score of each agent (in parentheses
    its number of seeds), and the suite's IQM over the tasks (all of them, or ``tasks``) on the
    seeds an agent ran on all of them (when there are several tasks and an agent ran them all),
    with stratified-bootstrap 95% intervals; only ``seeds`` when given."""
    from recurrent_rl.sweeps.stats import iqm, stratified_bootstrap

    rows = read_results(path)
    if seeds is not None:
        rows = [r for r in rows if r["seed"] in seeds]
    if agents is None:
        agents = list(dict.fromkeys(r["agent"] for r in rows))
    wanted = tasks
    tasks = [t.env for t in SUITE if any(r["task"] == t.env for r in rows) and (wanted is None or t.env in wanted)]
    rows = [r for r in rows if r["task"] in tasks and r["agent"] in agents]
    header = " | ".join(f"`{a}`" for a in agents)
    lines = [f"| task | budget | {header} |", "|---|---:|" + "---:|" * len(agents)]
    by = {(r["task"], r["agent"]): {} for r in rows}
    for r in rows:
        by[(r["task"], r["agent"])][r["seed"]] = r["score"]
    for task in tasks:
        cells = []
        for agent in agents:
            scores = list(by.get((task, agent), {}).values())
            cells.append(
                "-" if not scores else f"{_fmt(stratified_bootstrap(scores, iqm), len(scores))} ({len(scores)})"
            )
        budgets = "/".join(
            f"{b // 1000}k" for b in sorted({r.get("budget", TASKS[task].budget) for r in rows if r["task"] == task})
        )
        lines.append(f"| {task.removesuffix('-v0')} | {budgets} | " + " | ".join(cells) + " |")
    cells = []
    for agent in agents:
        runs = [by.get((task, agent), {}) for task in tasks]
        common = sorted(set.intersection(*(set(r) for r in runs))) if runs and all(runs) else []
        if not common:
            cells.append("-")
            continue
        matrix = np.array([[run[s] for run in runs] for s in common])  # (seeds, tasks)
        cells.append(f"**{_fmt(stratified_bootstrap(matrix, iqm), len(common))}** ({len(common)})")
    if len(tasks) > 1 and any(cell != "-" for cell in cells):  # a suite of one task is that task's row
        lines.append("| **suite IQM** | | " + " | ".join(cells) + " |")
    seconds = [[r["seconds"] for r in rows if r["agent"] == a] for a in agents]
    lines.append("| mean seconds per run | | " + " | ".join(f"{np.mean(t):.0f}" if t else "-" for t in seconds) + " |")
    return "\n".join(lines)


def quote(rows: list[dict[str, Any]], task: str, agent: str) -> str:
    """What a preset's description ends with: `` (scoreboard IQM 0.92, 5 seeds)``."""
    from recurrent_rl.sweeps.stats import iqm

    scores = list({r["seed"]: r["score"] for r in rows if (r["task"], r["agent"]) == (task, agent)}.values())
    if not scores:  # one score a seed, as the report counts them
        raise SystemExit(f"no {agent} runs on {task} in the results: the preset's figure needs them")
    return f" (scoreboard IQM {iqm(scores):.2f}, {len(scores)} seed{'s' if len(scores) > 1 else ''})"


def preset_with_quote(text: str, rows: list[dict[str, Any]], task: str, agent: str) -> str:
    """A preset's YAML ``text`` with its description's quoted figure (:data:`QUOTE`) that of ``rows``."""
    match = re.search(r"^description: .*$", text, re.M)
    if match is None:
        raise SystemExit("a preset without a description line")
    line = match[0]
    return text.replace(line, QUOTE.sub("", line) + quote(rows, task, agent), 1)


MARKER = "<!-- scoreboard report "


def docs_with_reports(text: str, results: Path) -> str:
    """``text`` (markdown) with the table under each ``<!-- scoreboard report [FILE] --agents ...
    [--seeds ...] -->`` line replaced by that report of ``results`` (or of ``FILE``, a results file
    beside it): what ``docs`` writes and the docs test compares."""
    lines, out, i = text.splitlines(), [], 0
    while i < len(lines):
        line = lines[i]
        out.append(line)
        i += 1
        if line.startswith(MARKER):
            options = shlex.split(line.removeprefix(MARKER).removesuffix("-->"))
            source = results.parent / options.pop(0) if options and not options[0].startswith("-") else results
            if not source.is_file():
                raise SystemExit(f"{line}: no results file {source}")
            args = _report_parser().parse_args([str(source), *options])
            out.extend(_report_of(args).splitlines())
            while i < len(lines) and lines[i].startswith("|"):
                i += 1
    return "\n".join(out) + "\n"


def _seeds(values: list[str]) -> list[int]:
    seeds: list[int] = []
    for value in values:
        low, _, high = value.partition("-")
        try:
            seeds.extend(range(int(low), int(high or low) + 1))
        except ValueError:
            raise SystemExit(f"--seeds {value!r}: give seeds or ranges of seeds, such as 0 or 0-4") from None
    return seeds


def _report_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The options of ``report``, which a docs page's marker line gives too."""
    parser = parser or argparse.ArgumentParser(prog="scoreboard report")
    parser.add_argument("results", type=Path)
    parser.add_argument("--agents", nargs="*", default=None)
    parser.add_argument("--tasks", nargs="*", default=None, choices=list(TASKS))
    parser.add_argument("--seeds", nargs="*", default=None, help="only these seeds or ranges (0-4)")
    return parser


def _report_of(args: argparse.Namespace) -> str:
    return report(args.results, args.agents, args.tasks, None if args.seeds is None else _seeds(args.seeds))


def _presets_dir() -> Path:
    from recurrent_rl.config import presets

    return Path(presets.__file__).parent


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run_parser = sub.add_parser("run", help="train and evaluate, appending to the results file")
    run_parser.add_argument("results", type=Path)
    run_parser.add_argument("--tasks", nargs="*", default=[t.env for t in SUITE], choices=list(TASKS))
    run_parser.add_argument("--agents", nargs="*", default=list(AGENTS), help=f"{list(AGENTS)}, with +variants")
    run_parser.add_argument("--seeds", nargs="*", default=["0-4"], help="seeds or ranges (0-4)")
    run_parser.add_argument("--budget-scale", type=float, default=1.0, help="multiply every budget (quick checks)")
    _report_parser(sub.add_parser("report", help="print the tables"))
    docs_parser = sub.add_parser(
        "docs", help="rewrite the marked tables of a docs page and the quoted figures of PRESETS from the results"
    )
    docs_parser.add_argument("results", type=Path)
    docs_parser.add_argument("page", type=Path, nargs="?", default=Path("docs/memories.md"))
    args = parser.parse_args(argv)
    if args.command == "docs":
        for path in (args.results, args.page):
            if not path.is_file():
                raise SystemExit(f"{path} is not a file: give the results file and the docs page to rewrite")
        rows, presets = read_results(args.results), _presets_dir()
        # everything is computed before anything is written: results that lack an agent change nothing
        texts = {args.page: docs_with_reports(args.page.read_text(), args.results)}
        for name, (task, agent) in PRESETS.items():
            path = presets / f"{name}.yaml"
            texts[path] = preset_with_quote(path.read_text(), rows, task, agent)
        for path, text in texts.items():
            path.write_text(text)
        print(f"rewrote the marked tables of {args.page} and the figures of {len(PRESETS)} presets in {presets}")
        return
    if args.command == "run":
        print(f"`python -m benchmarks.scoreboard {' '.join(sys.argv[1:] if argv is None else argv)}`, {cpu_model()}")
        run(args.results, args.tasks, args.agents, _seeds(args.seeds), args.budget_scale)
    else:
        print(_report_of(args))


if __name__ == "__main__":
    main()
