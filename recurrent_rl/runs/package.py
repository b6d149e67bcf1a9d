"""A shareable agent: a run folder's model packaged in the Hugging Face Hub's layout for RL models.

:func:`package_run` (``recurrent-rl package RUN --out DIR``) evaluates the run's model and writes
a folder that a stranger can evaluate with no other file and no other argument::

    README.md           the model card: YAML metadata (library_name, tags, a model-index with the
                        evaluation), the evaluation, the hyperparameters, how to load it
    model.safetensors   the weights-only model (weights, then plain data in model.json: the
    model.json          settings, the spaces, the VecNormalize statistics and the env id)
    config.yaml         the run's resolved config (recurrent-rl train --config config.yaml trains it again)
    eval.json           the evaluation the card reports
    replay.gif          one evaluation episode (when the env draws frames)

rl-baselines3-zoo, huggingface_sb3 and Sample Factory share agents with the same pieces (a card
with ``library_name``, ``tags`` and a ``model-index`` of ``mean_reward``, the weights, the config,
the results and a replay). The folder is written beside ``DIR`` and renamed into place, so an
interrupted packaging leaves no half-written folder.

For whoever downloads it the folder is a received file: ``recurrent-rl evaluate DIR`` and
``recurrent_rl.load_safe(DIR)`` read ``config.yaml`` and ``model.json`` as data
(:mod:`recurrent_rl.received`, :mod:`recurrent_rl.io.safe`, :mod:`recurrent_rl.io.schema`):
nothing in it is imported or unpickled, an env id naming a module is refused, and README.md and
eval.json are read by no loader.

Part of ``runs`` (see its docstring for what it may import).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from recurrent_rl.atomic import folder_mode
from recurrent_rl.io import run_folder as folders
from recurrent_rl.io.run_folder import RunError, atomic_write_json, atomic_write_text, check_can_create
from recurrent_rl.versions import package_versions

CARD = "README.md"
REPLAY = "replay.gif"
LIBRARY_NAME = "recurrent_rl"
REPOSITORY = "https://github.com/recurrent-rl/recurrent_rl"
# what a packaged folder holds besides the card (the weights-only pair is written by save_safe)
FILES = ("model.safetensors", "model.json", folders.CONFIG, folders.EVAL_REPORT)


def check_out(out: str | Path) -> Path:
    """``out`` may be created (or is an empty folder): nothing the user has is overwritten."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out} is a file: give a folder to create, e.g. --out {out.with_suffix('')}-agent")
    if out.is_dir() and any(out.iterdir()):
        raise RunError(f"--out {out} is a folder that holds files: give a new (or empty) folder; nothing was changed")
    check_can_create(out.parent if str(out.parent) else Path("."), "--out")
    return out


