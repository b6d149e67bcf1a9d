"""Deploying and sharing trained agents: an ONNX graph of the acting path, and a weights-only format.

- :func:`export_onnx` (:mod:`.onnx`): the policy's acting path (VecNormalize, features extractor,
  memory step, deterministic action) as one ONNX graph whose memory state is an explicit input
  and output;
- :mod:`.play`: plays episodes of a Gymnasium env with an exported graph, onnxruntime and NumPy
  only (``python -m recurrent_rl.export.play MODEL.onnx --env ID --episodes N``); it never
  imports torch;
- :func:`save_safe` / :func:`load_safe` (:mod:`.safe`): ``model.safetensors`` + ``model.json``, a
  model file that holds only tensors and plain data, so opening one never runs code from it;

May import: ``io``, ``algorithms``, ``nets``, ``envs`` and the leaf modules. The names below are
imported on first use (PEP 562): importing this package (or the runner) loads neither torch nor SB3.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_PUBLIC: dict[str, str] = {
    "export_onnx": "recurrent_rl.export.onnx",
    "read_metadata": "recurrent_rl.export.onnx",
    "ExportError": "recurrent_rl.export.onnx",
    "OnnxPolicy": "recurrent_rl.export.play",
    "play_episodes": "recurrent_rl.export.play",
    "save_safe": "recurrent_rl.export.safe",
    "load_safe": "recurrent_rl.export.safe",
    "load_safe_vecnormalize": "recurrent_rl.export.safe",
    "SafeFormatError": "recurrent_rl.export.safe",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'recurrent_rl.export' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})


if TYPE_CHECKING:
    from recurrent_rl.export.onnx import (
        ExportError as ExportError,
        export_onnx as export_onnx,
        read_metadata as read_metadata,
    )
    from recurrent_rl.export.play import OnnxPolicy as OnnxPolicy, play_episodes as play_episodes
    from recurrent_rl.export.safe import (
        SafeFormatError as SafeFormatError,
        load_safe as load_safe,
        load_safe_vecnormalize as load_safe_vecnormalize,
        save_safe as save_safe,
    )
