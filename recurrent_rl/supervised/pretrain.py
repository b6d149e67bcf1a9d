"""Pretraining from a config: record trajectories, train a sequence model, export ``encoder.pt``.

A config has four parts (every key optional except ``data.env_id``; unknown keys are errors)::

    name: str                    # run folder prefix
    data:  env_id, n_steps, policy, target, target_indices, seed
    model: memory, hidden_size, num_layers, dropout, input_layers, activation
    train: epochs, batch_size, learning_rate, weight_decay, max_grad_norm, val_fraction,
           patience, normalize_inputs, normalize_targets, seed

``pretrain(config)`` writes ``runs/pretrain__<env>__<memory>__seed<seed>__<time>/`` with
``config.json`` (resolved), ``trajectories.npz``, ``model.pt``, ``encoder.pt``, ``metrics.json``,
``history.json``, ``checkpoints/`` and ``tb/`` (TensorBoard).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch as th

from recurrent_rl.supervised.encoder import export_encoder
from recurrent_rl.supervised.data import TARGETS, record_trajectories
from recurrent_rl.supervised.models import SequenceModel, SequenceModelConfig, save_sequence_model
from recurrent_rl.supervised.trainer import TrainConfig, evaluate, fit


def _check_keys(section: str, data: dict[str, Any], cls: type) -> None:
    if not isinstance(data, dict):
        raise ValueError(f"config section {section!r} must be a mapping, got {type(data).__name__}")
    valid = [f.name for f in fields(cls)]
    unknown = sorted(set(data) - set(valid))
    if unknown:
        where = f"{section}." if section else ""
        raise ValueError(f"unknown config key(s) {[where + k for k in unknown]}; valid keys in {section or 'the top level'}: {valid}")


@dataclass(frozen=True)
class DataConfig:
    """What to record. ``policy``: ``"random"``, a saved model ``.zip``, or ``"module:function"`` (obs -> action)."""

    env_id: str = ""
    n_steps: int = 20_000
    policy: str = "random"
    target: str = "state"
    target_indices: tuple[int, ...] | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.env_id:
            raise ValueError("data.env_id is required (for example pomdp/CartPoleNoVel-v1)")
        if isinstance(self.n_steps, bool) or not isinstance(self.n_steps, int) or self.n_steps < 1:
            raise ValueError(f"data.n_steps must be a positive integer, got {self.n_steps!r}")
        if self.target not in TARGETS:
            raise ValueError(f"data.target={self.target!r} is not valid; choose one of {list(TARGETS)}")
        if self.target_indices is not None:
            object.__setattr__(self, "target_indices", tuple(int(i) for i in self.target_indices))


@dataclass(frozen=True)
class EncoderModelConfig:
    """The sequence model's architecture (causal: it becomes a policy's encoder)."""

    memory: str = "gru"
    hidden_size: int = 64
    num_layers: int = 1
    dropout: float = 0.0
    input_layers: tuple[int, ...] = ()
    activation: str = "tanh"

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_layers", tuple(int(n) for n in self.input_layers))


@dataclass(frozen=True)
class PretrainConfig:
    """A whole pretraining run. Build it with :meth:`from_dict` (validates every key)."""

    data: DataConfig
    model: EncoderModelConfig = field(default_factory=EncoderModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    name: str = "pretrain"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PretrainConfig:
        _check_keys("", data, cls)
        for section, sub in (("data", DataConfig), ("model", EncoderModelConfig), ("train", TrainConfig)):
            _check_keys(section, data.get(section, {}), sub)
        model = EncoderModelConfig(**data.get("model", {}))
        # validate the architecture now, with placeholder sizes, rather than after recording data
        SequenceModelConfig(input_size=1, output_size=1, **asdict(model))
        return cls(
            data=DataConfig(**data.get("data", {})),
            model=model,
            train=TrainConfig(**data.get("train", {})),
            name=str(data.get("name", "pretrain")),
        )

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))  # tuples -> lists, a plain JSON-able dict


def parse_value(text: str) -> Any:
    """A ``--set`` value: JSON (numbers, true/false/null, [lists], "strings") or else the bare string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        lowered = text.strip().lower()
        return {"true": True, "false": False, "none": None}.get(lowered, text)


