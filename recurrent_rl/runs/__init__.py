"""Runs: configs and presets, run folders, training, callbacks, evaluation and the command line.

- :mod:`.schema`, :mod:`.config`, :mod:`.presets`: typed, validated YAML configs (RL and supervised);
- :mod:`.folders`: run folders, atomic writes, checkpoints, the run lock;
- :mod:`.training`: a training run from a config (what ``recurrent-rl train`` calls);
- :mod:`.callbacks`: periodic checkpoints and evaluations, TensorBoard memory diagnostics;
- :mod:`.evaluation`: state-carrying evaluation episodes, reports, videos and plots;
- :mod:`.cli`: the ``recurrent-rl`` command, a thin layer over the modules above.

The top of the package: it may import everything else. The supervised side builds on
:mod:`.schema` (its configs), :mod:`.folders` (run folders, atomic writes) and
``evaluation.make_env`` (and, inside functions, ``config.check_env_id`` and :mod:`.presets`);
nothing else below it imports it. The run-folder functions are re-exported here
(``recurrent_rl.runs.run_lock`` ...).
"""

from recurrent_rl.runs.folders import (  # noqa: F401  the run-folder API, as before the package split
    RunError,
    run_name,
    is_plain_name,
    check_run_name,
    create_run_dir,
    is_run_dir,
    check_not_pretraining_run,
    atomic_path,
    atomic_open,
    atomic_write_text,
    atomic_write_json,
    save_model,
    save_vecnormalize,
    checkpoint_dirs,
    latest_checkpoint,
    write_checkpoint,
    write_model_checkpoint,
    versions,
    read_run_info,
    update_run_info,
    run_lock,
    CONFIG,
    RUN_INFO,
    TENSORBOARD,
    CHECKPOINTS,
    MODEL,
    VECNORMALIZE,
    BEST_MODEL,
    BEST_VECNORMALIZE,
    EVAL_REPORT,
    CHECKPOINT_STATE,
    LOCK,
    ENCODER,
    SEQUENCE_MODEL,
)
