"""The machine a benchmark figure was measured on, as every benchmark prints it."""

from __future__ import annotations

import platform
import subprocess


def cpu_model() -> str:
    """``lscpu``'s model name with its family and model numbers (the CPU can change between machines
    of one name); ``platform``'s processor where ``lscpu`` is missing."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return platform.processor() or platform.machine() or "unknown CPU"
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    name = fields.get("Model name", "").strip() or platform.processor() or "unknown CPU"
    return f"{name}, family {fields.get('CPU family', '?').strip()} model {fields.get('Model', '?').strip()}"
