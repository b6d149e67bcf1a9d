"""Pretraining presets, as config mappings: the YAML files ``recurrent_rl/config/presets/<name>.pretrain.yaml``.

They are read, like the training presets, by :mod:`recurrent_rl.config.presets`
(:func:`~recurrent_rl.config.presets.load_pretrain_preset` gives the validated config); this module
keeps the mapping view of them. The shipped ones train encoders that estimate the state a
masked-velocity task hides (each file's comments say why the whole state). Override anything
with ``--set``, e.g. ``--set model.memory=lstm``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any


class _Presets(Mapping[str, dict[str, Any]]):
    """Name -> config mapping of the pretraining presets, read from their files on each lookup."""

    def __getitem__(self, name: str) -> dict[str, Any]:
        from recurrent_rl.config.presets import preset_names, preset_values

        if name not in preset_names("pretrain"):
            raise KeyError(name)
        return preset_values(name, "pretrain")

    def __iter__(self) -> Iterator[str]:
        from recurrent_rl.config.presets import preset_names

        return iter(preset_names("pretrain"))

    def __len__(self) -> int:
        from recurrent_rl.config.presets import preset_names

        return len(preset_names("pretrain"))


PRESETS: Mapping[str, dict[str, Any]] = _Presets()


def get_preset(name: str) -> dict[str, Any]:
    """A copy of preset ``name`` (a config mapping); unknown names get a :class:`ConfigError` listing the valid ones."""
    from recurrent_rl.config.presets import preset_values

    return preset_values(name, "pretrain")
