"""The benchmark scripts' own runs, at a sliver of their budgets: each contender builds, trains and
is scored, so a change to the package's configs cannot break a benchmark unnoticed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import scoreboard


@pytest.mark.parametrize("agent", ["mlp-stack4", "mingru+t32+refresh"])
def test_a_scoreboard_run_trains_scores_and_reports(tmp_path, agent):
    results = tmp_path / "results.jsonl"
    scoreboard.run(results, ["RepeatPrevious-k4-v0"], [agent], [0], budget_scale=0.01)
    (row,) = [json.loads(line) for line in results.read_text().splitlines()]
    assert (row["task"], row["agent"], row["seed"], row["budget"]) == ("RepeatPrevious-k4-v0", agent, 0, 1_000)
    assert -2.0 <= row["score"] <= 1.0
    table = scoreboard.report(results)
    assert f"| `{agent}` |" in table.splitlines()[0]
    scoreboard.run(results, ["RepeatPrevious-k4-v0"], [agent], [0], budget_scale=0.01)  # done: skipped
    assert len(results.read_text().splitlines()) == 1


def test_a_scoreboard_variant_changes_only_its_option():
    task = scoreboard.TASKS["RepeatFirst-Hard-v0"]
    assert scoreboard.agent_overrides(task, "gru") == ("policy_kwargs.memory=gru",)
    assert scoreboard.agent_overrides(task, "gru+t32+refresh") == (
        "policy_kwargs.memory=gru",
        "sequence_length=32",
        "state_refresh=true",
    )
    with pytest.raises(SystemExit, match="variants"):
        scoreboard.agent_overrides(task, "mlp-stack4+refresh")


@pytest.mark.parametrize("agent", ["rsac", "sac-stack4", "ppo"])
def test_each_offpolicy_contender_builds_and_learns(agent):
    from stable_baselines3.common.noise import OrnsteinUhlenbeckActionNoise

    from benchmarks import offpolicy

    model, eval_env, recurrent, budget = offpolicy.build("mountaincar", agent, seed=0)
    assert recurrent == (agent != "sac-stack4")
    if agent != "ppo":  # both SAC contenders explore MountainCar with the same action noise
        assert isinstance(model.action_noise, OrnsteinUhlenbeckActionNoise)
        model.learning_starts = 50
    model.learn(64)
    assert model.num_timesteps >= 64
    assert np.isfinite(offpolicy.evaluate(model, eval_env, recurrent))


def test_the_scoreboard_tables_in_the_docs_are_the_reports_of_the_committed_results():
    """Each table in docs/memories.md under a ``<!-- scoreboard report ... -->`` comment is what
    that report prints from benchmarks/results/scoreboard.jsonl: a figure in the docs is a result."""
    import shlex
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    lines = (root / "docs/memories.md").read_text().splitlines()
    marked = [i for i, line in enumerate(lines) if line.startswith("<!-- scoreboard report ")]
    assert len(marked) >= 2  # the scoreboard and the ablation
    for i in marked:
        argv = shlex.split(lines[i].removeprefix("<!-- scoreboard report ").removesuffix("-->"))
        parser_args = {"--agents": [], "--seeds": None}
        key = None
        for word in argv:
            if word.startswith("--"):
                key = word
                parser_args[key] = []
            else:
                parser_args[key].append(word)
        expected = scoreboard.report(
            root / "benchmarks/results/scoreboard.jsonl",
            agents=parser_args["--agents"],
            seeds=None if parser_args["--seeds"] is None else scoreboard._seeds(parser_args["--seeds"]),
        ).splitlines()
        table = lines[i + 1 : i + 1 + len(expected)]
        assert table == expected, f"docs/memories.md line {i + 2}: rerun the report and paste its table"
