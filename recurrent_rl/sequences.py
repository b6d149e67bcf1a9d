"""Pure functions on sequences: episode segments inside a batch, and fixed-length chunks.

Shapes use one letter set for the whole package: T time, B batch (columns), N segments,
F features, H hidden, L layers, K chunks per env row, E envs.

A batch of sequences ``(T, B, ...)`` with per-step ``episode_starts`` contains *segments*:
maximal runs of steps inside one column that belong to one episode. Running a recurrent core
over each segment separately (zero initial state for segments that begin at an episode start)
is exactly what stepping the core with resets computes, and it lets the whole batch go through
one fused ``nn.GRU`` / ``nn.LSTM`` call instead of a Python loop over time.

A leaf module. May import: nothing of the package (NumPy, torch).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch as th


@dataclass(frozen=True)
class Segments:
    """Where each step of a ``(T, B)`` batch lands when the batch is cut at episode starts.

    Steps are numbered column-major: step ``(t, b)`` has flat index ``b * T + t``.
    """

    time_index: th.Tensor  # (B*T,) position of the step inside its segment
    segment_index: th.Tensor  # (B*T,) which segment the step belongs to
    lengths: th.Tensor  # (N,) int64 on CPU, as pack_padded_sequence wants
    first_segment: th.Tensor  # (B,) segment that opens each column (t = 0)
    last_segment: th.Tensor  # (B,) segment that closes each column (t = T-1)
    n_steps: int  # T
    n_columns: int  # B

    @property
    def n_segments(self) -> int:
        return int(self.lengths.numel())

    @property
    def has_inner_resets(self) -> bool:
        """True when some episode starts after t = 0 (else each column is one segment)."""
        return self.n_segments > self.n_columns

    @classmethod
    def from_episode_starts(cls, episode_starts: th.Tensor) -> Segments:
        """Cut a ``(T, B)`` batch at every episode start (any non-zero flag)."""
        if episode_starts.dim() != 2:
            raise ValueError(f"episode_starts must have shape (T, B), got {tuple(episode_starts.shape)}")
        T, B = episode_starts.shape
        starts = episode_starts.detach().to("cpu").t().reshape(-1) != 0  # (B*T,) column-major
        starts[::T] = True  # every column opens a segment at t = 0
        segment_index = th.cumsum(starts, 0) - 1  # (B*T,)
        start_positions = th.nonzero(starts).squeeze(1)  # (N,)
        time_index = th.arange(B * T) - start_positions[segment_index]
        ends = th.cat([start_positions[1:], th.tensor([B * T])])
        device = episode_starts.device
        return cls(
            time_index=time_index.to(device),
            segment_index=segment_index.to(device),
            lengths=ends - start_positions,
            first_segment=segment_index[::T].to(device),
            last_segment=segment_index[T - 1 :: T].to(device),
            n_steps=T,
            n_columns=B,
        )

    def pad(self, x: th.Tensor) -> th.Tensor:
        """``(T, B, F)`` -> ``(T, N, F)``: each segment starts at t = 0, zero padded after."""
        T, B = self.n_steps, self.n_columns
        flat = x.transpose(0, 1).reshape(B * T, *x.shape[2:])  # (B*T, F)
        padded = x.new_zeros(T, self.n_segments, *x.shape[2:])  # (T, N, F)
        return padded.index_put((self.time_index, self.segment_index), flat)

    def unpad(self, padded: th.Tensor) -> th.Tensor:
        """Inverse of :meth:`pad`: ``(T, N, F)`` -> ``(T, B, F)``."""
        T, B = self.n_steps, self.n_columns
        flat = padded[self.time_index, self.segment_index]  # (B*T, F)
        return flat.reshape(B, T, *padded.shape[2:]).transpose(0, 1)


def map_obs(fn: Callable[[Any], Any], obs: Any) -> Any:
    """``fn`` applied to a batch of observations: an array or tensor, or each entry of a Dict observation."""
    if isinstance(obs, dict):
        return {key: fn(value) for key, value in obs.items()}
    return fn(obs)


def window_rows(array: np.ndarray, sequence_length: int, burn_in: int) -> np.ndarray:
    """Overlapping windows of a rollout array ``(k + S, E, ...)`` whose first ``k = burn_in`` rows
    are the steps before the rollout: ``(k + T, K*E, ...)`` with T = sequence_length, K = S / T.

    Window ``c * E + e`` holds steps ``[c*T - k, (c+1)*T)`` of env ``e`` (rollout numbering): the
    k steps before chunk c, then chunk c itself, as :func:`chunk_rows` orders the chunks. With
    ``burn_in = 0`` it is :func:`chunk_rows`.
    """
    n_rows, E = array.shape[:2]
    S = n_rows - burn_in
    if S % sequence_length:
        raise ValueError(f"the rollout length {S} is not a multiple of sequence_length={sequence_length}")
    K = S // sequence_length
    index = np.arange(burn_in + sequence_length)[:, None] + sequence_length * np.arange(K)[None, :]  # (k+T, K)
    windows = array[index]  # (k+T, K, E, ...)
    return windows.reshape(burn_in + sequence_length, K * E, *array.shape[2:])


def window_starts(n_steps: int, sequence_length: int, burn_in: int) -> list[int]:
    """The rollout steps where the windows of :func:`window_rows` begin, chunk by chunk:
    ``c * sequence_length - burn_in`` (negative: a step of the previous rollout)."""
    return [c * sequence_length - burn_in for c in range(n_steps // sequence_length)]


def check_burn_in(burn_in: Any, n_steps: int) -> int:
    """``burn_in`` if it is an integer in ``[0, n_steps]``, else a ValueError saying so."""
    if isinstance(burn_in, bool) or not isinstance(burn_in, (int, np.integer)) or not 0 <= burn_in <= n_steps:
        raise ValueError(
            f"burn_in must be an integer from 0 to n_steps={n_steps} (the steps of context before each chunk, "
            f"taken from the rollout and the end of the one before), got {burn_in!r}"
        )
    return int(burn_in)


def check_refresh_options(
    state_refresh: Any, burn_in: Any, burn_in_gradient: Any, n_steps: int
) -> tuple[bool, int, bool]:
    """The options as (bool, int, bool), or a ValueError naming the bad one and its valid values."""
    for name, value in (("state_refresh", state_refresh), ("burn_in_gradient", burn_in_gradient)):
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be True or False, got {value!r}")
    burn_in = check_burn_in(burn_in, n_steps)
    if burn_in_gradient and not burn_in:
        raise ValueError("burn_in_gradient=True lets the gradient through the burn-in steps, which needs burn_in > 0")
    return state_refresh, burn_in, burn_in_gradient


def chunk_rows(array: np.ndarray, sequence_length: int) -> np.ndarray:
    """Cut a rollout array ``(S, E, ...)`` into chunks ``(T, K*E, ...)`` with T = sequence_length.

    Chunk ``k * E + e`` holds steps ``[k*T, (k+1)*T)`` of env ``e``, in time order.
    """
    S, E = array.shape[:2]
    if S % sequence_length:
        raise ValueError(f"the rollout length {S} is not a multiple of sequence_length={sequence_length}")
    K = S // sequence_length
    rest = array.shape[2:]
    chunks = array.reshape(K, sequence_length, E, *rest)  # (K, T, E, ...)
    chunks = np.swapaxes(chunks, 0, 1)  # (T, K, E, ...)
    return chunks.reshape(sequence_length, K * E, *rest)


def _divisors(n: int, largest: int = 4096) -> list[int]:
    """The divisors of ``n`` up to ``largest``, and ``n`` itself: suggestions, found in bounded time
    however large ``n`` is (a config from a file may say ``n_steps: 1000000000000``)."""
    return [d for d in range(1, min(n, largest) + 1) if n % d == 0] + ([n] if n > largest else [])


def check_sequence_sizes(n_steps: int, n_envs: int, batch_size: int, sequence_length: int) -> None:
    """Check that rollouts cut into whole chunks and minibatches hold whole chunks.

    Raises ``ValueError`` naming the setting to change.
    """
    if sequence_length < 1:
        raise ValueError(f"sequence_length must be a positive integer, got {sequence_length}")
    if n_steps % sequence_length:
        divisors = _divisors(n_steps)
        raise ValueError(
            f"sequence_length={sequence_length} does not divide n_steps={n_steps}: each env's rollout "
            f"must cut into whole chunks. Use a sequence_length among {divisors}, or change n_steps."
        )
    total = n_steps * n_envs
    if batch_size % sequence_length:
        raise ValueError(
            f"batch_size={batch_size} is not a multiple of sequence_length={sequence_length}: minibatches "
            f"are made of whole chunks. Use batch_size = m * {sequence_length} for some m "
            f"(for example {sequence_length * max(1, batch_size // sequence_length)})."
        )
    if total % batch_size:
        chunks = total // sequence_length
        options = [m * sequence_length for m in _divisors(chunks)]
        raise ValueError(
            f"batch_size={batch_size} does not divide the rollout size n_steps * n_envs = "
            f"{n_steps} * {n_envs} = {total}; the minibatch size is kept fixed. "
            f"Use a batch_size among {options}, or change n_steps or the number of envs."
        )


def plan_minibatches(n_steps: int, n_envs: int, batch_size: int, sequence_length: int | None) -> tuple[int, list[str]]:
    """The chunk length for ``batch_size``, and warnings about sizes that do not divide.

    Minibatches are made of whole chunks of ``sequence_length`` steps (``batch_size //
    sequence_length`` chunks each). As SB3's PPO, sizes that do not divide run, with a warning
    that names the exact sizes:

    - ``batch_size`` >= the rollout (``n_steps * n_envs``): one minibatch of the whole rollout,
      no warning (sb3-contrib's behaviour);
    - ``sequence_length`` not given and ``batch_size`` < ``n_steps``: the chunks are cut to
      ``gcd(n_steps, batch_size)`` steps, the longest that divides both, with a warning (sb3-contrib cuts
      its sequences at minibatch boundaries too);
    - ``batch_size`` not a multiple of ``sequence_length``: each minibatch holds the whole chunks
      that fit, with a warning naming that size;
    - the chunks do not split evenly into minibatches: the last minibatch of each epoch holds the
      rest, with a warning, as SB3's PPO truncates its last minibatch.

    Refused (``ValueError``): ``sequence_length`` that does not divide ``n_steps``, and a given
    ``sequence_length`` longer than ``batch_size`` (a minibatch cannot hold one chunk).

    :return: (sequence_length, warnings)
    """
    notes: list[str] = []
    total = n_steps * n_envs
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if sequence_length is None:
        length = n_steps
        if batch_size < n_steps:
            length = math.gcd(n_steps, batch_size)
            notes.append(
                f"batch_size={batch_size} is smaller than n_steps={n_steps}, so a minibatch cannot hold a "
                f"whole env rollout: the rollout is cut into chunks of sequence_length={length} steps (the "
                f"longest that divides both). Pass sequence_length to choose the chunk length."
            )
    else:
        length = sequence_length
    check_sequence_sizes(n_steps, n_envs, length, length)  # length divides n_steps
    if batch_size >= total:
        return length, notes
    if batch_size < length:
        raise ValueError(
            f"batch_size={batch_size} is smaller than sequence_length={length}: a minibatch cannot hold one "
            f"chunk. Use batch_size >= {length} (a multiple of it), or a shorter sequence_length."
        )
    per_batch = batch_size // length
    if batch_size % length:
        notes.append(
            f"batch_size={batch_size} is not a multiple of sequence_length={length}: minibatches hold whole "
            f"chunks, so each holds {per_batch} chunk(s) = {per_batch * length} steps. "
            f"Use batch_size={per_batch * length} to say so."
        )
    n_chunks = total // length
    if n_chunks % per_batch:
        exact = [m * length for m in range(1, n_chunks + 1) if n_chunks % m == 0]
        notes.append(
            f"the rollout of n_steps * n_envs = {n_steps} * {n_envs} = {total} steps ({n_chunks} chunks of "
            f"{length}) does not split into minibatches of {per_batch * length} steps: after every "
            f"{n_chunks // per_batch} full minibatch(es) there is a truncated one of {(n_chunks % per_batch) * length} "
            f"steps. A batch_size among {exact} divides it exactly."
        )
    return length, notes
