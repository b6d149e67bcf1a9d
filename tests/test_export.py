"""ONNX export: the graph acts as ``predict(deterministic=True)`` does, step by step with resets, for
every memory, critic option, action and observation space; the torch-free runner; bad files.

Parity runs 20 episodes on a batch of envs that reset at different steps: each step feeds the
same observations and episode starts to ``model.predict`` (its own state carried) and to the
graph (its own state carried), and compares actions (exactly for discrete actions, 1e-5 for Box)
and every state tensor (1e-5); with ``include_value`` the value and the critic's state against the
policy's rollout step (``policy.forward``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

pytest.importorskip("onnx")  # the onnx extra: pip install 'recurrent_rl[onnx]'
pytest.importorskip("onnxruntime")

from recurrent_rl import RecurrentPPO
from recurrent_rl.errors import UserInputError
from recurrent_rl.export import ExportError, OnnxPolicy, export_onnx, play_episodes, read_metadata
from recurrent_rl.export.format import METADATA_KEY
from recurrent_rl.export.play import OnnxFileError
from recurrent_rl.nets.memory import MEMORIES
from recurrent_rl.nets.policies import CRITIC_MEMORY
from recurrent_rl.runs.evaluation import run_episodes
from tests.spaces_env import ACTION_SPACES, OBSERVATION_SPACES, SpacesEnv

ROOT = Path(__file__).resolve().parents[1]
ENV = "pomdp/CartPoleNoVel-v1"  # episodes of 8-30 steps under a random-init policy
EPISODES = 20
MEMORY_KWARGS = {"transformer": {"memory_length": 4}}


def tiny_model(
    env,
    policy: str = "MlpGruPolicy",
    memory: str = "gru",
    critic_memory: str = "separate",
    updates: int = 2,
    **policy_kwargs,
) -> RecurrentPPO:
    """A small policy after ``updates`` PPO updates (parity needs no trained agent, only weights
    that are not all at their initial values)."""
    n_envs = env.num_envs
    kwargs = dict(
        memory=memory,
        hidden_size=16,
        num_layers=2,
        critic_memory=critic_memory,
        net_arch=[16],
        memory_kwargs=MEMORY_KWARGS.get(memory, {}),
        **policy_kwargs,
    )
    model = RecurrentPPO(policy, env, n_steps=16, batch_size=16 * n_envs, n_epochs=1, policy_kwargs=kwargs, seed=0)
    if updates:
        model.learn(16 * n_envs * updates)
    return model


def cartpole(n_envs: int = 3, seed: int = 0) -> DummyVecEnv:
    return make_vec_env(ENV, n_envs=n_envs, seed=seed)


def spaces_env(obs: str, act: str, n_envs: int = 3, action_space: spaces.Space | None = None) -> DummyVecEnv:
    action = action_space if action_space is not None else ACTION_SPACES[act]
    # episodes of different lengths per env, so resets fall at different steps
    fns = [lambda i=i: SpacesEnv(OBSERVATION_SPACES[obs], action, ep_length=5 + 3 * i) for i in range(n_envs)]
    venv = DummyVecEnv(fns)
    venv.seed(0)
    return venv


def check_parity(
    model: RecurrentPPO, path: Path, venv, episodes: int = EPISODES, normalizer=None, value: bool = False
) -> int:
    """Step ``venv`` with the model's deterministic actions until ``episodes`` episodes ended,
    comparing the graph at every step; the number of steps compared."""
    graph = OnnxPolicy(path)
    box = isinstance(model.action_space, spaces.Box)
    obs = venv.reset()
    n = venv.num_envs
    starts = np.ones(n, dtype=bool)
    state = graph_state = None
    torch_state = model.policy.initial_state(n)
    ended = steps = 0
    while ended < episodes:
        model_obs = normalizer.normalize_obs(obs) if normalizer is not None else obs
        action, state = model.predict(model_obs, state=state, episode_start=starts, deterministic=True)
        graph_action, graph_state, outputs = graph.step(obs, graph_state, starts)
        assert graph_action.shape == action.shape
        if box:
            np.testing.assert_allclose(graph_action, action, rtol=0, atol=1e-5)
        else:
            assert np.array_equal(graph_action, action), (steps, graph_action, action)
        actor_names = [s["name"] for s in graph.states if s["role"] == "actor"]
        assert len(actor_names) == len(state)
        for name, expected in zip(actor_names, state):
            np.testing.assert_allclose(graph_state[name], expected, rtol=0, atol=1e-5)
        if value:
            with th.no_grad():
                obs_tensor = model.policy.obs_to_tensor(model_obs)[0]
                start_tensor = th.as_tensor(starts, dtype=th.float32)
                _, values, _, torch_state = model.policy(obs_tensor, torch_state, start_tensor, deterministic=True)
            # a layer norm (minGRU, minLSTM, ffm, transformer) before the head: float32 rounding of
            # onnxruntime's and torch's layer norms differ by a few 1e-5 relative
            np.testing.assert_allclose(outputs["value"], values.numpy().reshape(-1), rtol=1e-4, atol=1e-5)
            critic_names = [s["name"] for s in graph.states if s["role"] == "critic"]
            assert len(critic_names) == len(torch_state.critic)
            for name, expected in zip(critic_names, torch_state.critic):
                np.testing.assert_allclose(graph_state[name], expected.numpy(), rtol=0, atol=1e-5)
        obs, _, dones, _ = venv.step(action)
        starts = dones
        ended += int(dones.sum())
        steps += 1
    return steps


# --- parity ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("critic_memory", CRITIC_MEMORY)
@pytest.mark.parametrize("memory", MEMORIES)
def test_graph_acts_as_predict_for_every_memory_and_critic(tmp_path, memory, critic_memory):
    model = tiny_model(cartpole(), memory=memory, critic_memory=critic_memory)
    path = export_onnx(model, tmp_path / "model.onnx", include_value=True)
    steps = check_parity(model, path, cartpole(seed=7), value=True)
    assert steps > 20  # episodes ended at different steps of the batch
    inputs = [i.name for i in OnnxPolicy(path).session.get_inputs()]
    n_actor = len(model.policy.actor_memory.state_shapes(1))
    n_critic = n_actor if critic_memory == "separate" else 0
    assert inputs == [
        "obs",
        "episode_start",
        *[f"state.actor.{i}" for i in range(n_actor)],
        *[f"state.critic.{i}" for i in range(n_critic)],
    ]


@pytest.mark.parametrize("memory", ["gru", "transformer"])
def test_without_value_the_graph_carries_the_actor_state_only(tmp_path, memory):
    model = tiny_model(cartpole(), memory=memory)
    path = export_onnx(model, tmp_path / "model.onnx")
    graph = OnnxPolicy(path)
    assert [o.name for o in graph.session.get_outputs()] == ["action", *[s["output"] for s in graph.states]]
    assert all(s["role"] == "actor" for s in graph.states)
    check_parity(model, path, cartpole(seed=3))


@pytest.mark.parametrize("act", ["multidiscrete", "multibinary", "box"])
def test_parity_for_every_action_space(tmp_path, act):
    model = tiny_model(spaces_env("box", act), memory="lstm")
    path = export_onnx(model, tmp_path / "model.onnx", include_value=True)
    check_parity(model, path, spaces_env("box", act), value=True)


def test_box_actions_are_clipped_to_the_bounds_as_predict_clips_them(tmp_path):
    narrow = spaces.Box(-0.05, 0.02, (2,), dtype=np.float32)
    model = tiny_model(spaces_env("box", "box", action_space=narrow))
    with th.no_grad():
        model.policy.action_net.weight *= 100  # means of about ±0.1: some inside the bounds, some outside
    path = export_onnx(model, tmp_path / "model.onnx", include_distribution=True)
    check_parity(model, path, spaces_env("box", "box", action_space=narrow))
    graph = OnnxPolicy(path)
    obs = np.stack([OBSERVATION_SPACES["box"].sample() for _ in range(64)])
    action, _, outputs = graph.step(obs, None, np.ones(64))
    assert action.min() >= -0.05 and action.max() <= 0.02
    mean = outputs["mean"]
    outside = (mean < -0.05) | (mean > 0.02)
    assert outside.any() and not outside.all(), "the test needs means inside and outside the bounds"
    np.testing.assert_allclose(action, np.clip(mean, -0.05, 0.02), atol=1e-6)
    log_std = model.policy.log_std.detach().numpy()
    np.testing.assert_allclose(outputs["log_std"], np.broadcast_to(log_std, mean.shape), atol=1e-6)


def test_gsde_squashed_actions_are_rescaled_as_predict_does(tmp_path):
    env = spaces_env("box", "box", action_space=spaces.Box(-2.0, 3.0, (2,), dtype=np.float32))
    model = RecurrentPPO(
        "MlpGruPolicy",
        env,
        n_steps=16,
        batch_size=48,
        n_epochs=1,
        use_sde=True,
        seed=0,
        policy_kwargs=dict(hidden_size=16, squash_output=True, net_arch=[16]),
    )
    model.learn(96)
    path = export_onnx(model, tmp_path / "model.onnx")
    check_parity(model, path, spaces_env("box", "box", action_space=env.action_space))
    with pytest.raises(ExportError, match="gSDE"):
        export_onnx(model, tmp_path / "dist.onnx", include_distribution=True)


@pytest.mark.parametrize("obs", ["image", "discrete", "multidiscrete", "multibinary", "dict"])
def test_parity_for_every_observation_space(tmp_path, obs):
    policy = {"image": "CnnGruPolicy", "dict": "MultiInputGruPolicy"}.get(obs, "MlpGruPolicy")
    model = tiny_model(spaces_env(obs, "discrete"), policy=policy, updates=1)
    path = export_onnx(model, tmp_path / "model.onnx", include_value=True)
    check_parity(model, path, spaces_env(obs, "discrete"), episodes=8, value=True)
    meta = read_metadata(path)
    if obs == "dict":
        assert [e["name"] for e in meta["obs"]] == [f"obs.{key}" for key in model.observation_space.spaces]
    if obs == "image":
        # the model sees (1, 36, 36) (VecTransposeImage); the graph takes that, the runner transposes (36, 36, 1)
        assert meta["obs"][0]["shape"] == ["batch", 1, 36, 36] and meta["obs"][0]["dtype"] == "uint8"


def test_parity_with_separate_features_extractors(tmp_path):
    model = tiny_model(
        spaces_env("image", "discrete"), policy="CnnGruPolicy", updates=1, share_features_extractor=False
    )
    assert model.policy.vf_features_extractor is not model.policy.pi_features_extractor
    path = export_onnx(model, tmp_path / "model.onnx", include_value=True)
    check_parity(model, path, spaces_env("image", "discrete"), episodes=6, value=True)


def test_categorical_logits_are_the_distributions(tmp_path):
    model = tiny_model(cartpole())
    path = export_onnx(model, tmp_path / "model.onnx", include_distribution=True)
    obs = cartpole().reset()
    _, _, outputs = OnnxPolicy(path).step(obs, None, np.ones(3))
    with th.no_grad():
        dist, _ = model.policy.get_distribution(
            model.policy.obs_to_tensor(obs)[0], model.policy.initial_state(3).actor, th.ones(3)
        )
    np.testing.assert_allclose(outputs["logits"], dist.distribution.logits.numpy(), atol=1e-5)


def test_vecnormalize_is_folded_into_the_graph(tmp_path):
    venv = VecNormalize(cartpole(), gamma=0.98, clip_obs=1.5)  # a small clip, so clipping takes part
    model = tiny_model(venv)
    venv.training = False
    raw = cartpole(seed=5)
    path = export_onnx(model, tmp_path / "model.onnx")  # the model's own VecNormalize
    check_parity(model, path, raw, normalizer=venv)
    meta = read_metadata(path)
    assert meta["vecnormalize"]["folded"] and meta["vecnormalize"]["clip_obs"] == 1.5
    without = export_onnx(model, tmp_path / "raw.onnx", vecnormalize=False)
    assert read_metadata(without)["vecnormalize"] is None


def test_runner_returns_equal_evaluates_on_the_same_seeds(tmp_path):
    venv = VecNormalize(cartpole(), gamma=0.98)
    model = tiny_model(venv, updates=3)
    venv.training = False
    path = export_onnx(model, tmp_path / "model.onnx")
    env = gym.make(ENV)
    report = run_episodes(model, env, episodes=6, deterministic=True, seed=11, normalize_obs=venv.normalize_obs)
    returns, lengths = play_episodes(path, ENV, episodes=6, seed=11)
    assert returns == report.returns and lengths == report.lengths
    assert len(set(report.returns)) > 1  # different episodes, not one repeated


def test_batch_dimension_is_free(tmp_path):
    model = tiny_model(cartpole(), memory="transformer", updates=0)
    graph = OnnxPolicy(export_onnx(model, tmp_path / "model.onnx"))
    for batch in (1, 5):
        obs = np.stack([model.observation_space.sample() for _ in range(batch)])
        action, state, _ = graph.step(obs, None, np.ones(batch))
        expected, expected_state = model.predict(obs, None, np.ones(batch), deterministic=True)
        assert np.array_equal(action, expected)
        for got, want in zip(state.values(), expected_state):
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, atol=1e-5)


def test_dynamo_exporter_gives_the_same_graph_behaviour(tmp_path):
    model = tiny_model(cartpole(), memory="gru", updates=1)
    path = export_onnx(model, tmp_path / "model.onnx", dynamo=True)
    check_parity(model, path, cartpole(seed=2), episodes=6)
    assert read_metadata(path)["exporter"].startswith("torch.export")


# --- the graph and its metadata ------------------------------------------------------------------


def test_the_cpu_kernels_backend_exports_its_plain_torch_path(tmp_path):
    import onnx

    for memory in ("gru", "mingru"):
        model = tiny_model(cartpole(), memory=memory, updates=0, backend="cpu-kernels")
        assert model.policy.backend_name == "cpu-kernels"
        path = export_onnx(model, tmp_path / f"{memory}.onnx", include_value=True)
        nodes = onnx.load(str(path)).graph.node
        assert {node.domain for node in nodes} <= {"", "ai.onnx"}
        assert not [n.op_type for n in nodes if "recurrent" in n.op_type.lower() or "scan" == n.op_type.lower()]
        check_parity(model, path, cartpole(seed=1), episodes=6, value=True)


def test_metadata_describes_spaces_memory_states_and_reset(tmp_path):
    from recurrent_rl import __version__
    from recurrent_rl.io.spaces import space_from_json

    model = tiny_model(cartpole(), memory="transformer", critic_memory="separate", updates=0)
    meta = read_metadata(export_onnx(model, tmp_path / "model.onnx", include_value=True))
    assert meta["format"] == "recurrent_rl.onnx_policy" and meta["format_version"] == 1
    assert meta["versions"]["recurrent_rl"] == __version__
    assert meta["env_id"] == ENV
    assert space_from_json(meta["observation_space"]) == model.observation_space
    assert space_from_json(meta["action_space"]) == model.action_space
    assert meta["memory"] == {
        "type": "transformer",
        "hidden_size": 16,
        "num_layers": 2,
        "memory_kwargs": {"memory_length": 4},
        "critic_memory": "separate",
    }
    shapes = {s["name"]: s["shape"] for s in meta["states"]}
    assert shapes == {
        "state.actor.0": [2, "batch", 64],
        "state.actor.1": [1, "batch", 4],
        "state.critic.0": [2, "batch", 64],
        "state.critic.1": [1, "batch", 4],
    }
    assert "zeros" in meta["reset"] and "episode_start" in meta["reset"]
    assert [o["name"] for o in meta["outputs"]] == [
        "action",
        "next_state.actor.0",
        "next_state.actor.1",
        "next_state.critic.0",
        "next_state.critic.1",
        "value",
    ]


def test_export_leaves_the_model_as_it_was(tmp_path):
    model = tiny_model(cartpole(), updates=0)
    model.policy.set_training_mode(True)
    before = {k: v.clone() for k, v in model.policy.state_dict().items()}
    export_onnx(model, tmp_path / "model.onnx")
    assert model.policy.training
    after = model.policy.state_dict()
    assert all(th.equal(before[k], after[k]) for k in before)


# --- the runner without torch ------------------------------------------------------------------------

# Fails the run if anything imports torch (or SB3, which imports torch).
BLOCK_TORCH = textwrap.dedent("""
    import importlib.abc, sys
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "stable_baselines3"):
                raise ImportError(f"{name} imported by the ONNX runner")
            return None
    sys.meta_path.insert(0, Block())
