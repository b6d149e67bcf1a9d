"""The test suite's generator of crafted received files, in the spirit of the bad-input table.

Each function writes, from a valid file the package wrote, one that a stranger could send: a
safe copy (``model.json`` + ``model.safetensors`` + the optimizer state), an ONNX graph's
metadata, an encoder file. The tables name each crafted case and say how to make it:

- ``SAFE_SIZES``, ``ONNX_SIZES``, ``ENCODER_SIZES``: sizes that would ask for more memory than a
  machine has (``hidden_size: 200000``, ``Discrete(10**12)``, ``n_envs: 10**12``, a 37 GiB state);
  the loaders must refuse them before allocating, which ``python -m tests.crafted`` checks under an
  address-space limit (:func:`main`);
- ``SAFE_FIELDS``, ``ONNX_FIELDS``, ``ENCODER_FIELDS``: fields of the wrong kind, missing, out of
  range, non-finite, naming classes; each must give one line through the command line, no
  traceback;
- :func:`evil_module`: a module beside a file that writes a marker when imported (an env id
  ``evil_module:Env-v0`` must never import it).
"""

from __future__ import annotations

import copy
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

Edit = Callable[[Any], Any]
DEEP = 5000  # nesting beyond the interpreter's recursion limit


# --- editing nested data -------------------------------------------------------------------------------


def _steps(path: str) -> list[str | int]:
    """``"a.b[0].c"`` -> ``["a", "b", 0, "c"]``."""
    steps: list[str | int] = []
    for part in path.split("."):
        name, *indices = part.split("[")
        if name:
            steps.append(name)
        steps += [int(i.rstrip("]")) for i in indices]
    return steps


def set_path(data: Any, path: str, value: Any) -> Any:
    *head, last = _steps(path)
    for step in head:
        data = data[step]
    data[last] = value
    return data


def delete_path(data: Any, path: str) -> Any:
    *head, last = _steps(path)
    for step in head:
        data = data[step]
    del data[last]
    return data


def setter(path: str, value: Any) -> Edit:
    return lambda data: set_path(data, path, copy.deepcopy(value))


def deleter(path: str) -> Edit:
    return lambda data: delete_path(data, path)


class Raw:
    """An edit whose result is written as this text, not as JSON (NaN, deep nesting, not JSON)."""

    def __init__(self, text: str):
        self.text = text

    def __call__(self, data: Any) -> Raw:
        return self


def deep_json(depth: int = DEEP) -> str:
    return '{"a":' * depth + "1" + "}" * depth


# --- safe copies ---------------------------------------------------------------------------------------


def rewrite_tensors(path: Path, config_path: Path, key: str, edit: Callable[[dict[str, Any]], None]) -> None:
    """Re-save the safetensors file ``path`` after ``edit`` of its tensors, and record its new
    SHA-256 in ``config_path`` at ``key`` (``weights_sha256`` or ``optimizer.sha256``): a file whose
    SHA matches, as a stranger would craft it."""
    import hashlib

    from safetensors.torch import load_file, save_file

    tensors = load_file(str(path))
    edit(tensors)
    save_file(tensors, str(path), metadata={"format": "pt"})
    config = json.loads(config_path.read_text())
    set_path(config, key, hashlib.sha256(path.read_bytes()).hexdigest())
    config_path.write_text(json.dumps(config))


def _nan_weight(tensors: dict[str, Any]) -> None:
    name = sorted(tensors)[0]
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] = math.nan


def _huge_moment(tensors: dict[str, Any]) -> None:
    import torch as th

    tensors["state.0.exp_avg"] = th.zeros(3, 3)


OBS = "observation_space"
PK = "policy_kwargs"
HP = "hyperparameters"
VN = "vecnormalize"

