"""Modules the user's own command named: the signed record that lets their run import them again.

A module named in a file (``data.policy: module:function`` in a pretraining config, an env id
``module:Env-v0`` in ``config.yaml``) is never imported on the file's word
(:mod:`recurrent_rl.received`): importing a module runs its code, and a run folder may come from
anyone. What the user types (``--set data.policy=module:function``, a config built in Python) is
theirs to ask for. A run made so records it in its ``run.json``::

    "trusted_modules": {"names": {"data.policy": "my_pkg:policy"}, "signature": "hmac-sha256:..."}

The signature is an HMAC of the run folder's path and the names with a key that only this user
holds (``~/.config/recurrent_rl/trust.key``, made on first use with mode 0600; the environment
variable ``RECURRENT_RL_TRUST_KEY`` names another file). :func:`trusted_names` accepts the record
only when the signature checks out, so the user's own run imports the module again (and says
so), while a run folder from elsewhere, or one whose ``run.json`` was edited, does not: its
record was not signed with this key. A run folder moved to another path or machine loses the
record; the refusal says which command names the module again.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from recurrent_rl.io.run_folder import RUN_INFO, read_run_info

KEY_ENV = "RECURRENT_RL_TRUST_KEY"
FIELD = "trusted_modules"
_SCHEME = "hmac-sha256:"


def key_path() -> Path:
    """Where this user's key is: ``$RECURRENT_RL_TRUST_KEY``, else ``$XDG_CONFIG_HOME`` (or ``~/.config``)
    ``/recurrent_rl/trust.key``."""
    if os.environ.get(KEY_ENV):
        return Path(os.environ[KEY_ENV])
    config = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(config) / "recurrent_rl" / "trust.key"


def _key(create: bool) -> bytes | None:
    path = key_path()
    try:
        key = path.read_bytes()
        if len(key) >= 32:
            return key
    except OSError:
        pass
    if not create:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(key)
    return key


def _sign(key: bytes, run_dir: Path, names: Mapping[str, str]) -> str:
    message = json.dumps([str(run_dir.resolve()), dict(sorted(names.items()))]).encode()
    return _SCHEME + hmac.new(key, message, hashlib.sha256).hexdigest()


def module_of(name: str) -> str | None:
    """The module that ``name`` makes Python import: ``my_pkg`` for ``my_pkg:policy`` or ``my_pkg:Env-v0``."""
    module, colon, _ = name.partition(":")
    return module if colon and module else None


def record(run_dir: str | Path, names: Mapping[str, str]) -> dict[str, Any] | None:
    """The ``trusted_modules`` entry of ``run_dir``'s run.json for ``names`` (config key -> the value
    naming a module, as the user's own command gave it), signed; None when no name has a module.

    Call it only with names from the command line or from Python, never with names read from a file.
    """
    names = {key: value for key, value in names.items() if module_of(value)}
    if not names:
        return None
    key = _key(create=True)
    assert key is not None
    return {"names": dict(names), "signature": _sign(key, Path(run_dir), names)}


def trusted_names(run_dir: str | Path) -> dict[str, str]:
    """Config key -> name of a module that the user's own command gave when ``run_dir`` was made,
    from its run.json; empty unless the record is signed with this user's key for this folder."""
    run_dir = Path(run_dir)
    if not (run_dir / RUN_INFO).is_file():
        return {}
    entry = read_run_info(run_dir).get(FIELD)
    if not isinstance(entry, dict):
        return {}
    names, signature = entry.get("names"), entry.get("signature")
    if not isinstance(names, dict) or not all(isinstance(v, str) for v in names.values()):
        return {}
    if not isinstance(signature, str) or not signature.startswith(_SCHEME):
        return {}
    key = _key(create=False)
    if key is None or not hmac.compare_digest(_sign(key, run_dir, names), signature):
        return {}
    return {str(k): v for k, v in names.items()}