""")


def run_without_torch(code: str, cwd: Path) -> subprocess.CompletedProcess:
    script = BLOCK_TORCH + textwrap.dedent(code) + "\nassert 'torch' not in sys.modules\n"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True, timeout=300, env=env)


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, RecurrentPPO]:
    folder = tmp_path_factory.mktemp("exported")
    model = tiny_model(cartpole(), memory="gru", updates=1)
    return export_onnx(model, folder / "model.onnx"), model


def test_runner_plays_without_torch(exported, tmp_path):
    path, model = exported
    result = run_without_torch(
        f"""
        import runpy
        sys.argv = ["play", {str(path)!r}, "--episodes", "3", "--seed", "4"]
        try:
            runpy.run_module("recurrent_rl.export.play", run_name="__main__")
        except SystemExit as exit:
            assert exit.code in (0, None), exit.code
    """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len([line for line in lines if line.startswith("episode ")]) == 3
    report = run_episodes(model, gym.make(ENV), episodes=3, deterministic=True, seed=4)
    for episode, expected in enumerate(report.returns):
        assert f"episode {episode}: return {expected:.2f}" in result.stdout
    assert f"mean return over 3 episodes: {np.mean(report.returns):.2f}" in result.stdout


def test_example_script_plays_without_torch(exported, tmp_path):
    path, _ = exported
    result = run_without_torch(
        f"""
        import runpy
        sys.argv = ["onnx_play.py", {str(path)!r}, "--env", {ENV!r}, "--episodes", "2"]
        try:
            runpy.run_path({str(ROOT / "examples" / "onnx_play.py")!r}, run_name="__main__")
        except SystemExit as exit:
            assert exit.code in (0, None), exit.code
    """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "mean return over 2 episodes:" in result.stdout


def test_importing_the_runner_loads_no_torch(tmp_path):
    result = run_without_torch("import recurrent_rl.export.play, recurrent_rl.export", tmp_path)
    assert result.returncode == 0, result.stderr


# --- bad input -----------------------------------------------------------------------------------------


def run_play(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "recurrent_rl.export.play", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


def test_truncated_or_corrupt_onnx_files_are_refused_clearly(exported, tmp_path):
    path, _ = exported
    data = path.read_bytes()
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(data[: len(data) // 3])
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"PK\x03\x04 this is a zip, not a model" * 10)
    for bad in (truncated, corrupt):
        with pytest.raises(OnnxFileError, match="not a loadable ONNX model"):
            OnnxPolicy(bad)
        with pytest.raises(ExportError, match="not a readable ONNX file"):
            read_metadata(bad)
    result = run_play(truncated, "--env", ENV)
    assert result.returncode == 2 and "not a loadable ONNX model" in result.stderr and "Traceback" not in result.stderr
    result = run_play(tmp_path / "missing.onnx", "--env", ENV)
    assert result.returncode == 2 and "does not exist" in result.stderr


def test_onnx_files_of_another_format_are_refused(exported, tmp_path):
    import onnx

    path, _ = exported
    model = onnx.load(str(path))
    for value, message in (
        (None, "without recurrent_rl metadata"),
        (json.dumps({"format": "someone.else"}), "unknown format"),
        (json.dumps({**read_metadata(path), "format_version": 99}), "format version 99"),
        ("{not json", "not valid JSON"),
    ):
        del model.metadata_props[:]
        if value is not None:
            entry = model.metadata_props.add()
            entry.key, entry.value = METADATA_KEY, value
        other = tmp_path / "other.onnx"
        onnx.save(model, str(other))
        with pytest.raises(OnnxFileError, match=message):
            OnnxPolicy(other)
        result = run_play(other, "--env", ENV)
        assert result.returncode == 2 and message in result.stderr


def test_runner_refuses_an_env_with_other_actions(exported):
    path, _ = exported
    with pytest.raises(UserInputError, match="acts in Discrete"):
        play_episodes(path, "Pendulum-v1", episodes=1)


class ExtractorWithEigh(BaseFeaturesExtractor):
    """Features through an operator the ONNX exporter does not know (linalg.eigh)."""

    def __init__(self, observation_space: spaces.Box):
        super().__init__(observation_space, features_dim=2)

    def forward(self, obs: th.Tensor) -> th.Tensor:
        gram = obs[:, :2].unsqueeze(2) * obs[:, :2].unsqueeze(1) + th.eye(2)  # (B, 2, 2) symmetric
        return th.linalg.eigvalsh(gram)


class ExtractorWithBranch(BaseFeaturesExtractor):
    """Python control flow on a tensor value: tracing would bake one branch in."""

    def __init__(self, observation_space: spaces.Box):
        super().__init__(observation_space, features_dim=4)

    def forward(self, obs: th.Tensor) -> th.Tensor:
        return obs if obs.sum() > 0 else -obs


@pytest.mark.parametrize("extractor", [ExtractorWithEigh, ExtractorWithBranch])
def test_a_part_that_does_not_export_is_named_and_nothing_is_written(tmp_path, extractor):
    model = tiny_model(cartpole(), updates=0, features_extractor_class=extractor)
    target = tmp_path / "model.onnx"
    target.write_bytes(b"previous")
    with pytest.raises(
        ExportError, match=rf"features extractor \(policy.pi_features_extractor: {extractor.__name__}\)"
    ) as info:
        export_onnx(model, target)
    assert "Rewrite that module" in str(info.value)
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]  # no temporary file left


# --- recurrent-rl export ---------------------------------------------------------------------------------

TINY_RUN = [
    "--timesteps",
    "256",
    "--set",
    "n_envs=2",
    "--set",
    "n_steps=16",
    "--set",
    "batch_size=32",
    "--set",
    "eval.freq=128",
    "--set",
    "eval.episodes=2",
    "--set",
    "eval.final_episodes=2",
    "--set",
    "checkpoint.freq=128",
    "--no-progress",
]


def export_cli(*args: object) -> int:
    from recurrent_rl.export import cli

    return cli.main([str(a) for a in args])


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    from recurrent_rl.runs import cli

    runs_dir = tmp_path_factory.mktemp("runs")
    assert cli.main(["train", "--runs-dir", str(runs_dir), "--name", "tiny", *TINY_RUN]) == 0
    return runs_dir / "tiny"


def copy_run(run: Path, to: Path, zip_only: bool = True) -> Path:
    """A copy of the run folder; ``zip_only``: without the safe copies training writes (as a run
    folder from elsewhere may come), so the zip path is exercised."""
    import shutil

    copy = Path(shutil.copytree(run, to / run.name))
    if zip_only:
        for prefix in ("model", "best_model"):
            for suffix in (".safetensors", ".json"):
                (copy / f"{prefix}{suffix}").unlink()
    return copy


def test_training_writes_safe_copies_that_export_prefers(tiny_run, tmp_path, capsys):
    run = copy_run(tiny_run, tmp_path, zip_only=False)
    for prefix in ("model", "best_model"):
        assert (run / f"{prefix}.safetensors").is_file() and (run / f"{prefix}.json").is_file()
    step = sorted((run / "checkpoints").iterdir())[-1]
    assert (step / "model.safetensors").is_file() and (step / "model.json").is_file()
    (run / "model.zip").write_bytes(b"not a zip")  # never opened: the safe copy is read
    (run / "vecnormalize.pkl").write_bytes(b"not a pickle")
    capsys.readouterr()
    assert export_cli(run) == 0
    assert "unpickles" not in capsys.readouterr().err


def test_export_a_run_folder_to_onnx_plays_as_evaluate(tiny_run, tmp_path, capsys):
    from recurrent_rl.runs import cli

    run = copy_run(tiny_run, tmp_path)
    assert export_cli(run) == 2  # SB3's zip without a safe copy: only with the opt-in
    assert "--trust-pickle" in capsys.readouterr().err and not (run / "model.onnx").exists()
    assert export_cli(run, "--trust-pickle") == 0
    out, err = capsys.readouterr()
    assert (run / "model.onnx").is_file() and f"wrote {run / 'model.onnx'}" in out
    assert f"python -m recurrent_rl.export.play {run / 'model.onnx'} --env {ENV}" in out
    assert "unpickles" in err  # read from SB3's zip: said so
    meta = read_metadata(run / "model.onnx")
    assert meta["env_id"] == ENV and meta["vecnormalize"]["folded"]  # the run normalised observations
    assert (
        cli.main(
            [
                "evaluate",
                str(run),
                "--episodes",
                "4",
                "--seed",
                "6",
                "--json",
                str(tmp_path / "e.json"),
                "--no-progress",
                "--trust-pickle",
            ]
        )
        == 0
    )
    report = json.loads((tmp_path / "e.json").read_text())
    returns, lengths = play_episodes(run / "model.onnx", ENV, episodes=4, seed=6)
    assert returns == report["episode_returns"] and lengths == report["episode_lengths"]


def test_export_prefers_the_safe_copy_and_never_unpickles(tiny_run, tmp_path, capsys):
    run = copy_run(tiny_run, tmp_path)
    assert export_cli(run, "--format", "safe", "--trust-pickle") == 0
    out, _ = capsys.readouterr()
    assert (run / "model.safetensors").is_file() and (run / "model.json").is_file() and "safe to open" in out
    assert export_cli(run, "--out", tmp_path / "from_zip.onnx") == 0
    marker = tmp_path / "marker"
    from tests.test_safe_format import WritesMarker, malicious_zip

    malicious_zip(load_for_test(run), run / "model.zip", marker)
    (run / "vecnormalize.pkl").write_bytes(__import__("pickle").dumps(WritesMarker(marker)))
    capsys.readouterr()
    assert export_cli(run) == 0
    _, err = capsys.readouterr()
    assert not marker.exists() and "unpickles" not in err
    a = play_episodes(run / "model.onnx", ENV, episodes=3, seed=1)
    b = play_episodes(tmp_path / "from_zip.onnx", ENV, episodes=3, seed=1)
    assert a == b  # the safe copy holds the same policy and statistics as the zip


def load_for_test(run: Path) -> RecurrentPPO:
    from recurrent_rl.export.safe import load_safe

    return load_safe(run)


def test_export_the_best_model(tiny_run, tmp_path, capsys):
    run = copy_run(tiny_run, tmp_path)
    assert export_cli(run, "--best", "--include-value", "--trust-pickle") == 0
    assert (run / "best_model.onnx").is_file() and not (run / "model.onnx").exists()
    assert "value" in [o["name"] for o in read_metadata(run / "best_model.onnx")["outputs"]]


def test_export_bad_input_is_one_line_and_writes_nothing(tiny_run, tmp_path, capsys):
    run = copy_run(tiny_run, tmp_path)
    before = sorted(p.name for p in run.iterdir())
    with pytest.raises(SystemExit) as exit_info:
        export_cli(run, "--format", "tflite")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'tflite'" in err and "onnx" in err.split("invalid choice")[1] and "safe" in err
    for args, fragment in (
        ((tmp_path / "missing",), "does not exist"),
        ((run, "--out", tmp_path / "model.txt"), "use a .onnx file name"),
        ((run, "--format", "safe", "--include-value"), "options of --format onnx"),
        ((run / "model.zip", "--best"), "give the folder"),
    ):
        assert export_cli(*args) == 2
        err = capsys.readouterr().err
        assert fragment in err and "Traceback" not in err and len(err.strip().splitlines()) <= 2, err
    (run / "model.zip").write_bytes(b"not a zip")
    assert export_cli(run, "--trust-pickle") == 2
    assert "cannot load a RecurrentPPO model" in capsys.readouterr().err
    assert sorted(p.name for p in run.iterdir()) == before


def test_add_parser_registers_the_command_on_a_cli(tiny_run, tmp_path, capsys):
    import argparse

    from recurrent_rl.export import cli

    parser = argparse.ArgumentParser(prog="recurrent-rl")
    cli.add_parser(parser.add_subparsers(dest="command"))
    run = copy_run(tiny_run, tmp_path, zip_only=False)
    args = parser.parse_args(["export", str(run), "--format", "safe", "--out", str(tmp_path / "copy" / "agent")])
    assert args.handler(args) == 0
    assert (tmp_path / "copy" / "agent.safetensors").is_file() and (tmp_path / "copy" / "agent.json").is_file()


def test_evaluate_prefers_the_safe_copy_and_never_unpickles(tiny_run, tmp_path):
    from recurrent_rl.runs import cli
    from tests.test_safe_format import WritesMarker, malicious_zip

    run = copy_run(tiny_run, tmp_path, zip_only=False)
    args = ["evaluate", str(run), "--episodes", "3", "--seed", "2", "--no-progress"]
    assert cli.main([*args, "--json", str(tmp_path / "safe.json")]) == 0
    marker = tmp_path / "marker"
    malicious_zip(load_for_test(run), run / "model.zip", marker)
    (run / "vecnormalize.pkl").write_bytes(__import__("pickle").dumps(WritesMarker(marker)))
    assert cli.main([*args, "--json", str(tmp_path / "again.json")]) == 0
    assert not marker.exists()
    first, again = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("safe", "again"))
    assert first["episode_returns"] == again["episode_returns"]
    zip_only = copy_run(tiny_run, tmp_path / "zip")  # the same run through SB3's zip: the same episodes
    assert cli.main(["evaluate", str(zip_only), *args[2:], "--json", str(tmp_path / "zip.json"), "--trust-pickle"]) == 0
    assert json.loads((tmp_path / "zip.json").read_text())["episode_returns"] == first["episode_returns"]


def test_recurrent_ppo_load_safe_reads_the_run_folders_copy(tiny_run):
    from recurrent_rl import RecurrentPPO

    model = RecurrentPPO.load_safe(tiny_run / "model.json")
    again = RecurrentPPO.load(tiny_run / "model.zip")
    obs = np.zeros((2, *model.observation_space.shape), dtype=np.float32)
    starts = np.ones(2, dtype=bool)
    assert np.array_equal(
        model.predict(obs, episode_start=starts, deterministic=True)[0],
        again.predict(obs, episode_start=starts, deterministic=True)[0],
    )
    sd, sd_again = model.policy.state_dict(), again.policy.state_dict()
    assert sd.keys() == sd_again.keys() and all(th.equal(sd[k], sd_again[k]) for k in sd)