# sizes that ask for far more memory than a machine has (the weights stay those of a tiny GRU)
SAFE_SIZES: dict[str, Edit] = {
    "hidden_size 200000": setter(f"{PK}.hidden_size", 200_000),
    "num_layers 10**6": setter(f"{PK}.num_layers", 10**6),
    "net_arch [10**9]": setter(f"{PK}.net_arch", [10**9]),
    "net_arch of 10**5 layers": setter(f"{PK}.net_arch", [8] * 10**5),
    "memory_kwargs memory_length 10**9": lambda d: d[PK].update(
        memory="transformer", memory_kwargs={"memory_length": 10**9}
    ),
    "features_dim 10**9": setter(f"{PK}.features_extractor_kwargs", {"features_dim": 10**9}),
    "Discrete(10**12) actions": setter("action_space", {"type": "Discrete", "n": 10**12, "start": 0}),
    "Discrete(10**12) observations": setter(OBS, {"type": "Discrete", "n": 10**12, "start": 0}),
    "MultiBinary([10**6, 10**6]) observations": setter(OBS, {"type": "MultiBinary", "n": [10**6, 10**6]}),
    "MultiDiscrete of 10**12 observations": setter(OBS, {"type": "MultiDiscrete", "nvec": [10**12] * 4}),
    "Box of 10**12 values with short bounds": setter(
        OBS, {"type": "Box", "low": [0], "high": [1], "shape": [10**6, 10**6], "dtype": "float32"}
    ),
    "n_envs 10**12": setter("n_envs", 10**12),
    "n_steps 2**40": setter(f"{HP}.n_steps", 2**40),
    "n_steps 2**40 with n_envs 10**6": lambda d: (set_path(d, f"{HP}.n_steps", 2**40), set_path(d, "n_envs", 10**6)),
    "optimizer param_groups of 10**6 entries": setter("optimizer.param_groups[0].params", list(range(10**6))),
    "aliases of 10**6 entries": setter("aliases", {f"x{i}": "y" for i in range(10**6)}),
}

