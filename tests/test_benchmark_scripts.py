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
    assert table.splitlines()[2].startswith("| RepeatPrevious-k4 | 1k | ")  # the budget the runs had
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
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    page = (root / "docs/memories.md").read_text()
    assert page.count(scoreboard.MARKER) >= 2  # the scoreboard and the ablation
    expected = scoreboard.docs_with_reports(page, root / "benchmarks/results/scoreboard.jsonl")
    stale = [n for n, (a, b) in enumerate(zip(page.splitlines(), expected.splitlines()), 1) if a != b]
    assert page == expected, (
        f"docs/memories.md lines {stale[:3]} differ from the results: "
        "python -m benchmarks.scoreboard docs benchmarks/results/scoreboard.jsonl"
    )


@pytest.mark.parametrize("name", sorted(scoreboard.PRESETS))
def test_a_memory_preset_is_its_scoreboard_agent_and_quotes_its_score(name):
    """The preset is the task's GRU preset with the agent's overrides at the scoreboard's budget
    (what was measured is what ships), the GRU preset's description names it, and the IQM its
    description quotes, which ``recurrent-rl presets`` lists, is that of the committed results."""
    import dataclasses
    from pathlib import Path

    from recurrent_rl.config.presets import load_preset

    task, agent = scoreboard.PRESETS[name]
    preset = load_preset(name)
    measured = load_preset(scoreboard.TASKS[task].preset, scoreboard.agent_overrides(scoreboard.TASKS[task], agent))
    measured = dataclasses.replace(
        measured, description=preset.description, n_timesteps=scoreboard.TASKS[task].budget, eval=preset.eval
    )
    differ = [f.name for f in dataclasses.fields(preset) if getattr(preset, f.name) != getattr(measured, f.name)]
    assert not differ, f"{name} differs from the scoreboard's {agent} on {task} in {differ}"
    assert name in load_preset(scoreboard.TASKS[task].preset).description  # the GRU preset points to it
    rows = scoreboard.read_results(Path(__file__).resolve().parent.parent / "benchmarks/results/scoreboard.jsonl")
    assert preset.description.endswith(scoreboard.quote(rows, task, agent)), (
        f"{name}: {preset.description!r}; python -m benchmarks.scoreboard docs benchmarks/results/scoreboard.jsonl"
    )


def test_a_presets_quoted_figure_is_rewritten_from_the_results():
    rows = [dict(task="TMaze-L100-v0", agent="mingru+l2", seed=s, score=v) for s, v in enumerate([0.8, 0.2, 0.6, 0.4])]
    text = "# notes\ndescription: minGRU on the T-maze (scoreboard IQM 0.99, 3 seeds)\nenv: pomdp/TMaze-L100-v0\n"
    written = scoreboard.preset_with_quote(text, rows, "TMaze-L100-v0", "mingru+l2")
    assert written == text.replace("(scoreboard IQM 0.99, 3 seeds)", "(scoreboard IQM 0.50, 4 seeds)")
    assert scoreboard.preset_with_quote(text, rows + rows[:1], "TMaze-L100-v0", "mingru+l2") == written  # a seed once
    bare = text.replace(" (scoreboard IQM 0.99, 3 seeds)", "")
    assert scoreboard.preset_with_quote(bare, rows[:1], "TMaze-L100-v0", "mingru+l2").splitlines()[1] == (
        "description: minGRU on the T-maze (scoreboard IQM 0.80, 1 seed)"
    )
    with pytest.raises(SystemExit, match="no ffm runs on TMaze-L100-v0"):
        scoreboard.preset_with_quote(text, rows, "TMaze-L100-v0", "ffm")


def test_scoreboard_docs_with_results_that_lack_a_presets_agent_writes_nothing(tmp_path):
    results, page = tmp_path / "results.jsonl", tmp_path / "page.md"
    results.write_text(json.dumps(dict(task="TMaze-L100-v0", agent="gru+l2", seed=0, score=0.5, seconds=1)) + "\n")
    text = "<!-- scoreboard report --agents gru+l2 -->\n| stale |\n"
    page.write_text(text)
    with pytest.raises(SystemExit, match="no .* runs on .* in the results"):
        scoreboard.main(["docs", str(results), str(page)])
    assert page.read_text() == text


def test_a_docs_marker_may_name_a_results_file_beside_the_main_one(tmp_path):
    row = dict(task="TMaze-L200-v0", agent="mingru+l2", seed=0, score=0.5, seconds=1, budget=300_000)
    (tmp_path / "main.jsonl").write_text(json.dumps({**row, "score": -1.0, "budget": 150_000}) + "\n")
    (tmp_path / "twice.jsonl").write_text(json.dumps(row) + "\n")
    page = "<!-- scoreboard report twice.jsonl --agents mingru+l2 -->\n| stale |\n"
    table = scoreboard.docs_with_reports(page, tmp_path / "main.jsonl").splitlines()
    assert table[3].startswith("| TMaze-L200 | 300k | 0.50 (1) |")
    assert "suite IQM" not in table[4]  # a suite of one task is that task's row
    with pytest.raises(SystemExit, match="no results file"):
        scoreboard.docs_with_reports(page.replace("twice", "missing"), tmp_path / "main.jsonl")


@pytest.mark.parametrize("line", ['{"task": "TMaze-L100-v0", "agent": "gr', '{"task": "TMaze-L100-v0"}', "[1, 2]"])
def test_a_broken_results_line_is_named_not_a_traceback(tmp_path, line):
    results = tmp_path / "results.jsonl"
    good = dict(task="TMaze-L100-v0", agent="gru+l2", seed=0, score=0.5, seconds=1)
    results.write_text(json.dumps(good) + "\n" + line + "\n")
    with pytest.raises(SystemExit, match=r"results.jsonl line 2 is not a scoreboard result .*delete or repair it"):
        scoreboard.read_results(results)
    with pytest.raises(SystemExit, match="line 2"):
        scoreboard.main(["report", str(results)])
