"""Typed training configs: frozen dataclasses, read from and written to YAML.

A config file is one YAML mapping in rl-baselines3-zoo's layout: the algorithm's hyperparameters
at the top level under their SB3 names (``n_steps``, ``learning_rate: lin_1e-3``, ...), next to
``env``, ``n_envs``, ``n_timesteps``, ``normalize``, ``policy`` and ``policy_kwargs``. A zoo file
keyed by env id (``pomdp/CartPoleNoVel-v1: {n_steps: 32, ...}``) is read too.

Every value is checked against the field's type and range when a config is built, however it is
built (file, ``--set``, Python). Errors name the key, the expected type and the valid choices.
The resolved config (every field, defaults included) is what a run folder keeps as
``config.yaml``; :func:`load_config` on it rebuilds the same config.

A config file is data, whoever wrote it (:mod:`recurrent_rl.received`): its ``encoder.path`` is
read relative to the file's folder and must stay inside it, and an env id that names a module
(``module:Env-v0``, which Gymnasium would import) is refused unless the user's own command named
it when the run was made (:mod:`recurrent_rl.io.trust`). What the command line gives
(``--set``, ``--env``, ``--encoder``) is the user's own and is not restricted so.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from recurrent_rl.config.envs import check_env_id, check_env_kwargs  # noqa: F401  check_env_id: re-exported
from recurrent_rl.config.schema import (  # noqa: F401  ConfigError ... save_config are re-exported
    ConfigError,
    Section,
    UnknownKeyError,
    UserInputError,  # the CLI catches it
    activation_class,
    config_to_yaml,
    describe_keys,
    parse_number,
    parse_yaml,
    save_config,
    setting,
)
from recurrent_rl.config.sections import (
    POLICIES,
    CheckpointConfig,
    EncoderConfig,
    EvalConfig,
    NormalizeConfig,
    PolicyConfig,
    RunnersConfig,
)
from recurrent_rl.received import shorten
from recurrent_rl.schedules import LINEAR, Linear, make_schedule  # noqa: F401  Linear: zips pickle it here

MAX_TIMESTEPS = 10**12
# numpy seeds below 2**32, and a run adds offsets to its seed (envs, evaluation episodes): half of that
MAX_SEED = 2**31 - 1


# --- the keys of one algorithm family ------------------------------------------------------

# algo -> the algorithm class it trains (recurrent_rl.algorithms.ALGORITHMS holds the classes)
ALGOS = {"ppo": "RecurrentPPO", "maskable": "MaskableRecurrentPPO", "sac": "RecurrentSAC"}
# keys that only one family of algorithms reads: given for another, they are refused (never ignored)
PPO_KEYS = (
    "n_steps",
    "n_epochs",
    "gae_lambda",
    "clip_range",
    "clip_range_vf",
    "normalize_advantage",
    "vf_coef",
    "max_grad_norm",
    "target_kl",
    "use_sde",
    "sde_sample_freq",
    "kernel_threads",
    "runners",
    "encoder",
    "state_refresh",
    "burn_in_gradient",
)
SAC_KEYS = (
    "buffer_size",
    "learning_starts",
    "train_freq",
    "gradient_steps",
    "tau",
    "target_update_interval",
    "target_entropy",
    "stored_states",
    "prev_action",
    "prev_reward",
)
PPO_POLICY_KEYS = ("ortho_init", "log_std_init", "backend")  # policy_kwargs that RecurrentSAC's policy lacks
# the defaults of the shared keys where RecurrentSAC's differ from RecurrentPPO's (SB3 SAC's heads and activation)
SAC_DEFAULTS: dict[str, Any] = {"batch_size": 32, "ent_coef": "auto", "sequence_length": 32}
SAC_POLICY_DEFAULTS: dict[str, Any] = {"activation_fn": "relu", "net_arch": [256, 256]}


_MODULE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


@dataclass(frozen=True)
class TrainConfig(Section):
    """Everything a training run depends on. Algorithm fields are SB3 PPO's, same names."""

    env: str = setting(
        help="Gymnasium env id (recurrent-rl envs lists the pomdp/ suite)", example="pomdp/CartPoleNoVel-v1"
    )
    algo: Literal["ppo", "maskable", "sac"] = setting(
        "ppo",
        "the algorithm: ppo (RecurrentPPO), maskable (MaskableRecurrentPPO: the env offers action_masks()), "
        "sac (RecurrentSAC: Box actions, a sequence replay buffer); keys marked [ppo] or [sac] apply to "
        "that family only (maskable is ppo), and giving one to the other is an error",
    )
    env_kwargs: dict[str, Any] = setting(help="keyword arguments for gymnasium.make", factory=dict)
    gym_packages: tuple[str, ...] = setting(
        help="modules imported before the env is made, in every process that makes it (rl-baselines3-zoo's "
        "--gym-packages): where your own env registers itself",
        factory=tuple,
    )
    n_envs: int = setting(8, "envs stepped side by side (with runners: in all runners together)", low=1, high=65536)
    vec_env: Literal["dummy", "subproc"] = setting(
        "dummy",
        "how the envs step: dummy (one after another, in this process) or subproc (one process each, SB3's "
        "SubprocVecEnv)",
    )
    runners: RunnersConfig = setting(help="[ppo] Ray rollout runners (count 0: none)", factory=RunnersConfig)
    normalize: NormalizeConfig = setting(help="VecNormalize settings, or true/false", factory=NormalizeConfig)
    # 10^12 steps: decades on one machine; 1e30 would be accepted as "train forever" otherwise
    n_timesteps: int = setting(100_000, "total env steps", low=1, high=MAX_TIMESTEPS)
    seed: int = setting(0, "seed of the model, the envs and the evaluations", low=0, high=MAX_SEED)
    description: str = setting("", "free text shown by recurrent-rl presets")
    policy: Literal[POLICIES] = setting("MlpGruPolicy", "policy class")  # type: ignore[valid-type]
    policy_kwargs: PolicyConfig = setting(help="memory core and heads", factory=PolicyConfig)
    encoder: EncoderConfig = setting(help="[ppo] a pretrained encoder", factory=EncoderConfig)
    learning_rate: float | str = setting(3e-4, "Adam step size; lin_<x> decays linearly from x to 0", above=0)
    n_steps: int = setting(128, "[ppo] steps per env per rollout", low=1)
    batch_size: int = setting(
        128,
        "ppo: minibatch size in steps (whole chunks; a size that does not divide the rollout runs with a "
        "warning); sac: windows per gradient step (default 32 for sac)",
        low=1,
    )
    sequence_length: int | None = setting(
        None,
        "ppo: BPTT chunk length (null: n_steps); sac: rows per sampled window, burn-in included (default 32)",
        low=1,
    )
    state_refresh: bool = setting(
        False, "[ppo] recompute the chunk-start memory with the current network before each epoch after the first"
    )
    burn_in: int = setting(
        0,
        "ppo: steps of context before each chunk that warm the memory up, without loss; sac: leading rows of each "
        "window that only warm the memories (< sequence_length)",
        low=0,
    )
    burn_in_gradient: bool = setting(False, "[ppo] let the gradient flow back through the burn-in steps (longer BPTT)")
    n_epochs: int = setting(10, "[ppo] passes over each rollout", low=1)
    gamma: float = setting(0.99, "discount factor", low=0, high=1)
    gae_lambda: float = setting(0.95, "[ppo] GAE lambda", low=0, high=1)
    clip_range: float | str = setting(0.2, "[ppo] PPO clipping; lin_<x> decays linearly from x to 0", above=0)
    clip_range_vf: float | None = setting(None, "[ppo] value clipping (null: none)", above=0)
    normalize_advantage: bool = setting(True, "[ppo] normalize advantages per minibatch")
    ent_coef: float | str = setting(
        0.0,
        "ppo: entropy bonus coefficient (a number >= 0); sac: the entropy coefficient, a number > 0, auto (tuned, "
        "the default for sac) or auto_<x> (tuned from x)",
        low=0,
    )
    vf_coef: float = setting(0.5, "[ppo] value loss coefficient", low=0)
    max_grad_norm: float = setting(0.5, "[ppo] gradient clipping norm", above=0)
    target_kl: float | None = setting(None, "[ppo] stop the update early past this KL (null: never)", above=0)
    use_sde: bool = setting(False, "[ppo] generalized state-dependent exploration (Box actions)")
    sde_sample_freq: int = setting(-1, "[ppo] resample gSDE noise every n steps (-1: per rollout)", low=-1)
    buffer_size: int = setting(1_000_000, "[sac] replay buffer size in steps (all envs together)", low=1)
    learning_starts: int = setting(1000, "[sac] env steps of random actions before the first update", low=0)
    train_freq: int = setting(1, "[sac] update after every this many steps of each env", low=1)
    gradient_steps: int = setting(
        1, "[sac] gradient steps per update (-1: as many as env steps collected since the last)", low=-1
    )
    tau: float = setting(0.005, "[sac] Polyak coefficient of the target critic", low=0, high=1)
    target_update_interval: int = setting(1, "[sac] update the target critic every this many gradient steps", low=1)
    target_entropy: float | Literal["auto"] = setting(
        "auto", "[sac] entropy the coefficient tuning aims at (auto: -action size)"
    )
    stored_states: bool = setting(
        False, "[sac] start each window from the memory states stored at collection (R2D2); false: zero states"
    )
    prev_action: bool = setting(True, "[sac] the memories also read the previous action")
    prev_reward: bool = setting(False, "[sac] the memories also read the previous reward")
    device: str = setting("auto", "torch device: auto, cpu, cuda, cuda:1, ...")
    torch_threads: int = setting(1, "torch CPU threads (1 is fastest for small recurrent nets)", low=1)
    kernel_threads: int | Literal["auto"] = setting(
        "auto",
        "[ppo] threads of the compiled memory layers: 2 runs the actor's and critic's side by side "
        "in the update (needs torch_threads 1); auto: 2 when the run may use two CPUs, else 1",
        low=1,
        high=2,
    )
    eval: EvalConfig = setting(help="evaluation during and after training", factory=EvalConfig)
    checkpoint: CheckpointConfig = setting(help="periodic checkpoints", factory=CheckpointConfig)

    @classmethod
    def complete(cls, values: Mapping[str, Any]) -> dict[str, Any]:
        # a key of the other algorithm family is refused, never ignored; RecurrentSAC's defaults
        # of the shared keys (batch_size, ent_coef, ...) apply where an sac config leaves them out
        values = dict(values)
        algo = values.get("algo", "ppo")
        if not isinstance(algo, str) or algo not in ALGOS:
            return values  # the field's own check says what is valid
        sac = algo == "sac"
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = [str(key) for key in values if key not in names]
        if unknown:  # listed with the keys of this algorithm only (the others would be refused)
            raise UnknownKeyError(unknown, [n for n in names if n not in (PPO_KEYS if sac else SAC_KEYS)])
        foreign = [key for key in (PPO_KEYS if sac else SAC_KEYS) if key in values]
        policy = values.get("policy_kwargs")
        if sac and isinstance(policy, Mapping):
            foreign += [f"policy_kwargs.{key}" for key in PPO_POLICY_KEYS if key in policy]
        if foreign:
            own = [key for key in (SAC_KEYS if sac else PPO_KEYS)]
            family = "RecurrentPPO's (algo ppo or maskable)" if sac else "RecurrentSAC's (algo sac)"
            raise ConfigError(
                f"{', '.join(foreign)} {'is' if len(foreign) == 1 else 'are'} {family}, but this config trains "
                f"algo {algo} ({ALGOS[algo]}), which does not use {'it' if len(foreign) == 1 else 'them'}: remove "
                f"{'it' if len(foreign) == 1 else 'them'}, or set algo to the algorithm meant. The keys only algo "
                f"{algo} reads: {', '.join(own)}",
                key=foreign[0],
            )
        if sac:
            for key, default in SAC_DEFAULTS.items():
                values.setdefault(key, default)
            if policy is None or isinstance(policy, Mapping):
                values["policy_kwargs"] = {**SAC_POLICY_DEFAULTS, **(policy or {})}
        return values

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML-ready values of the keys this config's algorithm reads (what config.yaml holds)."""
        values = super().to_dict()
        for key in PPO_KEYS if self.algo == "sac" else SAC_KEYS:
            values.pop(key)
        if self.algo == "sac":
            for key in PPO_POLICY_KEYS:
                values["policy_kwargs"].pop(key)
        return values

    @property
    def algorithm(self) -> str:
        """The name of the algorithm class this config trains (``RecurrentPPO``, ``MaskableRecurrentPPO``,
        ``RecurrentSAC``)."""
        return ALGOS[self.algo]

    def _check(self) -> None:
        check_env_kwargs(self.env_kwargs)
        for index, module in enumerate(self.gym_packages):
            if not _MODULE.match(module):
                raise ConfigError(
                    f"expected a module name (my_pkg, my_pkg.envs), got {shorten(module)}", key=f"gym_packages[{index}]"
                )
        if self.algo == "sac":
            self._check_sac()
            return
        if isinstance(self.ent_coef, str):
            raise ConfigError(
                f"expected a number >= 0 for algo {self.algo}, got {self.ent_coef!r} (auto tunes the coefficient "
                "of algo sac only)",
                key="ent_coef",
            )
        runners = self.runners
        if runners.count:
            if self.vec_env != "dummy":
                raise ConfigError(
                    "vec_env: subproc steps the envs of this process in subprocesses; with runners.count > 0 the envs "
                    "are in the runners (each its own process): leave vec_env at dummy",
                    key="vec_env",
                )
            if runners.envs_per_runner == "auto" and self.n_envs % runners.count:
                raise ConfigError(
                    f"n_envs={self.n_envs} envs do not split evenly over runners.count={runners.count} runners: use an "
                    f"n_envs that is a multiple of the count, or set runners.envs_per_runner",
                    key="runners.count",
                )
            if runners.envs_per_runner != "auto" and runners.count * runners.envs_per_runner != self.n_envs:
                total = runners.count * runners.envs_per_runner
                raise ConfigError(
                    f"runners.count * runners.envs_per_runner = {runners.count} * {runners.envs_per_runner} = {total} "
                    f"envs, but n_envs = {self.n_envs}: the runners hold all the envs; set n_envs={total} (the "
                    "command line's --runner-envs does), or envs_per_runner: auto",
                    key="runners.envs_per_runner",
                )
        for name in ("learning_rate", "clip_range"):
            value = getattr(self, name)
            if isinstance(value, str):
                _check_linear(name, value)
        # imported here: recurrent_rl.sequences loads torch, which the CLI's --help and listings do not need
        from recurrent_rl.sequences import plan_minibatches

        # what RecurrentPPO accepts: sizes that do not divide run, with its warning (plan_minibatches)
        try:
            plan_minibatches(self.n_steps, self.n_envs, self.batch_size, self.sequence_length)
        except ValueError as error:
            raise ConfigError(f"{error} (keys: n_steps, n_envs, batch_size, sequence_length)") from None
        from recurrent_rl.sequences import check_refresh_options

        try:
            check_refresh_options(self.state_refresh, self.burn_in, self.burn_in_gradient, self.n_steps)
        except ValueError as error:
            raise ConfigError(f"{error} (keys: burn_in, burn_in_gradient, n_steps)") from None

    def _check_sac(self) -> None:
        """What RecurrentSAC accepts, checked before any env or network is made."""
        if not self.policy.startswith("Mlp"):
            raise ConfigError(
                f"algo sac reads vector observations (MlpGruPolicy, MlpLstmPolicy, MlpRnnPolicy), got {self.policy}",
                key="policy",
            )
        if self.policy_kwargs.critic_memory == "none":
            raise ConfigError(
                "algo sac's critic reads a memory: separate (its own, the default) or shared (the actor's), got none",
                key="policy_kwargs.critic_memory",
            )
        if isinstance(self.ent_coef, str):
            match = re.fullmatch(r"auto(_(?P<value>.+))?", self.ent_coef)
            number = parse_number(match["value"]) if match and match["value"] else 1.0 if match else None
            if number is None or not number > 0 or not math.isfinite(number):
                raise ConfigError(
                    f"expected a number > 0, auto or auto_<number > 0> (e.g. auto_0.1), got {self.ent_coef!r}",
                    key="ent_coef",
                )
        elif not self.ent_coef > 0:
            raise ConfigError(f"expected a number > 0, auto or auto_<x>, got {self.ent_coef}", key="ent_coef")
        if isinstance(self.learning_rate, str):
            _check_linear("learning_rate", self.learning_rate)
        if self.gradient_steps == 0:
            raise ConfigError(
                "expected an integer >= 1, or -1 (one per env step collected), got 0", key="gradient_steps"
            )
        length = self.sequence_length
        if length is None:
            raise ConfigError("algo sac samples windows of a fixed length: give an integer >= 2", key="sequence_length")
        if self.burn_in >= length:
            raise ConfigError(
                f"burn_in={self.burn_in} must be smaller than sequence_length={length}: the burn-in rows only warm the "
                f"memory, the rows after them are trained. Use burn_in <= {length - 1} or a longer sequence_length",
                key="burn_in",
            )
        steps_per_env = self.buffer_size // self.n_envs
        if length >= steps_per_env:
            raise ConfigError(
                f"sequence_length={length} does not fit the replay buffer, which keeps {steps_per_env} steps per env "
                f"(buffer_size // n_envs = {self.buffer_size} // {self.n_envs}): use a buffer_size of at least "
                f"{(length + 1) * self.n_envs}, or a shorter sequence_length",
                key="sequence_length",
            )

    @property
    def envs_per_runner(self) -> int:
        """Envs in each runner (``runners.envs_per_runner``, or ``n_envs / runners.count`` for auto)."""
        runners = self.runners
        if not runners.count:
            return 0
        return self.n_envs // runners.count if runners.envs_per_runner == "auto" else int(runners.envs_per_runner)

    @property
    def modules(self) -> dict[str, str]:
        """The modules this config makes Python import, by config key: ``env`` (``my_pkg:MyEnv-v0``)
        and ``gym_packages`` (space-separated); what :mod:`recurrent_rl.io.trust` records for a run."""
        names = {}
        if ":" in self.env:
            names["env"] = self.env
        if self.gym_packages:
            names["gym_packages"] = " ".join(self.gym_packages)
        return names

    @property
    def memory(self) -> str:
        """The memory core this config trains (``policy_kwargs.memory`` or the policy's)."""
        return memory_of(self.policy, self.policy_kwargs.memory)

    def algorithm_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for the config's algorithm (:attr:`algorithm`: :class:`recurrent_rl.RecurrentPPO`,
        ``MaskableRecurrentPPO`` or ``RecurrentSAC``), without env, seed and logging."""
        if self.algo == "sac":
            return _sac_kwargs(self)
        pk = self.policy_kwargs
        policy_kwargs: dict[str, Any] = dict(
            hidden_size=pk.hidden_size,
            num_layers=pk.num_layers,
            critic_memory=pk.critic_memory,
            gate_bias=pk.gate_bias,
            net_arch=dict(pi=list(pk.net_arch.pi), vf=list(pk.net_arch.vf)),
            activation_fn=activation_class(pk.activation_fn),
            ortho_init=pk.ortho_init,
            log_std_init=pk.log_std_init,
            backend=pk.backend,
            kernel_threads=self.kernel_threads,
        )
        if pk.memory_kwargs:
            policy_kwargs["memory_kwargs"] = dict(pk.memory_kwargs)
        if pk.detach_critic_memory:
            policy_kwargs["detach_critic_memory"] = True
        if pk.dropout:
            policy_kwargs["dropout"] = pk.dropout
        if pk.memory is not None:
            policy_kwargs["memory"] = pk.memory
        return dict(
            policy=self.policy,
            learning_rate=make_schedule(self.learning_rate),
            n_steps=self.n_steps,
            batch_size=self.batch_size,
            sequence_length=self.sequence_length,
            state_refresh=self.state_refresh,
            burn_in=self.burn_in,
            burn_in_gradient=self.burn_in_gradient,
            n_epochs=self.n_epochs,
            gamma=self.gamma,
            gae_lambda=self.gae_lambda,
            clip_range=make_schedule(self.clip_range),
            clip_range_vf=self.clip_range_vf,
            normalize_advantage=self.normalize_advantage,
            ent_coef=self.ent_coef,
            vf_coef=self.vf_coef,
            max_grad_norm=self.max_grad_norm,
            target_kl=self.target_kl,
            use_sde=self.use_sde,
            sde_sample_freq=self.sde_sample_freq,
            device=self.device,
            policy_kwargs=policy_kwargs,
        )


def _sac_kwargs(config: TrainConfig) -> dict[str, Any]:
    pk = config.policy_kwargs
    policy_kwargs: dict[str, Any] = dict(
        gate_bias=pk.gate_bias,
        net_arch=dict(pi=list(pk.net_arch.pi), qf=list(pk.net_arch.vf)),
        activation_fn=activation_class(pk.activation_fn),
    )
    if pk.memory_kwargs:
        policy_kwargs["memory_kwargs"] = dict(pk.memory_kwargs)
    return dict(
        policy="MlpPolicy",
        learning_rate=make_schedule(config.learning_rate),
        buffer_size=config.buffer_size,
        learning_starts=config.learning_starts,
        batch_size=config.batch_size,
        tau=config.tau,
        gamma=config.gamma,
        train_freq=config.train_freq,
        gradient_steps=config.gradient_steps,
        ent_coef=config.ent_coef,
        target_update_interval=config.target_update_interval,
        target_entropy=config.target_entropy,
        memory=config.memory,
        hidden_size=pk.hidden_size,
        num_layers=pk.num_layers,
        critic_memory=pk.critic_memory,
        prev_action=config.prev_action,
        prev_reward=config.prev_reward,
        sequence_length=config.sequence_length,
        burn_in=config.burn_in,
        stored_states=config.stored_states,
        device=config.device,
        policy_kwargs=policy_kwargs,
    )


def _check_linear(name: str, value: str) -> None:
    match = LINEAR.match(value)
    number = parse_number(match["value"]) if match else None
    if number is None or not number > 0 or not math.isfinite(number):
        raise ConfigError(f"expected a number > 0 or lin_<number > 0> (e.g. lin_1e-3), got {value!r}", key=name)


def memory_of(policy: str, memory: str | None) -> str:
    """The memory core of policy class name ``policy`` with ``policy_kwargs.memory`` = ``memory``."""
    if memory is not None:
        return memory
    return next((m for m in ("Gru", "Lstm", "Rnn") if m in policy), "Gru").lower()
