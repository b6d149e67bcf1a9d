"""A fuzz test of the loaders of received files (hypothesis): a valid ``model.json`` (with its
optimizer state), an ONNX graph's metadata and a run folder's ``config.yaml``, mutated one field at a
time (a value replaced by any JSON value, a class marker or a much larger number; a key deleted or
added), are either loaded or refused with a :class:`~recurrent_rl.errors.UserInputError`: never
another exception, and never an allocation beyond an address-space limit of a few GiB above what the
process maps (a ``MemoryError`` would fail the test).

The examples are derandomized (the same ones on every run, in CI too). The normal suite runs a few
thousand in all; the variant marked slow runs three times as many.
"""

from __future__ import annotations

import copy
import json
import resource
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from recurrent_rl.errors import UserInputError

CAP = 3 << 30
DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
EXAMPLES = {"model.json": 800, "onnx": 1200, "config.yaml": 800}
SLOW = 3  # the slow variant runs this many times as many


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Any]:
    """A safe copy with its optimizer state and VecNormalize statistics, its ONNX export, and the
    config.yaml of the default preset."""
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    from recurrent_rl.config.presets import DEFAULT_PRESET, load_preset
    from recurrent_rl.config.schema import config_to_yaml
    from recurrent_rl.export.onnx import export_onnx
    from recurrent_rl.export.safe import save_safe
    from tests.test_safe_format import ENV, tiny_model

    folder = tmp_path_factory.mktemp("fuzz")
    model = tiny_model(VecNormalize(make_vec_env(ENV, n_envs=2, seed=0)), steps=32)
    save_safe(model, folder / "model", optimizer=True)
    export_onnx(model, folder / "model.onnx", verify=False)
    (folder / "config.yaml").write_text(config_to_yaml(load_preset(DEFAULT_PRESET)))
    return {"safe": folder / "model", "onnx": folder / "model.onnx", "config": folder / "config.yaml"}


@pytest.fixture
def memory_cap() -> Iterator[None]:
    """The soft address-space limit lowered to what the process maps + CAP while the test runs."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm", encoding="ascii") as file:
        mapped = int(file.read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (mapped + CAP, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


# --- mutations -----------------------------------------------------------------------------------------

SPECIAL = [
    0,
    1,
    -1,
    2**31,
    2**63,
    10**12,
    10**30,
    0.5,
    -0.0,
    1e308,
    "",
    "batch",
    "inf",
    "-inf",
    "evil_module:Env-v0",
    "torch.optim:LBFGS",
    "os:system",
    "float64",
    "Discrete",
    "linear",
]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(SPECIAL),
)
MARKERS = st.one_of(
    st.builds(lambda name: {"__class__": name}, st.sampled_from(["torch.nn:ReLU", "torch.optim:Adam", "os:system", 5])),
    st.builds(lambda items: {"__tuple__": items}, st.lists(SCALARS, max_size=3)),
)
VALUES = st.recursive(
    st.one_of(SCALARS, MARKERS),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)


def paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place inside ``data`` (dict keys and list indices), parents before children."""
    found = [prefix] if prefix else []
    if isinstance(data, dict):
        for key, value in data.items():
            found += paths(value, (*prefix, key))
    elif isinstance(data, list):
        for index, value in enumerate(data[:6]):  # a Box's bounds: the first few entries will do
            found += paths(value, (*prefix, index))
    return found


@st.composite
def mutated(draw: Callable[..., Any], document: Any) -> Any:
    """``document`` with one to three of its places changed."""
    data = copy.deepcopy(document)
    for _ in range(draw(st.integers(1, 3))):
        places = paths(data)
        if not places:
            break
        place = draw(st.sampled_from(places))
        parent = data
        for step in place[:-1]:
            parent = parent[step]
        key = place[-1]
        old = parent[key]
        action = draw(st.sampled_from(["replace", "replace", "scale", "delete", "add", "wrap"]))
        if action == "scale" and isinstance(old, int) and not isinstance(old, bool):
            parent[key] = old * draw(st.sampled_from([-1, 0, 7, 10**3, 10**6, 10**12]))
        elif action == "delete" and isinstance(parent, dict):
            del parent[key]
        elif action == "add" and isinstance(old, dict):
            old[draw(st.text(max_size=8))] = draw(VALUES)
        elif action == "wrap":  # a long list of a scalar; a list or mapping at most doubled (the text stays small)
            factor = 1000 if not isinstance(old, (list, dict)) else 2
            parent[key] = [old] * draw(st.sampled_from([1, 2, factor]))
        else:
            parent[key] = draw(VALUES)
    return data


