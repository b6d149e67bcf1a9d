"""Sequence models built on the policies' memory cores: many-to-one and many-to-many.

input layers (standardisation, then an optional MLP) -> memory core (GRU / LSTM / Elman RNN,
:class:`recurrent_rl.nets.memory.MemoryCore`) -> head (a linear layer), at every step
(``many_to_many``) or once per sequence (``many_to_one``, from the last valid step or from
attention pooling over the valid steps).

Bidirectional models (offline use only) hold a second core that reads each sequence backwards:
the sequence is reversed *within its length* (padding stays at the end), run through
``backward_core`` and reversed back, so both directions see exactly the valid steps. Two
:class:`MemoryCore` s rather than one ``bidirectional=True`` torch module keep the forward core
identical, parameter for parameter, to a policy's memory, which is what an encoder needs.

Batches are time-major: ``x`` (T, B, F), ``lengths`` (B,); steps ``t >= lengths[b]`` are padding.
The memory is causal, so padding (always at the end) never reaches a valid step of the forward
core; the reversal keeps it at the end for the backward core too.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

import torch as th
from torch import nn

from recurrent_rl.config import schema
from recurrent_rl.config.schema import ConfigError, Section, setting
from recurrent_rl.io import run_folder as folders
from recurrent_rl.nets.memory import MEMORY_TYPES, MemoryCore, MemoryState
from recurrent_rl.supervised.config import EncoderModelConfig

TASKS = ("many_to_one", "many_to_many")
POOLINGS = ("last", "attention")
OBJECTIVES = ("regression", "classification")
# name -> torch module of the input layers' activation (the names are the configs', runs.schema.ACTIVATIONS)
ACTIVATIONS: dict[str, type[nn.Module]] = {name: schema.activation_class(name) for name in schema.ACTIVATIONS}
MODEL_FORMAT = "recurrent_rl/sequence-model"
FORMAT_VERSION = 1


def dataclass_from_dict(cls: Any, data: dict[str, Any], what: str) -> Any:
    """``cls(**data)``, refusing unknown keys with the list of valid ones (a config section's ``from_dict``)."""
    if isinstance(cls, type) and issubclass(cls, Section):
        return cls.from_dict(data)
    valid = [f.name for f in fields(cls)]
    unknown = [k for k in data if k not in valid]
    if unknown:
        raise schema.UnknownKeyError(unknown, valid, noun=f"{what} option")
    return cls(**data)


@dataclass(frozen=True, kw_only=True)
class SequenceModelConfig(EncoderModelConfig):
    """What a :class:`SequenceModel` is made of: the architecture (:class:`EncoderModelConfig`:
    ``memory``, ``hidden_size`` (H), ``num_layers`` (L), ``dropout``, ``input_layers``,
    ``activation``), the sizes and the task. Keyword arguments only.

    :param input_size: features per step (F)
    :param output_size: values per output (regression) or number of classes (classification)
    :param task: ``"many_to_many"`` (an output at every step) or ``"many_to_one"`` (one per sequence)
    :param pooling: many-to-one only: ``"last"`` valid step, or ``"attention"`` over valid steps
    :param objective: ``"regression"`` (MSE on standardised targets) or ``"classification"`` (cross-entropy)
    :param bidirectional: add a backward core (offline use only: cannot become a policy's encoder)
    """

    key_noun = "sequence model option"

    input_size: int = setting(help="features per step (F)", low=1)
    output_size: int = setting(help="values per output (regression) or number of classes (classification)", low=1)
    task: Literal[TASKS] = setting("many_to_many", "an output at every step, or one per sequence")  # type: ignore[valid-type]
    pooling: Literal[POOLINGS] = setting("last", "many_to_one: the last valid step, or attention over the valid steps")  # type: ignore[valid-type]
    objective: Literal[OBJECTIVES] = setting("regression", "MSE on standardised targets, or cross-entropy")  # type: ignore[valid-type]
    bidirectional: bool = setting(False, "add a backward core (offline use only: cannot become a policy's encoder)")

    def _check(self) -> None:
        super()._check()
        if self.pooling == "attention" and self.task != "many_to_one":
            raise ConfigError(
                "pooling='attention' pools a sequence into one output: it needs task='many_to_one'", key="pooling"
            )


class InputLayers(nn.Module):
    """Per-step input processing shared by sequence models and policy encoders.

    ``(x - input_mean) / input_std`` (buffers, set from the training data and never trained),
    then ``Linear -> activation`` for each size in ``layers``. Works on any leading shape.
    """

    input_mean: th.Tensor  # (F,), a buffer
    input_std: th.Tensor  # (F,), a buffer

    def __init__(self, input_size: int, layers: tuple[int, ...] = (), activation: str = "tanh"):
        super().__init__()
        self.register_buffer("input_mean", th.zeros(input_size))
        self.register_buffer("input_std", th.ones(input_size))
        modules: list[nn.Module] = []
        size = input_size
        for width in layers:
            modules += [nn.Linear(size, width), schema.activation_class(activation)()]
            size = width
        self.net = nn.Sequential(*modules)
        self.output_size = size

    def set_standardization(self, mean: th.Tensor, std: th.Tensor) -> None:
        """Set the input statistics; near-constant features (std < 1e-6, e.g. masked ones) get std 1."""
        self.input_mean.copy_(th.as_tensor(mean, dtype=th.float32))
        std = th.as_tensor(std, dtype=th.float32)
        self.input_std.copy_(th.where(std < 1e-6, th.ones_like(std), std))

    def forward(self, x: th.Tensor) -> th.Tensor:
        return self.net((x - self.input_mean) / self.input_std)


def reverse_padded(x: th.Tensor, lengths: th.Tensor) -> th.Tensor:
    """Reverse each column of ``x`` (T, B, ...) within its length; padding stays at the end."""
    T = x.shape[0]
    t = th.arange(T, device=x.device).unsqueeze(1)  # (T, 1)
    n = lengths.to(x.device).unsqueeze(0)  # (1, B)
    index = th.where(t < n, n - 1 - t, t)  # (T, B), an involution
    return x.gather(0, index.view(T, -1, *([1] * (x.dim() - 2))).expand_as(x))


def length_mask(lengths: th.Tensor, T: int) -> th.Tensor:
    """(B,) lengths -> (T, B) bool, True on valid steps."""
    return th.arange(T, device=lengths.device).unsqueeze(1) < lengths.unsqueeze(0)


class SequenceModel(nn.Module):
    """A recurrent sequence classifier / regressor (see the module docstring)."""

    target_mean: th.Tensor  # (output_size,), a buffer: regression targets are learnt standardised
    target_std: th.Tensor  # (output_size,), a buffer

    def __init__(self, config: SequenceModelConfig):
        super().__init__()
        self.config = c = config
        self.inputs = InputLayers(c.input_size, c.input_layers, c.activation)
        F = self.inputs.output_size
        self.core = MemoryCore(c.memory, F, c.hidden_size, c.num_layers, c.dropout)
        self.backward_core = (
            MemoryCore(c.memory, F, c.hidden_size, c.num_layers, c.dropout) if c.bidirectional else None
        )
        width = c.hidden_size * (2 if c.bidirectional else 1)
        self.attention = nn.Linear(width, 1) if c.pooling == "attention" else None
        self.head = nn.Linear(width, c.output_size)
        # regression targets are learnt standardised; predict() maps back to the data's units
        self.register_buffer("target_mean", th.zeros(c.output_size))
        self.register_buffer("target_std", th.ones(c.output_size))

    def encode(
        self, x: th.Tensor, state: MemoryState | None = None, episode_starts: th.Tensor | None = None
    ) -> tuple[th.Tensor, MemoryState | None]:
        """The forward core's outputs (T, B, H) and final state: what a policy's memory computes.

        ``episode_starts`` (T, B) resets the memory where set (default: only the given ``state``,
        zeros if None, at t = 0).
        """
        T, B = x.shape[:2]
        features = self.inputs(x)  # (T, B, F')
        state = self.core.initial_state(B, x.device) if state is None else state
        starts = th.zeros(T, B, device=x.device) if episode_starts is None else episode_starts
        return self.core(features, state, starts)

    def hidden(self, x: th.Tensor, lengths: th.Tensor | None = None) -> th.Tensor:
        """Per-step hidden features (T, B, H) or (T, B, 2H) when bidirectional."""
        T, B = x.shape[:2]
        forward_out, _ = self.encode(x)
        if self.backward_core is None:
            return forward_out
        lengths = th.full((B,), T, dtype=th.long) if lengths is None else lengths
        features = reverse_padded(self.inputs(x), lengths)
        starts = th.zeros(T, B, device=x.device)
        backward_out, _ = self.backward_core(features, self.backward_core.initial_state(B, x.device), starts)
        return th.cat([forward_out, reverse_padded(backward_out, lengths)], dim=-1)

    def forward(self, x: th.Tensor, lengths: th.Tensor | None = None) -> th.Tensor:
        """Raw outputs (standardised targets or logits): (T, B, O) many-to-many, (B, O) many-to-one."""
        T, B = x.shape[:2]
        lengths = th.full((B,), T, dtype=th.long, device=x.device) if lengths is None else lengths.to(x.device)
        hid = self.hidden(x, lengths)  # (T, B, H')
        if self.config.task == "many_to_many":
            return self.head(hid)
        if self.attention is None:
            pooled = hid[lengths - 1, th.arange(B, device=x.device)]  # (B, H') the last valid step
        else:
            scores = self.attention(hid).squeeze(-1)  # (T, B)
            scores = scores.masked_fill(~length_mask(lengths, T), float("-inf"))
            weights = th.softmax(scores, dim=0).unsqueeze(-1)  # (T, B, 1), 0 on padding
            pooled = (weights * hid).sum(0)  # (B, H')
        return self.head(pooled)

    @th.no_grad()
    def predict(self, x: th.Tensor, lengths: th.Tensor | None = None) -> th.Tensor:
        """Predictions in the data's units (regression) or class indices (classification)."""
        self.eval()
        out = self(x, lengths)
        if self.config.objective == "classification":
            return out.argmax(-1)
        return out * self.target_std + self.target_mean

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def save_sequence_model(model: SequenceModel, path: str | Path, metadata: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (config, weights and free-form ``metadata``) to ``path`` with ``torch.save``."""
    path = Path(path)
    with folders.atomic_path(path) as tmp:  # a crash mid-write leaves the previous file
        th.save(
            {
                "format": MODEL_FORMAT,
                "version": FORMAT_VERSION,
                "config": model.config.to_dict(),
                "state_dict": model.state_dict(),
                "metadata": metadata or {},
            },
            tmp,
        )
    return path


def load_sequence_model(path: str | Path) -> SequenceModel:
    """Read a model written by :func:`save_sequence_model`."""
    data = read_checkpoint(path, MODEL_FORMAT)
    model = SequenceModel(SequenceModelConfig.from_dict(data["config"]))
    model.load_state_dict(data["state_dict"])
    model.metadata = data.get("metadata", {})
    return model


def read_checkpoint(path: str | Path, expected_format: str | tuple[str, ...]) -> dict[str, Any]:
    """``torch.load`` a file of ours, with an error naming what the file is when it is not one."""
    path = Path(path)
    if path.is_dir():
        raise FileNotFoundError(f"{path} is a folder: give the file (encoder.pt or model.pt inside a pretraining run)")
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        data = th.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  any unreadable file gets the same explanation
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]  # torch's text runs to many lines
        if "Weights only load failed" in first:  # its advice (weights_only=False) would run the file's code
            first = "it is not plain tensors and data; nothing in it was run"
        raise ValueError(f"{path} is not a recurrent_rl model or encoder file ({first})") from exc
    expected = (expected_format,) if isinstance(expected_format, str) else expected_format
    found = data.get("format") if isinstance(data, dict) else None
    if found not in expected:
        raise ValueError(f"{path} holds {found or 'something else'!r}, not one of {list(expected)}")
    if data.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path} has format version {data.get('version')}; this recurrent_rl reads {FORMAT_VERSION}")
    return data


__all__ = [
    "MEMORY_TYPES",
    "InputLayers",
    "SequenceModel",
    "SequenceModelConfig",
    "length_mask",
    "load_sequence_model",
    "read_checkpoint",
    "reverse_padded",
    "save_sequence_model",
]
