"""Observation wrappers: masking, flicker, Gaussian noise and previous action/reward."""

from __future__ import annotations

import time
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from recurrent_rl import envs
from recurrent_rl.envs import FlickerObservation, GaussianObservationNoise, MaskObservation, PreviousActionReward


def _random_steps(env: gym.Env, steps: int, seed: int = 0):
    """Yield (obs, info, action, reward) for ``steps`` random steps, resetting at episode ends.

    ``action`` and ``reward`` are those that produced ``obs`` (None right after a reset).
    """
    env.action_space.seed(seed)
    obs, info = env.reset(seed=seed)
    yield obs, info, None, None
    for _ in range(steps):
        action = env.action_space.sample()
        obs, reward, terminated, truncated, info = env.step(action)
        yield obs, info, action, reward
        if terminated or truncated:
            obs, info = env.reset()
            yield obs, info, None, None


# --- masking -----------------------------------------------------------------------------------
@pytest.mark.parametrize("env_id", envs.masked_ids())
def test_masked_dimensions_are_always_zero_and_state_is_the_full_observation(env_id: str) -> None:
    env = gym.make(env_id)
    base_id = env.spec.kwargs["env_id"]
    hidden = list(envs.VELOCITY_INDICES[base_id])
    base = gym.make(base_id)  # the same seed and actions give the same trajectory, unmasked
    unmasked = _random_steps(base, 400)
    for (obs, info, *_), (full, *_) in zip(_random_steps(env, 400), unmasked):
        assert np.all(obs[hidden] == 0)
        np.testing.assert_array_equal(info["state"], full)
        keep = np.ones(obs.shape, dtype=bool)
        keep[hidden] = False
        np.testing.assert_array_equal(obs[keep], full[keep])


def test_mask_rejects_indices_that_do_not_exist() -> None:
    with pytest.raises(ValueError, match=r"indices \[4\] do not exist .* valid range is 0..3"):
        MaskObservation(gym.make("CartPole-v1"), [1, 4])
    with pytest.raises(ValueError, match="flat Box"):
        MaskObservation(gym.make("FrozenLake-v1"), [0])


# --- flicker -----------------------------------------------------------------------------------
def test_flicker_rate_matches_p() -> None:
    p, n = 0.3, 20_000
    env = FlickerObservation(gym.make("CartPole-v1"), p)
    blanks = 0
    for count, (obs, info, *_) in enumerate(_random_steps(env, n)):
        if info["flickered"]:
            blanks += 1
            assert not obs.any()
        else:
            np.testing.assert_array_equal(obs, info["state"])  # untouched when shown
    total = count + 1
    # binomial: 4 standard deviations is ~0.013 here; a fixed seed makes this deterministic
    assert abs(blanks / total - p) <= 4 * np.sqrt(p * (1 - p) / total)


@pytest.mark.parametrize("p, expected", [(0.0, False), (1.0, True)])
def test_flicker_extremes(p: float, expected: bool) -> None:
    env = FlickerObservation(envs.RepeatFirst(), p)
    assert all(info["flickered"] is expected for _, info, *_ in _random_steps(env, 100))


def test_flicker_is_deterministic_under_a_seed_and_keeps_the_task_state() -> None:
    def pattern(seed: int) -> list[bool]:
        env = FlickerObservation(gym.make("pomdp/TMaze-L10-v0"), 0.5)
        flags = []
        for _, info, *_ in _random_steps(env, 200, seed=seed):
            assert info["state"].shape == (1,)  # the cue, not the flickered observation
            flags.append(info["flickered"])
        return flags

    assert pattern(3) == pattern(3)
    assert pattern(3) != pattern(4)


def test_random_wrappers_leave_the_env_episodes_unchanged() -> None:
    # they draw from their own generator, so the task below sees the same episodes, across resets
    clean = [info["state"] for _, info, *_ in _random_steps(gym.make("pomdp/RepeatFirst-Easy-v0"), 300)]
    wrapped = GaussianObservationNoise(FlickerObservation(gym.make("pomdp/RepeatFirst-Easy-v0"), 0.5), 0.3)
    np.testing.assert_array_equal(
        np.stack(clean), np.stack([info["state"] for _, info, *_ in _random_steps(wrapped, 300)])
    )


# --- Gaussian noise ----------------------------------------------------------------------------
def test_noise_has_the_requested_std_and_is_seeded() -> None:
    sigma = 0.25
    env = GaussianObservationNoise(gym.make("CartPole-v1"), sigma)
    assert np.all(np.isinf(env.observation_space.high))
    residuals = np.stack([obs - info["state"] for obs, info, *_ in _random_steps(env, 5000)])
    # ~20k draws: the sample std's standard error is sigma / sqrt(2 * 20k) ~ 0.0013
    assert residuals.std() == pytest.approx(sigma, abs=0.005)
    assert abs(residuals.mean()) < 0.01
    first = [obs for obs, *_ in _random_steps(env, 50, seed=5)]
    second = [obs for obs, *_ in _random_steps(env, 50, seed=5)]
    np.testing.assert_array_equal(np.stack(first), np.stack(second))


