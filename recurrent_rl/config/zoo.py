"""rl-baselines3-zoo's hyperparameter files, read as the zoo writes them.

A zoo file (``hyperparams/ppo_lstm.yml``) holds one section per env id, each with the
algorithm's hyperparameters, and writes some values as Python text the zoo evaluates:
``policy_kwargs: "dict(ortho_init=False, activation_fn=nn.ReLU, lstm_hidden_size=128)"``. Here:

- :func:`pick_section`: the section of the env the command names (``--env``), or the only one;
- :func:`python_value`: ``"dict(...)"`` and ``"{...}"`` read with :mod:`ast`, never evaluated:
  literals, ``dict(...)`` calls, lists and tuples, and ``nn.<Activation>`` names, nothing else;
- :func:`from_zoo`: a section's values in this package's terms: the Python text read, ``nn.ReLU``
  as ``relu``, SB3's older ``net_arch=[dict(pi=..., vf=...)]``, sb3-contrib's LSTM option names
  (``lstm_hidden_size``, ``n_lstm_layers``, ``enable_critic_lstm``, ``shared_lstm``,
  ``lstm_kwargs``) as :func:`recurrent_rl.nets.contrib.translate_contrib_options` translates them
  for the Python API, and the defaults of the zoo and sb3-contrib for what a section leaves out
  (:data:`ZOO_DEFAULTS`);
- :func:`resolve_env_id`: a bare id that exists only under ``pomdp/`` (``CartPoleNoVel-v1``)
  named by its full id.

May import: :mod:`recurrent_rl.config.schema` and the leaf modules (Gymnasium inside
:func:`resolve_env_id`).
"""

from __future__ import annotations

import ast
import difflib
import re
from collections.abc import Mapping
from typing import Any

from recurrent_rl.config.schema import ACTIVATIONS, ConfigError, clip
from recurrent_rl.received import shorten

# values a zoo file may write as Python text
PYTHON_KEYS = ("policy_kwargs", "normalize")
# sb3-contrib's RecurrentPPO policy options (sb3_contrib/common/recurrent/policies.py)
CONTRIB_KEYS = ("lstm_hidden_size", "n_lstm_layers", "enable_critic_lstm", "shared_lstm", "lstm_kwargs")
# what a zoo section leaves out means in the zoo: one env (rl_zoo3/exp_manager.py, n_envs=1), and for
# an LSTM policy sb3-contrib's LSTM of 256 units with PyTorch's initialisation (lstm_hidden_size=256)
ZOO_DEFAULTS: dict[str, Any] = {"n_envs": 1}
CONTRIB_LSTM_DEFAULTS: dict[str, Any] = {"hidden_size": 256, "gate_bias": 0.0}
# torch.nn class name -> the activation name of a config (nn.ReLU -> relu)
_ACTIVATION_NAMES = {cls: name for name, cls in ACTIVATIONS.items()}
_NN_NAME = re.compile(r"^(?:(?:th|torch)\.)?nn\.(\w+)$")
_LSTM_KWARGS_FIXED = {"bias": True, "batch_first": False, "bidirectional": False, "proj_size": 0}


def is_zoo_layout(values: Mapping[str, Any], field_names: set[str]) -> bool:
    """A mapping of sections keyed by env id: every value a mapping, no key a config key."""
    return bool(values) and all(
        isinstance(key, str) and key not in field_names and isinstance(inner, Mapping) for key, inner in values.items()
    )


def pick_section(values: Mapping[str, Any], env: str | None) -> tuple[str, dict[str, Any]]:
    """The section for env id ``env`` (the command's ``--env``; None: the file's only section),
    as ``(section key, values)``; the key matches ``env`` as written or through :func:`resolve_env_id`.

    :raises ConfigError: several sections and no ``env``, or none for ``env``
    """
    keys = [str(key) for key in values]
    if env is None:
        if len(values) == 1:
            ((key, inner),) = values.items()
            return str(key), dict(inner)
        raise ConfigError(
            f"the file has one section per env id ({clip(', '.join(keys))}), rl-baselines3-zoo's layout: pick "
            "one with --env ID (or --set env=ID)"
        )
    wanted = resolve_env_id(env)
    for key, inner in values.items():
        if key == env or resolve_env_id(str(key)) == wanted:
            return str(key), dict(inner)
    close = difflib.get_close_matches(env, keys, n=3, cutoff=0.5) if len(env) <= 200 else []
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ConfigError(
        f"the file has no section for env {shorten(env)}; its sections: {clip(', '.join(keys))}.{hint} A zoo file "
        "trains the env of the section --env names"
    )


