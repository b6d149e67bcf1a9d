"""The names an exported ONNX file is recognised by (shared by the exporter and the torch-free runner)."""

from __future__ import annotations

from typing import Any

METADATA_KEY = "recurrent_rl"  # the metadata_props entry that holds the JSON description
FORMAT = "recurrent_rl.onnx_policy"  # its "format" field
FORMAT_VERSION = 1  # its "format_version" field: the runner reads files of this version


def env_id_of(model: Any) -> str | None:
    """The Gymnasium id of a model's (first) env, if it has one (recorded in the exported files)."""
    env = getattr(model, "env", None)
    if env is None:
        return None
    try:
        spec = env.get_attr("spec", [0])[0]
    except Exception:  # a VecEnv without Gymnasium envs inside
        return None
    return getattr(spec, "id", None)