def test_zero_noise_changes_nothing() -> None:
    env = GaussianObservationNoise(envs.RepeatPrevious(), 0.0)
    assert env.observation_space == env.env.observation_space
    clean = envs.RepeatPrevious()
    for (obs, *_), (expected, *_) in zip(_random_steps(env, 100), _random_steps(clean, 100)):
        np.testing.assert_array_equal(obs, expected)


# --- previous action and reward ----------------------------------------------------------------
@pytest.mark.parametrize("env_id", ["pomdp/TMaze-L10-v0", "pomdp/CountRecall-Easy-v0", "pomdp/PendulumNoVel-v1"])
def test_previous_action_and_reward_are_exactly_the_last_ones(env_id: str) -> None:
    env = PreviousActionReward(gym.make(env_id))
    plain = gym.make(env_id)
    space = plain.action_space
    width = int(space.n) if isinstance(space, gym.spaces.Discrete) else int(np.prod(space.shape))
    resets = 0
    for (obs, _, action, reward), (base_obs, *_) in zip(_random_steps(env, 600), _random_steps(plain, 600)):
        assert obs.shape == (base_obs.shape[0] + width + 1,)
        np.testing.assert_array_equal(obs[: base_obs.shape[0]], base_obs)
        prev_action, prev_reward = obs[base_obs.shape[0] : -1], obs[-1]
        if action is None:  # right after a reset
            resets += 1
            assert not prev_action.any() and prev_reward == 0
            continue
        expected = np.eye(width)[action] if isinstance(space, gym.spaces.Discrete) else np.asarray(action).reshape(-1)
        np.testing.assert_array_equal(prev_action, expected.astype(obs.dtype))
        assert prev_reward == np.float32(reward)
    assert resets > 1  # at least one episode boundary was crossed


def test_box_actions_are_clipped_to_the_action_bounds() -> None:
    env = PreviousActionReward(gym.make("Pendulum-v1"))
    env.reset(seed=0)
    obs, *_ = env.step(np.array([5.0], dtype=np.float32))
    assert obs[3] == 2.0  # Pendulum's torque limit, the torque actually applied


# --- the wrappers together ---------------------------------------------------------------------
@pytest.mark.parametrize("base", [gym.make("CartPole-v1").unwrapped, envs.TMaze()], ids=type)
def test_stacked_wrappers_pass_check_env(base: gym.Env) -> None:
    env = PreviousActionReward(GaussianObservationNoise(FlickerObservation(MaskObservation(base, [2]), 0.2), 0.1))
    # the innermost hidden state wins: the full observation for CartPole, the cue for the T-maze
    _, info = env.reset(seed=0)
    assert info["state"].shape == ((1,) if isinstance(base, envs.TMaze) else (4,))
    with warnings.catch_warnings():
        # expected for a wrapped env with unbounded (noisy) observations
        warnings.filterwarnings("ignore", message=".*(different from the unwrapped|infinity|not having a spec).*")
        check_env(env, skip_render_check=True)


# --- invalid parameters ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda: FlickerObservation(gym.make("CartPole-v1"), -0.1),
            r"p must be a real number in \[0.0, 1.0\], got -0.1",
        ),
        (lambda: FlickerObservation(gym.make("CartPole-v1"), 1.5), r"p must be a real number in \[0.0, 1.0\]"),
        (lambda: FlickerObservation(gym.make("CartPole-v1"), float("nan")), r"p must be a real number"),
        (lambda: FlickerObservation(gym.make("FrozenLake-v1"), 0.1), r"Box observation space"),
        (lambda: GaussianObservationNoise(gym.make("CartPole-v1"), -1.0), r"sigma must be a real number in >= 0.0"),
        (lambda: GaussianObservationNoise(gym.make("CartPole-v1"), "big"), r"sigma"),
        (lambda: PreviousActionReward(gym.make("FrozenLake-v1")), r"flat \(1-D\) Box observation space"),
    ],
)
def test_invalid_wrapper_parameters_raise_value_error(make, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_step_cost_keeps_the_episodes_and_spends_its_time(monkeypatch):
    from recurrent_rl.envs import StepCost

    plain, slow = gym.make("pomdp/CartPoleNoVel-v1"), StepCost(gym.make("pomdp/CartPoleNoVel-v1"), 0.002)
    slept = []
    monkeypatch.setattr("recurrent_rl.envs.latency.time.sleep", slept.append)
    a, _ = plain.reset(seed=4)
    b, _ = slow.reset(seed=4)
    for _ in range(20):
        a, *rest_a = plain.step(1)
        b, *rest_b = slow.step(1)
        np.testing.assert_array_equal(a, b)
        assert rest_a[:3] == rest_b[:3]
    assert slept == [0.002] * 21  # the reset and every step
    monkeypatch.undo()
    busy = StepCost(gym.make("pomdp/CartPoleNoVel-v1"), 0.02, busy=True)
    busy.reset(seed=0)
    cpu = time.process_time()
    busy.step(0)
    assert time.process_time() - cpu >= 0.015  # computed, not slept (a lower bound only)
    with pytest.raises(ValueError, match="seconds must be a real number"):
        StepCost(gym.make("pomdp/CartPoleNoVel-v1"), -1.0)