def resolve_env_id(env_id: str) -> str:
    """``env_id``, or ``pomdp/<env_id>`` where only that is registered (the zoo's ``CartPoleNoVel-v1``)."""
    if not isinstance(env_id, str) or "/" in env_id or ":" in env_id:
        return env_id
    import gymnasium as gym

    import recurrent_rl.envs  # noqa: F401  registers pomdp/

    full = f"pomdp/{env_id}"
    return full if env_id not in gym.registry and full in gym.registry else env_id


def python_value(text: str, key: str) -> Any:
    """The value of Python text such as ``dict(ortho_init=False, net_arch=[64])``, read with
    :mod:`ast` and never evaluated: literals, ``dict(...)`` with keywords, ``{...}``, lists,
    tuples, negative numbers, and ``nn.X`` / ``th.nn.X`` / ``torch.nn.X`` (the name ``"nn.X"``).

    :raises ConfigError: anything else (a call, a name, an operation), with what is read
    """
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as error:
        detail = getattr(error, "msg", None) or type(error).__name__
        raise ConfigError(
            f"cannot read {shorten(text)} as rl-baselines3-zoo's Python text ({detail}); write a mapping, e.g. "
            "dict(ortho_init=False, activation_fn=nn.ReLU) or {ortho_init: false, activation_fn: relu}",
            key=key,
        ) from None
    return _node_value(tree.body, text, key)


def _node_value(node: ast.AST, text: str, key: str) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool, type(None))):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _node_value(node.operand, text, key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_node_value(item, text, key) for item in node.elts]
    if isinstance(node, ast.Dict) and all(k is not None for k in node.keys):
        return {_node_value(k, text, key): _node_value(v, text, key) for k, v in zip(node.keys, node.values)}  # type: ignore[arg-type]
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "dict"
        and not node.args
        and all(k.arg is not None for k in node.keywords)
    ):
        return {k.arg: _node_value(k.value, text, key) for k in node.keywords}
    name = _dotted(node)
    if name is not None and _NN_NAME.match(name):
        return name
    part = ast.get_source_segment(text, node) or ast.dump(node)[:60]
    raise ConfigError(
        f"{shorten(part, 60)} in {shorten(text)}: a config file is data, never run: only numbers, strings, "
        "true/false, lists, dict(...) and nn.<Activation> are read",
        key=key,
    )


