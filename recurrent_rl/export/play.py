"""Play a Gymnasium env with an exported policy: onnxruntime and NumPy only, torch is never imported.

    python -m recurrent_rl.export.play MODEL.onnx --env pomdp/CartPoleNoVel-v1 --episodes 10

:class:`OnnxPolicy` reads the file's metadata (written by :func:`recurrent_rl.export.export_onnx`)
for the inputs, their dtypes and the state shapes, and steps the graph like ``predict``: it takes
the state the previous step returned and ``episode_start`` flags, and gives the action and the
next state. :func:`play` runs whole episodes one after the other on one env, as
``recurrent-rl evaluate`` does (:func:`recurrent_rl.runs.evaluation.run_episodes`): episode ``i``
is reset with seed ``seed + i``, the memory starts fresh (zeros, ``episode_start = 1``) at each
episode's first step, and is carried within the episode. So the same seeds give evaluate's
returns.

The graph normalises observations itself when the run used VecNormalize: feed the env's raw
observations. Channel-last images (H, W, C) are transposed to the graph's (C, H, W), as SB3 does.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from recurrent_rl.errors import UserInputError
from recurrent_rl.export.format import FORMAT, FORMAT_VERSION, METADATA_KEY
from recurrent_rl.received import (
    MAX_TEXT_BYTES,
    ReceivedFileError,
    check_memory,
    env_id_from_file,
    load_json,
    shorten,
)

EXIT_USAGE = 2
# onnxruntime's type of each metadata dtype
ONNX_TYPES = {
    "float16": "tensor(float16)",
    "float32": "tensor(float)",
    "float64": "tensor(double)",
    "int8": "tensor(int8)",
    "int16": "tensor(int16)",
    "int32": "tensor(int32)",
    "int64": "tensor(int64)",
    "uint8": "tensor(uint8)",
    "bool": "tensor(bool)",
}
SESSION_BYTES_PER_BYTE = 4  # onnxruntime's memory for a graph, per byte of the file (about, at most)


class OnnxFileError(ReceivedFileError):
    """An ONNX file the runner cannot use (missing, damaged, not written by recurrent_rl's export)."""


def read_onnx_metadata(session: Any, path: str | Path) -> dict[str, Any]:
    """The ``recurrent_rl`` metadata of a loaded onnxruntime session, checked for format, version
    and schema (:func:`recurrent_rl.io.schema.check_onnx_metadata`)."""
    from recurrent_rl.io.schema import check_onnx_metadata

    props = session.get_modelmeta().custom_metadata_map
    if METADATA_KEY not in props:
        raise OnnxFileError(
            f"{path} is an ONNX model without recurrent_rl metadata: it was not written by recurrent_rl's export "
            "(recurrent-rl export RUN_DIR), so its memory inputs are unknown"
        )
    text = props[METADATA_KEY]
    if len(text) > MAX_TEXT_BYTES:
        raise OnnxFileError(f"{path}: its recurrent_rl metadata is {len(text):,} characters long: refused")
    try:
        meta = load_json(text, f"{path} (recurrent_rl metadata)")
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            found = meta.get("format") if isinstance(meta, dict) else meta
            raise OnnxFileError(f"{path}: unknown format {shorten(found, 80)}; this runner reads {FORMAT!r}")
        if meta.get("format_version") != FORMAT_VERSION:
            raise OnnxFileError(
                f"{path} is format version {shorten(meta.get('format_version'))}; this runner reads version "
                f"{FORMAT_VERSION}: export the model again with this recurrent_rl, or run it with the recurrent_rl "
                "that wrote it"
            )
        return check_onnx_metadata(meta, str(path))
    except OnnxFileError:
        raise
    except ReceivedFileError as error:
        raise OnnxFileError(str(error)) from None


def _check_inputs(session: Any, meta: dict[str, Any], path: Path) -> None:
    """The graph's inputs and outputs are the ones the metadata describes, each input of the dtype
    and shape it says (``"batch"`` where the graph's dimension is free): the metadata cannot make
    the runner allocate state or feed inputs the graph does not take."""
    graph = {i.name: i for i in session.get_inputs()}
    entries = [*meta["obs"], *meta["states"]]
    wanted = {e["name"] for e in entries} | {"episode_start"}
    if set(graph) != wanted:
        raise OnnxFileError(
            f"{path}: the graph's inputs {shorten(sorted(graph))} are not the ones its "
            f"metadata describes {shorten(sorted(wanted))}: the file was altered"
        )
    for entry in entries:
        node = graph[entry["name"]]
        dims = list(node.shape)
        matches = node.type == ONNX_TYPES[entry["dtype"]] and len(dims) == len(entry["shape"])
        for mine, theirs in zip(entry["shape"], dims):
            matches = matches and (not isinstance(theirs, int) if mine == "batch" else theirs == mine)
        if not matches:
            raise OnnxFileError(
                f"{path}: the metadata says the input {shorten(entry['name'])} is {entry['dtype']} "
                f"{shorten(entry['shape'])}, the graph takes {node.type} {shorten(dims)}: the file was altered"
            )
    outputs = {o.name for o in session.get_outputs()}
    unknown = [o["name"] for o in meta["outputs"] if o["name"] not in outputs]
    if unknown:
        raise OnnxFileError(f"{path}: the metadata names the output {shorten(unknown[0])}, which the graph lacks")


class OnnxPolicy:
    """An exported recurrent policy in onnxruntime.

    :param path: the ``.onnx`` file
    :param threads: onnxruntime's intra-op threads (1: fastest for one env's small graph)

    ``state`` is a dict of the state inputs' names (``state.actor.0``, ...) to arrays; None means a
    fresh memory for every env.
    """

    def __init__(self, path: str | Path, threads: int = 1):
        try:
            import onnxruntime as ort
        except ImportError:
            raise OnnxFileError(
                "the ONNX runner needs onnxruntime: pip install onnxruntime (or 'recurrent_rl[onnx]')"
            ) from None
        self.path = Path(path)
        if not self.path.is_file():
            raise OnnxFileError(f"ONNX file {self.path} does not exist")
        check_memory(SESSION_BYTES_PER_BYTE * self.path.stat().st_size, "loading this graph", str(self.path))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 4  # a damaged file is reported below, not logged
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as error:
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise OnnxFileError(
                f"{self.path} is not a loadable ONNX model (damaged, truncated or another kind of file): {first[:300]}"
            ) from None
        self.metadata = read_onnx_metadata(self.session, self.path)
        _check_inputs(self.session, self.metadata, self.path)
        self.obs_inputs: list[dict[str, Any]] = list(self.metadata["obs"])
        self.states: list[dict[str, Any]] = list(self.metadata["states"])
        self.output_names = [o["name"] for o in self.metadata["outputs"]]
        self._state_outputs = {o["name"]: o["state"] for o in self.metadata["outputs"] if "state" in o}

    # --- state --------------------------------------------------------------------------------

    def initial_state(self, batch_size: int = 1) -> dict[str, np.ndarray]:
        """Zeros of every state input's shape for ``batch_size`` envs (a fresh memory), refused
        before allocating when they would not fit in this process's memory."""
        shapes = {s["name"]: self._shape(s["shape"], batch_size) for s in self.states}
        nbytes = sum(4 * math.prod(shape) for shape in shapes.values())
        check_memory(nbytes, f"the memory state of {batch_size} envs (metadata states)", str(self.path))
        return {name: np.zeros(shape, dtype=np.float32) for name, shape in shapes.items()}

    @staticmethod
    def _shape(shape: list[Any], batch_size: int) -> tuple[int, ...]:
        return tuple(batch_size if d == "batch" else int(d) for d in shape)

    # --- one step -----------------------------------------------------------------------------

    def observation_feed(self, obs: Any) -> dict[str, np.ndarray]:
        """The graph's observation inputs for a batch ``obs`` (an array, or a dict for Dict
        spaces), each ``(B, ...)`` in the input's dtype; channel-last images transposed."""
        feed = {}
        for entry in self.obs_inputs:
            key = entry["key"]
            if key is None:
                value = obs
            else:
                if not isinstance(obs, Mapping) or key not in obs:
                    raise UserInputError(
                        f"the policy takes Dict observations with the key {key!r}; got {type(obs).__name__}"
                    )
                value = obs[key]
            array = np.asarray(value)
            shape = tuple(int(d) for d in entry["shape"][1:])
            if array.shape[1:] != shape and len(shape) == 3 and array.shape[1:] == (shape[1], shape[2], shape[0]):
                array = array.transpose(0, 3, 1, 2)  # (B, H, W, C) -> (B, C, H, W)
            if array.shape[1:] != shape:
                name = entry["name"]
                raise UserInputError(
                    f"{name}: observations of shape {array.shape[1:]} per env, the policy takes {shape}"
                )
            feed[entry["name"]] = np.ascontiguousarray(array, dtype=entry["dtype"])
        return feed

    def step(
        self, obs: Any, state: dict[str, np.ndarray] | None = None, episode_start: Any = None
    ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
        """One step of a batch: ``obs`` (B, ...), ``state`` from the previous step (None: fresh),
        ``episode_start`` (B,) flags (None: all 0) -> (action (B, ...), next state, every output by name)."""
        feed = self.observation_feed(obs)
        batch = next(iter(feed.values())).shape[0]
        if state is None:
            state = self.initial_state(batch)
        starts = (
            np.zeros(batch, dtype=np.float32)
            if episode_start is None
            else np.asarray(episode_start, dtype=np.float32).reshape(-1)
        )
        if starts.shape != (batch,):
            raise UserInputError(f"episode_start has {starts.size} entries for {batch} observations; pass one per env")
        feed["episode_start"] = starts
        for s in self.states:
            feed[s["name"]] = np.asarray(state[s["name"]], dtype=np.float32)
        results = dict(zip(self.output_names, self.session.run(self.output_names, feed)))
        next_state = {
            self._state_outputs[name]: value for name, value in results.items() if name in self._state_outputs
        }
        return results["action"], next_state, results


# --- episodes -------------------------------------------------------------------------------------


def _check_env(policy: OnnxPolicy, env: Any, env_id: str) -> None:
    from recurrent_rl.io.spaces import SpaceFormatError, describe, space_from_json

    try:
        action_space = space_from_json(policy.metadata["action_space"], str(policy.path))
    except SpaceFormatError as error:
        raise OnnxFileError(str(error)) from None
    if action_space != env.action_space:
        raise UserInputError(
            f"{policy.path} acts in {describe(action_space)}, but {env_id} takes actions "
            f"{describe(env.action_space)}: play it on the env it was trained on"
        )


def play_episodes(
    model: str | Path | OnnxPolicy,
    env_id: str,
    episodes: int = 10,
    seed: int | None = 0,
    env_kwargs: dict[str, Any] | None = None,
    verbose: bool = False,
) -> tuple[list[float], list[int]]:
    """Play ``episodes`` whole episodes of ``env_id``; their (returns, lengths).

    Episode ``i`` is reset with seed ``seed + i`` (None: unseeded), with a fresh memory, as
    ``recurrent-rl evaluate`` does.
    """
    import gymnasium as gym

    import recurrent_rl.envs  # noqa: F401  registers pomdp/ (no torch)

    if episodes < 1:
        raise UserInputError(f"the number of episodes must be at least 1, got {episodes}")
    env_id = env_id_from_file(env_id, "the env id", trusted=True)  # the caller's: only its type is checked
    policy = model if isinstance(model, OnnxPolicy) else OnnxPolicy(model)
    try:
        env = gym.make(env_id, **dict(env_kwargs or {}))
    except gym.error.Error as error:
        raise UserInputError(f"cannot make env {env_id}: {error}") from None
    returns, lengths = [], []
    try:
        _check_env(policy, env, env_id)
        for episode in range(episodes):
            obs, info = env.reset(seed=None if seed is None else seed + episode)
            state, start = None, np.ones(1, dtype=np.float32)
            total, length, done = 0.0, 0, False
            while not done:
                batch = (
                    {k: np.asarray(v)[None] for k, v in obs.items()}
                    if isinstance(obs, Mapping)
                    else np.asarray(obs)[None]
                )
                action, state, _ = policy.step(batch, state, start)
                start = np.zeros(1, dtype=np.float32)
                obs, reward, terminated, truncated, info = env.step(action[0])
                total += float(reward)
                length += 1
                done = terminated or truncated
            returns.append(total)
            lengths.append(length)
            if verbose:
                print(f"episode {episode}: return {total:.2f} (length {length})", flush=True)
    finally:
        env.close()
    return returns, lengths


# --- the command line ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m recurrent_rl.export.play",
        description="Play episodes of a Gymnasium env with a policy exported to ONNX (recurrent-rl export), "
        "carrying its memory within and resetting it between episodes; onnxruntime and NumPy only.",
    )
    parser.add_argument("model", metavar="MODEL.onnx", help="a file written by recurrent-rl export")
    parser.add_argument(
        "--env",
        metavar="ID",
        help="Gymnasium env id (default: the one recorded in the file, if it is registered here; an id naming a "
        "module, module:Env-v0, is imported only when given here)",
    )
    parser.add_argument("--episodes", type=int, default=10, metavar="N", help="episodes (default: 10)")
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="N",
        help="episode i is reset with seed N+i, as recurrent-rl evaluate does (default: 0)",
    )
    parser.add_argument(
        "--env-kwargs", metavar="JSON", default=None, help="keyword arguments of gymnasium.make, as JSON"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: prints each episode's return and the mean; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        policy = OnnxPolicy(args.model)
        if args.env:
            env_id = env_id_from_file(args.env, "--env", trusted=True)  # typed by the user: theirs to import
        elif policy.metadata.get("env_id"):
            # written in the file: used only if registered here, never imported (module:Env-v0 runs module)
            env_id = env_id_from_file(policy.metadata["env_id"], f"{args.model} (metadata env_id)")
        else:
            raise UserInputError(f"{args.model} does not record its env: pass --env ID")
        env_kwargs = None
        if args.env_kwargs:
            try:
                env_kwargs = json.loads(args.env_kwargs)
            except ValueError as error:
                raise UserInputError(f"--env-kwargs is not JSON: {error}") from None
            if not isinstance(env_kwargs, dict):
                raise UserInputError("--env-kwargs must be a JSON object, e.g. '{\"max_episode_steps\": 100}'")
        returns, _ = play_episodes(policy, env_id, args.episodes, args.seed, env_kwargs, verbose=True)
    except UserInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    print(f"mean return over {len(returns)} episodes: {np.mean(returns):.2f} ± {np.std(returns):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
