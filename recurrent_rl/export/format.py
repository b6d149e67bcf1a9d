"""The names an exported ONNX file is recognised by (shared by the exporter and the torch-free runner)."""

from __future__ import annotations

METADATA_KEY = "recurrent_rl"  # the metadata_props entry that holds the JSON description
FORMAT = "recurrent_rl.onnx_policy"  # its "format" field
FORMAT_VERSION = 1  # its "format_version" field: the runner reads files of this version
