"""MkDocs hooks: let mkdocstrings see ``recurrent_rl.envs``, whose source is the top-level ``envs/``,
and serve the repository's CHANGELOG.md as the page ``changelog.md``.

The package installs ``envs/`` as ``recurrent_rl.envs`` (``package-dir`` in pyproject.toml), a
mapping that griffe, which reads the source without importing it, does not follow. Before
mkdocstrings starts its handler, this builds a tree of symbolic links in a temporary folder,
``recurrent_rl/`` with the package's entries plus ``envs -> ../envs``, and points the Python
handler's search path at it.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from typing import Any

from mkdocs.plugins import event_priority

ROOT = Path(__file__).resolve().parents[1]


@event_priority(100)  # before mkdocstrings' own on_config, which creates the handler
def on_config(config: Any) -> Any:
    tree = Path(tempfile.mkdtemp(prefix="recurrent_rl_docs_"))
    atexit.register(shutil.rmtree, tree, ignore_errors=True)
    package = tree / "recurrent_rl"
    package.mkdir()
    for entry in (ROOT / "recurrent_rl").iterdir():
        if entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry)
    (package / "envs").symlink_to(ROOT / "envs")
    handlers = config.plugins["mkdocstrings"].config.handlers
    handlers.setdefault("python", {})["paths"] = [str(tree)]
    return config


def on_files(files: Any, config: Any) -> Any:
    """The repository's CHANGELOG.md as the site's page ``changelog.md`` (one source for both)."""
    from mkdocs.structure.files import File

    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    text = text.replace("](docs/", "](")  # its links into docs/, from the repository's root, as the site's
    files.append(File.generated(config, "changelog.md", content=text))
    return files
