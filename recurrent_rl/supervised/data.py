"""Datasets of variable-length sequences, padded minibatches, and trajectories recorded from envs.

- :class:`SequenceDataset`: sequences ``(T_i, F)`` with one target per sequence (many-to-one) or
  one per step (many-to-many), from plain arrays (:meth:`SequenceDataset.from_arrays`) or from
  recorded trajectories (:meth:`Trajectories.to_dataset`).
- :func:`collate`: a padded time-major :class:`Batch` ``(T, B, F)`` with lengths and masks.
- :func:`record_trajectories`: run any Gymnasium env with any policy (random, a callable, or a
  trained SB3 / recurrent_rl model) and keep observations, actions, rewards, episode
  boundaries, the hidden state the env exposes and the next observations.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch as th

from recurrent_rl.supervised.config import TARGETS


class Batch(NamedTuple):
    """A padded minibatch. Steps ``t >= lengths[b]`` are padding (zeros)."""

    x: th.Tensor  # (T, B, F) float32
    lengths: th.Tensor  # (B,) int64
    y: th.Tensor  # per step: (T, B, D) float32 or (T, B) int64; per sequence: (B, D) or (B,)
    y_mask: th.Tensor | None  # per step: (T, B) bool, True where the step has a target; else None


@dataclass
class SequenceDataset:
    """Variable-length sequences with targets.

    :param inputs: one ``(T_i, F)`` array per sequence (the same F for all)
    :param targets: per sequence (``per_step=False``): a class index or a ``(D,)`` vector; per step:
        ``(T_i,)`` class indices or ``(T_i, D)`` values
    :param per_step: whether targets are per step (many-to-many)
    :param target_masks: per step only: optional ``(T_i,)`` bool, False where a step has no target
    """

    inputs: list[np.ndarray]
    targets: list[np.ndarray]
    per_step: bool
    target_masks: list[np.ndarray] | None = None

    def __post_init__(self) -> None:
        if len(self.inputs) == 0:
            raise ValueError("the dataset is empty: it has no sequences")
        self.inputs = [np.asarray(x, dtype=np.float32) for x in self.inputs]
        self.inputs = [x[:, None] if x.ndim == 1 else x for x in self.inputs]  # a scalar per step
        first = self.inputs[0]
        for i, x in enumerate(self.inputs):
            if x.ndim != 2:
                raise ValueError(f"sequence {i} has shape {x.shape}; each sequence must be (steps, features)")
            if len(x) == 0:
                raise ValueError(f"sequence {i} is empty (0 steps); every sequence needs at least one step")
            if x.shape[1] != first.shape[1]:
                raise ValueError(
                    f"inconsistent feature size: sequence {i} has {x.shape[1]} features per step but sequence 0 "
                    f"has {first.shape[1]}; every sequence needs the same number of features"
                )
        if len(self.targets) != len(self.inputs):
            raise ValueError(f"got {len(self.inputs)} input sequences but {len(self.targets)} targets: one each")
        self.targets = [np.asarray(y) for y in self.targets]
        kinds = {y.dtype.kind for y in self.targets}
        if not kinds <= set("iuf") or len(kinds & set("iu")) and "f" in kinds:
            raise ValueError(f"targets must be all integers (class labels) or all floats (values), got dtypes {kinds}")
        if self.per_step:
            for i, (x, y) in enumerate(zip(self.inputs, self.targets)):
                if len(y) != len(x):
                    raise ValueError(f"sequence {i} has {len(x)} steps but {len(y)} per-step targets")
        if self.target_masks is not None:
            if not self.per_step:
                raise ValueError("target_masks only apply to per-step targets (per_step=True)")
            self.target_masks = [np.asarray(m, dtype=bool) for m in self.target_masks]
            for i, (x, m) in enumerate(zip(self.inputs, self.target_masks)):
                if m.shape != (len(x),):
                    raise ValueError(f"target mask {i} has shape {m.shape}, expected ({len(x)},)")
        shapes = {y.shape[1:] if self.per_step else y.shape for y in self.targets}
        if len(shapes) > 1:
            raise ValueError(f"targets have inconsistent shapes {sorted(shapes)}; every target needs the same size")
        self.targets = [y.astype(np.int64) if self.is_classification else y.astype(np.float32) for y in self.targets]

    @classmethod
    def from_arrays(
        cls,
        inputs: np.ndarray | Sequence[np.ndarray],
        targets: np.ndarray | Sequence[np.ndarray],
        lengths: Sequence[int] | None = None,
        per_step: bool | None = None,
    ) -> SequenceDataset:
        """From a padded array ``(N, T, F)`` (with ``lengths``) or a list of ``(T_i, F)`` arrays.

        ``per_step`` defaults to "every target has one entry per step of its sequence" (for a padded
        array: ``targets.shape[1] == T``); pass it when a per-sequence vector happens to have as
        many values as its sequence has steps.
        """
        ys = [np.asarray(y) for y in targets]
        if isinstance(inputs, np.ndarray) and inputs.ndim == 3:
            T = inputs.shape[1]
            lengths = [T] * len(inputs) if lengths is None else [int(n) for n in lengths]
            if len(lengths) != len(inputs):
                raise ValueError(f"got {len(lengths)} lengths for {len(inputs)} sequences")
            if per_step is None:
                per_step = all(y.ndim >= 1 and len(y) == T for y in ys)
            seqs = [inputs[i, :n] for i, n in enumerate(lengths)]
            if per_step:
                ys = [y[:n] for y, n in zip(ys, lengths)]  # padded per-step targets cut to length
        else:
            seqs = [np.asarray(x) for x in inputs]
            if per_step is None:
                per_step = len(ys) == len(seqs) and all(y.ndim >= 1 and len(y) == len(x) for x, y in zip(seqs, ys))
        return cls(list(seqs), ys, per_step=per_step)

    # --- what it holds ------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.inputs)

    @property
    def input_size(self) -> int:
        return int(self.inputs[0].shape[1])

    @property
    def is_classification(self) -> bool:
        return self.targets[0].dtype.kind in "iu"

    @property
    def target_size(self) -> int:
        """Values per target (regression) or number of classes seen (max label + 1)."""
        if self.is_classification:
            return int(max(y.max() for y in self.targets)) + 1
        y = self.targets[0]
        shape = y.shape[1:] if self.per_step else y.shape
        return int(np.prod(shape)) if shape else 1

    @property
    def n_steps(self) -> int:
        return int(sum(len(x) for x in self.inputs))

    def subset(self, indices: Sequence[int] | np.ndarray) -> SequenceDataset:
        pick = [int(i) for i in indices]
        masks = None if self.target_masks is None else [self.target_masks[i] for i in pick]
        return SequenceDataset([self.inputs[i] for i in pick], [self.targets[i] for i in pick], self.per_step, masks)

    def split(self, val_fraction: float, seed: int = 0) -> tuple[SequenceDataset, SequenceDataset | None]:
        """A random (seeded) train/validation split by sequence; ``val_fraction=0`` gives no validation set."""
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        n_val = int(round(len(self) * val_fraction))
        if val_fraction > 0 and (n_val == 0 or n_val == len(self)):
            raise ValueError(
                f"val_fraction={val_fraction} of {len(self)} sequences leaves an empty split: "
                "record more sequences or change val_fraction (0 turns validation off)"
            )
        order = np.random.default_rng(seed).permutation(len(self))
        return self.subset(order[n_val:]), (self.subset(order[:n_val]) if n_val else None)

    def input_statistics(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-feature mean and std over all steps."""
        steps = np.concatenate(self.inputs)
        return steps.mean(0), steps.std(0)

    def target_statistics(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-value mean and std of regression targets (over valid steps)."""
        if self.per_step:
            masks: Sequence[np.ndarray | None] = [None] * len(self) if self.target_masks is None else self.target_masks
            ys = [y.reshape(len(y), -1) if m is None else y.reshape(len(y), -1)[m] for y, m in zip(self.targets, masks)]
            values = np.concatenate(ys)
        else:
            values = np.stack([y.reshape(-1) for y in self.targets])
        return values.mean(0), values.std(0)


def collate(dataset: SequenceDataset, indices: Sequence[int] | np.ndarray) -> Batch:
    """Pad sequences ``indices`` of ``dataset`` into one time-major :class:`Batch`."""
    xs = [dataset.inputs[i] for i in indices]
    lengths = np.array([len(x) for x in xs])
    T, B, F = int(lengths.max()), len(xs), dataset.input_size
    x = np.zeros((T, B, F), dtype=np.float32)
    for b, seq in enumerate(xs):
        x[: len(seq), b] = seq
    ys = [dataset.targets[i] for i in indices]
    if not dataset.per_step:
        y = np.stack([t.reshape(-1) if not dataset.is_classification else t for t in ys])
        return Batch(th.from_numpy(x), th.from_numpy(lengths), th.from_numpy(y), None)
    tail = () if dataset.is_classification else (dataset.target_size,)
    y = np.zeros((T, B, *tail), dtype=ys[0].dtype)
    mask = np.zeros((T, B), dtype=bool)
    for b, (seq, n) in enumerate(zip(ys, lengths)):
        y[:n, b] = seq.reshape(n, *tail)
        mask[:n, b] = True if dataset.target_masks is None else dataset.target_masks[indices[b]]
    return Batch(th.from_numpy(x), th.from_numpy(lengths), th.from_numpy(y), th.from_numpy(mask))


# --- trajectories from environments ---------------------------------------------------------------

# Masked-velocity ids that this module once built itself, before the env suite registered them
# (it does now: make_env finds them in Gymnasium's registry). Kept for scripts that read it.
FALLBACK_ENVS = {"pomdp/PendulumNoVel-v1": ("Pendulum-v1", (2,)), "pomdp/CartPoleNoVel-v1": ("CartPole-v1", (1, 3))}


def make_env(env_id: str, **kwargs: Any) -> gym.Env:
    """``gym.make(env_id, **kwargs)``: :func:`recurrent_rl.config.envs.make_env`, which says what is wrong
    (an unknown id, bad kwargs) as a :class:`~recurrent_rl.io.run_folder.RunError`."""
    from recurrent_rl.config.envs import make_env as make

    return make(env_id, kwargs)


@dataclass
class Trajectories:
    """Recorded episodes, one array per episode (the last one may be cut by the step budget).

    ``observations[i][t]`` is what the policy saw at step t; ``next_observations[i][t]`` what the
    env returned after ``actions[i][t]`` (the terminal observation at the end); ``states[i][t]``
    the hidden state at step t (``info["state"]`` or ``env.unwrapped.state``), or None.
    """

    observations: list[np.ndarray]  # each (T_i, *obs_shape)
    actions: list[np.ndarray]  # each (T_i, *action_shape)
    rewards: list[np.ndarray]  # each (T_i,)
    next_observations: list[np.ndarray]  # each (T_i, *obs_shape)
    terminated: list[bool]
    truncated: list[bool]
    states: list[np.ndarray] | None = None  # each (T_i, S)

    @property
    def n_transitions(self) -> int:
        return int(sum(len(r) for r in self.rewards))

    @property
    def n_episodes(self) -> int:
        return len(self.rewards)

    def episode_starts(self) -> list[np.ndarray]:
        """Per episode ``(T_i,)`` flags: 1 at the first step (the recurrent convention)."""
        return [np.eye(1, len(r), dtype=np.float32)[0] for r in self.rewards]

    def to_dataset(self, target: str = "state", target_indices: Sequence[int] | None = None) -> SequenceDataset:
        """A many-to-many dataset: observations in, the hidden state (or next observation) out.

        :param target: ``"state"`` (what the env hides) or ``"next_observation"`` (self-supervised)
        :param target_indices: keep only these entries of the target (e.g. the masked velocities)
        """
        if target not in TARGETS:
            raise ValueError(f"target={target!r} is not valid; choose one of {list(TARGETS)}")
        if target == "state":
            if self.states is None:
                raise ValueError(
                    "these trajectories have no hidden state: the env neither puts it in info['state'] nor has "
                    "env.unwrapped.state. Use target='next_observation', or record with state_fn=..."
                )
            ys = self.states
        else:
            ys = self.next_observations
        ys = [y.reshape(len(y), -1).astype(np.float32) for y in ys]
        if target_indices is not None:
            size = ys[0].shape[1]
            bad = [i for i in target_indices if not -size <= int(i) < size]
            if bad:
                raise ValueError(
                    f"target_indices {bad} do not exist in a {target} of size {size} (valid 0..{size - 1})"
                )
            ys = [y[:, list(target_indices)] for y in ys]
        xs = [o.reshape(len(o), -1) for o in self.observations]
        return SequenceDataset(xs, ys, per_step=True)

    def save(self, path: str | Path) -> None:
        """Write to one ``.npz`` (episodes concatenated, with their lengths), atomically.

        ``.npz`` is added to ``path`` if missing.
        """
        from recurrent_rl.io.run_folder import atomic_open

        # Any: numpy's stubs would otherwise match these keyword arrays against allow_pickle
        arrays: dict[str, Any] = {
            k: np.concatenate(getattr(self, k)) for k in ("observations", "actions", "rewards", "next_observations")
        }
        if self.states is not None:
            arrays["states"] = np.concatenate(self.states)
        path = Path(path)
        with atomic_open(path if path.suffix == ".npz" else path.with_name(path.name + ".npz"), "wb") as file:
            np.savez_compressed(
                file,
                lengths=np.array([len(r) for r in self.rewards]),
                terminated=np.array(self.terminated),
                truncated=np.array(self.truncated),
                **arrays,
            )

    @classmethod
    def load(cls, path: str | Path) -> Trajectories:
        with np.load(path) as data:
            cuts = np.cumsum(data["lengths"])[:-1]
            split = {k: np.split(data[k], cuts) for k in ("observations", "actions", "rewards", "next_observations")}
            states = np.split(data["states"], cuts) if "states" in data else None
            return cls(
                **split, terminated=data["terminated"].tolist(), truncated=data["truncated"].tolist(), states=states
            )


PolicyLike = Any  # "random", a callable obs -> action, or an object with SB3's predict()


def _hidden_state(env: gym.Env, info: dict[str, Any], state_fn: Callable[[gym.Env], Any] | None) -> np.ndarray | None:
    if state_fn is not None:
        return np.asarray(state_fn(env), dtype=np.float32).reshape(-1)
    if "state" in info:
        return np.asarray(info["state"], dtype=np.float32).reshape(-1)
    state = getattr(env.unwrapped, "state", None)  # CartPole, Pendulum, ... keep it here
    return None if state is None else np.asarray(state, dtype=np.float32).reshape(-1)


def record_trajectories(
    env: str | gym.Env | Callable[[], gym.Env],
    n_steps: int,
    policy: PolicyLike = "random",
    seed: int = 0,
    deterministic: bool = False,
    state_fn: Callable[[gym.Env], Any] | None = None,
) -> Trajectories:
    """Run ``policy`` in ``env`` for ``n_steps`` transitions (the last episode may be cut short).

    :param env: an env id (see :func:`make_env`), an env, or a function making one
    :param policy: ``"random"`` (the action space, seeded), a callable ``obs -> action``, or a
        model with SB3's ``predict(obs, state, episode_start, deterministic)`` (its memory is carried)
    :param state_fn: how to read the hidden state, for envs that put it neither in
        ``info["state"]`` nor in ``env.unwrapped.state``
    """
    if n_steps < 1:
        raise ValueError(f"n_steps must be a positive integer, got {n_steps}")
    env = make_env(env) if isinstance(env, str) else env if isinstance(env, gym.Env) else env()
    env.action_space.seed(seed)
    obs, info = env.reset(seed=seed)
    episodes: list[dict[str, list[Any]]] = []
    current: dict[str, list[Any]] = {k: [] for k in ("obs", "act", "rew", "next", "state")}
    memory, start = None, np.ones(1)
    for _ in range(n_steps):
        if isinstance(policy, str):
            if policy != "random":
                raise ValueError(f"policy={policy!r}: use 'random', a callable obs -> action, or a trained model")
            action = env.action_space.sample()
        elif hasattr(policy, "predict"):
            action, memory = policy.predict(obs, state=memory, episode_start=start, deterministic=deterministic)
        else:
            action = policy(obs)
        current["state"].append(_hidden_state(env, info, state_fn))
        next_obs, reward, terminated, truncated, info = env.step(action)
        for key, value in (("obs", obs), ("act", action), ("rew", reward), ("next", next_obs)):
            current[key].append(np.asarray(value))
        obs, start = next_obs, np.zeros(1)
        if terminated or truncated:
            episodes.append(dict(current, end=[bool(terminated), bool(truncated)]))
            current = {k: [] for k in current}
            obs, info = env.reset()
            start = np.ones(1)
    if current["obs"]:
        episodes.append(dict(current, end=[False, True]))  # cut by the step budget: a truncation
    env.close()
    has_state = all(s is not None for ep in episodes for s in ep["state"])
    return Trajectories(
        observations=[np.stack(ep["obs"]) for ep in episodes],
        actions=[np.stack(ep["act"]) for ep in episodes],
        rewards=[np.asarray(ep["rew"], dtype=np.float32) for ep in episodes],
        next_observations=[np.stack(ep["next"]) for ep in episodes],
        terminated=[ep["end"][0] for ep in episodes],
        truncated=[ep["end"][1] for ep in episodes],
        states=[np.stack(ep["state"]) for ep in episodes] if has_state else None,
    )