def package_run(
    run_dir: str | Path,
    out: str | Path,
    *,
    best: bool = False,
    episodes: int = 10,
    seed: int = 0,
    replay: bool = True,
    progress: bool | None = None,
) -> Path:
    """Evaluate the model of ``run_dir`` (its final model, or the best with ``best``) and write the
    folder ``out`` described in the module docstring; returns ``out``.

    :param episodes: evaluation episodes (deterministic actions, episode i reset with seed ``seed + i``)
    :param replay: record the first episode as ``replay.gif`` (skipped, with a note in the card, when
        the env draws no frames)
    """
    from recurrent_rl.config.loading import load_config
    from recurrent_rl.io.safe import save_safe
    from recurrent_rl.runs.evaluation import (
        check_video_path,
        evaluate,
        load_agent,
        resolve_model_path,
        save_video,
    )

    run_dir, out = Path(run_dir), check_out(out)
    if episodes < 1:
        raise RunError(f"--episodes must be at least 1, got {episodes}")
    if not run_dir.is_dir() or not folders.is_run_dir(run_dir):
        raise RunError(
            f"{run_dir} is not a run folder (it has no {folders.CONFIG}): package the folder that "
            "recurrent-rl train wrote"
        )
    _, _, note = resolve_model_path(run_dir, best)
    if note:  # no final model: a run that did not finish is not packaged as if it had
        raise RunError(f"{note.split(':')[0]}: finish it first (recurrent-rl train --resume {run_dir})")
    agent = load_agent(run_dir, best=best, device="cpu")  # the safe copy, or a refusal to unpickle
    config = load_config(run_dir / folders.CONFIG)
    draws = replay and _draws_frames(agent.env_id, agent.env_kwargs, agent.gym_packages)
    if draws:
        try:
            check_video_path(REPLAY)
        except RunError as error:  # worded for evaluate's --video
            raise RunError(f"{REPLAY}: {error}; or package without it: --no-replay") from None
    report = evaluate(agent, episodes, deterministic=True, seed=seed, video_episodes=int(draws), progress=progress)
    report.model = "model.safetensors"  # the packaged copy, not a path on this machine
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        save_safe(
            agent.model,
            staging,
            vecnormalize=agent.normalizer if agent.normalizer is not None else False,
            env_id=agent.env_id,
        )
        # the encoder's weights are in model.safetensors; the path to its file on this machine is left out
        shared = dataclasses.replace(config, encoder=type(config.encoder)())
        from recurrent_rl.config.schema import config_to_yaml

        atomic_write_text(
            staging / folders.CONFIG,
            config_to_yaml(
                shared,
                f"the resolved config of the packaged run; train it again: "
                f"recurrent-rl train --config {folders.CONFIG}",
            ),
        )
        atomic_write_json(staging / folders.EVAL_REPORT, report.to_dict())
        if draws:
            save_video(report.frames, staging / REPLAY, report.fps)
        atomic_write_text(
            staging / CARD, model_card(config, report.to_dict(), replay=draws, normalized=agent.normalizer is not None)
        )
        os.chmod(staging, folder_mode(out.parent))  # mkdtemp's 0700 -> a new folder's usual mode
        if out.is_dir():
            out.rmdir()  # empty (checked above)
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def _draws_frames(env_id: str, env_kwargs: dict[str, Any], packages: tuple[str, ...]) -> bool:
    from recurrent_rl.config.envs import make_env

    env = make_env(env_id, env_kwargs, packages=packages)
    try:
        return "rgb_array" in ((getattr(env, "metadata", None) or {}).get("render_modes") or [])
    finally:
        env.close()


# --- the model card --------------------------------------------------------------------------------


def card_metadata(config: Any, report: dict[str, Any]) -> dict[str, Any]:
    """The card's YAML metadata, as the Hub reads it: ``library_name``, ``tags`` and a ``model-index``
    whose one result is the evaluation's mean return (``mean_reward``, as huggingface_sb3 writes it)."""
    memory = config.memory
    env_id = report["env"]
    return {
        "library_name": LIBRARY_NAME,
        "tags": [
            "reinforcement-learning",
            "deep-reinforcement-learning",
            "stable-baselines3",
            LIBRARY_NAME,
            "RecurrentPPO",
            f"memory-{memory}",
            env_id,
        ],
        "model-index": [
            {
                "name": f"RecurrentPPO-{memory}",
                "results": [
                    {
                        "task": {"type": "reinforcement-learning", "name": "reinforcement-learning"},
                        "dataset": {"name": env_id, "type": env_id},
                        "metrics": [
                            {
                                "type": "mean_reward",
                                "value": f"{report['mean_return']:.2f} +/- {report['std_return']:.2f}",
                                "name": "mean_reward",
                                "verified": False,
                            }
                        ],
                    }
                ],
            }
        ],
    }


