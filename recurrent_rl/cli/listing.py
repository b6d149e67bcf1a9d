"""``recurrent-rl presets`` and ``recurrent-rl envs``: the shipped presets and the pomdp/ envs, one line each."""

from __future__ import annotations

import argparse
from typing import Any

from recurrent_rl.cli.common import _print_rows, _steps


def add_parser(commands: Any) -> None:
    presets = commands.add_parser(
        "presets",
        help="list the presets, one line each (* = default)",
        description="List the shipped presets: name, env, memory, steps, description; the "
        "training presets (recurrent-rl train --preset), then the pretraining presets "
        "(recurrent-rl pretrain --preset).",
    )
    presets.add_argument(
        "--pretrain", action="store_true", help="list only the pretraining presets (recurrent-rl pretrain)"
    )
    presets.set_defaults(handler=cmd_presets)
    envs = commands.add_parser(
        "envs",
        help="list the pomdp/ environments, one line each",
        description="List the registered pomdp/ environments with their spaces and presets.",
    )
    envs.set_defaults(handler=cmd_envs)


def cmd_presets(args: argparse.Namespace) -> int:
    """The training presets (``*`` marks the default), then the pretraining presets, marked ``pretrain``.

    The files are read, not validated (tests/test_config.py validates every preset), so that the
    listing loads no torch.
    """
    import gymnasium as gym

    import recurrent_rl.envs  # noqa: F401  registers pomdp/
    from recurrent_rl.config.presets import DEFAULT_PRESET, preset_names

    def note(env_id: str) -> str:
        return "" if env_id in gym.registry else "  [env not registered]"

    pretrain_rows = []
    for name in preset_names("pretrain"):
        values = _pretrain_preset_values(name)
        pretrain_rows.append(
            (
                "pretrain",
                name,
                str(values["data.env_id"]),
                f"{values['model.memory']} {values['model.hidden_size']}",
                _steps(values["data.n_steps"]),
                str(values["description"]) + note(str(values["data.env_id"])),
            )
        )
    pretrain_hint = (
        "use one with: recurrent-rl pretrain --preset NAME (then: recurrent-rl train --encoder RUN/encoder.pt)"
    )
    if getattr(args, "pretrain", False):
        _print_rows([row[1:] for row in pretrain_rows])
        print(pretrain_hint)
        return 0
    rows = []
    for name in preset_names():
        values = _default_preset_values(_preset_mapping(name))
        rows.append(
            (
                "*" if name == DEFAULT_PRESET else " ",
                name,
                str(values["env"]),
                str(values["memory"]),
                _steps(values["n_timesteps"]),
                str(values["description"]) + note(str(values["env"])),
            )
        )
    _print_rows(rows)
    print("* default (what `recurrent-rl` trains); use one with: recurrent-rl train --preset NAME")
    print("\npretraining presets (an encoder for train --encoder):")
    _print_rows(pretrain_rows)
    print(pretrain_hint)
    return 0


def _preset_mapping(name: str) -> dict[str, Any]:
    from recurrent_rl.config.loading import unwrap_zoo_layout
    from recurrent_rl.config.presets import preset_values

    return unwrap_zoo_layout(preset_values(name))


def _default_preset_values(values: dict[str, Any]) -> dict[str, Any]:
    """A training config mapping's keys, dotted, with the schema's defaults filled in, and its memory.

    Not validated: ``presets``, ``envs`` and ``--help`` show presets without building them (no torch)."""
    from recurrent_rl.config.schema import flat_values
    from recurrent_rl.config.train import TrainConfig, memory_of

    flat = flat_values(TrainConfig, values)
    flat["memory"] = memory_of(str(flat.get("policy")), flat.get("policy_kwargs.memory"))
    flat.setdefault("env", "?")
    return flat


def _pretrain_preset_values(name: str) -> dict[str, Any]:
    from recurrent_rl.config.presets import preset_values
    from recurrent_rl.config.schema import flat_values
    from recurrent_rl.supervised.config import PretrainConfig

    flat = flat_values(PretrainConfig, preset_values(name, "pretrain"))
    flat.setdefault("data.env_id", "?")
    flat.setdefault("data.n_steps", 0)
    return flat


def cmd_envs(args: argparse.Namespace) -> int:
    import gymnasium as gym

    from recurrent_rl.config.presets import preset_names
    from recurrent_rl.envs import suite_ids  # registers pomdp/

    by_env: dict[str, list[str]] = {}
    for name in preset_names():  # read, not validated (as in `presets`): no torch
        by_env.setdefault(str(_default_preset_values(_preset_mapping(name))["env"]), []).append(name)
    rows = []
    for env_id in suite_ids():  # the deprecated ids (recurrent_rl.envs.DEPRECATED_IDS) left out
        try:
            env = gym.make(env_id)
            spaces = f"obs {_space(env.observation_space)}  actions {_space(env.action_space)}"
            env.close()
        except Exception as error:  # an optional dependency missing: still list the id
            spaces = f"(cannot be created here: {type(error).__name__}: {error})"
        rows.append((env_id, spaces, "preset " + ", ".join(by_env.get(env_id, ["(none)"]))))
    _print_rows(rows)
    return 0


def _space(space: Any) -> str:
    from gymnasium import spaces

    if isinstance(space, spaces.Box):
        return f"Box{tuple(space.shape)} {space.dtype}"
    if isinstance(space, spaces.Discrete):
        return f"Discrete({space.n})"
    return str(space)