# fields of the wrong kind, missing, out of range, non-finite, or naming classes
SAFE_FIELDS: dict[str, Edit] = {
    "not JSON": Raw("{not json"),
    "a list": Raw("[]"),
    "null": Raw("null"),
    "nested 5000 deep": Raw(deep_json()),
    "policy_kwargs nested 5000 deep": lambda d: Raw(
        json.dumps(d).replace('"policy_kwargs": {', '"policy_kwargs": {"x": ' + deep_json() + ", ", 1)
    ),
    "NaN in the statistics": Raw("NaN"),
    "format_version '1'": setter("format_version", "1"),
    "an unknown key": setter("evil", 1),
    "hyperparameters.n_steps missing": deleter(f"{HP}.n_steps"),
    "hyperparameters missing": deleter(HP),
    "hyperparameters a list": setter(HP, [1, 2]),
    "n_envs '2'": setter("n_envs", "2"),
    "n_envs 2.5": setter("n_envs", 2.5),
    "n_envs 0": setter("n_envs", 0),
    "n_envs true": setter("n_envs", True),
    "n_steps 10**30": setter(f"{HP}.n_steps", 10**30),
    "n_steps 1e308": setter(f"{HP}.n_steps", 1e308),
    "n_steps -1": setter(f"{HP}.n_steps", -1),
    "sequence_length not dividing n_steps": setter(f"{HP}.sequence_length", 5),
    "gamma 'x'": setter(f"{HP}.gamma", "x"),
    "gamma 2": setter(f"{HP}.gamma", 2.0),
    "seed 2**40": setter(f"{HP}.seed", 2**40),
    "seed -1": setter(f"{HP}.seed", -1),
    "learning_rate schedule without initial": setter(f"{HP}.learning_rate", {"schedule": "linear"}),
    "learning_rate unknown schedule": setter(f"{HP}.learning_rate", {"schedule": "evil", "initial": 1}),
    "learning_rate a string": setter(f"{HP}.learning_rate", "1e-3"),
    "stats_window_size 0": setter(f"{HP}.stats_window_size", 0),
    "policy 5": setter("policy", 5),
    "policy unknown": setter("policy", "EvilPolicy"),
    "algorithm PPO": setter("algorithm", "PPO"),
    "policy_kwargs a list": setter(PK, []),
    "policy_kwargs an unknown option": setter(f"{PK}.evil_option", 1),
    "hidden_size '16'": setter(f"{PK}.hidden_size", "16"),
    "hidden_size -5": setter(f"{PK}.hidden_size", -5),
    "net_arch a tuple of 5": setter(f"{PK}.net_arch", {"__tuple__": 5}),
    "net_arch {'pi': 'x'}": setter(f"{PK}.net_arch", {"pi": "x"}),
    "activation_fn os:system": setter(f"{PK}.activation_fn", {"__class__": "os:system"}),
    "activation_fn 5": setter(f"{PK}.activation_fn", {"__class__": 5}),
    "a class under a key with a newline": setter(f"{PK}.evil\nkey", {"__class__": 5}),
    "activation_fn an optimizer": setter(f"{PK}.activation_fn", {"__class__": "torch.optim:Adam"}),
    "policy optimizer_class LBFGS": setter(f"{PK}.optimizer_class", {"__class__": "torch.optim:LBFGS"}),
    "optimizer_class an activation": setter(f"{PK}.optimizer_class", {"__class__": "torch.nn:ReLU"}),
    "features_extractor_class a Linear": setter(f"{PK}.features_extractor_class", {"__class__": "torch.nn:Linear"}),
    "memory 'evil'": setter(f"{PK}.memory", "evil"),
    "observation_space Tuple": setter(OBS, {"type": "Tuple", "spaces": []}),
    "observation_space Box of 3 bounds for shape 4": lambda d: d[OBS].update(low=[0, 0, 0]),
    "observation_space Box dtype object": setter(f"{OBS}.dtype", "object"),
    "observation_space Box low 'nan'": setter(f"{OBS}.low[0]", "nan"),
    "observation_space Box low above high": lambda d: d[OBS].update(low=[5.0] * 4, high=[0.0] * 4),
    "observation_space Box shape -4": setter(f"{OBS}.shape", [-4]),
    "observation_space nvec nested 36 deep": setter(
        OBS,
        {"type": "MultiDiscrete", "nvec": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[2]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]},
    ),
    "action_space Discrete n -1": setter("action_space", {"type": "Discrete", "n": -1}),
    "action_space Discrete n 2**70": setter("action_space", {"type": "Discrete", "n": 2**70}),
    "action_space Box of bools": setter(
        "action_space", {"type": "Box", "low": [False], "high": [True], "shape": [1], "dtype": "bool"}
    ),
    "action_space MultiBinary 'x'": setter("action_space", {"type": "MultiBinary", "n": "x"}),
    "vecnormalize negative variance": setter(f"{VN}.obs_rms.var", [-1.0, 1.0, 1.0, 1.0]),
    "vecnormalize nan mean": lambda d: Raw(json.dumps(set_path(d, f"{VN}.obs_rms.mean", [math.nan] * 4) and d)),
    "vecnormalize statistics of 3 values": setter(f"{VN}.obs_rms.mean", [0.0, 0.0, 0.0]),
    "vecnormalize clip_obs 0": setter(f"{VN}.clip_obs", 0),
    "vecnormalize epsilon 'x'": setter(f"{VN}.epsilon", "x"),
    "vecnormalize obs_rms a mapping of keys": setter(f"{VN}.obs_rms", {"x": {"mean": 0, "var": 1, "count": 1}}),
    "vecnormalize norm_obs_keys ['x']": setter(f"{VN}.norm_obs_keys", ["x"]),
    "vecnormalize count -1": setter(f"{VN}.ret_rms.count", -1),
    "vecnormalize missing ret_rms": deleter(f"{VN}.ret_rms"),
    "aliases to a missing tensor": setter("aliases", {"action_net.bias": "nope"}),
    "aliases 5": setter("aliases", 5),
    "env_id 5": setter("env_id", 5),
    "weights_sha256 missing": deleter("weights_sha256"),
    "optimizer class LBFGS": setter("optimizer.class", "torch.optim:LBFGS"),
    "optimizer param_groups empty": setter("optimizer.param_groups", []),
    "optimizer params twice": setter("optimizer.param_groups[0].params", [0, 0]),
    "optimizer lr nan": lambda d: Raw(json.dumps(set_path(d, "optimizer.param_groups[0].lr", math.nan) and d)),
    "optimizer betas a class": setter("optimizer.param_groups[0].betas", {"__class__": "os:system"}),
    "optimizer state_values for no parameter": setter("optimizer.state_values", {"999": {"step": 1}}),
}

# crafted tensors: (file, what to do to its tensors)
SAFE_TENSORS: dict[str, tuple[str, Callable[[dict[str, Any]], None]]] = {
    "a nan weight": ("weights", _nan_weight),
    "a nan optimizer moment": ("optimizer", _nan_weight),
    "an optimizer moment of the wrong shape": ("optimizer", _huge_moment),
}


def craft_safe(prefix: Path, name: str) -> None:
    """Apply the crafted case ``name`` (of any SAFE_* table) to the safe copy at ``prefix``."""
    if name in SAFE_TENSORS:
        which, edit = SAFE_TENSORS[name]
        config = prefix.with_name(prefix.name + ".json")
        if which == "weights":
            rewrite_tensors(prefix.with_name(prefix.name + ".safetensors"), config, "weights_sha256", edit)
        else:
            path = prefix.with_name(prefix.name + ".optimizer.safetensors")
            rewrite_tensors(path, config, "optimizer.sha256", edit)
        return
    edit = {**SAFE_SIZES, **SAFE_FIELDS}[name]
    config_path = prefix.with_name(prefix.name + ".json")
    data = json.loads(config_path.read_text())
    result = edit(data)
    text = result.text if isinstance(result, Raw) else json.dumps(data)
    config_path.write_text(text)