def read_card_metadata(text: str) -> dict[str, Any]:
    """The YAML metadata between the ``---`` lines that open a model card (what the Hub parses)."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---" or "---" not in [line.strip() for line in lines[1:]]:
        raise ValueError("a model card opens with YAML metadata between two '---' lines")
    end = [line.strip() for line in lines[1:]].index("---") + 1
    data = yaml.safe_load("\n".join(lines[1:end]))
    if not isinstance(data, dict):
        raise ValueError("the model card's metadata is not a YAML mapping")
    return data


def python_snippet(env_id: str, normalized: bool) -> str:
    """How to load the packaged agent in Python and step it, its memory carried (the card shows it)."""
    lines = [
        "from stable_baselines3.common.env_util import make_vec_env",
        "",
        "from recurrent_rl import load_safe",
    ]
    if normalized:
        lines += [
            "from recurrent_rl.export.safe import load_safe_vecnormalize",
            "",
            'folder = "path/to/this/folder"',
            f"env = load_safe_vecnormalize(folder, make_vec_env({env_id!r}, n_envs=1))  # the training statistics",
            "env.training, env.norm_reward = False, False",
        ]
    else:
        lines += ["", 'folder = "path/to/this/folder"', f"env = make_vec_env({env_id!r}, n_envs=1)"]
    lines += [
        "model = load_safe(folder, env=env)",
        "obs, state, starts = env.reset(), None, [True]",
        "for _ in range(1000):",
        "    action, state = model.predict(obs, state=state, episode_start=starts, deterministic=True)",
        "    obs, reward, done, info = env.step(action)",
        "    starts = done",
    ]
    return "\n".join(lines)


def model_card(config: Any, report: dict[str, Any], replay: bool = True, normalized: bool = False) -> str:
    """README.md of a packaged agent: the metadata, the evaluation, how to use it, the hyperparameters."""
    env_id, memory = report["env"], config.memory
    metadata = yaml.safe_dump(card_metadata(config, report), sort_keys=False)
    success = "" if report["success_rate"] is None else f" | {report['success_rate']:.2f}"
    success_head, success_rule = ("", "") if report["success_rate"] is None else (" | success rate", "|---:")
    hyper = {
        key: value
        for key, value in config.to_dict().items()
        if key not in ("description", "encoder", "eval", "checkpoint", "device", "name")
    }
    versions = package_versions()
    replay_text = (
        f"![one evaluation episode]({REPLAY})\n"
        if replay
        else f"{env_id} draws no frames, so this folder has no replay.\n"
    )
    return f"""---
{metadata}---

# RecurrentPPO with a {memory} memory on {env_id}

A memory-based PPO agent ({config.policy}, `memory: {memory}`) trained with
[recurrent_rl]({REPOSITORY}) for {report["num_timesteps"]} env steps, seed {config.seed}.

## Evaluation

{report["episodes"]} episodes, deterministic actions, episode i reset with seed {report["seed"]} + i
(`{folders.EVAL_REPORT}` holds every episode):

| mean return | std | median | min | max | mean length{success_head} |
|---:|---:|---:|---:|---:|---:{success_rule}|
| {report["mean_return"]:.2f} | {report["std_return"]:.2f} | {report["median_return"]:.2f} | \
{report["min_return"]:.2f} | {report["max_return"]:.2f} | {report["mean_length"]:.1f}{success} |

{replay_text}
## Use it

From this folder, with recurrent_rl installed (no other file and no other argument):

```bash
recurrent-rl evaluate . --episodes 20
recurrent-rl export . --format onnx --out agent.onnx   # the acting policy, runs without torch
```

```python
{python_snippet(env_id, normalized)}
```

`model.safetensors` and `model.json` hold weights and plain data: opening them runs no code
from the files (no pickle). `model.json` records the env id, the observation and action spaces
and the observation statistics (VecNormalize) the policy was trained with.

## Hyperparameters

`{folders.CONFIG}` holds the run's whole config (`recurrent-rl train --config {folders.CONFIG}`
trains it again); the training settings:

```yaml
{yaml.safe_dump(hyper, sort_keys=False, default_flow_style=None).rstrip()}
```

Trained and packaged with recurrent_rl {versions["recurrent_rl"]}, torch {versions["torch"]},
stable-baselines3 {versions["stable-baselines3"]}, gymnasium {versions["gymnasium"]}.
"""