def apply_overrides(config: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``["train.epochs=5", "model.memory=lstm"]`` applied to a copy of a config dict."""
    result = json.loads(json.dumps(config))
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE, for example train.epochs=20")
        key, value = item.split("=", 1)
        *sections, leaf = key.strip().split(".")
        node = result
        for section in sections:
            node = node.setdefault(section, {})
            if not isinstance(node, dict):
                raise ValueError(f"--set {item!r}: {section!r} is not a config section")
        node[leaf] = parse_value(value)
    return result


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a config from ``.json``, ``.toml`` or ``.yaml``/``.yml`` (the last needs PyYAML)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    text = path.read_text()
    if path.suffix == ".json":
        data = json.loads(text)
    elif path.suffix == ".toml":
        import tomllib

        data = tomllib.loads(text)
    elif path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError as exc:
            raise ValueError(f"{path}: reading YAML needs PyYAML (pip install pyyaml), or use .json / .toml") from exc
        data = yaml.safe_load(text)
    else:
        raise ValueError(f"{path}: unknown config format {path.suffix!r}; use .json, .toml or .yaml")
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a mapping of config sections, got {type(data).__name__}")
    return data


def resolve_config(
    preset: str | None = None, config_file: str | Path | None = None, overrides: list[str] | None = None
) -> PretrainConfig:
    """Preset, then config file on top, then ``--set`` overrides on top of both."""
    from recurrent_rl.supervised.presets import get_preset

    data: dict[str, Any] = get_preset(preset) if preset else {}
    if config_file is not None:
        data = _merge(data, load_config_file(config_file))
    if not data and not overrides:
        raise ValueError("nothing to pretrain: give a --preset, a --config file, or --set data.env_id=...")
    return PretrainConfig.from_dict(apply_overrides(data, overrides or []))


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _load_policy(spec: str) -> Any:
    """``"random"``, a saved SB3 / recurrent_rl model (``.zip``), or ``"module:function"``."""
    if spec == "random":
        return spec
    if spec.endswith(".zip"):
        from recurrent_rl import RecurrentPPO

        try:
            return RecurrentPPO.load(spec, device="cpu")
        except Exception:  # noqa: BLE001  not a RecurrentPPO file: try SB3's PPO
            from stable_baselines3 import PPO

            return PPO.load(spec, device="cpu")
    if ":" in spec:
        import importlib

        module, name = spec.split(":", 1)
        return getattr(importlib.import_module(module), name)
    raise ValueError(f"data.policy={spec!r}: use 'random', a saved model path ending in .zip, or 'module:function'")


@dataclass
class PretrainResult:
    """Where a pretraining run wrote its files, and its final numbers."""

    run_dir: Path
    model_path: Path
    encoder_path: Path
    metrics: dict[str, Any]


def pretrain(config: PretrainConfig | dict[str, Any], runs_dir: str | Path = "runs", verbose: bool = True) -> PretrainResult:
    """Record trajectories, train a sequence model on them, and write a run folder (see module doc)."""
    th.set_num_threads(1)  # small recurrent nets run fastest on one thread
    config = PretrainConfig.from_dict(config) if isinstance(config, dict) else config
    d, log = config.data, (print if verbose else None)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run = Path(runs_dir) / f"{config.name}__{d.env_id.replace('/', '-')}__{config.model.memory}__seed{config.train.seed}__{stamp}"
    run.mkdir(parents=True, exist_ok=False)  # never reuse a folder
    (run / "config.json").write_text(json.dumps(config.to_dict(), indent=2))

    started = time.perf_counter()
    trajectories = record_trajectories(d.env_id, d.n_steps, _load_policy(d.policy), seed=d.seed)
    trajectories.save(run / "trajectories.npz")
    dataset = trajectories.to_dataset(d.target, d.target_indices)
    if log:
        log(f"recorded {trajectories.n_transitions} transitions in {trajectories.n_episodes} episodes of {d.env_id} "
            f"({time.perf_counter() - started:.1f} s); target: {d.target} {list(d.target_indices or [])}")  # fmt: skip

    model_config = SequenceModelConfig(
        input_size=dataset.input_size, output_size=dataset.target_size, task="many_to_many", objective="regression",
        **asdict(config.model),
    )  # fmt: skip
    th.manual_seed(config.train.seed)  # the initial weights
    model = SequenceModel(model_config)
    result = fit(model, dataset, config.train, run_dir=run, log=log)
    _, val_set = dataset.split(config.train.val_fraction, config.train.seed)
    metrics = {
        "transitions": trajectories.n_transitions,
        "episodes": trajectories.n_episodes,
        "epochs": len(result.history),
        "best_epoch": result.best_epoch,
        "seconds": round(time.perf_counter() - started, 2),
        **{f"val_{k}": v for k, v in (evaluate(model, val_set).items() if val_set is not None else [])},
    }
    metadata = {"env_id": d.env_id, "target": d.target, "target_indices": list(d.target_indices or []),
                "transitions": trajectories.n_transitions, "run": str(run)}  # fmt: skip
    model_path = save_sequence_model(model, run / "model.pt", metadata)
    encoder_path = export_encoder(model, run / "encoder.pt", metadata)
    (run / "metrics.json").write_text(json.dumps(metrics, indent=2))
    if log:
        log(f"run folder: {run}\n  model: {model_path}\n  encoder: {encoder_path}\n  metrics: {metrics}")
    return PretrainResult(run, model_path, encoder_path, metrics)