def huge_sparse_file(path: Path, size: int = 3 << 30) -> Path:
    """A ``size``-byte file that takes no disk space (a received 3 GB ``model.json``)."""
    with open(path, "wb") as file:
        file.truncate(size)
    return path


# --- ONNX graphs ---------------------------------------------------------------------------------------


def edit_onnx(
    source: Path, target: Path, edit: Edit | None = None, inputs: dict[str, list[int | str]] | None = None
) -> Path:
    """A copy of ``source`` with its ``recurrent_rl`` metadata edited (``edit``: the parsed JSON, or
    a :class:`Raw` text) and, with ``inputs``, the declared shapes of graph inputs changed."""
    import onnx

    model = onnx.load(str(source))
    for entry in model.metadata_props:
        if entry.key == "recurrent_rl" and edit is not None:
            data = json.loads(entry.value)
            result = edit(data)
            entry.value = result.text if isinstance(result, Raw) else json.dumps(data)
    for node in model.graph.input:
        if inputs and node.name in inputs:
            dims = node.type.tensor_type.shape.dim
            for dim, value in zip(dims, inputs[node.name]):
                if isinstance(value, int):
                    dim.dim_value = value
                else:
                    dim.dim_param = value
    onnx.save(model, str(target))
    return target


ONNX_SIZES: dict[str, dict[str, Any]] = {
    # the metadata asks for a 37 GiB state; the graph takes 16 values per env
    "state of 10**10 values in the metadata": {"edit": setter("states[0].shape", [1, "batch", 10**10])},
    # graph and metadata agree on a 37 GiB state
    "state of 10**10 values in graph and metadata": {
        "edit": setter("states[0].shape", [1, "batch", 10**10]),
        "inputs": {"state.actor.0": [1, "batch", 10**10]},
    },
    "observation of 10**12 values": {"edit": setter("obs[0].shape", ["batch", 10**6, 10**6])},
}

ONNX_FIELDS: dict[str, Edit] = {
    "not JSON": Raw("{not json"),
    "a list": Raw("[]"),
    "nested 5000 deep": Raw(deep_json()),
    "format_version 2": setter("format_version", 2),
    "env_id 5": setter("env_id", 5),
    "env_id of a million characters": setter("env_id", "x" * 10**6),
    "env_id not registered": setter("env_id", "NoSuchEnv-v9"),
    "states missing": deleter("states"),
    "states empty": setter("states", []),
    "states[0] dtype float64": setter("states[0].dtype", "float64"),
    "states[0] shape 'x'": setter("states[0].shape", "x"),
    "states[0] shape without batch": setter("states[0].shape", [1, 16]),
    "states[0] shape negative": setter("states[0].shape", [1, "batch", -16]),
    "obs[0] dtype object": setter("obs[0].dtype", "object"),
    "obs[0] shape 5": setter("obs[0].shape", 5),
    "obs[0] name 5": setter("obs[0].name", 5),
    "obs empty": setter("obs", []),
    "outputs without action": lambda d: d.update(outputs=[o for o in d["outputs"] if o["name"] != "action"]),
    "outputs naming a missing output": lambda d: d["outputs"].append({"name": "evil"}),
    "outputs a string": setter("outputs", "action"),
    "action_space Tuple": setter("action_space", {"type": "Tuple"}),
    "action_space Discrete(10**12)": setter("action_space", {"type": "Discrete", "n": 10**12, "start": 0}),
}


# --- encoder files -------------------------------------------------------------------------------------


def edit_encoder(source: Path, target: Path, edit: Edit) -> Path:
    """A copy of the encoder file ``source`` with its data edited (what ``torch.save`` writes)."""
    import torch as th

    data = th.load(source, weights_only=True)
    edit(data)
    th.save(data, target)
    return target


def _stride_zero(data: dict[str, Any]) -> None:
    import torch as th

    name = next(k for k in data["core"] if k.startswith("weight_hh"))
    data["core"][name] = th.zeros(1).expand(*data["core"][name].shape)  # 4 bytes of storage


def _nan_tensor(data: dict[str, Any]) -> None:
    name = sorted(data["core"])[0]
    data["core"][name] = data["core"][name].clone()
    data["core"][name].view(-1)[0] = math.nan


def _int_tensor(data: dict[str, Any]) -> None:
    name = sorted(data["core"])[0]
    data["core"][name] = data["core"][name].long()