def _refused_or_loaded(load: Callable[[], Any], one_short_line: bool = True) -> None:
    try:
        load()
    except UserInputError as error:
        if one_short_line:  # a value echoed from the file is cut
            assert "\n" not in str(error) and len(str(error)) < 2000, str(error)[:500]


# --- the loaders -------------------------------------------------------------------------------------------


def _fuzz_model_json(files: dict[str, Any], examples: int) -> None:
    from stable_baselines3.common.vec_env import DummyVecEnv

    from recurrent_rl.export.safe import load_safe, load_safe_vecnormalize
    from recurrent_rl.runs.evaluation import make_env

    prefix: Path = files["safe"]
    config_path = prefix.with_name("model.json")
    original = json.loads(config_path.read_text())
    venv = DummyVecEnv([lambda: make_env("pomdp/CartPoleNoVel-v1")])

    def load() -> None:
        model = load_safe(prefix, device="cpu", optimizer=True)
        model.predict(np.zeros((1, 4), dtype=np.float32), deterministic=True)
        load_safe_vecnormalize(prefix, venv)

    @settings(
        max_examples=examples, derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck)
    )
    @given(mutated(original))
    def check(data: Any) -> None:
        config_path.write_text(json.dumps(data))
        _refused_or_loaded(load)

    try:
        check()
    finally:
        config_path.write_text(json.dumps(original))


class _Session:
    """The exported graph's onnxruntime session with the metadata of the example: the graph is
    parsed once, the runner reads each mutated metadata as it reads a file's."""

    def __init__(self, session: Any):
        self.session, self.text = session, ""

    def get_modelmeta(self) -> Any:
        return SimpleNamespace(custom_metadata_map={"recurrent_rl": self.text})

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session, name)


def _fuzz_onnx(files: dict[str, Any], examples: int, monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime as ort

    from recurrent_rl.export.play import OnnxPolicy, read_onnx_metadata

    session = _Session(ort.InferenceSession(str(files["onnx"]), providers=["CPUExecutionProvider"]))
    original = read_onnx_metadata(session.session, files["onnx"])
    monkeypatch.setattr(ort, "InferenceSession", lambda *args, **kwargs: session)

    def load() -> None:
        policy = OnnxPolicy(files["onnx"])
        state = policy.initial_state(2)
        entry = policy.obs_inputs[0]
        obs = np.zeros([2, *entry["shape"][1:]], dtype=entry["dtype"])
        policy.step(obs, state, np.ones(2))

    @settings(
        max_examples=examples, derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck)
    )
    @given(mutated(original))
    def check(data: Any) -> None:
        session.text = json.dumps(data)
        _refused_or_loaded(load)

    check()


def _fuzz_config_yaml(files: dict[str, Any], examples: int, tmp_path: Path) -> None:
    from recurrent_rl.config.loading import load_config

    original = yaml.safe_load(files["config"].read_text())
    target = tmp_path / "config.yaml"

    @settings(
        max_examples=examples, derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck)
    )
    @given(mutated(original))
    def check(data: Any) -> None:
        target.write_text(yaml.dump(data, Dumper=DUMPER))
        # config.yaml's messages echo whole values (config/schema.py): only the kind of error is checked here
        _refused_or_loaded(lambda: load_config(target), one_short_line=False)

    check()


@pytest.mark.usefixtures("memory_cap")
def test_mutated_model_json_is_loaded_or_refused(files):
    _fuzz_model_json(files, EXAMPLES["model.json"])


@pytest.mark.usefixtures("memory_cap")
def test_mutated_onnx_metadata_is_loaded_or_refused(files, monkeypatch):
    _fuzz_onnx(files, EXAMPLES["onnx"], monkeypatch)


@pytest.mark.usefixtures("memory_cap")
def test_a_mutated_config_yaml_is_read_or_refused(files, tmp_path):
    _fuzz_config_yaml(files, EXAMPLES["config.yaml"], tmp_path)


@pytest.mark.slow
@pytest.mark.usefixtures("memory_cap")
def test_many_more_mutations_are_loaded_or_refused(files, tmp_path, monkeypatch):
    _fuzz_model_json(files, SLOW * EXAMPLES["model.json"])
    _fuzz_onnx(files, SLOW * EXAMPLES["onnx"], monkeypatch)
    _fuzz_config_yaml(files, SLOW * EXAMPLES["config.yaml"], tmp_path)
