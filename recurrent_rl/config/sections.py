"""The sections of a training config: ``policy_kwargs`` (:class:`PolicyConfig` and its
``net_arch``), ``encoder``, ``normalize``, ``eval``, ``checkpoint`` and ``runners``, each a frozen
dataclass checked on construction (:class:`recurrent_rl.config.schema.Section`), and the names a
config may give for its policy, memory and activation. :class:`recurrent_rl.config.train.TrainConfig`
holds them and checks what spans sections.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from recurrent_rl.config import schema
from recurrent_rl.config.schema import ConfigError, Section, setting
from recurrent_rl.received import shorten

ACTIVATIONS = tuple(schema.ACTIVATIONS)  # the names; schema.activation_class gives the torch module
# recurrent_rl.nets.memory.MEMORIES, spelled out so reading a config loads no torch (a test compares them)
MEMORIES = ("gru", "lstm", "rnn", "mingru", "minlstm", "transformer", "ffm")
POLICIES = (  # RecurrentPPO.policy_aliases (tests/test_config.py keeps them in step)
    "MlpGruPolicy",
    "MlpLstmPolicy",
    "MlpRnnPolicy",
    "CnnGruPolicy",
    "CnnLstmPolicy",
    "CnnRnnPolicy",
    "MultiInputGruPolicy",
    "MultiInputLstmPolicy",
    "MultiInputRnnPolicy",
)


@dataclass(frozen=True)
class NetArch(Section):
    """Hidden layers of the actor (pi) and critic (vf) heads after the memory."""

    pi: tuple[int, ...] = setting((64, 64), "actor head layer sizes")
    vf: tuple[int, ...] = setting((64, 64), "critic head layer sizes")

    @classmethod
    def from_shorthand(cls, value: Any) -> dict[str, Any] | None:
        # SB3 >= 1.8: a list gives the actor and the critic the same (separate) layers
        if isinstance(value, (list, tuple)):
            return {"pi": value, "vf": value}
        return None

    @classmethod
    def complete(cls, values: Mapping[str, Any]) -> dict[str, Any]:
        # SB3's meaning of a dict: a head it leaves out has no hidden layers (MlpExtractor's
        # net_arch.get("vf", [])), not this config's default of two
        values = dict(values)
        if "pi" in values or "vf" in values:
            values.setdefault("pi", ())
            values.setdefault("vf", ())
        return values

    def _check(self) -> None:
        for name in ("pi", "vf"):
            if any(size < 1 for size in getattr(self, name)):
                raise ConfigError(f"layer sizes must be positive integers, got {list(getattr(self, name))}", key=name)


@dataclass(frozen=True)
class PolicyConfig(Section):
    """``policy_kwargs``: the memory core and the heads."""

    memory: Literal[MEMORIES] | None = setting(  # type: ignore[valid-type]
        None,
        "memory core (gru, lstm, rnn; mingru, minlstm: parallel-scan recurrences; transformer: attention "
        "over recent steps; ffm: Fast and Forgetful Memory); null: the one the policy name says",
    )
    memory_kwargs: dict[str, Any] = setting(
        help="options of the memories that take more (transformer: memory_length, n_heads, ...; ffm: memory_size, "
        "context_size, min_period, max_period)",
        factory=dict,
    )
    hidden_size: int = setting(64, "units per memory layer", low=1)
    num_layers: int = setting(1, "stacked memory layers", low=1)
    critic_memory: Literal["separate", "shared", "none"] = setting(
        "separate", "critic reads its own memory, the actor's, or none (sac: separate or shared)"
    )
    detach_critic_memory: bool = setting(
        False,
        "with critic_memory shared: the value loss does not train the actor's memory (sb3-contrib's shared_lstm)",
    )
    dropout: float = setting(
        0.0, "dropout between stacked memory layers (num_layers > 1; sb3-contrib's lstm_kwargs dropout)", low=0, below=1
    )
    gate_bias: float | None = setting(
        None, "added to the initial GRU update-gate / LSTM forget-gate bias (longer memory); null: 1 for lstm, 0 else"
    )
    net_arch: NetArch = setting(
        help="head layers: a list, or {pi: [...], vf: [...]} (sac: vf gives the Q heads; default [256, 256])",
        factory=NetArch,
    )
    activation_fn: Literal[ACTIVATIONS] = setting(  # type: ignore[valid-type]
        "tanh", "activation of the head layers (default relu for sac)"
    )
    ortho_init: bool = setting(True, "[ppo] orthogonal init of features extractor and heads (never the memory)")
    log_std_init: float = setting(0.0, "[ppo] initial log std of Gaussian actions (Box action spaces)")
    backend: Literal["auto", "torch", "cpu-kernels"] = setting(
        "auto",
        "[ppo] how the networks are computed: torch (plain torch and SB3), cpu-kernels (the CPU speed layer: "
        "compiled memory layers and linear scan, lean Adam and categorical), auto (cpu-kernels on the CPU, "
        "torch elsewhere)",
    )

    def _check(self) -> None:
        if self.detach_critic_memory and self.critic_memory != "shared":
            raise ConfigError(
                f"detach_critic_memory: true detaches the critic from the actor's memory, which needs critic_memory: "
                f"shared (got {self.critic_memory})",
                key="detach_critic_memory",
            )


@dataclass(frozen=True)
class EncoderConfig(Section):
    """A pretrained encoder (``encoder.pt`` from ``recurrent-rl pretrain``) in the policy."""

    path: str | None = setting(
        None,
        "encoder file loaded into the actor's input layers and memory (null: none); "
        "it sets policy_kwargs memory, hidden_size and num_layers",
    )
    freeze: bool = setting(False, "keep the encoder's weights fixed during training")
    critic: bool = setting(False, "also load (and freeze) it into the critic's memory")

    def _check(self) -> None:
        given = [name for name in ("freeze", "critic") if getattr(self, name)]
        if self.path is None and given:
            raise ConfigError(
                f"encoder.{given[0]} is true but encoder.path is null, so there is no encoder to "
                f"{'freeze' if given[0] == 'freeze' else 'load into the critic'}: name it (encoder.path, or --encoder "
                f"PATH) or leave encoder.{given[0]} out",
                key="path",
            )


@dataclass(frozen=True)
class NormalizeConfig(Section):
    """VecNormalize: running mean/std of observations and returns (``normalize: true`` for all)."""

    enabled: bool = setting(False, "wrap the training envs in VecNormalize")
    norm_obs: bool = setting(True, "normalize observations")
    norm_reward: bool = setting(True, "normalize rewards (training only)")
    clip_obs: float = setting(10.0, "clip normalized observations to +-clip_obs", above=0)
    gamma: float | None = setting(
        None,
        "discount of the returns that scale rewards (null: the algorithm's gamma, as rl-baselines3-zoo sets it)",
        low=0,
        high=1,
    )

    @classmethod
    def from_shorthand(cls, value: Any) -> dict[str, Any] | None:
        return {"enabled": value} if isinstance(value, bool) else None

    @classmethod
    def complete(cls, values: Mapping[str, Any]) -> dict[str, Any]:
        # rl-baselines3-zoo's way to turn VecNormalize on with options: a mapping means enabled,
        # unless it says enabled: false
        return {"enabled": True, **values}


@dataclass(frozen=True)
class EvalConfig(Section):
    """Evaluation during training (best model) and after it (eval.json)."""

    freq: int = setting(10_000, "evaluate every this many env steps (0: only at the end)", low=0)
    episodes: int = setting(10, "episodes per periodic evaluation", low=1)
    deterministic: bool = setting(True, "greedy actions when evaluating")
    final_episodes: int = setting(20, "episodes of the final evaluation written to eval.json (0: none)", low=0)


@dataclass(frozen=True)
class CheckpointConfig(Section):
    """Periodic checkpoints in ``checkpoints/`` (also written at the end and on Ctrl-C/SIGTERM)."""

    freq: int = setting(10_000, "checkpoint every this many env steps (0: only at the end)", low=0)
    keep: int = setting(5, "checkpoints kept, newest first (0: keep all)", low=0)


@dataclass(frozen=True)
class RunnersConfig(Section):
    """Ray rollout runners: the run's envs in other processes or machines (``count: 0``: in this process)."""

    count: int = setting(0, "rollout runners (Ray actors); 0: the envs step in this process", low=0, high=4096)
    envs_per_runner: int | Literal["auto"] = setting(
        "auto", "envs in each runner (auto: n_envs / count; else n_envs must be count * envs_per_runner)", low=1
    )
    address: str = setting("local", "the Ray cluster: local (a runtime started here), auto, or HOST:PORT")
    cpus_per_runner: float = setting(1.0, "CPUs each runner asks Ray for", above=0, high=1024)
    max_restarts: int = setting(3, "times in a row a runner may fail before the run stops", low=0, high=100)

    def _check(self) -> None:
        address = self.address
        host, _, port = address.rpartition(":")
        if address not in ("local", "auto") and not address.startswith("ray://") and not (host and port.isdigit()):
            raise ConfigError(
                f"expected local, auto, HOST:PORT (the head node, e.g. 10.0.0.5:6379) or ray://HOST:PORT, got "
                f"{shorten(address)}",
                key="address",
            )
