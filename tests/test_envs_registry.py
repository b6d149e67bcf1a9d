"""Every registered ``pomdp/`` env follows the Gymnasium API and is deterministic under a seed."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from recurrent_rl import envs

ALL_IDS = envs.suite_ids()  # the deprecated ids (envs.DEPRECATED_IDS) have their own test
MASKED_IDS = envs.masked_ids()
TASK_IDS = envs.memory_task_ids()
ACTION_MASK_IDS = envs.registry.action_mask_task_ids()  # memory tasks with action_masks()


def test_every_pomdp_id_is_a_masked_env_or_a_memory_task() -> None:
    registered = sorted(env_id for env_id in gym.registry if env_id.startswith(f"{envs.NAMESPACE}/"))
    deprecated = [f"{envs.NAMESPACE}/{old}" for old in envs.DEPRECATED_IDS]
    assert sorted(MASKED_IDS + TASK_IDS + ACTION_MASK_IDS + deprecated) == registered
    assert len(MASKED_IDS) == 5 and len(TASK_IDS) == 15 and len(ACTION_MASK_IDS) == 2


def _mask_layer(env: gym.Env) -> envs.MaskObservation:
    """The MaskObservation inside gym.make's checker/order/time-limit wrappers."""
    while not isinstance(env, envs.MaskObservation):
        env = env.env
    return env


@pytest.mark.parametrize("env_id", TASK_IDS)
def test_memory_task_passes_check_env(env_id: str) -> None:
    # the tasks are the unwrapped env; their text/image renders are checked too
    env = gym.make(env_id)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a checker warning is a failure for our own envs
        check_env(env.unwrapped)


