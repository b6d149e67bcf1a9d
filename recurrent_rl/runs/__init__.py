"""Runs: training from a config into a run folder, callbacks, checkpoints and evaluation.

- :mod:`.training`: a new training run from a config (what ``recurrent-rl train`` calls);
- :mod:`.resume`: more steps in an existing run, from its latest checkpoint (``--resume``);
- :mod:`.learning`: the learning loop both share: logger, callbacks, signals, errors, the run's end;
- :mod:`.checkpoints`: the final and best models and the checkpoints of a training model;
- :mod:`.callbacks`: periodic checkpoints and evaluations, TensorBoard memory diagnostics;
- :mod:`.evaluation`: state-carrying evaluation episodes, reports, videos and plots;
- :mod:`.package`: a run's agent as a shareable folder (model card, weights-only model, replay).

May import: ``config``, ``io``, ``algorithms``, ``ppo``, ``sac``, ``runners``, ``supervised`` (a pretrained
encoder in the policy), ``nets``, ``envs`` and the leaf modules. Sweeps and the command line build on it;
nothing below it imports it. The run-folder API of :mod:`recurrent_rl.io.run_folder` is
re-exported here (``recurrent_rl.runs.run_lock`` ...), as before.
"""

from recurrent_rl.io.run_folder import (  # noqa: F401  the run-folder API, re-exported
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
    update_run_info,
    versions,
    write_checkpoint,
)
from recurrent_rl.runs.checkpoints import (  # noqa: F401  re-exported with the run-folder API
    save_model,
    save_vecnormalize,
    write_model_checkpoint,
)