def _dotted(node: ast.AST) -> str | None:
    """``a.b.c`` of an attribute chain of names, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id, *reversed(parts)])
    return None


def activation_name(value: Any, key: str = "policy_kwargs.activation_fn") -> Any:
    """``nn.ReLU`` / ``th.nn.ReLU`` / ``torch.nn.ReLU`` -> ``relu``; anything else unchanged (checked later)."""
    if not isinstance(value, str):
        return value
    match = _NN_NAME.match(value)
    if match and match[1] in _ACTIVATION_NAMES:
        return _ACTIVATION_NAMES[match[1]]
    if match:
        raise ConfigError(
            f"activation {shorten(value)} is not one of the supported torch.nn activations "
            f"({', '.join('nn.' + cls for cls in _ACTIVATION_NAMES)})",
            key=key,
        )
    return value


def from_zoo(values: Mapping[str, Any], zoo_section: bool = False) -> dict[str, Any]:
    """A config mapping with the zoo's ways of writing values turned into this package's.

    :param zoo_section: the values are a section of a zoo file: what it leaves out takes the zoo's
        and sb3-contrib's defaults (:data:`ZOO_DEFAULTS`, :data:`CONTRIB_LSTM_DEFAULTS`)
    """
    values = dict(values)
    for key in PYTHON_KEYS:
        if isinstance(values.get(key), str) and re.match(r"^\s*(dict\s*\(|\{)", values[key]):
            values[key] = python_value(values[key], key)
    if zoo_section:
        for key, default in ZOO_DEFAULTS.items():
            values.setdefault(key, default)
    kwargs = values.get("policy_kwargs")
    if isinstance(kwargs, Mapping):
        values["policy_kwargs"] = _policy_kwargs(dict(kwargs), values.get("policy"), zoo_section)
    elif kwargs is None and zoo_section and _is_lstm(values.get("policy")):
        values["policy_kwargs"] = dict(CONTRIB_LSTM_DEFAULTS)
    return values


def _is_lstm(policy: Any) -> bool:
    return isinstance(policy, str) and "Lstm" in policy


def _policy_kwargs(kwargs: dict[str, Any], policy: Any, zoo_section: bool) -> dict[str, Any]:
    if "activation_fn" in kwargs:
        kwargs["activation_fn"] = activation_name(kwargs["activation_fn"])
    arch = kwargs.get("net_arch")
    # SB3 before 1.8: net_arch=[dict(pi=[...], vf=[...])], the heads' layers in a list
    if isinstance(arch, list) and len(arch) == 1 and isinstance(arch[0], Mapping):
        kwargs["net_arch"] = dict(arch[0])
    elif isinstance(arch, list) and any(isinstance(item, Mapping) for item in arch):
        raise ConfigError(
            f"layers shared by actor and critic before their heads ({shorten(arch)}) are not supported: give the "
            "heads only, net_arch: {pi: [...], vf: [...]}",
            key="policy_kwargs.net_arch",
        )
    given = [key for key in CONTRIB_KEYS if key in kwargs]
    if given:
        kwargs = _translate_contrib(kwargs, given, policy)
        if zoo_section:  # sb3-contrib's lstm_hidden_size default
            kwargs.setdefault("hidden_size", CONTRIB_LSTM_DEFAULTS["hidden_size"])
    elif zoo_section and _is_lstm(policy) and kwargs.get("memory") in (None, "lstm"):
        for key, default in CONTRIB_LSTM_DEFAULTS.items():
            kwargs.setdefault(key, default)
    return kwargs


def _translate_contrib(kwargs: dict[str, Any], given: list[str], policy: Any) -> dict[str, Any]:
    """sb3-contrib's LSTM options as this package's, as the Python API takes them
    (:func:`recurrent_rl.nets.contrib.translate_contrib_options`; ``tests/test_zoo.py`` holds them equal)."""
    contrib = {key: kwargs.pop(key) for key in given}
    names = ", ".join(given)
    memory = kwargs.get("memory") or ("lstm" if _is_lstm(policy) or policy is None else None)
    if memory != "lstm":
        raise ConfigError(
            f"{names}: sb3-contrib's LSTM options, but the policy {shorten(policy)} has no LSTM: use "
            "MlpLstmPolicy (or policy_kwargs.memory: lstm), or this package's names (hidden_size, num_layers, "
            "critic_memory)",
            key="policy_kwargs",
        )
    for theirs, ours in (
        ("lstm_hidden_size", "hidden_size"),
        ("n_lstm_layers", "num_layers"),
        ("enable_critic_lstm", "critic_memory"),
        ("shared_lstm", "critic_memory"),
        ("lstm_kwargs", "dropout"),
    ):
        if theirs in contrib and ours in kwargs:
            raise ConfigError(
                f"both {theirs} (sb3-contrib's name) and {ours} (this package's) for one option: keep one",
                key="policy_kwargs",
            )
    kwargs["memory"] = "lstm"
    if "lstm_hidden_size" in contrib:
        kwargs["hidden_size"] = contrib["lstm_hidden_size"]
    if "n_lstm_layers" in contrib:
        kwargs["num_layers"] = contrib["n_lstm_layers"]
    shared, critic_lstm = bool(contrib.get("shared_lstm", False)), bool(contrib.get("enable_critic_lstm", True))
    if shared and critic_lstm:
        raise ConfigError(
            "shared_lstm: true needs enable_critic_lstm: false (sb3-contrib's enable_critic_lstm defaults to true, "
            "and the critic either shares the actor's LSTM or has its own)",
            key="policy_kwargs",
        )
    if "enable_critic_lstm" in contrib or "shared_lstm" in contrib:
        kwargs["critic_memory"] = "shared" if shared else ("separate" if critic_lstm else "none")
        if shared:  # sb3-contrib's shared LSTM: the value loss does not train the actor's LSTM
            kwargs["detach_critic_memory"] = True
    lstm_kwargs = contrib.get("lstm_kwargs") or {}
    if not isinstance(lstm_kwargs, Mapping):
        raise ConfigError(f"expected a mapping, got {shorten(lstm_kwargs)}", key="policy_kwargs.lstm_kwargs")
    lstm_kwargs = {k: v for k, v in lstm_kwargs.items() if not (k in _LSTM_KWARGS_FIXED and v == _LSTM_KWARGS_FIXED[k])}
    if "dropout" in lstm_kwargs:
        kwargs["dropout"] = lstm_kwargs.pop("dropout")
    if lstm_kwargs:
        raise ConfigError(
            f"{sorted(lstm_kwargs)} are not supported: the LSTM takes dropout only", key="policy_kwargs.lstm_kwargs"
        )
    kwargs.setdefault("gate_bias", CONTRIB_LSTM_DEFAULTS["gate_bias"])  # its nn.LSTM keeps PyTorch's init
    return kwargs
