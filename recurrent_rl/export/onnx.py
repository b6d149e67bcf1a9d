"""ONNX export of a recurrent policy's acting path, with its memory as explicit inputs and outputs.

One graph does what ``model.predict(obs, state, episode_start, deterministic=True)`` does for one
step of B envs::

    obs (or obs.<key> per Dict entry)   the env's observation as the env gives it, (B, ...)
    episode_start                       (B,) float32: nonzero resets that env's memory first
    state.actor.0, state.actor.1, ...   the actor memory's state tensors, each (L, B, W)
    [state.critic.0, ...]               the critic memory's (include_value, critic_memory="separate")
      -> VecNormalize's observation normalisation (float64, clipped, as SB3 computes it)
      -> SB3's preprocessing (images / 255, Discrete one-hot, float)
      -> features extractor -> memory step (reset where episode_start is set) -> MLP head
      -> the deterministic action (argmax / rounded Bernoulli / mean), Box actions clipped to the
         action space (or squashed and rescaled with gSDE's squash_output), as ``predict`` does
    action                              (B, *action_shape): int64 for Discrete and MultiDiscrete,
                                        float32 for Box and MultiBinary
    next_state.actor.0, ...             the states to feed at the next step
    [value]                             (B,) the critic's value (include_value)
    [logits] / [mean, log_std]          the action distribution's parameters (include_distribution)

The batch dimension is dynamic. A fresh memory is zeros of the shapes in the metadata (the
``state.*`` entries) together with ``episode_start = 1``. The file's ``metadata_props`` hold one
JSON entry, ``recurrent_rl``, with the spaces, the memory, the inputs and outputs with their
shapes and dtypes, how to reset and the versions; :mod:`recurrent_rl.export.play` reads it.

The memory is exported through its plain-torch ``step`` (the cpu-kernels backend's compiled
operators are never called, so the graph holds only standard ONNX operators).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from torch import nn

from recurrent_rl.export.format import METADATA_KEY
from recurrent_rl.export.graph import (
    ActingGraph,
    ExportError,
    ObsNormalization,
    distribution_output_names,
    input_dtype,
    obs_normalization,
)
from recurrent_rl.export.signature import Signature, dtype_name, graph_signature, metadata, obs_shape
from recurrent_rl.io.safe import env_id_of
from recurrent_rl.received import ReceivedFileError, load_json, shorten

DEFAULT_OPSET = 17
# below this opset no acting graph runs (Equal takes no float input there, and the episode-start
# reset needs one); above it, the check in onnxruntime says when a part needs a newer one. The
# newest is torch's.
MIN_OPSET = 11
INSTALL_HINT = "pip install 'recurrent_rl[onnx]' (onnx, onnxscript, onnxruntime)"
# ONNX domains of standard operators; anything else (a custom operator) cannot run elsewhere
STANDARD_DOMAINS = ("", "ai.onnx")


# --- example inputs ----------------------------------------------------------------------------------


def _example_inputs(graph: ActingGraph, policy: Any, batch: int, seed: int, n_steps: int = 3) -> list[th.Tensor]:
    """Inputs of ``batch`` envs after ``n_steps`` steps from a fresh memory (so the states hold
    realistic values, the attention memory's validity mask included)."""
    space = policy.observation_space
    # copies: sampling must not move the RNG of the model's own spaces
    subs = [copy.deepcopy(space[key]) for key in graph.keys] if graph.keys is not None else [copy.deepcopy(space)]
    for index, sub in enumerate(subs):
        sub.seed(seed + index)

    def observation() -> list[th.Tensor]:
        arrays = [np.stack([np.asarray(sub.sample()) for _ in range(batch)]).astype(input_dtype(sub)) for sub in subs]
        return [th.as_tensor(a).reshape(batch, *obs_shape(sub)) for a, sub in zip(arrays, subs)]

    states: list[th.Tensor] = list(policy.actor_memory.initial_state(batch, "cpu"))
    if graph.critic_core is not None:
        states += list(policy.critic_core.initial_state(batch, "cpu"))
    start = th.ones(batch)
    with th.no_grad():
        for step in range(n_steps):
            inputs = [*observation(), start, *states]
            outputs = graph(*inputs)
            n_actor = graph.n_actor_state
            states = list(outputs[1 : 1 + n_actor]) + list(outputs[1 + n_actor : 1 + n_actor + graph.n_critic_state])
            start = th.as_tensor([1.0 if (b + step) % 3 == 0 else 0.0 for b in range(batch)])
    return [*observation(), start, *states]


# --- export --------------------------------------------------------------------------------------------


def _policy_of(model: Any, include_value: bool = False, include_distribution: bool = False) -> Any:
    from recurrent_rl.export.sac_actor import SACActorView, is_sac_policy
    from recurrent_rl.nets.policies import RecurrentActorCriticPolicy

    policy = getattr(model, "policy", model)
    if is_sac_policy(policy):
        given = [n for n, v in (("include_value", include_value), ("include_distribution", include_distribution)) if v]
        if policy.actor.encoder.prev_reward:
            raise ExportError(
                "this RecurrentSAC's memory reads the previous reward (prev_reward=True), which the exported graph's "
                "runner does not feed: export a model trained with prev_reward=False, or run it in torch (predict)"
            )
        if given:
            raise ExportError(
                f"{given[0]}: a RecurrentSAC exports its actor only (its critics "
                "are Q functions of an action, and its actions come from a state-dependent squashed Gaussian): "
                "export without it"
            )
        return SACActorView(policy)
    if not isinstance(policy, RecurrentActorCriticPolicy):
        raise ExportError(
            "export_onnx takes a RecurrentPPO or RecurrentSAC model or a RecurrentActorCriticPolicy, got "
            f"{type(model).__name__}"
        )
    return policy


@contextlib.contextmanager
def _quiet_native_output() -> Iterator[None]:
    """Send file descriptors 1 and 2 to a temporary file while inside: the TorchScript exporter
    prints its whole IR graph from C++ (on stdout) when a conversion fails, which the error
    message replaces."""
    streams = []
    for stream in (sys.stdout, sys.stderr):
        try:
            streams.append((stream, stream.fileno()))
        except (AttributeError, OSError, ValueError):  # not a real file (an IDE, a captured stream)
            pass
    with tempfile.TemporaryFile() as sink:
        saved = []
        for stream, fd in streams:
            stream.flush()
            saved.append((fd, os.dup(fd)))
            os.dup2(sink.fileno(), fd)
        try:
            yield
        finally:
            for fd, copy_of in saved:
                os.dup2(copy_of, fd)
                os.close(copy_of)


def _torch_export(
    module: nn.Module,
    args: Sequence[th.Tensor],
    target: Any,
    input_names: list[str],
    output_names: list[str] | None,
    dynamic_axes: dict[str, dict[int, str]],
    opset: int,
    dynamo: bool = False,
) -> Any:
    """``torch.onnx.export`` of ``module`` on ``args``; with ``dynamo`` the ONNX model proto is returned.

    The TorchScript exporter (``dynamo=False``, the default here) traces the module by running it
    once, so every memory's step (torch's cell functions, the scan memories' elementwise
    recurrence, the attention memory's masked window) becomes standard ONNX operators with a
    symbolic batch dimension. Both exporters export every core with the same actions and states
    (to 1e-7); the torch.export-based one (``dynamo=True``, torch 2.13's default) took 10-50x as
    long per policy and wrote files about 1.7x larger, so the TorchScript exporter is the default
    and the other an option (for when torch drops the first; it is deprecated). What tracing
    cannot capture is Python control flow on tensor values (``if x.sum() > 0``, ``.item()``): it
    warns (TracerWarning) and bakes one branch in; such a warning fails the export here.
    """
    if dynamo:
        batch = th.export.Dim("batch", min=1)
        shapes = tuple({axis: batch for axis in dynamic_axes.get(name, {})} or None for name in input_names)
        with warnings.catch_warnings(), _quiet_native_output(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            program = th.onnx.export(
                module,
                tuple(args),
                None,
                input_names=input_names,
                output_names=output_names,
                dynamic_shapes=(shapes,),
                opset_version=max(opset, 18),
                dynamo=True,
                verbose=False,
            )
        assert program is not None
        return program.model_proto
    with warnings.catch_warnings(record=True) as caught, _quiet_native_output():
        warnings.simplefilter("ignore")
        warnings.simplefilter("always", category=th.jit.TracerWarning)
        th.onnx.export(
            module,
            tuple(args),
            target,
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=dynamic_axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    traced = [w for w in caught if issubclass(w.category, th.jit.TracerWarning)]
    if traced:
        first = traced[0]
        raise _TracingError(f"{Path(first.filename).name}:{first.lineno}: {str(first.message).splitlines()[0]}")
    return None


class _TracingError(RuntimeError):
    """A TracerWarning during export: the graph would hold one branch of Python control flow."""


def _record(records: dict[str, Any], name: str, module: nn.Module, args: tuple[Any, ...]) -> None:
    """A forward pre-hook's body: keep the first inputs of each part (returns None: inputs unchanged)."""
    records.setdefault(name, (module, tuple(a.detach() for a in args)))


def _locate_failure(graph: ActingGraph, policy: Any, inputs: list[th.Tensor], opset: int) -> str | None:
    """Export the graph's parts one by one and name the first that fails (None if each exports alone)."""
    records: dict[str, tuple[nn.Module, tuple[th.Tensor, ...]]] = {}
    parts = {
        "pi_features": ("the features extractor", "policy.pi_features_extractor", policy.pi_features_extractor),
        "vf_features": (
            "the critic's features extractor",
            "policy.vf_features_extractor",
            policy.vf_features_extractor,
        ),
        "actor_memory": ("the actor memory", "policy.actor_memory", policy.actor_memory),
        "critic_core": ("the critic memory", "policy.critic_core", policy.critic_core),
        "actor_head": ("the actor head", "policy.mlp_extractor / policy.action_net", policy.mlp_extractor),
        "critic_head": ("the critic head", "policy.mlp_extractor / policy.value_net", policy.mlp_extractor),
    }
    hooks = []
    for name in parts:
        module = getattr(graph, name, None)
        if isinstance(module, nn.Module):
            hooks.append(module.register_forward_pre_hook(lambda m, args, name=name: _record(records, name, m, args)))
    try:
        with th.no_grad():
            graph(*inputs)
    except Exception as error:  # the eager run itself fails: name the part that raised
        last = list(records)[-1] if records else "pi_features"
        what, where, module = parts[last]
        return f"{what} ({where}: {type(module).__name__}) fails when run: {type(error).__name__}: {error}"
    finally:
        for hook in hooks:
            hook.remove()
    for name, (module, args) in records.items():
        try:
            _torch_export(module, args, io.BytesIO(), [f"in{i}" for i in range(len(args))], None, {}, opset)
        except Exception as error:
            what, where, part = parts[name]
            message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            return f"{what} ({where}: {type(part).__name__}) does not export: {type(error).__name__}: {message}"
    return None


def _check_graph(onnx_model: Any) -> None:
    """Every node a standard ONNX operator (no custom operator, e.g. of the cpu-kernels backend)."""
    foreign = sorted(
        {f"{node.domain}::{node.op_type}" for node in onnx_model.graph.node if node.domain not in STANDARD_DOMAINS}
    )
    if foreign:
        raise ExportError(
            f"the exported graph holds operators that are not standard ONNX: {foreign}. They come from a custom "
            "torch operator in the policy; export a policy built from plain torch modules"
        )


def _verify(onnx_bytes: bytes, graph: ActingGraph, policy: Any, signature: Signature) -> None:
    """Run the graph in onnxruntime on a batch of a size it was not traced with and compare."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ExportError(f"checking the exported graph needs onnxruntime: {INSTALL_HINT}, or verify=False") from None

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime's InvalidGraph, Fail, NotImplemented: a graph it cannot load
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ExportError(
            f"onnxruntime cannot load the exported graph ({first}); an older opset lacks some operator this graph "
            f"needs: use the default opset {DEFAULT_OPSET} or newer"
        ) from None
    inputs = _example_inputs(graph, policy, batch=3, seed=1)
    with th.no_grad():
        expected = [t.numpy() for t in graph(*inputs)]
    got = session.run(signature.output_names, {n: t.numpy() for n, t in zip(signature.input_names, inputs)})
    for name, want, have in zip(signature.output_names, expected, got):
        if want.shape != have.shape:
            raise ExportError(
                f"the exported graph's {name} has shape {have.shape} for a batch of 3, PyTorch's "
                f"{want.shape}: a part of the policy fixes the batch size (a reshape with a constant)"
            )
        if name == "action" and want.dtype.kind in "iu":
            ok = np.array_equal(want, have)
        else:
            ok = np.allclose(want, have, rtol=1e-4, atol=1e-4)
        if not ok:
            raise ExportError(
                f"the exported graph's {name} differs from PyTorch's (max difference "
                f"{float(np.max(np.abs(want.astype(np.float64) - have))):.3g}): a part of the policy did not trace "
                "faithfully (Python control flow on tensor values, NumPy calls)"
            )


def export_onnx(
    model: Any,
    path: str | Path,
    *,
    vecnormalize: Any = None,
    include_value: bool = False,
    include_distribution: bool = False,
    opset: int = DEFAULT_OPSET,
    env_id: str | None = None,
    verify: bool = True,
    dynamo: bool = False,
) -> Path:
    """Write the acting path of ``model`` as one ONNX graph to ``path`` (see the module docstring).

    :param model: a :class:`~recurrent_rl.RecurrentPPO` or :class:`~recurrent_rl.RecurrentSAC` (or its
        policy); a RecurrentSAC exports its actor, the previous action as one more state tensor
        (see :mod:`recurrent_rl.export.sac_actor`)
    :param vecnormalize: the ``VecNormalize`` whose observation statistics the graph applies (or
        the ``vecnormalize`` mapping of a safe file). None: the model's own VecNormalize env if it
        has one; False: no normalisation
    :param include_value: also output ``value`` (B,) (and, with ``critic_memory="separate"``, take
        and return the critic memory's state)
    :param include_distribution: also output the action distribution's parameters: ``logits``
        (Discrete and MultiDiscrete: log-probabilities, per entry; MultiBinary: Bernoulli logits)
        or ``mean`` and ``log_std`` (Box, before clipping)
    :param opset: the ONNX opset (default 17; at least 18 with ``dynamo``)
    :param env_id: the env id to record in the metadata (the runner's default ``--env``); None:
        the id of the model's env, when it has one
    :param verify: run the written graph once in onnxruntime against PyTorch (a batch of 3,
        which also checks that the batch dimension is free)
    :param dynamo: use torch's torch.export-based exporter instead of the TorchScript one (see
        :func:`_torch_export` for why that one is the default)
    :returns: the path written (atomically: an existing file is replaced only by a complete one,
        and left as it was when the export fails)
    """
    from recurrent_rl.atomic import atomic_path

    original = _policy_of(model, include_value, include_distribution)
    check_finite_parameters(original, "the policy")
    if vecnormalize is None and hasattr(model, "get_vec_normalize_env"):
        vecnormalize = model.get_vec_normalize_env()
    normalization = obs_normalization(None if vecnormalize is False else vecnormalize, original.observation_space)
    if include_distribution:
        distribution_output_names(original)  # refuses gSDE before anything is traced
    if env_id is None:
        env_id = env_id_of(model)
    check_opset(opset)
    path = Path(path)
    if path.is_dir():
        raise ExportError(f"{path} is a folder: give the .onnx file to write (e.g. {path / 'model.onnx'})")
    _check_writable(path)
    # traced on the CPU in eval mode; the model's device and training mode are restored afterwards
    policy, device, training = original, original.device, original.training
    policy.set_training_mode(False)
    policy.to("cpu")
    try:
        data = _export_bytes(policy, normalization, include_value, include_distribution, opset, env_id, verify, dynamo)
    finally:
        policy.to(device)
        policy.set_training_mode(training)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def check_finite_parameters(policy: nn.Module, what: str) -> None:
    """An :class:`ExportError` when a weight of ``policy`` is nan or inf (its actions would be too)."""
    for name, tensor in policy.state_dict().items():
        if tensor.is_floating_point() and not bool(th.isfinite(tensor).all()):
            raise ExportError(f"{what}'s weight {name} holds nan or inf: refused (it cannot act)")


def check_opset(opset: int) -> None:
    """An :class:`ExportError` unless ``opset`` is one the acting graph can be exported to and run in."""
    newest: int | None
    try:
        from torch.onnx._constants import ONNX_MAX_OPSET

        newest = int(ONNX_MAX_OPSET)
    except ImportError:  # a private module: without it, torch's own error says which opsets it knows
        newest = None
    if opset < MIN_OPSET or (newest is not None and opset > newest):
        known = f"{MIN_OPSET} to {newest}" if newest is not None else f"{MIN_OPSET} or newer"
        raise ExportError(
            f"ONNX opset {opset} is not supported here: use one from {known} (--opset N; default {DEFAULT_OPSET})"
        )


def _check_writable(path: Path) -> None:
    """An :class:`ExportError` before anything is traced when ``path`` cannot be written (a file where its folder
    should be, a folder without write permission)."""
    folder = path.absolute().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ExportError(f"cannot write {path}: {folder} is a file, not a folder; choose another path")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ExportError(f"cannot write {path}: no permission to write in {folder}; choose another path")


def _export_bytes(
    policy: Any,
    normalization: dict[str | None, ObsNormalization],
    include_value: bool,
    include_distribution: bool,
    opset: int,
    env_id: str | None,
    verify: bool,
    dynamo: bool,
) -> bytes:
    """The serialised ONNX model of ``policy`` (on the CPU, in eval mode), metadata included."""
    try:
        import onnx
    except ImportError:
        raise ExportError(f"ONNX export needs the onnx package: {INSTALL_HINT}") from None

    from recurrent_rl import __version__

    signature = graph_signature(policy, include_value, include_distribution)
    graph = ActingGraph(policy, normalization, include_value, include_distribution).eval()
    try:
        inputs = _example_inputs(graph, policy, batch=2, seed=0)
    except Exception as error:
        located = _locate_failure(graph, policy, _fallback_inputs(graph, policy), opset)
        raise ExportError(
            f"cannot export this policy to ONNX: {located or f'{type(error).__name__}: {error}'}"
        ) from None
    buffer = io.BytesIO()
    try:
        with th.no_grad():
            proto = _torch_export(
                graph,
                inputs,
                buffer,
                signature.input_names,
                signature.output_names,
                signature.dynamic_axes,
                opset,
                dynamo,
            )
    except Exception as error:
        located = None if dynamo else _locate_failure(graph, policy, inputs, opset)
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ExportError(
            f"cannot export this policy to ONNX: {located or f'{type(error).__name__}: {first_line}'}. "
            "Each part must trace into standard ONNX operators: plain tensor operations, no Python control flow "
            "on tensor values, no NumPy or .item() calls, no custom operators. Rewrite that module with such "
            "operations (or register a torch.onnx symbolic for its operator), or train with one of SB3's extractors"
        ) from None
    onnx_model = proto if proto is not None else onnx.load_from_string(buffer.getvalue())
    _check_graph(onnx_model)
    meta = metadata(policy, signature, normalization, include_value, include_distribution, opset, env_id)
    meta["versions"]["recurrent_rl"] = __version__
    meta["exporter"] = "torch.export (dynamo)" if dynamo else "TorchScript"
    del onnx_model.metadata_props[:]
    entry = onnx_model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta)
    onnx_model.producer_name, onnx_model.doc_string = "recurrent_rl", "a recurrent policy: see metadata_props"
    onnx.checker.check_model(onnx_model)
    data = onnx_model.SerializeToString()
    if verify:
        _verify(data, graph, policy, signature)
    return data


def _fallback_inputs(graph: ActingGraph, policy: Any) -> list[th.Tensor]:
    """Zero inputs of batch 2 (when the policy could not even run on sample observations)."""
    space = policy.observation_space
    subs = [space[key] for key in graph.keys] if graph.keys is not None else [space]
    obs = [th.zeros((2, *obs_shape(sub)), dtype=getattr(th, dtype_name(input_dtype(sub)))) for sub in subs]
    states = list(policy.actor_memory.initial_state(2, "cpu"))
    if graph.critic_core is not None:
        states += list(policy.critic_core.initial_state(2, "cpu"))
    return [*obs, th.ones(2), *states]


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The ``recurrent_rl`` metadata of an exported file (needs ``onnx``; the runner reads it through
    onnxruntime instead)."""
    import onnx

    try:
        onnx_model = onnx.load(str(path), load_external_data=False)
    except Exception as error:
        raise ExportError(
            f"{path} is not a readable ONNX file: {type(error).__name__}: {shorten(str(error), 200)}"
        ) from None
    for entry in onnx_model.metadata_props:
        if entry.key == METADATA_KEY:
            try:
                meta = load_json(entry.value, f"{path} (recurrent_rl metadata)")
            except ReceivedFileError as error:
                raise ExportError(str(error)) from None
            if not isinstance(meta, dict):
                raise ExportError(f"{path}: its recurrent_rl metadata is not a mapping")
            return meta
    raise ExportError(f"{path} holds no recurrent_rl metadata: it was not written by recurrent_rl.export_onnx")
