"""Sweeps: hyperparameter search (Optuna), many-seed runs with aggregate statistics, on local
processes or a Ray cluster.

- :mod:`recurrent_rl.sweeps.space`: search spaces per memory type, overridable from YAML;
- :mod:`recurrent_rl.sweeps.tune`: :func:`~recurrent_rl.sweeps.tune.run_study` (``recurrent-rl tune``);
- :mod:`recurrent_rl.sweeps.seeds`: :func:`~recurrent_rl.sweeps.seeds.run_seeds` (``recurrent-rl train --seeds``);
- :mod:`recurrent_rl.sweeps.stats`: IQM and stratified-bootstrap confidence intervals;
- :mod:`recurrent_rl.sweeps.executors`: local processes or Ray tasks.

May import: ``runs``, ``config``, ``io``, ``envs`` and the leaf modules. Optuna
(``recurrent_rl[tune]``) and Ray (``recurrent_rl[ray]``) are optional and imported only by the
functions that use them.
"""
