"""Checks that turn bad input into errors saying what is wrong and how to fix it.

A leaf module. May import: nothing of the package (NumPy, Gymnasium's spaces).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

SUPPORTED_OBSERVATION_SPACES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary, spaces.Dict)
SUPPORTED_ACTION_SPACES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)


class UserInputError(ValueError):
    """Bad input from the user (a config, a path, a name): the CLI prints it without a traceback."""


class NonFiniteLossError(RuntimeError):
    """The PPO loss (hence the gradients) became nan or inf; training stopped before the step."""


def _names(kinds: tuple[type, ...]) -> str:
    return ", ".join(k.__name__ for k in kinds)


def check_spaces(observation_space: spaces.Space, action_space: spaces.Space, who: str = "recurrent_rl") -> None:
    """Raise ``ValueError`` if a space is not one recurrent_rl supports."""
    if not isinstance(observation_space, SUPPORTED_OBSERVATION_SPACES):
        raise ValueError(
            f"{who} does not support the observation space {observation_space}; supported: "
            f"{_names(SUPPORTED_OBSERVATION_SPACES)}. Wrap the env to convert its observations "
            "(for example gymnasium.wrappers.FlattenObservation for a Tuple space)."
        )
    if isinstance(observation_space, spaces.Dict):
        for key, sub in observation_space.spaces.items():
            if isinstance(sub, spaces.Dict) or not isinstance(sub, SUPPORTED_OBSERVATION_SPACES):
                raise ValueError(
                    f"{who} does not support the Dict observation entry {key!r}: {sub}; each entry must be one "
                    f"of {_names(SUPPORTED_OBSERVATION_SPACES[:-1])} (no nesting). Flatten it with a wrapper."
                )
    if not isinstance(action_space, SUPPORTED_ACTION_SPACES):
        raise ValueError(
            f"{who} does not support the action space {action_space}; supported: "
            f"{_names(SUPPORTED_ACTION_SPACES)}. Wrap the env to expose one of these."
        )


def check_finite_observations(obs: Any, where: str) -> None:
    """Raise ``ValueError`` if a float observation batch holds nan or inf.

    torch's distributions do not validate their parameters here (see
    ``RecurrentActorCriticPolicy._get_action_dist_from_latent``), so a nan observation would
    otherwise surface as an error from deep inside torch's sampler, or as nan actions.
    """
    arrays = obs.items() if isinstance(obs, dict) else [(None, obs)]
    for key, array in arrays:
        array = np.asarray(array)
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            bad = sorted({int(i) for i in np.argwhere(~np.isfinite(array.reshape(len(array), -1)))[:, 0]})
            entry = f" entry {key!r}" if key is not None else ""
            raise ValueError(
                f"{where}: the observation{entry} holds nan or inf (batch rows {bad[:8]}). The env produced it: "
                "find where with SB3's VecCheckNan wrapper, or clip the observation in a wrapper."
            )


NON_FINITE_GRADIENTS = (
    "Training stopped: the loss became nan or inf, so the gradients are not finite. The policy keeps "
    "its parameters from before this gradient step and nothing saved earlier was overwritten. "
    "Usual fixes: lower learning_rate; normalise observations and rewards (VecNormalize); lower "
    "max_grad_norm; check the env for nan/inf observations or rewards (SB3's VecCheckNan finds them)."
)


class UntrustedPickleError(UserInputError):
    """A pickle-based file (SB3's zip, ``vecnormalize.pkl``) that would be opened without the user's opt-in."""


TRUST_PICKLE_FLAG = "--trust-pickle"


def refuse_pickle(path: Any, what: str = "SB3's zip", fix: str = "") -> UntrustedPickleError:
    """The error for opening ``path``, a pickle with no weights-only copy beside it, without opt-in.

    Unpickling runs whatever code the file was crafted to run, so the package's commands open
    pickles only when the user says they trust them (``--trust-pickle``, ``trust_pickle=True``).
    Run folders that this package writes hold a weights-only copy beside every zip, so they never
    need it.
    """
    return UntrustedPickleError(
        f"{path} is {what}, a pickle, with no weights-only copy (.safetensors + .json) beside it: opening it runs "
        f"any code it was made to run. Open it only if you trust where it came from: pass {TRUST_PICKLE_FLAG} "
        f"(in Python: trust_pickle=True){fix}"
    )
