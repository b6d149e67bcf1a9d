"""Supervised training of a :class:`SequenceModel`: BPTT over padded minibatches.

One epoch: shuffle the training sequences (seeded), pad each minibatch to its longest sequence,
compute the loss on valid steps only, backpropagate through time, clip the gradient norm, step
AdamW (decoupled weight decay). After each epoch: validation loss and metric, TensorBoard
scalars, ``checkpoints/last.pt``; ``checkpoints/best.pt`` when validation improved. Training stops
after ``patience`` epochs without improvement, and the best weights are restored.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
import torch.nn.functional as F

from recurrent_rl.supervised.data import Batch, SequenceDataset, collate
from recurrent_rl.supervised.models import SequenceModel, dataclass_from_dict, save_sequence_model


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings.

    :param epochs: maximum passes over the training sequences
    :param batch_size: sequences per minibatch
    :param learning_rate: AdamW step size
    :param weight_decay: AdamW decoupled weight decay
    :param max_grad_norm: clip the global gradient norm to this (0 turns clipping off)
    :param val_fraction: share of sequences held out for validation (0: no validation, no early stop)
    :param patience: epochs without a better validation loss before stopping
    :param normalize_inputs: standardise inputs with training-split statistics (kept in the model and
        in its encoder; turn off when the data covers a narrower range than the model will meet)
    :param normalize_targets: learn regression targets standardised with training-split statistics
    :param seed: seeds the split, the shuffling and dropout (seed torch with it before building the
        model for the same initial weights too, as :func:`~recurrent_rl.supervised.pretrain.pretrain` does)
    """

    epochs: int = 50
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    val_fraction: float = 0.2
    patience: int = 10
    normalize_inputs: bool = True
    normalize_targets: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "patience"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"train.{name} must be a positive integer, got {value!r}")
        for name in ("learning_rate", "weight_decay", "max_grad_norm"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0 or (name == "learning_rate" and value == 0):
                raise ValueError(f"train.{name} must be a {'positive' if name == 'learning_rate' else 'non-negative'} number, got {value!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"train.val_fraction must be in [0, 1), got {self.val_fraction}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        return dataclass_from_dict(cls, data, "train")


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
        problems.append(f"the data has {dataset.input_size} features per step but the model's input_size is {c.input_size}")
    if (c.task == "many_to_many") != dataset.per_step:
        kind = "per-step" if dataset.per_step else "per-sequence"
        problems.append(f"the data has {kind} targets but the model's task is {c.task!r}")
    if dataset.is_classification != (c.objective == "classification"):
        kind = "integer class labels" if dataset.is_classification else "float values"
        problems.append(f"the targets are {kind} but the model's objective is {c.objective!r}")
    elif dataset.is_classification:
        labels = np.concatenate([y.reshape(-1) for y in dataset.targets])
        if labels.min() < 0 or labels.max() >= c.output_size:
            problems.append(f"the labels span {labels.min()}..{labels.max()} ({labels.max() + 1} classes) but the model "
                            f"has output_size={c.output_size} classes (labels must be 0..{c.output_size - 1})")  # fmt: skip
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
    """Loss and metric over a whole dataset: ``accuracy`` (classification) or ``r2`` (regression,
    on standardised targets, so 1 - loss / target variance)."""
    model.eval()
    totals = {"loss_sum": 0.0, "count": 0.0, "metric_sum": 0.0}
    with th.no_grad():
        for start in range(0, len(dataset), batch_size):
            _, stats = batch_loss(model, collate(dataset, range(start, min(start + batch_size, len(dataset)))))
            totals = {k: totals[k] + stats[k] for k in totals}
    loss = totals["loss_sum"] / totals["count"]
    if model.config.objective == "classification":
        return {"loss": loss, "accuracy": totals["metric_sum"] / totals["count"]}
    return {"loss": loss, "r2": 1.0 - loss}  # targets standardised with training statistics: variance ~1


def fit(
    model: SequenceModel,
    dataset: SequenceDataset,
    config: TrainConfig = TrainConfig(),
    run_dir: str | Path | None = None,
    log: Callable[[str], None] | None = print,
) -> FitResult:
    """Train ``model`` on ``dataset``; with ``run_dir``, write TensorBoard logs and checkpoints there.

    Reproducible: the same seed, data and config give the same weights (one torch thread).
    """
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
    writer = None
    if run_dir is not None:
        run_dir = Path(run_dir)
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run_dir / "tb"))
    history: list[dict[str, float]] = []
    best_loss, best_epoch, best_state, stale = math.inf, 0, None, 0
    started = time.perf_counter()
    step = 0
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
        row = {"epoch": epoch, "train_loss": totals["loss_sum"] / totals["count"], "grad_norm": float(np.mean(norms))}
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
        if writer is not None:
            for key, value in row.items():
                if key != "epoch":
                    writer.add_scalar(key.replace("_", "/", 1), value, epoch)
            writer.add_scalar("train/steps", step, epoch)
            checkpoint = {"epoch": epoch, "optimizer": optimizer.state_dict(), "history": history}
            save_sequence_model(model, run_dir / "checkpoints" / "last.pt", checkpoint)
            if improved:
                save_sequence_model(model, run_dir / "checkpoints" / "best.pt", {"epoch": epoch})
        if log is not None:
            log("  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
        if val_set is not None and stale >= config.patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    if writer is not None:
        writer.close()
    result = FitResult(history, best_epoch, best_loss if val_set is not None else None,
                       stopped_early=len(history) < config.epochs, seconds=time.perf_counter() - started)  # fmt: skip
    if run_dir is not None:
        (Path(run_dir) / "history.json").write_text(json.dumps(asdict(result), indent=1))
    return result
