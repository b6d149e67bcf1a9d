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

from recurrent_rl.errors import UserInputError
from recurrent_rl.nets.guards import refuse_non_finite_steps
from recurrent_rl.received import (
    ReceivedFileError,
    boolean,
    check_memory,
    cut,
    integer,
    mapping,
    number,
    sequence,
    shorten,
    string,
)
from recurrent_rl.supervised.models import FORMAT_VERSION, MODEL_FORMAT, InputLayers, SequenceModel, read_checkpoint

ENCODER_FORMAT = "recurrent_rl/encoder"
ENCODER_SIZES = ("memory", "input_size", "hidden_size", "num_layers", "input_layers", "activation")


class EncoderMismatchError(UserInputError):
    """An encoder does not fit a policy or env; the message lists every mismatch."""


class EncoderFileError(ReceivedFileError):
    """An encoder file that is not one :func:`export_encoder` wrote (a field of the wrong kind, sizes
    that do not match its tensors, non-finite weights)."""


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
    """The encoder in ``path``: an encoder file, or a sequence model file (its causal part), checked
    (:func:`check_encoder`) before anything is built from it."""
    try:
        data = read_checkpoint(path, (ENCODER_FORMAT, MODEL_FORMAT))
    except ValueError as error:  # unreadable, another format or version: the file's fault
        raise EncoderFileError(str(error)) from None
    where = str(path)
    if data["format"] == ENCODER_FORMAT:
        return check_encoder(data, where)
    c = mapping(data.get("config"), where, "config", optional=None)
    if c.get("bidirectional"):
        raise EncoderMismatchError(
            f"{path} is a bidirectional sequence model: its backward core reads future steps, which a policy "
            "cannot see, so it cannot be loaded as an encoder. Train it with bidirectional=False."
        )
    mapping(c, where, "config", ENCODER_SIZES, optional=None)
    state = mapping(data.get("state_dict"), where, "state_dict", optional=None)
    pick = lambda prefix: {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}  # noqa: E731
    return check_encoder(
        {
            "format": ENCODER_FORMAT,
            "version": FORMAT_VERSION,
            **{key: c[key] for key in ENCODER_SIZES},
            "bidirectional": False,
            "inputs": pick("inputs."),
            "core": pick("core.rnn."),
            "metadata": data.get("metadata", {}),
        },
        where,
    )


def check_encoder(enc: Any, where: str) -> dict[str, Any]:
    """An encoder's data as :func:`export_encoder` writes it, or an :class:`EncoderFileError` naming
    the file and the field: the types and choices of every field; tensors that are plain float32
    arrays (contiguous, their bytes all in the file) of finite values; and sizes that build, on
    the ``meta`` device (which allocates nothing), exactly the tensors the file holds. The policy
    such an encoder makes is then refused when it would not fit in this process's memory."""
    try:
        return _check_encoder(enc, where)
    except EncoderFileError:
        raise
    except ReceivedFileError as error:
        raise EncoderFileError(str(error)) from None


def _check_encoder(enc: Any, where: str) -> dict[str, Any]:
    from recurrent_rl.config.schema import ACTIVATIONS
    from recurrent_rl.nets.memory import MEMORIES, MemoryCore

    keys = ("format", "version", *ENCODER_SIZES, "bidirectional", "inputs", "core")
    enc = mapping(enc, where, "", keys, ("metadata",))
    string(enc["memory"], where, "memory", choices=MEMORIES)
    string(enc["activation"], where, "activation", choices=ACTIVATIONS)
    if boolean(enc["bidirectional"], where, "bidirectional"):
        raise EncoderFileError(f"{where} (bidirectional): a bidirectional model cannot be an encoder")
    tensors = {}
    for part in ("inputs", "core"):
        for name, tensor in mapping(enc[part], where, part, optional=None).items():
            tensors[f"{part}.{name}"] = _plain_tensor(tensor, where, f"{part}.{cut(str(name))}")
    total = sum(t.numel() for t in tensors.values())
    layers = sequence(enc["input_layers"], where, "input_layers", limit=len(enc["inputs"]))
    for name in ("input_size", "hidden_size"):
        integer(enc[name], where, name, 1, total)
    integer(enc["num_layers"], where, "num_layers", 1, max(len(enc["core"]), 1))
    for index, width in enumerate(layers):
        integer(width, where, f"input_layers[{index}]", 1, total)
    metadata = mapping(enc.get("metadata", {}), where, "metadata", optional=None)
    if metadata.get("env_id") is not None:
        string(metadata["env_id"], where, "metadata.env_id", limit=300)
    if metadata.get("transitions") is not None:
        number(metadata["transitions"], where, "metadata.transitions", 0.0)
    try:
        with th.device("meta"):
            inputs = InputLayers(enc["input_size"], tuple(layers), enc["activation"])
            core = MemoryCore(enc["memory"], inputs.output_size, enc["hidden_size"], enc["num_layers"])
    except Exception as error:  # noqa: BLE001  sizes from a file fail in every way a constructor can
        raise EncoderFileError(
            f"{where}: its sizes do not build an encoder ({type(error).__name__}: {shorten(str(error), 200)})"
        ) from None
    expected = {
        **{f"inputs.{k}": v for k, v in inputs.state_dict().items()},
        **{f"core.{k}": v for k, v in core.rnn.state_dict().items()},
    }
    if set(expected) != set(tensors):
        missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
        raise EncoderFileError(
            f"{where}: its tensors do not fit its sizes: missing {shorten(missing[:5])}, unexpected "
            f"{shorten(unexpected[:5])}"
        )
    for name, tensor in expected.items():
        if tuple(tensors[name].shape) != tuple(tensor.shape):
            raise EncoderFileError(
                f"{where} ({shorten(name)}) has the shape {list(tensors[name].shape)}, its sizes make it "
                f"{list(tensor.shape)}: a size does not match the weights"
            )
    # the policy holds the encoder twice (actor and critic), with Adam's moments and a gradient each
    check_memory(8 * 4 * total, "the policy this encoder builds", where)
    return enc


def _plain_tensor(value: Any, where: str, field: str) -> th.Tensor:
    """A dense float32 tensor of finite values whose bytes are all in the file (no view that
    repeats a few bytes over a large shape)."""
    if not isinstance(value, th.Tensor) or value.dtype != th.float32 or value.layout != th.strided:
        got = f"a {value.dtype} tensor" if isinstance(value, th.Tensor) else shorten(value)
        raise EncoderFileError(f"{where} ({field}) must be a float32 tensor, got {got}")
    if not value.is_contiguous() or value.untyped_storage().nbytes() < value.numel() * value.element_size():
        raise EncoderFileError(f"{where} ({field}) is not a plain array of its own bytes: refused")
    if not bool(th.isfinite(value).all()):
        raise EncoderFileError(f"{where} ({field}) holds nan or inf: refused")
    return value


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
