"""Training callbacks: memory diagnostics, periodic evaluation, atomic checkpoints, graceful stop,
and the learning signal on the terminal (:class:`TrainingProgress`).

They use SB3's callback lifecycle only (``on_training_start``, ``on_rollout_start``, ``on_step``,
``on_rollout_end``), so they work with any RecurrentPPO.

TensorBoard tags added to SB3's (``rollout/``, ``train/``, ``time/``):

- ``memory/actor_state_norm``, ``memory/critic_state_norm``: mean L2 norm of the memory state
  (over envs, layers and state tensors) during the rollout, read from the algorithm's
  ``rollout_state`` attribute after each step (see :meth:`RecurrentPPO.collect_rollouts`);
- ``grad/actor_memory_norm``, ``grad/critic_memory_norm``, ``grad/heads_norm``,
  ``grad/features_norm``, ``grad/total_norm``: gradient norms of the memory cores, of the MLP
  heads (mlp_extractor, action_net, value_net), of the features extractor and of everything,
  before clipping, as the root mean square over the last update's minibatches;
- ``rollout/success_rate``: fraction of the last 100 training episodes that ended with
  ``info["success"]`` true (envs that report it);
- ``time/steps_per_second``: env steps per wall-clock second over the last rollout + update;
- ``eval/mean_reward``, ``eval/std_reward``, ``eval/mean_ep_length``, ``eval/success_rate``,
  ``eval/best_mean_reward``: periodic evaluation;
- the run's config in the HParams tab (metrics ``eval/mean_reward``, ``rollout/ep_rew_mean``).
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import HParam

from recurrent_rl.io import run_folder as runs
from recurrent_rl.nets.memory import state_leaves
from recurrent_rl.runs.checkpoints import save_model, save_vecnormalize
from recurrent_rl.runs.evaluation import EvalReport, run_episodes

HPARAM_METRICS = ("eval/mean_reward", "rollout/ep_rew_mean")

# Scalar tags every training run writes (SB3's and these callbacks'). Also, when they apply:
# grad/critic_memory_norm (critic_memory="separate"), grad/features_norm (an extractor with
# parameters), rollout/success_rate and eval/success_rate (envs that report info["success"]),
# train/std (Box actions), eval/final_* (after a finished run).
ALWAYS_TAGS = (
    "rollout/ep_rew_mean",
    "rollout/ep_len_mean",
    "time/fps",
    "time/steps_per_second",
    "train/learning_rate",
    "train/entropy_loss",
    "train/policy_gradient_loss",
    "train/value_loss",
    "train/approx_kl",
    "train/clip_fraction",
    "train/clip_range",
    "train/loss",
    "train/explained_variance",
    "memory/actor_state_norm",
    "grad/actor_memory_norm",
    "grad/heads_norm",
    "grad/total_norm",
    "eval/mean_reward",
    "eval/std_reward",
    "eval/mean_ep_length",
    "eval/best_mean_reward",
)


class StopFlag:
    """Set from a signal handler; :class:`StopOnFlag` ends ``learn`` at the next env step."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason: str | None = None

    def set(self, reason: str) -> None:
        self.reason = self.reason or reason
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()


class StopOnFlag(BaseCallback):
    """Return False from ``on_step`` once the flag is set, so SB3 leaves ``learn`` cleanly."""

    def __init__(self, flag: StopFlag):
        super().__init__()
        self.flag = flag

    def _on_step(self) -> bool:
        return not self.flag.is_set()


