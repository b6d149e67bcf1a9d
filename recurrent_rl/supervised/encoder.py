"""Pretrained sequence models as a RecurrentPPO policy's encoder (memory and input layers).

An *encoder file* (``encoder.pt``, written by :func:`export_encoder`) holds the causal part of a
:class:`~recurrent_rl.supervised.models.SequenceModel`: its input layers (standardisation and
optional MLP) and its forward memory core. Putting it into a policy takes two steps, because
SB3 builds the policy, then re-initialises its Linear layers (``ortho_init``) and builds the
optimizer inside the constructor:

1. build the model with :func:`encoder_policy_kwargs` (memory type and sizes, and an
   :class:`EncoderFeaturesExtractor` with the encoder's input layers, so ``features_dim`` matches);
2. :func:`load_encoder` checks every size, copies the weights *after* construction, optionally
   freezes them, and rebuilds the optimizer so that it holds no stale moments.

::

    model = RecurrentPPO("MlpGruPolicy", env, policy_kwargs=encoder_policy_kwargs("encoder.pt"))
    load_encoder(model, "encoder.pt", freeze=True, critic=True)
    model.learn(100_000)

Frozen parameters get ``requires_grad=False``: they never receive a gradient, so Adam (which
skips parameters whose ``grad`` is None) never moves them. The optimizer keeps every parameter,
in SB3's one-group layout, so ``model.save`` / ``RecurrentPPO.load`` round-trip; ``requires_grad``
is not saved, so call :func:`freeze_encoder` again after loading a frozen model to train on.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch as th
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

from recurrent_rl.nets.guards import refuse_non_finite_steps
from recurrent_rl.supervised.models import FORMAT_VERSION, MODEL_FORMAT, InputLayers, SequenceModel, read_checkpoint

ENCODER_FORMAT = "recurrent_rl/encoder"


class EncoderMismatchError(ValueError):
    """An encoder does not fit a policy or env; the message lists every mismatch."""


class EncoderEnvWarning(UserWarning):
    """An encoder recorded from one env is loaded into a policy that trains on another (same observation size)."""


class EncoderFeaturesExtractor(BaseFeaturesExtractor):
    """Flatten the observation, then the encoder's :class:`InputLayers` (standardise + MLP).

    Built with the encoder's sizes at policy construction (so ``features_dim`` is right); its
    weights and statistics are copied in by :func:`load_encoder` afterwards.
    """

    def __init__(
        self, observation_space: gym.Space, input_layers: list[int] | tuple[int, ...] = (), activation: str = "tanh"
    ):
        if isinstance(observation_space, gym.spaces.Dict):
            raise ValueError(
                "an encoder reads flat observations; this env has a Dict observation space "
                "(flatten it with gymnasium.wrappers.FlattenObservation)"
            )
        input_size = int(gym.spaces.flatdim(observation_space))
        inputs = InputLayers(input_size, tuple(input_layers), activation)
        super().__init__(observation_space, inputs.output_size)
        self.inputs = inputs
        self.input_layers = tuple(int(n) for n in input_layers)
        self.activation = activation

    def forward(self, observations: th.Tensor) -> th.Tensor:
        return self.inputs(th.flatten(observations, start_dim=1))  # (B, F')


# --- the file ---------------------------------------------------------------------------------------


def export_encoder(model: SequenceModel, path: str | Path, metadata: dict[str, Any] | None = None) -> Path:
    """Write ``model``'s input layers and forward core to ``path`` (refuses bidirectional models)."""
    c = model.config
    if c.bidirectional:
        raise EncoderMismatchError(
            "a bidirectional sequence model cannot be an encoder: its backward core reads future steps, which a "
            "policy cannot see. Train it with bidirectional=False."
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    th.save(
        {
            "format": ENCODER_FORMAT,
            "version": FORMAT_VERSION,
            "memory": c.memory,
            "input_size": c.input_size,
            "hidden_size": c.hidden_size,
            "num_layers": c.num_layers,
            "input_layers": list(c.input_layers),
            "activation": c.activation,
            "bidirectional": False,
            "inputs": model.inputs.state_dict(),
            "core": model.core.rnn.state_dict(),
            "metadata": metadata or {},
        },
        path,
    )
    return path


def read_encoder(path: str | Path) -> dict[str, Any]:
    """The encoder in ``path``: an encoder file, or a sequence model file (its causal part)."""
    data = read_checkpoint(path, (ENCODER_FORMAT, MODEL_FORMAT))
    if data["format"] == ENCODER_FORMAT:
        return data
    c = data["config"]
    if c.get("bidirectional"):
        raise EncoderMismatchError(
            f"{path} is a bidirectional sequence model: its backward core reads future steps, which a policy "
            "cannot see, so it cannot be loaded as an encoder. Train it with bidirectional=False."
        )
    state = data["state_dict"]
    pick = lambda prefix: {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}  # noqa: E731
    return {
        "format": ENCODER_FORMAT,
        "version": FORMAT_VERSION,
        "memory": c["memory"],
        "input_size": c["input_size"],
        "hidden_size": c["hidden_size"],
        "num_layers": c["num_layers"],
        "input_layers": list(c["input_layers"]),
        "activation": c["activation"],
        "bidirectional": False,
        "inputs": pick("inputs."),
        "core": pick("core.rnn."),
        "metadata": data.get("metadata", {}),
    }


def encoder_policy_kwargs(path: str | Path, **overrides: Any) -> dict[str, Any]:
    """``policy_kwargs`` that build a policy whose actor memory matches the encoder in ``path``.

    Gives ``memory``, ``hidden_size``, ``num_layers``, ``features_extractor_class`` and
    ``features_extractor_kwargs``; ``overrides`` (e.g. ``net_arch``, ``critic_memory``) are added.
    Memory options in ``overrides`` that contradict the encoder raise an error.
    """
    enc = read_encoder(path)
    kwargs: dict[str, Any] = dict(
        memory=enc["memory"],
        hidden_size=enc["hidden_size"],
        num_layers=enc["num_layers"],
        features_extractor_class=EncoderFeaturesExtractor,
        features_extractor_kwargs=dict(input_layers=list(enc["input_layers"]), activation=enc["activation"]),
    )
    clash = [
        f"{k}={overrides[k]!r} (the encoder has {kwargs[k]!r})"
        for k in ("memory", "hidden_size", "num_layers")
        if k in overrides and overrides[k] != kwargs[k]
    ]
    if clash:
        raise EncoderMismatchError(f"policy_kwargs contradict the encoder {path}: " + ", ".join(clash))
    return {**overrides, **kwargs}


# --- into a policy ---------------------------------------------------------------------------------------


def _mismatches(policy: Any, enc: dict[str, Any]) -> list[str]:
    problems = []
    for name in ("memory", "hidden_size", "num_layers"):
        if getattr(policy, name) != enc[name]:
            problems.append(f"{name}: the policy has {getattr(policy, name)!r}, the encoder {enc[name]!r}")
    obs_size = int(gym.spaces.flatdim(policy.observation_space))
    if obs_size != enc["input_size"]:
        problems.append(
            f"observation size: the env gives {obs_size} values per observation ({policy.observation_space}), "
            f"the encoder was trained on {enc['input_size']}"
        )
    extractor = policy.pi_features_extractor
    if not isinstance(extractor, EncoderFeaturesExtractor):
        problems.append(
            f"features extractor: the policy has {type(extractor).__name__}, the encoder needs "
            "EncoderFeaturesExtractor (build the policy with encoder_policy_kwargs(path))"
        )
    elif (list(extractor.input_layers), extractor.activation) != (list(enc["input_layers"]), enc["activation"]):
        problems.append(
            f"input layers: the policy has {list(extractor.input_layers)} ({extractor.activation}), the encoder "
            f"{list(enc['input_layers'])} ({enc['activation']})"
        )
    elif policy.actor_memory.input_size != extractor.features_dim:
        problems.append(f"memory input size {policy.actor_memory.input_size} != features_dim {extractor.features_dim}")
    return problems


def _encoder_modules(model: Any, critic: bool) -> list[th.nn.Module]:
    """The policy modules an encoder fills: the actor's (and with ``critic``, the critic's)."""
    policy = model.policy
    modules: list[th.nn.Module] = [policy.pi_features_extractor.inputs, policy.actor_memory.rnn]
    if critic:
        if policy.critic_memory == "none":
            raise EncoderMismatchError("critic=True, but this policy's critic has no memory (critic_memory='none')")
        if policy.critic_core is not None:  # "separate"; with "shared" the critic reads the actor's memory
            modules.append(policy.critic_core.rnn)
        if not policy.share_features_extractor:
            modules.append(policy.vf_features_extractor.inputs)
    return modules


def freeze_encoder(model: Any, critic: bool = False) -> list[th.nn.Parameter]:
    """Stop training the encoder's modules (``requires_grad=False``); returns the frozen parameters."""
    frozen = [p for module in _encoder_modules(model, critic) for p in module.parameters()]
    for p in frozen:
        p.requires_grad_(False)
        p.grad = None
    return frozen


def rebuild_optimizer(policy: Any) -> None:
    """A fresh optimizer over all parameters, as SB3's ``_build`` makes it (no stale moments).

    Frozen parameters stay in it (same param-group layout, so save/load round-trips) but never
    get a gradient, so the optimizer never moves them.
    """
    lr = policy.optimizer.param_groups[0]["lr"]
    policy.optimizer = policy.optimizer_class(policy.parameters(), lr=lr, **policy.optimizer_kwargs)
    refuse_non_finite_steps(policy.optimizer)


def load_encoder(
    model: Any, path: str | Path, freeze: bool = False, critic: bool = False, observation_statistics: str = "encoder"
) -> dict[str, Any]:
    """Copy the encoder in ``path`` into ``model``'s policy (after construction: see the module doc).

    :param model: a :class:`~recurrent_rl.RecurrentPPO` built with :func:`encoder_policy_kwargs`
    :param path: an ``encoder.pt`` (or a unidirectional sequence model ``.pt``)
    :param freeze: keep the encoder's weights fixed during ``learn()`` (else fine-tune them)
    :param critic: also load (and freeze) the critic's memory and input layers
    :param observation_statistics: who standardises observations. ``"encoder"``: the encoder, with
        the fixed statistics of its training data (use ``VecNormalize(norm_obs=False)``).
        ``"vecnormalize"``: the env's ``VecNormalize(norm_obs=True)``, whose running statistics
        start at the encoder's (so the encoder first sees inputs as in training) and then follow
        the agent's own observations; the encoder's standardisation becomes the identity.
    :returns: the encoder's metadata (what it was trained on)
    :raises EncoderMismatchError: listing every size or type that does not match
    :warns EncoderEnvWarning: when the encoder's data was recorded from another env id than the
        one ``model`` trains on (the sizes fit, but what it learned may not carry over)
    """
    if observation_statistics not in ("encoder", "vecnormalize"):
        raise ValueError(f"observation_statistics={observation_statistics!r}: choose 'encoder' or 'vecnormalize'")
    enc = read_encoder(path)
    problems = _mismatches(model.policy, enc)
    normalizer = _vecnormalize(model.get_env())
    if observation_statistics == "vecnormalize" and (normalizer is None or not normalizer.norm_obs):
        problems.append("observation_statistics='vecnormalize' needs the env wrapped in VecNormalize(norm_obs=True)")
    if problems:
        raise EncoderMismatchError(f"the encoder {path} does not fit this policy:\n  - " + "\n  - ".join(problems))
    recorded, training = enc.get("metadata", {}).get("env_id"), _env_id(model.get_env())
    if recorded and training and recorded != training:
        warnings.warn(
            f"the encoder {path} was pretrained on data recorded from {recorded}, but this model trains on "
            f"{training}: the sizes fit, but what the encoder learned may not carry over",
            EncoderEnvWarning,
            stacklevel=2,
        )
    modules = _encoder_modules(model, critic)
    mean, std = enc["inputs"]["input_mean"], enc["inputs"]["input_std"]
    with th.no_grad():
        for module in modules:
            source = enc["inputs"] if isinstance(module, InputLayers) else enc["core"]
            module.load_state_dict(source)
        extractors = {model.policy.pi_features_extractor.inputs, model.policy.vf_features_extractor.inputs}
        for inputs in extractors:  # a critic extractor that was not loaded gets the statistics all the same
            inputs.set_standardization(mean, std)
            if observation_statistics == "vecnormalize":
                inputs.set_standardization(th.zeros_like(mean), th.ones_like(std))
    if observation_statistics == "vecnormalize":
        # start VecNormalize's running statistics at the encoder's training statistics, weighted as
        # many observations as the encoder was trained on
        normalizer.obs_rms.mean = mean.double().numpy().reshape(normalizer.obs_rms.mean.shape)
        normalizer.obs_rms.var = (std.double() ** 2).numpy().reshape(normalizer.obs_rms.var.shape)
        normalizer.obs_rms.count = float(enc.get("metadata", {}).get("transitions", 10_000))
    elif normalizer is not None and normalizer.norm_obs:
        warnings.warn(
            "the env normalises observations (VecNormalize(norm_obs=True)), but the encoder standardises raw "
            "observations itself: use VecNormalize(env, norm_obs=False), or load_encoder(..., "
            "observation_statistics='vecnormalize') to let VecNormalize do it, starting from the encoder's statistics",
            stacklevel=2,
        )
    if freeze:
        freeze_encoder(model, critic)
    rebuild_optimizer(model.policy)
    return dict(enc.get("metadata", {}))


def _env_id(env: Any) -> str | None:
    """The Gymnasium id of a VecEnv's first env (None if it has no registered spec)."""
    if env is None:
        return None
    try:
        spec = env.get_attr("spec", [0])[0]
    except Exception:  # noqa: BLE001  any VecEnv: an env without the attribute, a closed worker
        return None
    return getattr(spec, "id", None)


def _vecnormalize(env: Any) -> Any:
    from stable_baselines3.common.vec_env import VecNormalize, unwrap_vec_wrapper

    return unwrap_vec_wrapper(env, VecNormalize) if env is not None else None
