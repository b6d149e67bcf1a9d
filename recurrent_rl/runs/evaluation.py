"""Evaluation in simulation: seeded episodes with the memory carried and reset, and their report.

:func:`run_episodes` plays whole episodes one after the other on one Gymnasium env, feeding
``predict`` the state it returned at the previous step and ``episode_start=True`` at each first
step (sb3-contrib's contract, so the memory never crosses an episode). Episode ``i`` is reset
with seed ``seed + i``: the same seed gives the same episodes. ``info["success"]`` (or SB3's
``info["is_success"]``) at an episode's last step gives the success rate.

:func:`load_agent` finds a model, its VecNormalize statistics and its env from a run folder or
a model file; :func:`evaluate` runs it; :func:`save_video` and :func:`save_plot` draw it (they
need the ``viz`` extra: ``pip install 'recurrent_rl[viz]'``).
"""

from __future__ import annotations

import inspect
import json
import math
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recurrent_rl.config.envs import VIZ_HINT, make_env  # noqa: F401  make_env: re-exported
from recurrent_rl.errors import refuse_pickle
from recurrent_rl.io import run_folder as runs
from recurrent_rl.io.run_folder import RunError


@dataclass
class EvalReport:
    """Per-episode results of an evaluation, their summary, and optional recordings."""

    env_id: str
    deterministic: bool
    seed: int | None
    returns: list[float]
    lengths: list[int]
    successes: list[bool | None]
    model: str = ""
    num_timesteps: int | None = None
    # top layer of the actor's memory over the first episode: (T, H); not in the JSON report
    hidden_states: np.ndarray | None = field(default=None, repr=False)
    frames: list[np.ndarray] = field(default_factory=list, repr=False)
    fps: int = 30

    @property
    def episodes(self) -> int:
        return len(self.returns)

    @property
    def mean_return(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std_return(self) -> float:
        return float(np.std(self.returns))

    @property
    def success_rate(self) -> float | None:
        """Fraction of successful episodes among those that report success (None if none do)."""
        known = [s for s in self.successes if s is not None]
        return float(np.mean(known)) if known else None

    def to_dict(self) -> dict[str, Any]:
        """The JSON report (``eval.json``)."""
        returns, lengths = np.asarray(self.returns, dtype=float), np.asarray(self.lengths, dtype=float)
        return {
            "env": self.env_id,
            "model": self.model,
            "num_timesteps": self.num_timesteps,
            "episodes": self.episodes,
            "deterministic": self.deterministic,
            "seed": self.seed,
            "mean_return": float(returns.mean()),
            "std_return": float(returns.std()),
            "median_return": float(np.median(returns)),
            "min_return": float(returns.min()),
            "max_return": float(returns.max()),
            "success_rate": self.success_rate,
            "mean_length": float(lengths.mean()),
            "std_length": float(lengths.std()),
            "episode_returns": [float(r) for r in self.returns],
            "episode_lengths": [int(n) for n in self.lengths],
            "episode_successes": list(self.successes),
        }

    def table(self) -> str:
        """A plain-text summary table."""
        data = self.to_dict()
        mode = "deterministic" if self.deterministic else "stochastic"
        lengths = np.asarray(self.lengths, dtype=float)
        rows = [
            (
                "return",
                data["mean_return"],
                data["std_return"],
                data["median_return"],
                data["min_return"],
                data["max_return"],
            ),
            ("length", lengths.mean(), lengths.std(), float(np.median(lengths)), lengths.min(), lengths.max()),
        ]
        lines = [
            f"{self.env_id}: {self.episodes} episodes, {mode} actions, seed {self.seed}"
            + (f", model at {self.num_timesteps} steps" if self.num_timesteps is not None else ""),
            f"{'':<14}{'mean':>10}{'std':>10}{'median':>10}{'min':>10}{'max':>10}",
        ]
        lines += [f"{name:<14}" + "".join(f"{v:>10.2f}" for v in values) for name, *values in rows]
        rate = self.success_rate
        known = sum(s is not None for s in self.successes)
        shown = "n/a (env reports no success)" if rate is None else f"{rate:>10.2f}  ({known} episodes report it)"
        lines.append(f"{'success rate':<14}{shown}")
        return "\n".join(lines)


@dataclass
class Agent:
    """A trained model with what it needs to act: its env and observation statistics."""

    model: Any  # RecurrentPPO
    env_id: str
    env_kwargs: dict[str, Any]
    normalizer: Any = None  # VecNormalize with the training statistics, or None
    model_path: Path | None = None
    run_dir: Path | None = None
    gym_packages: tuple[str, ...] = ()  # the modules its env needs imported (the run's config or the user's)

    def normalize_obs(self, obs: Any) -> Any:
        return self.normalizer.normalize_obs(obs) if self.normalizer is not None else obs


# --- loading ------------------------------------------------------------------------------------


def stats_path_for(model_path: Path) -> Path:
    """The VecNormalize file saved with a model.

    ``model.zip`` -> ``vecnormalize.pkl``, ``best_model.zip`` -> ``best_vecnormalize.pkl``.
    """
    return model_path.with_name(model_path.name.removesuffix(".zip").replace("model", "vecnormalize") + ".pkl")


def resolve_model_path(path: str | Path, best: bool = False) -> tuple[Path, Path | None, str]:
    """(model file, run folder or None, a note) for a run folder or a model file."""
    path = Path(path)
    if path.is_dir():
        runs.check_not_pretraining_run(path)
        if not runs.is_run_dir(path) and has_safe_copy(path):  # export --format safe --out DIR
            if best:
                raise RunError(f"--best picks the best model of a run folder; {path} holds one model")
            return safe_json(path), None, ""
        if not runs.is_run_dir(path):
            raise RunError(
                f"{path} is not a run folder (it has no {runs.CONFIG}), nor a safe copy (model.safetensors + "
                "model.json), nor a model .zip file"
            )
        wanted = path / (runs.BEST_MODEL if best else runs.MODEL)
        if wanted.is_file() or has_safe_copy(wanted):
            return wanted, path, ""
        latest = runs.latest_checkpoint(path)
        if best or latest is None:
            raise RunError(
                f"run folder {path} has no {wanted.name}"
                + ("" if best else " and no checkpoint: the run saved no model yet (did it start training?)")
            )
        note = f"{path} has no {runs.MODEL} (training did not finish): evaluating the latest checkpoint {latest.name}"
        return latest / runs.MODEL, path, note
    if not path.exists() and not has_safe_copy(path):
        raise RunError(f"model file {path} does not exist")
    for parent in list(path.parents)[:3]:  # model.zip, best_model.zip, checkpoints/step_N/model.zip
        if runs.is_run_dir(parent):
            return path, parent, ""
    return path, None, ""


def load_agent(
    path: str | Path,
    env_id: str | None = None,
    env_kwargs: dict[str, Any] | None = None,
    best: bool = False,
    device: str = "auto",
    trust_pickle: bool = False,
    gym_packages: Sequence[str] | None = None,
) -> Agent:
    """Load the agent in a run folder (its final model, or the best with ``best=True``) or a model file.

    The env comes from the run's ``config.yaml`` unless ``env_id`` is given; so do the modules it
    needs imported, unless ``gym_packages`` (the user's own) is given. The model's safe copy
    (``model.safetensors`` + ``model.json``, with the VecNormalize statistics inside) is read
    when it exists: it opens without unpickling. Otherwise the SB3 zip and the VecNormalize
    statistics saved next to it (``vecnormalize.pkl``) are used, which unpickle code: only with
    ``trust_pickle=True`` (an :class:`~recurrent_rl.errors.UntrustedPickleError` without it).
    """
    from recurrent_rl import RecurrentPPO
    from recurrent_rl.config.loading import load_config
    from recurrent_rl.config.train import check_env_id

    model_path, run_dir, note = resolve_model_path(path, best)
    if note:
        print(f"note: {note}", file=sys.stderr)
    # the user's own --env replaces the run's (whose id, read from a file, is checked as data)
    given = [f"env={json.dumps(env_id)}"] if env_id is not None else []
    if gym_packages is not None:
        given.append(f"gym_packages={json.dumps(list(gym_packages))}")
    config = load_config(run_dir / runs.CONFIG, given, check_env=not given) if run_dir is not None else None
    packages = tuple(gym_packages) if gym_packages is not None else config.gym_packages if config else ()
    if env_id is None and config is None and has_safe_copy(model_path):
        env_id = _recorded_env_id(model_path)
    elif env_id is None:
        if config is None:
            raise RunError(
                f"cannot tell which env {model_path} was trained on (no run folder around it): pass --env ID"
            )
        env_id, env_kwargs = config.env, dict(config.env_kwargs) if env_kwargs is None else env_kwargs
    check_env_id(env_id, packages=packages)
    env_kwargs = dict(env_kwargs or {})
    if has_safe_copy(model_path):
        return _load_safe_agent(model_path, run_dir, env_id, env_kwargs, device, packages)
    if not trust_pickle:
        raise refuse_pickle(model_path)
    from recurrent_rl.algorithms import ALGORITHMS

    algorithm = ALGORITHMS[config.algorithm] if config is not None else RecurrentPPO
    try:
        model = algorithm.load(model_path, device=device)
    except Exception as error:  # a zip of the wrong kind fails in many ways; all mean "not loadable"
        raise RunError(
            f"cannot load a {algorithm.__name__} model from {model_path}: {type(error).__name__}: {error}. "
            "The file is damaged or is not a recurrent_rl model; in a run folder, "
            "the checkpoints/ folder holds earlier copies."
        ) from None
    stats = stats_path_for(model_path)
    normalizer = None
    if stats.is_file():
        normalizer = _load_normalizer(stats, env_id, env_kwargs, packages)
    elif config is not None and config.normalize.enabled and config.normalize.norm_obs:
        raise RunError(f"{model_path} was trained with normalized observations but {stats} is missing")
    return Agent(model, env_id, env_kwargs, normalizer, model_path, run_dir, packages)


def safe_json(folder: Path) -> Path:
    """The ``model.json`` of the safe copy in ``folder``."""
    from recurrent_rl.io.safe import safe_paths

    return safe_paths(folder)[1]


def _recorded_env_id(model_path: Path) -> str:
    """The env id a safe copy records (``model.json``'s ``env_id``), read as data: only an id
    registered here is taken (one naming a module would import it), else the user names it."""
    from recurrent_rl.io.safe import read_safe_config, safe_paths
    from recurrent_rl.received import env_id_from_file

    where = f"{safe_paths(model_path)[1]} (env_id)"
    recorded = read_safe_config(model_path).get("env_id")
    if recorded is None:
        raise RunError(f"{where}: the safe copy records no env id, and no run folder is around it: pass --env ID")
    return env_id_from_file(recorded, where)


def _load_safe_agent(
    model_path: Path,
    run_dir: Path | None,
    env_id: str,
    env_kwargs: dict[str, Any],
    device: str,
    packages: tuple[str, ...] = (),
) -> Agent:
    """The agent from its safe copy: nothing is unpickled, the model or the statistics."""
    from stable_baselines3.common.vec_env import DummyVecEnv

    from recurrent_rl.algorithms import load_safe
    from recurrent_rl.io.safe import load_safe_vecnormalize, read_safe_vecnormalize

    model = load_safe(model_path, device=device)
    normalizer = None
    if read_safe_vecnormalize(model_path) is not None:
        normalizer = load_safe_vecnormalize(
            model_path, DummyVecEnv([lambda: make_env(env_id, env_kwargs, packages=packages)])
        )
        normalizer.training = False
        normalizer.norm_reward = False
    return Agent(model, env_id, env_kwargs, normalizer, model_path, run_dir, packages)


def has_safe_copy(path: str | Path) -> bool:
    """Whether the weights-only copy of a model file exists (``model.zip``: ``model.safetensors`` + ``model.json``)."""
    from recurrent_rl.io.safe import has_safe_copy as exists

    return exists(path)


def _load_normalizer(path: Path, env_id: str, env_kwargs: dict[str, Any], packages: tuple[str, ...] = ()) -> Any:
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    venv = DummyVecEnv([lambda: make_env(env_id, env_kwargs, packages=packages)])
    try:
        normalizer = VecNormalize.load(str(path), venv)
    except Exception as error:
        venv.close()
        raise RunError(f"cannot load the VecNormalize statistics {path}: {type(error).__name__}: {error}") from None
    normalizer.training = False
    normalizer.norm_reward = False
    return normalizer


def observation_adapter(model: Any, env: Any, env_id: str) -> Callable[[Any], Any]:
    """How to feed ``env``'s observations to ``model``; :class:`RunError` if their spaces differ.

    SB3 transposes channel-last images for CNN policies (VecTransposeImage); the same is done here.
    """
    from stable_baselines3.common.vec_env import VecTransposeImage

    def describe() -> str:
        return (
            f"the model was trained on observations {model.observation_space} and actions {model.action_space}, but "
            f"{env_id} has observations {env.observation_space} and actions {env.action_space}. Evaluate it on "
            "the env it was trained on (its run folder's config.yaml names it) or pass the matching --env"
        )

    if model.action_space != env.action_space:
        raise RunError(describe())
    if model.observation_space == env.observation_space:
        return lambda obs: obs
    try:
        transposed = VecTransposeImage.transpose_space(env.observation_space)
    except (AssertionError, AttributeError, ValueError):
        transposed = None
    if transposed is not None and transposed == model.observation_space:
        return VecTransposeImage.transpose_image
    raise RunError(describe())


# --- running ------------------------------------------------------------------------------------


def run_episodes(
    model: Any,
    env: Any,
    episodes: int,
    deterministic: bool = True,
    seed: int | None = 0,
    normalize_obs: Callable[[Any], Any] | None = None,
    env_id: str = "",
    record_frames: int = 0,
    max_frames: int = 2000,
    progress: bool = False,
) -> EvalReport:
    """Play ``episodes`` whole episodes of ``env`` with ``model`` and report them.

    :param seed: episode ``i`` is reset with ``seed + i``; stochastic actions are drawn from
        torch's generator seeded with ``seed``. None: unseeded.
    :param normalize_obs: applied to each observation before ``predict`` (VecNormalize statistics)
    :param record_frames: keep ``env.render()`` frames of this many first episodes (the env must
        have been made with ``render_mode="rgb_array"``), at most ``max_frames`` frames
    """
    import torch as th
    from tqdm.auto import tqdm

    if episodes < 1:
        raise RunError(f"the number of episodes must be at least 1, got {episodes}")
    adapt = observation_adapter(model, env, env_id or str(env.spec.id if env.spec else env))
    if seed is not None and not deterministic:
        th.manual_seed(seed)
    returns, lengths, successes = [], [], []
    hidden: list[np.ndarray] = []
    frames: list[np.ndarray] = []
    bar = tqdm(total=episodes, desc="evaluating", unit="episode", disable=not progress, leave=False)
    masked = _uses_action_masks(model, env)
    if masked:
        from recurrent_rl.ppo.masking import env_action_masks
    # a RecurrentSAC whose memory reads the previous reward gets it with each step
    reads_reward = bool(getattr(getattr(model, "policy", None), "prev_reward", False))
    try:
        for episode in range(episodes):
            obs, info = env.reset(seed=None if seed is None else seed + episode)
            record = episode < record_frames
            if record:
                _add_frame(frames, env, max_frames)
            state, start = None, np.ones((1,), dtype=bool)
            total, length, done, reward = 0.0, 0, False, 0.0
            while not done:
                model_obs = adapt(normalize_obs(obs) if normalize_obs is not None else obs)
                extra: dict[str, Any] = {"action_masks": env_action_masks(env)[None]} if masked else {}
                if reads_reward:
                    extra["reward"] = np.array([reward], dtype=np.float32)
                action, state = model.predict(
                    model_obs, state=state, episode_start=start, deterministic=deterministic, **extra
                )
                start = np.zeros((1,), dtype=bool)
                if episode == 0:
                    memory = getattr(getattr(model, "policy", None), "actor_memory", None)
                    summary = memory.state_summary(state) if memory is not None else state[0][-1]
                    hidden.append(np.asarray(summary)[0].copy())  # (H,): the top layer's state
                obs, reward, terminated, truncated, info = env.step(action)
                total += float(reward)
                length += 1
                done = terminated or truncated
                if record:
                    _add_frame(frames, env, max_frames)
            success = info.get("success", info.get("is_success"))
            returns.append(total)
            lengths.append(length)
            successes.append(None if success is None else bool(success))
            bar.update(1)
    finally:
        bar.close()
    fps = int((getattr(env, "metadata", None) or {}).get("render_fps") or 30)
    return EvalReport(
        env_id or "",
        deterministic,
        seed,
        returns,
        lengths,
        successes,
        hidden_states=np.stack(hidden) if hidden else None,
        frames=frames,
        fps=fps,
    )


def _uses_action_masks(model: Any, env: Any) -> bool:
    """A MaskableRecurrentPPO on an env with ``action_masks()``: each step's mask goes to ``predict``."""
    if not hasattr(model, "predict") or "action_masks" not in inspect.signature(model.predict).parameters:
        return False
    from recurrent_rl.ppo.masking import env_has_action_masks

    return env_has_action_masks(env)


def _add_frame(frames: list[np.ndarray], env: Any, max_frames: int) -> None:
    if len(frames) >= max_frames:
        return
    import gymnasium as gym

    try:
        frame = env.render()
    except gym.error.DependencyNotInstalled as error:
        raise RunError(
            f"rendering {env.spec.id if env.spec else env} needs a package that is not installed ({error}); {VIZ_HINT}"
        ) from None
    if not isinstance(frame, np.ndarray) or frame.ndim != 3:
        raise RunError(
            f"{env.spec.id if env.spec else env} did not render an RGB frame (got {type(frame).__name__}); "
            "a video needs render_mode 'rgb_array'"
        )
    frames.append(scale_frame(frame))


MIN_SIDE = 256  # a recorded frame's shorter side, at least (grid tasks draw 72-pixel-high frames)
MAX_WIDTH = 480  # and its width, at most, where the short side allows: GIFs stay small


def scale_frame(frame: np.ndarray) -> np.ndarray:
    """A rendered ``(height, width, 3)`` frame at a size to watch: a large frame thinned to at most
    :data:`MAX_WIDTH` pixels wide while its shorter side stays at least :data:`MIN_SIDE`; a small
    one enlarged by a whole factor until its shorter side is at least :data:`MIN_SIDE` (nearest
    neighbour: pixel art stays sharp)."""
    short = min(frame.shape[:2])
    if short < MIN_SIDE:
        scale = math.ceil(MIN_SIDE / short)
        frame = frame.repeat(scale, axis=0).repeat(scale, axis=1)
    else:
        step = max(1, min(math.ceil(frame.shape[1] / MAX_WIDTH), short // MIN_SIDE))
        frame = frame[::step, ::step]
    return np.ascontiguousarray(frame)


def evaluate(
    agent: Agent,
    episodes: int = 20,
    deterministic: bool = True,
    seed: int | None = 0,
    video_episodes: int = 0,
    progress: bool | None = None,
) -> EvalReport:
    """Evaluate a loaded :class:`Agent` on its env (see :func:`run_episodes`)."""
    env = make_env(
        agent.env_id,
        agent.env_kwargs,
        render_mode="rgb_array" if video_episodes else None,
        packages=agent.gym_packages,
    )
    modes = (getattr(env, "metadata", None) or {}).get("render_modes", [])
    if video_episodes and "rgb_array" not in modes:
        env.close()
        raise RunError(f"{agent.env_id} cannot draw frames (its render modes: {modes}); a video needs 'rgb_array'")
    try:
        report = run_episodes(
            agent.model,
            env,
            episodes,
            deterministic,
            seed,
            normalize_obs=agent.normalizer.normalize_obs if agent.normalizer is not None else None,
            env_id=agent.env_id,
            record_frames=video_episodes,
            progress=sys.stderr.isatty() if progress is None else progress,
        )
    finally:
        env.close()
    report.model = str(agent.model_path) if agent.model_path else ""
    report.num_timesteps = int(agent.model.num_timesteps)
    return report


# --- outputs ------------------------------------------------------------------------------------


def save_report(report: EvalReport, path: str | Path) -> None:
    """Write the JSON report atomically."""
    runs.atomic_write_json(path, report.to_dict())


def check_video_path(path: str | Path) -> None:
    """Fail before any episode runs if a video cannot be written to ``path``."""
    suffix = Path(path).suffix.lower()
    if suffix not in (".gif", ".mp4"):
        raise RunError(f"--video {path}: use a .gif or .mp4 file name")
    try:
        import imageio  # noqa: F401
    except ImportError:
        raise RunError(f"--video needs imageio and pillow; {VIZ_HINT}") from None
    if suffix == ".mp4":
        try:
            import imageio_ffmpeg  # noqa: F401
        except ImportError:
            raise RunError(
                f"--video {path}: .mp4 needs imageio-ffmpeg (pip install imageio-ffmpeg), or use a .gif"
            ) from None


def save_video(frames: list[np.ndarray], path: str | Path, fps: int = 30) -> None:
    """Write frames as a GIF (or MP4 with imageio-ffmpeg), atomically."""
    check_video_path(path)
    if not frames:
        raise RunError("no frames were recorded")
    path = Path(path)
    with runs.atomic_path(path) as tmp:
        if path.suffix.lower() == ".gif":
            # Pillow itself: through imageio a failed write (a full disk) raises once more when its
            # writer is garbage-collected, which Python prints as "Exception ignored in ..."
            from PIL import Image

            first, *rest = (Image.fromarray(frame) for frame in frames)
            first.save(tmp, format="GIF", save_all=True, append_images=rest, duration=1000 / max(fps, 1), loop=0)
        else:  # sides padded to a multiple of 16 here, or imageio-ffmpeg resizes them with a warning
            import imageio.v3 as iio

            iio.imwrite(tmp, pad_to_block(np.stack(frames), MACRO_BLOCK), extension=".mp4", fps=fps)


MACRO_BLOCK = 16  # the block size of H.264 video: frame sides that are multiples of it play everywhere


def pad_to_block(frames: np.ndarray, block: int) -> np.ndarray:
    """``(N, H, W, 3)`` frames with H and W padded up to multiples of ``block`` (the edge pixels repeated)."""
    _, height, width, _ = frames.shape
    pad = ((0, 0), (0, -height % block), (0, -width % block), (0, 0))
    return np.pad(frames, pad, mode="edge") if any(p[1] for p in pad) else frames


def check_output_path(flag: str, path: str | Path, example: str) -> None:
    """Fail before any episode runs if ``path`` is a folder or its folder cannot be written."""
    path = Path(path)
    if path.is_dir():
        raise RunError(f"{flag} {path} is a folder: give a file name, e.g. {flag} {path / example}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".check"):
            pass
    except OSError as error:
        raise RunError(f"{flag} {path}: cannot write there ({error.strerror or error}); choose another path") from None


def check_plot_path(path: str | Path) -> None:
    if Path(path).suffix.lower() != ".png":
        raise RunError(f"--plot {path}: use a .png file name")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise RunError(f"--plot needs matplotlib; {VIZ_HINT}") from None


def save_plot(report: EvalReport, path: str | Path) -> None:
    """PNG: the return distribution, and the memory's activations over the first episode."""
    check_plot_path(path)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4.2), layout="constrained")
    FigureCanvasAgg(figure)
    returns_ax, hidden_ax = figure.subplots(1, 2, width_ratios=[1, 1.6])
    returns = np.asarray(report.returns)
    bins = max(5, min(30, len(returns) // 2)) if np.ptp(returns) > 0 else 1
    returns_ax.hist(returns, bins=bins, color="tab:blue", alpha=0.8)
    returns_ax.axvline(returns.mean(), color="black", linestyle="--", label=f"mean {returns.mean():.1f}")
    returns_ax.axvline(np.median(returns), color="tab:orange", linestyle=":", label=f"median {np.median(returns):.1f}")
    returns_ax.set(xlabel="episode return", ylabel="episodes", title=f"returns over {report.episodes} episodes")
    returns_ax.legend(loc="best", fontsize="small")
    if report.hidden_states is not None and len(report.hidden_states):
        hidden = report.hidden_states.T  # (H, T)
        limit = float(np.abs(hidden).max()) or 1.0
        image = hidden_ax.imshow(hidden, aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
        figure.colorbar(image, ax=hidden_ax, label="activation")
        hidden_ax.set(xlabel="step of episode 1", ylabel="hidden unit", title="actor memory (top layer) over episode 1")
    mode = "deterministic" if report.deterministic else "stochastic"
    figure.suptitle(f"{report.env_id}  ({mode}, seed {report.seed})")
    with runs.atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