class MemoryDiagnostics(BaseCallback):
    """Memory-state norms, per-module gradient norms, success rate, steps/s and HParams."""

    def __init__(self, hparams: Mapping[str, Any] | None = None, success_window: int = 100):
        super().__init__()
        self.hparams = dict(hparams) if hparams else None
        self.successes: deque[bool] = deque(maxlen=success_window)
        # sums kept on the policy's device and read once per rollout: no host sync per step or
        # per parameter (a float 0 until the first tensor is added)
        self._norm_sums: dict[str, th.Tensor | float] = {}
        self._norm_steps = 0
        self._grad_sumsq: dict[str, th.Tensor | float] = {}
        self._grad_counts: dict[str, int] = {}
        self._hooks: list[Any] = []
        self._clock: tuple[float, int] | None = None

    # --- lifecycle ---
    def _on_training_start(self) -> None:
        if self.hparams:
            metrics = {tag: 0.0 for tag in HPARAM_METRICS}
            self.logger.record("hparams", HParam(self.hparams, metrics), exclude=("stdout", "log", "json", "csv"))
        self._register_gradient_hooks()
        self._clock = (time.perf_counter(), self.num_timesteps)

    def _on_training_end(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()

    def _on_rollout_start(self) -> None:
        # called after each update: the gradients of that update are complete
        counted = [group for group, count in self._grad_counts.items() if count]
        for group, value in zip(counted, _read([self._grad_sumsq[g] for g in counted]), strict=True):
            self.logger.record(f"grad/{group}_norm", math.sqrt(value / self._grad_counts[group]))
        self._grad_sumsq = {g: 0.0 for g in self._grad_sumsq}
        self._grad_counts = {g: 0 for g in self._grad_counts}
        now = time.perf_counter()
        if self._clock is not None and self.num_timesteps > self._clock[1]:
            self.logger.record(
                "time/steps_per_second", (self.num_timesteps - self._clock[1]) / max(now - self._clock[0], 1e-9)
            )
        self._clock = (now, self.num_timesteps)

    def _on_step(self) -> bool:
        # the algorithm's documented attribute (RecurrentPPO.collect_rollouts), not its locals()
        state = getattr(self.model, "rollout_state", None)
        if state is not None:
            for name in ("actor", "critic"):
                part = getattr(state, name, None)
                leaves = state_leaves(part) if part else []
                if leaves:  # each (L, B, H): norm over H, mean over layers, envs and tensors
                    norm = th.stack([leaf.norm(dim=-1).mean() for leaf in leaves]).mean()
                    self._norm_sums[name] = self._norm_sums.get(name, 0.0) + norm.detach()
            self._norm_steps += 1
        dones, infos = self.locals.get("dones"), self.locals.get("infos")
        if dones is not None and infos is not None:
            for done, info in zip(dones, infos, strict=False):
                if done:
                    success = info.get("success", info.get("is_success"))
                    if success is not None:
                        self.successes.append(bool(success))
        return True

    def _on_rollout_end(self) -> None:
        if self._norm_steps:
            for name, total in zip(self._norm_sums, _read(list(self._norm_sums.values())), strict=True):
                self.logger.record(f"memory/{name}_state_norm", total / self._norm_steps)
        self._norm_sums, self._norm_steps = {}, 0
        if self.successes:
            self.logger.record("rollout/success_rate", float(np.mean(self.successes)))

    # --- gradients ---
    def parameter_groups(self) -> dict[str, list[th.nn.Parameter]]:
        """Named parameter groups of the policy (memory cores, heads, features extractor)."""
        policy: Any = self.model.policy  # a RecurrentActorCriticPolicy (nn.Module attributes type as Tensor | Module)
        if hasattr(policy, "critic_target"):  # RecurrentSAC's: actor and critic, each reading a memory
            return self._sac_parameter_groups(policy)
        groups: dict[str, list[th.nn.Parameter]] = {"actor_memory": list(policy.actor_memory.parameters())}
        if getattr(policy, "critic_core", None) is not None:
            groups["critic_memory"] = list(policy.critic_core.parameters())
        groups["heads"] = [
            p for m in (policy.mlp_extractor, policy.action_net, policy.value_net) for p in m.parameters()
        ]
        grouped = {id(p) for ps in groups.values() for p in ps}
        groups["features"] = [p for p in policy.parameters() if id(p) not in grouped]
        groups["total"] = list(policy.parameters())
        return {name: [p for p in ps if p.requires_grad] for name, ps in groups.items() if ps}

    @staticmethod
    def _sac_parameter_groups(policy: Any) -> dict[str, list[th.nn.Parameter]]:
        """RecurrentSAC's groups: the memories, the heads (actor's and Q heads), the rest (features),
        the total; the target critic is moved by Polyak averaging, never by gradients, and is left out."""
        groups: dict[str, list[th.nn.Parameter]] = {"actor_memory": list(policy.actor.encoder.core.parameters())}
        if policy.critic_has_memory:
            groups["critic_memory"] = list(policy.critic.encoder.core.parameters())
        encoders = {id(p) for m in (policy.actor.encoder, policy.critic.encoder) for p in m.parameters()}
        trained = [p for m in (policy.actor, policy.critic) for p in m.parameters()]
        unique = list({id(p): p for p in trained}.values())
        groups["heads"] = [p for p in unique if id(p) not in encoders]
        grouped = {id(p) for ps in groups.values() for p in ps}
        groups["features"] = [p for p in unique if id(p) not in grouped]
        groups["total"] = unique
        return {name: [p for p in ps if p.requires_grad] for name, ps in groups.items() if ps}

    def _register_gradient_hooks(self) -> None:
        # Hooks see each parameter's gradient as backward computes it, before SB3 clips the
        # gradients in place, so the norms are the loss's own (.grad after train() is clipped).
        for group, params in self.parameter_groups().items():
            if not params:
                continue
            self._grad_sumsq[group] = 0.0
            self._grad_counts[group] = 0
            for index, param in enumerate(params):
                self._hooks.append(param.register_hook(self._make_hook(group, first=index == 0)))

    def _make_hook(self, group: str, first: bool) -> Callable[[th.Tensor], None]:
        def hook(grad: th.Tensor) -> None:
            self._grad_sumsq[group] = self._grad_sumsq[group] + grad.detach().float().pow(2).sum()
            if first:  # one count per backward pass (minibatch)
                self._grad_counts[group] += 1

        return hook


def _read(values: list[th.Tensor | float]) -> list[float]:
    """Sums kept on a device as floats, with one copy to the host for all of them."""
    tensors = [v for v in values if isinstance(v, th.Tensor)]
    if not tensors:
        return [float(v) for v in values]
    read = iter(th.stack([t.reshape(()).float() for t in tensors]).tolist())
    return [next(read) if isinstance(v, th.Tensor) else float(v) for v in values]


class _Every:
    """Marks every ``freq`` env steps (0: none): :meth:`due` is true once each time the count passes one."""

    def __init__(self, freq: int):
        self.freq, self.next = freq, 0

    def start(self, step: int) -> None:
        """The first mark after ``step`` (a resumed run continues the grid from its checkpoint)."""
        if self.freq > 0:
            self.next = (step // self.freq + 1) * self.freq

    def due(self, step: int) -> bool:
        if self.freq > 0 and step >= self.next:
            self.start(step)
            return True
        return False


class PeriodicEvaluation(BaseCallback):
    """Every ``freq`` env steps, evaluate on a separate env; keep the best model (atomically)."""

    def __init__(
        self,
        make_env: Callable[[], Any],
        run_dir: Path,
        freq: int,
        episodes: int,
        deterministic: bool,
        seed: int,
        env_id: str,
        best_mean_reward: float = -np.inf,
        on_report: Callable[[int, EvalReport, bool], None] | None = None,
        resume_step: int | None = None,
    ):
        """:param on_report: called after each evaluation with the step, the report and whether it is a new best.
        :param resume_step: a resumed run's step: the evaluations in ``evaluations.npz`` up to it are kept,
            later ones (logged after the checkpoint by the process that stopped) are dropped"""
        super().__init__()
        self.on_report = on_report
        self.make_env, self.run_dir, self.freq = make_env, Path(run_dir), freq
        self.episodes, self.deterministic, self.seed, self.env_id = episodes, deterministic, seed, env_id
        self.best_mean_reward = best_mean_reward
        self.last_eval_step: int | None = None
        self.last_report: EvalReport | None = None
        self._env: Any = None
        self._marks = _Every(freq)
        self.history = EvaluationHistory.read(self.run_dir / runs.EVALUATIONS, resume_step)

    def _on_training_start(self) -> None:
        self._marks.start(self.num_timesteps)

    def _on_step(self) -> bool:
        if self._marks.due(self.num_timesteps):
            self.evaluate()
        return True

    def evaluate(self) -> EvalReport:
        """Evaluate now, log ``eval/*``, save ``best_model.zip`` on a new best."""
        if self._env is None:
            self._env = self.make_env()
        vec_normalize = self.model.get_vec_normalize_env()
        report = run_episodes(
            self.model,
            self._env,
            self.episodes,
            self.deterministic,
            self.seed,
            normalize_obs=vec_normalize.normalize_obs if vec_normalize is not None else None,
            env_id=self.env_id,
        )
        self.last_eval_step, self.last_report = self.num_timesteps, report
        self.logger.record("eval/mean_reward", report.mean_return)
        self.logger.record("eval/std_reward", report.std_return)
        self.logger.record("eval/mean_ep_length", float(np.mean(report.lengths)))
        if report.success_rate is not None:
            self.logger.record("eval/success_rate", report.success_rate)
        best = bool(report.mean_return > self.best_mean_reward)
        if best:
            self.best_mean_reward = report.mean_return
            if vec_normalize is not None:
                save_vecnormalize(vec_normalize, self.run_dir / runs.BEST_VECNORMALIZE)
            save_model(self.model, self.run_dir / runs.BEST_MODEL)
            runs.update_run_info(self.run_dir, best_mean_reward=report.mean_return, best_step=self.num_timesteps)
        self.logger.record("eval/best_mean_reward", self.best_mean_reward)
        # the step in the CSV row too, as SB3's EvalCallback records it (TensorBoard has its own)
        self.logger.record("time/total_timesteps", self.num_timesteps, exclude="tensorboard")
        self.logger.dump(self.num_timesteps)
        self.history.add(self.num_timesteps, report)
        self.history.write(self.run_dir / runs.EVALUATIONS)
        if self.on_report is not None:
            self.on_report(self.num_timesteps, report, best)
        return report

    def _on_training_end(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None


class EvaluationHistory:
    """The periodic evaluations of a run in SB3 ``EvalCallback``'s ``evaluations.npz`` layout:
    ``timesteps`` (N,), ``results`` (N, episodes) returns, ``ep_lengths`` (N, episodes), and
    ``successes`` (N, episodes) where every episode reports ``is_success``/``success``."""

    def __init__(self) -> None:
        self.timesteps: list[int] = []
        self.results: list[list[float]] = []
        self.ep_lengths: list[list[int]] = []
        self.successes: list[list[bool]] | None = None

    @classmethod
    def read(cls, path: Path, until: int | None) -> EvaluationHistory:
        """The history in ``path`` up to step ``until`` (None: a new run, an empty history)."""
        history = cls()
        if until is None or not path.is_file():
            return history
        with np.load(path) as data:
            keep = np.asarray(data["timesteps"]) <= until
            history.timesteps = [int(t) for t in np.asarray(data["timesteps"])[keep]]
            history.results = np.asarray(data["results"])[keep].tolist()
            history.ep_lengths = np.asarray(data["ep_lengths"])[keep].tolist()
            if "successes" in data.files:
                history.successes = np.asarray(data["successes"])[keep].tolist()
        return history

    def add(self, step: int, report: EvalReport) -> None:
        self.timesteps.append(int(step))
        self.results.append([float(r) for r in report.returns])
        self.ep_lengths.append([int(n) for n in report.lengths])
        reported = all(s is not None for s in report.successes)
        if reported and (self.successes is not None or len(self.timesteps) == 1):
            self.successes = [*(self.successes or []), [bool(s) for s in report.successes]]
        else:
            self.successes = None  # SB3 writes successes only when every evaluation has them

    def write(self, path: Path) -> None:
        """Write the history atomically (NumPy's ``.npz``, as SB3's ``np.savez``)."""
        arrays: dict[str, Any] = {
            "timesteps": np.asarray(self.timesteps, dtype=np.int64),
            "results": np.asarray(self.results, dtype=np.float64),
            "ep_lengths": np.asarray(self.ep_lengths, dtype=np.int64),
        }
        if self.successes is not None:
            arrays["successes"] = np.asarray(self.successes, dtype=bool)
        with runs.atomic_path(path) as tmp, open(tmp, "wb") as file:
            np.savez(file, **arrays)


class PeriodicCheckpoint(BaseCallback):
    """Every ``freq`` env steps (checked after each update), write a checkpoint folder atomically."""

    def __init__(self, save: Callable[[], Path | None], freq: int):
        super().__init__()
        self.save, self.freq = save, freq
        self._marks = _Every(freq)

    def _on_training_start(self) -> None:
        self._marks.start(self.num_timesteps)

    def _on_rollout_start(self) -> None:
        # after an update and before the next rollout: parameters and step counter agree
        if self._marks.due(self.num_timesteps):
            self.save()

    def _on_step(self) -> bool:
        return True


# --- the learning signal on the terminal ----------------------------------------------------------


def mean_training_return(model: Any) -> float | None:
    """Mean return of the recent training episodes (SB3's ``ep_info_buffer``, the last 100), None before the first."""
    buffer = getattr(model, "ep_info_buffer", None)
    return float(np.mean([info["r"] for info in buffer])) if buffer else None


class TrainingProgress(BaseCallback):
    """What a person watching the run sees: progress and the learning signal.

    ``mode="bar"``: a progress bar (rich, on stderr) whose text is the recent mean return of the
    training episodes, and their success rate where the env's infos report ``success``; each
    periodic evaluation is printed above it as one line (:meth:`evaluation_line`).

    ``mode="lines"`` (no terminal: CI, nohup, pipes): one plain line every ``every`` of the run
    (10%) and at least every ``max_seconds``, with the step, steps per second and the same signal,
    on ``stream`` (stdout); evaluations as the same one line each.

    :param successes: the rolling record of episode successes (:attr:`MemoryDiagnostics.successes`)
    """

    def __init__(
        self,
        mode: Literal["bar", "lines"],
        successes: deque[bool] | None = None,
        every: float = 0.1,
        max_seconds: float = 60.0,
        stream: IO[str] | None = None,
    ):
        super().__init__()
        if mode not in ("bar", "lines"):
            raise ValueError(f"mode must be 'bar' or 'lines', got {mode!r}")
        self.mode, self.successes, self.every, self.max_seconds = mode, successes, every, max_seconds
        self.stream = stream
        self._bar: Any = None
        self._task: Any = None
        self._start = (0.0, 0)
        self._target = 0
        self._next_step = 0
        self._last_line = 0.0
        self._last_step = -1

    # --- what is shown ---
    def signal(self) -> str:
        """``mean return 23.4  success 40%`` (what is known so far; empty before the first episode)."""
        parts = []
        mean = mean_training_return(self.model)
        if mean is not None:
            parts.append(f"mean return {mean:.4g}")
        if self.successes:
            parts.append(f"success {100 * float(np.mean(self.successes)):.0f}%")
        return "  ".join(parts)

    @staticmethod
    def evaluation_line(step: int, report: EvalReport, best: bool = False) -> str:
        """``eval at 20000 steps: return 123.4 +/- 5.6 over 5 episodes, success 80% (new best)``."""
        line = (
            f"eval at {step} steps: return {report.mean_return:.4g} +/- {report.std_return:.3g} "
            f"over {report.episodes} episodes"
        )
        if report.success_rate is not None:
            line += f", success {100 * report.success_rate:.0f}%"
        return line + (" (new best)" if best else "")

    def show_evaluation(self, step: int, report: EvalReport, best: bool) -> None:
        """One line per periodic evaluation: above the bar, or among the plain lines."""
        self._print(self.evaluation_line(step, report, best))

    # --- lifecycle ---
    def _on_training_start(self) -> None:
        # SB3 has added the steps of earlier segments to total_timesteps (a resumed run): absolute steps
        self._target = int(self.locals.get("total_timesteps", self.num_timesteps))
        self._start = (time.perf_counter(), self.num_timesteps)
        self._last_line = self._start[0]
        self._next_step = self.num_timesteps + self._stride()
        if self.mode == "bar":
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                BarColumn(bar_width=24),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("<"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[signal]}"),
                console=Console(file=self.stream or sys.stderr),
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(
                "train", total=max(self._target, 1), completed=self.num_timesteps, signal=""
            )

    def _on_step(self) -> bool:
        if self._bar is not None:
            self._bar.update(self._task, completed=self.num_timesteps)
        elif self.num_timesteps >= self._next_step or time.perf_counter() - self._last_line >= self.max_seconds:
            self._line()
        return True

    def _on_rollout_end(self) -> None:
        if self._bar is not None:  # the signal changes once per rollout at most
            self._bar.update(self._task, completed=self.num_timesteps, signal=self._bar_text())

    def _on_training_end(self) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=self.num_timesteps, signal=self._bar_text())
            self._bar.stop()
            self._bar = None
        elif self.num_timesteps > self._start[1] and self._last_step != self.num_timesteps:
            self._line()

    def _fps(self) -> float:
        return (self.num_timesteps - self._start[1]) / max(time.perf_counter() - self._start[0], 1e-9)

    def _bar_text(self) -> str:
        return "  ".join(part for part in (f"{self._fps():.0f} steps/s", self.signal()) if part)

    # --- plain lines ---
    def _stride(self) -> int:
        """Steps between two plain lines: ``every`` of this segment's steps."""
        return max(1, int(self.every * max(self._target - self._start[1], 1)))

    def _line(self) -> None:
        now, fps = time.perf_counter(), self._fps()
        share = f" ({100 * self.num_timesteps / self._target:.0f}%)" if self._target else ""
        signal = self.signal()
        self._print(
            f"step {self.num_timesteps}/{self._target}{share}  {fps:.0f} steps/s" + (f"  {signal}" if signal else "")
        )
        self._last_line, self._last_step = now, self.num_timesteps
        while self._next_step <= self.num_timesteps:
            self._next_step += self._stride()

    def _print(self, line: str) -> None:
        if self._bar is not None:
            self._bar.console.print(line, highlight=False, markup=False)
        else:
            print(line, file=self.stream or sys.stdout, flush=True)
