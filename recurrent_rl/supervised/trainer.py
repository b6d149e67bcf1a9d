"""Supervised training of a :class:`SequenceModel`: BPTT over padded minibatches.

One epoch: shuffle the training sequences (seeded), pad each minibatch to its longest sequence,
compute the loss on valid steps only, backpropagate through time, clip the gradient norm, step
AdamW (decoupled weight decay). After each epoch: validation loss and metric, TensorBoard
scalars, ``checkpoints/last.pt``; ``checkpoints/best.pt`` when validation improved. Training stops
after ``patience`` epochs without improvement, and the best weights are restored.

The settings are a :class:`~recurrent_rl.supervised.config.FitConfig` (``TrainConfig`` before;
that name still works, with a DeprecationWarning: ``recurrent_rl.config.train.TrainConfig`` is
the RL run's config).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
import torch.nn.functional as F

from recurrent_rl.io import run_folder as folders
from recurrent_rl.supervised.config import FitConfig, deprecated_name
from recurrent_rl.supervised.data import Batch, SequenceDataset, collate
from recurrent_rl.supervised.models import SequenceModel, save_sequence_model


@dataclass
class FitResult:
    """What :func:`fit` did: one dict of numbers per epoch, and where the best epoch is."""

    history: list[dict[str, float]]
    best_epoch: int
    best_val_loss: float | None
    stopped_early: bool
    seconds: float


def check_compatible(model: SequenceModel, dataset: SequenceDataset) -> None:
    """Raise ``ValueError`` naming each way ``dataset`` does not fit ``model``."""
    c, problems = model.config, []
    if dataset.input_size != c.input_size:
        problems.append(
            f"the data has {dataset.input_size} features per step but the model's input_size is {c.input_size}"
        )
    if (c.task == "many_to_many") != dataset.per_step:
        kind = "per-step" if dataset.per_step else "per-sequence"
        problems.append(f"the data has {kind} targets but the model's task is {c.task!r}")
    if dataset.is_classification != (c.objective == "classification"):
        kind = "integer class labels" if dataset.is_classification else "float values"
        problems.append(f"the targets are {kind} but the model's objective is {c.objective!r}")
    elif dataset.is_classification:
        labels = np.concatenate([y.reshape(-1) for y in dataset.targets])
        if labels.min() < 0 or labels.max() >= c.output_size:
            problems.append(
                f"the labels span {labels.min()}..{labels.max()} ({labels.max() + 1} classes) but the model "
                f"has output_size={c.output_size} classes (labels must be 0..{c.output_size - 1})"
            )
    elif dataset.target_size != c.output_size:
        problems.append(f"the targets have {dataset.target_size} values but the model's output_size is {c.output_size}")
    if problems:
        raise ValueError("the dataset does not match the model: " + "; ".join(problems))


def batch_loss(model: SequenceModel, batch: Batch) -> tuple[th.Tensor, dict[str, float]]:
    """Mean loss over valid targets (padded steps count for nothing) and summable statistics."""
    out = model(batch.x, batch.lengths)  # (T, B, O) or (B, O)
    classify = model.config.objective == "classification"
    if classify:
        per_item = F.cross_entropy(out.reshape(-1, out.shape[-1]), batch.y.reshape(-1), reduction="none")
        correct = (out.argmax(-1).reshape(-1) == batch.y.reshape(-1)).float()
    else:
        target = (batch.y - model.target_mean) / model.target_std  # standardised
        per_item = ((out - target) ** 2).mean(-1).reshape(-1)  # one value per step or sequence
        correct = per_item.detach()
    if batch.y_mask is None:
        weight = th.ones_like(per_item)
    else:
        weight = batch.y_mask.reshape(-1).float()
    count = weight.sum().clamp(min=1.0)
    # where() rather than a product: a nan/inf computed on a padded step must not leak in
    loss = th.where(weight > 0, per_item, th.zeros_like(per_item)).sum() / count
    stats = {"loss_sum": float(loss.detach()) * float(count), "count": float(count)}
    stats["metric_sum"] = float(th.where(weight > 0, correct, th.zeros_like(correct)).sum())
    return loss, stats


def evaluate(model: SequenceModel, dataset: SequenceDataset, batch_size: int = 256) -> dict[str, float]:
    """Loss and metric over a whole dataset: ``accuracy`` (classification) or ``r2`` (regression:
    the coefficient of determination 1 - SSE / SST of each target entry over the dataset's valid
    targets, averaged over the entries, as scikit-learn's ``r2_score`` does by default)."""
    model.eval()
    totals = {"loss_sum": 0.0, "count": 0.0, "metric_sum": 0.0}
    regression = model.config.objective != "classification"
    sums = None  # (SSE, sum of targets, sum of squared targets) per entry, in standardised units
    with th.no_grad():
        for start in range(0, len(dataset), batch_size):
            batch = collate(dataset, range(start, min(start + batch_size, len(dataset))))
            _, stats = batch_loss(model, batch)
            totals = {k: totals[k] + stats[k] for k in totals}
            if regression:
                batch_sums = _regression_sums(model, batch)
                sums = batch_sums if sums is None else sums + batch_sums
    loss = totals["loss_sum"] / totals["count"]
    if not regression:
        return {"loss": loss, "accuracy": totals["metric_sum"] / totals["count"]}
    assert sums is not None
    sse, total, squares = sums
    n = max(totals["count"], 1.0)
    sst = squares - total**2 / n
    r2 = np.where(sst > 0, 1.0 - sse / np.where(sst > 0, sst, 1.0), 0.0)  # a constant entry explains nothing
    return {"loss": loss, "r2": float(r2.mean())}


def _regression_sums(model: SequenceModel, batch: Batch) -> np.ndarray:
    """(3, O) sums over a batch's valid targets: squared errors, targets, squared targets."""
    out = model(batch.x, batch.lengths)  # (T, B, O) or (B, O)
    target = (batch.y - model.target_mean) / model.target_std
    out, target = out.reshape(-1, out.shape[-1]).double(), target.reshape(-1, target.shape[-1]).double()
    if batch.y_mask is not None:
        keep = batch.y_mask.reshape(-1) > 0
        out, target = out[keep], target[keep]
    return th.stack([((out - target) ** 2).sum(0), target.sum(0), (target**2).sum(0)]).cpu().numpy()


def fit(
    model: SequenceModel,
    dataset: SequenceDataset,
    config: FitConfig | None = None,
    run_dir: str | Path | None = None,
    log: Callable[[str], None] | None = print,
    log_every: int = 1,
    progress_bar: bool = False,
) -> FitResult:
    """Train ``model`` on ``dataset``; with ``run_dir``, write TensorBoard logs and checkpoints there.

    Reproducible: the same seed, data and config give the same weights (one torch thread).

    :param config: the settings (default: ``FitConfig()``)
    :param log: gets one line per logged epoch (losses, metric, gradient norm)
    :param log_every: log every this many epochs, and the first and last (say, every 10% of them)
    :param progress_bar: a progress bar over the epochs on stderr, with the latest losses
    """
    config = FitConfig() if config is None else config
    check_compatible(model, dataset)
    th.manual_seed(config.seed)
    train_set, val_set = dataset.split(config.val_fraction, config.seed)
    if config.normalize_inputs:
        mean, std = train_set.input_statistics()
        model.inputs.set_standardization(th.from_numpy(mean), th.from_numpy(std))
    if config.normalize_targets and model.config.objective == "regression":
        mean, std = train_set.target_statistics()
        model.target_mean.copy_(th.from_numpy(mean))
        model.target_std.copy_(th.from_numpy(np.where(std < 1e-6, 1.0, std)))
    optimizer = th.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    rng = np.random.default_rng(config.seed)
    writer, checkpoints = None, None
    if run_dir is not None:
        run_dir = Path(run_dir)
        checkpoints = run_dir / folders.CHECKPOINTS
        checkpoints.mkdir(parents=True, exist_ok=True)
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run_dir / folders.TENSORBOARD))
    history: list[dict[str, float]] = []
    best_loss, best_epoch, best_state, stale = math.inf, 0, None, 0
    started = time.perf_counter()
    step = 0
    bar = _EpochBar(config.epochs) if progress_bar else None
    try:
        for epoch in range(1, config.epochs + 1):
            model.train()
            order = rng.permutation(len(train_set))
            totals = {"loss_sum": 0.0, "count": 0.0, "metric_sum": 0.0}
            norms = []
            for start in range(0, len(order), config.batch_size):
                loss, stats = batch_loss(model, collate(train_set, order[start : start + config.batch_size]))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                # the norm before clipping: how steep the loss is, which clipping hides
                norm = th.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm or math.inf)
                if not th.isfinite(norm):
                    raise FloatingPointError(f"epoch {epoch}: the gradient norm is {float(norm)}; lower learning_rate")
                optimizer.step()
                norms.append(float(norm))
                totals = {k: totals[k] + stats[k] for k in totals}
                step += 1
            row = {
                "epoch": epoch,
                "train_loss": totals["loss_sum"] / totals["count"],
                "grad_norm": float(np.mean(norms)),
            }
            if val_set is not None:
                row.update({f"val_{k}": v for k, v in evaluate(model, val_set).items()})
            history.append(row)
            current = row.get("val_loss", row["train_loss"])
            improved = current < best_loss
            if improved:
                best_loss, best_epoch, stale = current, epoch, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                stale += 1
            if writer is not None and checkpoints is not None:
                for key, value in row.items():
                    if key != "epoch":
                        writer.add_scalar(key.replace("_", "/", 1), value, epoch)
                writer.add_scalar("train/steps", step, epoch)
                checkpoint = {"epoch": epoch, "optimizer": optimizer.state_dict(), "history": history}
                save_sequence_model(model, checkpoints / "last.pt", checkpoint)  # atomic writes
                if improved:
                    save_sequence_model(model, checkpoints / "best.pt", {"epoch": epoch})
            stop = val_set is not None and stale >= config.patience
            line = "  ".join(
                f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items() if k != "epoch"
            )
            if bar is not None:  # the losses only: the bar's line is short
                losses = "  ".join(f"{k} {row[k]:.4g}" for k in ("train_loss", "val_loss") if k in row)
                bar.update(epoch, f"{losses}  best epoch {best_epoch}")
            if log is not None and (epoch == 1 or epoch % max(log_every, 1) == 0 or epoch == config.epochs or stop):
                log(f"epoch {epoch}/{config.epochs}  {line}" + ("  (stopped: no improvement)" if stop else ""))
            if stop:
                break
    finally:
        if bar is not None:
            bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    if writer is not None:
        writer.close()
    result = FitResult(
        history,
        best_epoch,
        best_loss if val_set is not None else None,
        stopped_early=len(history) < config.epochs,
        seconds=time.perf_counter() - started,
    )
    if run_dir is not None:
        folders.atomic_write_json(Path(run_dir) / "history.json", asdict(result))
    return result


class _EpochBar:
    """A progress bar over epochs (rich, on stderr) whose text is the latest epoch's numbers."""

    def __init__(self, epochs: int):
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("epoch"),
            MofNCompleteColumn(),
            BarColumn(bar_width=24),
            TimeElapsedColumn(),
            TextColumn("<"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[numbers]}"),
            console=Console(file=sys.stderr),
        )
        self._progress.start()
        self._task = self._progress.add_task("fit", total=epochs, numbers="")

    def update(self, epoch: int, numbers: str) -> None:
        self._progress.update(self._task, completed=epoch, numbers=numbers)

    def close(self) -> None:
        self._progress.stop()


def __getattr__(name: str) -> Any:
    return deprecated_name(__name__, name)  # TrainConfig, now FitConfig
