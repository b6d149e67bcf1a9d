"""A real dataset that ships inside a PyPI package: handwritten digits read row by row.

scikit-learn's ``load_digits`` (the UCI "Optical Recognition of Handwritten Digits" test set,
1,797 images of 8 x 8 pixels, 10 classes) is read as sequences of 8 steps, one image row of 8
pixels per step: a many-to-one classification that the model can only solve by remembering the
earlier rows. Baselines: the majority class, and logistic regression on all 64 pixels at once.

    python -m recurrent_rl.supervised.examples     # needs the `examples` extra (scikit-learn)
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import torch as th

from recurrent_rl.supervised.data import SequenceDataset, collate
from recurrent_rl.supervised.models import SequenceModel, SequenceModelConfig
from recurrent_rl.supervised.trainer import FitConfig, fit


def digits_dataset() -> SequenceDataset:
    """The 1,797 digits as sequences of 8 rows x 8 pixels (values 0..16), labels 0..9."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise ImportError("the digits example needs scikit-learn: pip install 'recurrent_rl[examples]'") from exc
    digits = load_digits()
    images = digits.images.astype(np.float32)  # (N, 8, 8): (sequence, step = row, feature = pixel)
    return SequenceDataset.from_arrays(images, digits.target.astype(np.int64), per_step=False)


def run_digits_example(
    seed: int = 0,
    epochs: int = 60,
    memory: str = "gru",
    pooling: str = "last",
    test_fraction: float = 0.25,
    verbose: bool = False,
) -> dict[str, Any]:
    """Train a sequence classifier on a seeded train split (validation carved from it); return its test accuracy."""
    th.manual_seed(seed)
    data = digits_dataset()
    train, test = data.split(test_fraction, seed=seed)
    assert test is not None
    config = SequenceModelConfig(
        input_size=8,
        output_size=10,
        memory=memory,
        hidden_size=64,
        task="many_to_one",
        pooling=pooling,
        objective="classification",
    )
    model = SequenceModel(config)
    fit_config = FitConfig(
        epochs=epochs, batch_size=32, learning_rate=3e-3, weight_decay=1e-4, val_fraction=0.15, patience=10, seed=seed
    )
    result = fit(model, train, fit_config, log=print if verbose else None)
    batch = collate(test, range(len(test)))
    accuracy = float((model.predict(batch.x, batch.lengths) == batch.y).float().mean())
    return {
        "model": f"{memory} 64, many-to-one ({pooling})",
        "test_accuracy": accuracy,
        "epochs": len(result.history),
        "test_sequences": len(test),
    }


def digits_baselines(seed: int = 0, test_fraction: float = 0.25) -> dict[str, float]:
    """Test accuracy of the majority class and of logistic regression on the 64 pixels (same split)."""
    from sklearn.linear_model import LogisticRegression

    train, test = digits_dataset().split(test_fraction, seed=seed)
    assert test is not None
    train_y, test_y = np.array([int(y) for y in train.targets]), np.array([int(y) for y in test.targets])
    flat = lambda ds: np.stack([x.reshape(-1) for x in ds.inputs]) / 16.0  # noqa: E731
    logistic = LogisticRegression(max_iter=2000).fit(flat(train), train_y)
    return {
        "majority_class": float(np.mean(test_y == np.bincount(train_y).argmax())),
        "logistic_regression_64_pixels": float(logistic.score(flat(test), test_y)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Digits read row by row: a recurrent classifier against baselines")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args(argv)
    th.set_num_threads(1)
    rows = []
    for memory, pooling in (("gru", "last"), ("lstm", "last"), ("gru", "attention")):
        runs = [run_digits_example(seed, memory=memory, pooling=pooling) for seed in range(args.seeds)]
        rows.append((runs[0]["model"], [r["test_accuracy"] for r in runs]))
    baselines = [digits_baselines(seed) for seed in range(args.seeds)]
    print("| model | test accuracy (mean ± std over seeds) |\n| --- | --- |")
    for name, accs in rows:
        print(f"| {name} | {np.mean(accs):.3f} ± {np.std(accs):.3f} |")
    for key, name in (
        ("majority_class", "majority class"),
        ("logistic_regression_64_pixels", "logistic regression, 64 pixels"),
    ):
        accs = [b[key] for b in baselines]
        print(f"| {name} | {np.mean(accs):.3f} ± {np.std(accs):.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