@pytest.mark.parametrize("env_id", MASKED_IDS)
def test_masked_env_passes_check_env(env_id: str) -> None:
    # env.unwrapped would be the bare classic-control env, which is not what we built; check the
    # mask layer instead. Rendering classic control needs pygame, which is not a dependency.
    env = gym.make(env_id, disable_env_checker=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*different from the unwrapped.*")
        warnings.filterwarnings("ignore", message=".*infinity.*")  # CartPole's own velocity bounds
        warnings.filterwarnings("ignore", message=".*symmetric and normalized.*")  # Pendulum's own torque range
        check_env(_mask_layer(env), skip_render_check=True)


Step = tuple[np.ndarray, float, bool, bool, np.ndarray]


def _rollout(env_id: str, seed: int, steps: int = 120) -> list[Step]:
    """(observation, reward, terminated, truncated, info["state"]) for a fixed action sequence."""
    env = gym.make(env_id)
    env.action_space.seed(1234)  # the same action sequence for every call
    actions = [env.action_space.sample() for _ in range(steps)]
    obs, info = env.reset(seed=seed)
    trace = [(obs, 0.0, False, False, info["state"])]
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(action)
        trace.append((obs, float(reward), terminated, truncated, info["state"]))
        if terminated or truncated:
            obs, info = env.reset()  # unseeded: continues the seeded stream
            trace.append((obs, 0.0, False, False, info["state"]))
    return trace


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_same_seed_and_actions_give_the_same_episode(env_id: str) -> None:
    first, second = _rollout(env_id, seed=7), _rollout(env_id, seed=7)
    assert len(first) == len(second)
    for (o1, r1, te1, tr1, s1), (o2, r2, te2, tr2, s2) in zip(first, second):
        np.testing.assert_array_equal(o1, o2)
        np.testing.assert_array_equal(s1, s2)
        assert (r1, te1, tr1) == (r2, te2, tr2)
    # other seeds change something (catches an env that ignores its seed); several seeds, as a
    # T-maze trace differs only in its cue, which two seeds share half the time
    others = [_rollout(env_id, seed=s, steps=20) for s in range(8, 16)]
    assert any(
        not np.array_equal(a[4], b[4]) or not np.array_equal(a[0], b[0]) for o in others for a, b in zip(first, o)
    )


def test_cartpole_novel_registration_is_unchanged() -> None:
    spec = gym.spec("pomdp/CartPoleNoVel-v1")
    assert spec.entry_point == "recurrent_rl.envs:make_masked"
    assert spec.kwargs == {"env_id": "CartPole-v1", "indices": (1, 3)}
    env = envs.make_masked("CartPole-v1", (1, 3))
    obs, _ = env.reset(seed=0)
    assert obs[1] == 0 and obs[3] == 0 and env.observation_space.shape == (4,)


@pytest.mark.parametrize(
    "env_id, base, indices",
    [
        ("pomdp/CartPoleNoVel-v1", "CartPole-v1", (1, 3)),
        ("pomdp/MountainCarNoVel-v0", "MountainCar-v0", (1,)),
        ("pomdp/MountainCarContinuousNoVel-v0", "MountainCarContinuous-v0", (1,)),
        ("pomdp/PendulumNoVel-v1", "Pendulum-v1", (2,)),
        ("pomdp/AcrobotNoVel-v1", "Acrobot-v1", (4, 5)),
    ],
)
def test_masked_envs_match_the_zoo_and_the_base_time_limit(env_id: str, base: str, indices: tuple[int, ...]) -> None:
    env = gym.make(env_id)
    assert tuple(_mask_layer(env).indices) == indices
    assert env.spec.max_episode_steps == gym.spec(base).max_episode_steps
    assert env.observation_space.shape == gym.make(base).observation_space.shape


def test_time_limit_override_reaches_the_masked_env() -> None:
    # the inner env carries no TimeLimit of its own, so a longer limit is really longer
    env = gym.make("pomdp/PendulumNoVel-v1", max_episode_steps=250)
    env.reset(seed=0)
    steps, truncated = 0, False
    while not truncated:
        _, _, _, truncated, _ = env.step(np.zeros(1, dtype=np.float32))
        steps += 1
    assert steps == 250


def test_registration_is_idempotent() -> None:
    before = {k: v for k, v in gym.registry.items() if k.startswith("pomdp/")}
    envs.register_all()
    after = {k: v for k, v in gym.registry.items() if k.startswith("pomdp/")}
    assert before == after


def test_reference_returns_reject_non_memory_envs() -> None:
    with pytest.raises(ValueError, match="env_id"):
        envs.reference_returns("pomdp/CartPoleNoVel-v1")


def test_gymnasium_entry_point_names_register_all() -> None:
    # Gymnasium < 1.0 loads this group on `import gymnasium`; 1.x relies on the startup hook
    from importlib import metadata

    points = [ep for ep in metadata.entry_points(group="gymnasium.envs") if ep.value.startswith("recurrent_rl")]
    if not points:
        pytest.skip("recurrent_rl's metadata is not installed (run scripts/setup.sh)")
    (point,) = {(ep.name, ep.value) for ep in points}
    assert point == ("pomdp", "recurrent_rl.envs.registry:register_all")
    assert points[0].load() is envs.register_all


def test_registration_inside_the_old_plugin_loader_namespace() -> None:
    """Gymnasium < 1.0 runs the entry point inside gym.namespace(<entry point name>)."""
    from gymnasium.envs import registration

    saved = {k: v for k, v in gym.registry.items() if k.startswith("pomdp/")}
    try:
        for env_id in saved:
            del gym.registry[env_id]
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no "namespace is being overridden" warning
            with registration.namespace("pomdp"):
                envs.register_all()
        assert {k: v for k, v in gym.registry.items() if k.startswith("pomdp/")} == saved
    finally:
        gym.registry.update(saved)


@pytest.mark.parametrize("old", sorted(envs.DEPRECATED_IDS))
def test_deprecated_ids_warn_once_and_make_the_same_env(old: str) -> None:
    """One id per env: the old ids still make their env, with one warning naming the id to use."""
    from recurrent_rl.envs import registry

    new = f"pomdp/{envs.DEPRECATED_IDS[old]}"
    registry._warned.discard(old)
    with pytest.warns(registry.DeprecatedEnvId, match=f"pomdp/{old} is deprecated: it is {new}, the same env"):
        deprecated = gym.make(f"pomdp/{old}")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per process: the second make is silent
        again = gym.make(f"pomdp/{old}")
    canonical = gym.make(new)
    for env in (deprecated, again):
        assert type(env.unwrapped) is type(canonical.unwrapped)
        assert env.observation_space == canonical.observation_space and env.action_space == canonical.action_space
    # the same episode from the same seed and actions
    rng = np.random.default_rng(0)
    actions = [int(rng.integers(canonical.action_space.n)) for _ in range(40)]
    steps = []
    for env in (deprecated, canonical):
        obs, _ = env.reset(seed=3)
        trace = [obs]
        for action in actions:
            obs, reward, terminated, truncated, _ = env.step(action)
            trace += [obs, reward]
            if terminated or truncated:
                obs, _ = env.reset(seed=4)
                trace.append(obs)
        steps.append(trace)
    assert all(np.array_equal(a, b) for a, b in zip(*steps))
    assert f"pomdp/{old}" not in envs.suite_ids() and new in envs.suite_ids()


def test_the_presets_of_deprecated_ids_point_to_the_one_preset(tmp_path):
    from recurrent_rl.config.presets import RENAMED, load_preset, presets_by_env
    from recurrent_rl.config.schema import ConfigError

    for old, new in RENAMED.items():
        with pytest.raises(ConfigError, match=f"use --preset {new}"):
            load_preset(old)
    by_env = presets_by_env()
    for old, canonical in envs.DEPRECATED_IDS.items():
        assert f"pomdp/{old}" not in by_env and len(by_env[f"pomdp/{canonical}"]) == 1
