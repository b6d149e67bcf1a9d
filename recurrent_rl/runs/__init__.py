"""Runs: configs and presets, run folders, training, callbacks, evaluation and the command line.

- :mod:`.schema`, :mod:`.config`, :mod:`.presets`: typed, validated YAML configs (RL and supervised);
- :mod:`.folders`: run folders, atomic writes, checkpoints, the run lock, failed writes as one line;
- :mod:`.trust`: the signed record of the modules a user's own command named (``run.json``);
- :mod:`.training`: a training run from a config (what ``recurrent-rl train`` calls);
- :mod:`.callbacks`: periodic checkpoints and evaluations, TensorBoard memory diagnostics;
- :mod:`.evaluation`: state-carrying evaluation episodes, reports, videos and plots;
- :mod:`.cli`: the ``recurrent-rl`` command, a thin layer over the modules above.

The top of the package: it may import everything else. The supervised side builds on
:mod:`.schema` (its configs), :mod:`.folders` (run folders, atomic writes) and
``evaluation.make_env`` (and, inside functions, ``config.check_env_id``, :mod:`.presets` and
:mod:`.trust`);
nothing else below it imports it. The run-folder functions are re-exported here
(``recurrent_rl.runs.run_lock`` ...).
"""

from recurrent_rl.runs.folders import (  # noqa: F401  the run-folder API, re-exported
    BEST_MODEL,
    BEST_VECNORMALIZE,
    CHECKPOINT_STATE,
    CHECKPOINTS,
    CONFIG,
    ENCODER,
    EVAL_REPORT,
    LOCK,
    MODEL,
    RUN_INFO,
    SEQUENCE_MODEL,
    TENSORBOARD,
    VECNORMALIZE,
    RunError,
    atomic_open,
    atomic_path,
    atomic_write_json,
    atomic_write_text,
    check_not_pretraining_run,
    check_run_name,
    checkpoint_dirs,
    create_run_dir,
    is_plain_name,
    is_run_dir,
    latest_checkpoint,
    read_run_info,
    remove_leftovers,
    run_lock,
    run_name,
    save_model,
    save_vecnormalize,
    update_run_info,
    versions,
    write_checkpoint,
    write_model_checkpoint,
)