ENCODER_SIZES: dict[str, Edit] = {
    "hidden_size 200000": setter("hidden_size", 200_000),
    "num_layers 10**6": setter("num_layers", 10**6),
    "input_layers [10**9]": setter("input_layers", [10**9]),
    "input_size 10**12": setter("input_size", 10**12),
}

ENCODER_FIELDS: dict[str, Edit] = {
    "memory evil": setter("memory", "evil"),
    "memory 5": setter("memory", 5),
    "activation os:system": setter("activation", "os:system"),
    "hidden_size '12'": setter("hidden_size", "12"),
    "hidden_size missing": deleter("hidden_size"),
    "input_layers 'x'": setter("input_layers", "x"),
    "bidirectional true": setter("bidirectional", True),
    "bidirectional 'yes'": setter("bidirectional", "yes"),
    "inputs 5": setter("inputs", 5),
    "core with a number": lambda d: d["core"].update(x=5),
    "core missing a tensor": lambda d: d["core"].pop(sorted(d["core"])[0]),
    "a tensor repeating 4 bytes": _stride_zero,
    "a nan tensor": _nan_tensor,
    "an int64 tensor": _int_tensor,
    "metadata 'x'": setter("metadata", "x"),
    "metadata transitions 'many'": lambda d: d["metadata"].update(transitions="many"),
    "metadata env_id 5": lambda d: d["metadata"].update(env_id=5),
    "format other": setter("format", "other"),
    "version 2": setter("version", 2),
    "an unknown key": setter("evil", 1),
}


# --- a module that must never be imported ---------------------------------------------------------------


def evil_module(folder: Path, marker: Path, name: str = "evil_module") -> str:
    """``folder/<name>.py``, which writes ``marker`` when imported (and registers an env, as a
    module named by ``<name>:Env-v0`` would); returns the env id that names it."""
    (folder / f"{name}.py").write_text(
        f"open({str(marker)!r}, 'w').close()\n"
        "import gymnasium\n"
        "gymnasium.register('Env-v0', entry_point='gymnasium.envs.classic_control:CartPoleEnv')\n"
    )
    return f"{name}:Env-v0"


# --- loading under an address-space limit -------------------------------------------------------------


def _load(kind: str, path: str) -> None:
    if kind == "safe":
        from recurrent_rl.export.safe import load_safe

        load_safe(path, device="cpu")
    elif kind == "safe-resume":
        from recurrent_rl.export.safe import check_safe_copy

        check_safe_copy(path, optimizer=True)
    elif kind == "onnx":
        from recurrent_rl.export.play import OnnxPolicy

        OnnxPolicy(path).initial_state(1)
    elif kind == "encoder":  # as train --encoder does: a policy of the encoder's sizes, then its weights
        from recurrent_rl import RecurrentPPO
        from recurrent_rl.supervised.encoder import encoder_policy_kwargs, load_encoder

        kwargs = encoder_policy_kwargs(path)
        model = RecurrentPPO("MlpGruPolicy", "pomdp/CartPoleNoVel-v1", n_steps=16, batch_size=16, policy_kwargs=kwargs)
        load_encoder(model, path)
    else:
        raise ValueError(kind)


def main(argv: list[str]) -> int:
    """``python -m tests.crafted CAP_BYTES KIND=PATH ...``: load each file with the loader of its
    kind under ``RLIMIT_AS`` = what the process maps now + CAP_BYTES, and print one JSON line per
    file: ``{"path", "outcome": "refused" | "loaded" | "crashed", "type", "message"}``."""
    import resource

    import recurrent_rl.export.play  # noqa: F401  imported before the limit: the limit is for the loading
    import recurrent_rl.export.safe  # noqa: F401
    import recurrent_rl.supervised.encoder  # noqa: F401
    from recurrent_rl.errors import UserInputError

    cap = int(argv[0])
    with open("/proc/self/statm", encoding="ascii") as file:
        mapped = int(file.read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (mapped + cap, resource.getrlimit(resource.RLIMIT_AS)[1]))
    for item in argv[1:]:
        kind, _, path = item.partition("=")
        try:
            _load(kind, path)
            outcome, kind_name, message = "loaded", "", ""
        except UserInputError as error:
            outcome, kind_name, message = "refused", type(error).__name__, str(error)
        except BaseException as error:  # noqa: BLE001  what the test reports
            outcome, kind_name, message = "crashed", type(error).__name__, str(error)[:500]
        print(json.dumps({"path": path, "outcome": outcome, "type": kind_name, "message": message}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
