"""The parameter-importance figure of a finished study (``importance.png``): Optuna's
``plot_param_importances``, with a warning drawn over the bars when too few trials back it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from recurrent_rl.sweeps.study import require_optuna

# Optuna's importances (fANOVA: a random forest fitted to the trials) from a handful of trials are
# mostly noise: below this many complete trials the figure says so in red over the bars
FEW_TRIALS = 10


def plot_importance(study: Any, path: Path) -> Path | None:
    """Optuna's parameter-importance figure as a PNG (:func:`importance_figure`), or None when the
    study cannot tell yet (fewer than 2 complete trials, or all values equal)."""
    import matplotlib.pyplot as plt

    figure = importance_figure(study)
    if figure is None:
        return None
    from recurrent_rl.atomic import atomic_path

    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)
    return path


def importance_figure(study: Any) -> Any:
    """Optuna's ``plot_param_importances`` of ``study``, with a caveat drawn in the figure when it
    rests on fewer than :data:`FEW_TRIALS` complete trials; None below 2 or when all values are equal."""
    optuna = require_optuna()
    import matplotlib

    matplotlib.use("Agg")

    complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    if len(complete) < 2:
        return None
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "plot_param_importances is experimental"
        try:
            ax = optuna.visualization.matplotlib.plot_param_importances(study)
        except (ValueError, RuntimeError, ZeroDivisionError):  # all values equal: no importance to show
            return None
    figure = ax.figure
    figure.set_size_inches(7, 4.5)
    figure.tight_layout()
    if len(complete) < FEW_TRIALS:
        ax.text(
            0.98,
            0.97,
            f"only {len(complete)} complete trials:\nfrom fewer than {FEW_TRIALS}, these\nimportances are mostly noise",
            transform=ax.transAxes,
            ha="right",
            va="top",
            color="tab:red",
            fontsize="medium",
            bbox={"facecolor": "white", "edgecolor": "tab:red", "alpha": 0.9},
        )
    return figure
