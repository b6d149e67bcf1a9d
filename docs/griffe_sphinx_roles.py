"""Griffe extension for the API reference: Sphinx cross-reference roles to Markdown.

The package's docstrings use reStructuredText roles (``:class:`~recurrent_rl.nets.memory.MemoryCore```).
mkdocstrings renders docstrings as Markdown, where such a role would show as raw text, and griffe's
Sphinx parser would even read a line that starts with a role as a field. This rewrites each role to
an optional cross-reference: a link where the target is documented on the site, inline code
otherwise (``~`` keeps the last name only, as in Sphinx; a leading ``.`` is relative to the module).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|data|attr|exc|obj|const):`(?P<body>[^`]+)`")


def _replace(match: re.Match[str], module: str) -> str:
    body = match.group("body").strip()
    explicit = re.fullmatch(r"(?P<text>.+?)\s*<(?P<target>[^>]+)>", body)
    if explicit:
        text, target = explicit.group("text"), explicit.group("target")
    else:
        target = body.lstrip("~")
        text = target.rsplit(".", 1)[-1] if body.startswith("~") else target
    if target.startswith("."):
        package = module.rsplit(".", target.count(".", 0, len(target) - len(target.lstrip("."))))[0]
        target = f"{package}.{target.lstrip('.')}"
    return f'<autoref identifier="{target}" optional><code>{text}</code></autoref>'


class SphinxRoles(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is None or ":`" not in obj.docstring.value:
            return
        module = obj.module.path if not obj.is_module else obj.path
        obj.docstring.value = ROLE.sub(lambda m: _replace(m, module), obj.docstring.value)
