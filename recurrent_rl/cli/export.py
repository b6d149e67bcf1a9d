"""``recurrent-rl export RUN_DIR_OR_MODEL [--format onnx|safe] [--out PATH] [--best] [--include-value]``.

A thin layer over :func:`recurrent_rl.export.export_onnx` and :func:`recurrent_rl.export.save_safe`:

- a run folder or model file is resolved as ``recurrent-rl evaluate`` resolves it
  (:func:`recurrent_rl.runs.evaluation.resolve_model_path`: the final ``model.zip``, the best
  with ``--best``, the latest checkpoint when training did not finish);
- the safe copy (``model.safetensors`` + ``model.json``) is read when it lies there, and never
  unpickles anything; otherwise SB3's zip and ``vecnormalize.pkl`` are loaded, which unpickle,
  only with ``--trust-pickle``;
- ``--format onnx`` (default) writes ``model.onnx`` next to the model (``best_model.onnx`` with
  ``--best``), with the VecNormalize statistics folded in; ``--format safe`` writes the safe copy.

``recurrent-rl`` registers it with :func:`add_parser` (:mod:`recurrent_rl.cli.main`);
``python -m recurrent_rl.cli.export`` runs it alone.
Bad input: one ``error:`` line, exit code 2, nothing written.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from functools import partial
from pathlib import Path
from typing import Any

from recurrent_rl.cli.common import add_device_option, check_device_flag
from recurrent_rl.errors import UserInputError, refuse_pickle

FORMATS = ("onnx", "safe")
EXIT_USAGE = 2
HELP = "export a trained agent: ONNX (runs without torch) or the safe weights-only format"
DESCRIPTION = (
    "Export a run folder's (or a model file's) agent: --format onnx writes the acting policy (VecNormalize, "
    "features, memory, deterministic action) as one ONNX graph whose memory state is an explicit input and "
    "output; --format safe writes model.safetensors + model.json, which open without running any code from the "
    "file. Prefers the run's safe copy when it has one."
)


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The ``export`` command's arguments on ``parser``."""
    parser.add_argument("target", metavar="RUN_DIR_OR_MODEL", help="a run folder, a model .zip or a safe copy (.json)")
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="onnx",
        help="onnx: the acting policy as one ONNX graph (default); safe: model.safetensors + model.json",
    )
    parser.add_argument(
        "--out",
        metavar="PATH",
        help="where to write (default: next to the model, model.onnx / model.safetensors + model.json)",
    )
    parser.add_argument("--best", action="store_true", help="export the run's best model instead of the final one")
    parser.add_argument("--include-value", action="store_true", help="onnx: also output the critic's value")
    parser.add_argument(
        "--include-distribution",
        action="store_true",
        help="onnx: also output the action distribution's parameters (logits, or mean and log_std)",
    )
    parser.add_argument("--opset", type=int, default=17, metavar="N", help="onnx: the ONNX opset (default: 17)")
    parser.add_argument(
        "--env",
        metavar="ID",
        help="the env id to record in the exported file (default: the run's, if it is registered here; an id "
        "read from a file is never imported, so one naming a module, module:Env-v0, is recorded only when "
        "given here)",
    )
    add_device_option(parser, "to load the model on (the ONNX graph is traced on the CPU either way)", "cpu")
    parser.add_argument(
        "--trust-pickle",
        action="store_true",
        help="read a model .zip that has no weights-only copy "
        "beside it, and its vecnormalize.pkl: both run any code they hold, so only for files you "
        "trust (--format safe then writes the copy that opens safely)",
    )
    return parser


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``export`` on the ``recurrent-rl`` command's subparsers (``handler`` = :func:`run`)."""
    parser = subparsers.add_parser("export", help=HELP, description=DESCRIPTION)
    add_arguments(parser)
    parser.set_defaults(handler=run)
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The command on its own (``python -m recurrent_rl.cli.export``)."""
    parser = argparse.ArgumentParser(prog="recurrent-rl export", description=DESCRIPTION)
    return add_arguments(parser)


# --- finding the model --------------------------------------------------------------------------------


class Source:
    """A model to export: where it lies, whether it is the safe copy, its run folder and env."""

    def __init__(self, model_path: Path, safe: bool, run_dir: Path | None, note: str = ""):
        self.model_path, self.safe, self.run_dir, self.note = model_path, safe, run_dir, note

    @property
    def prefix(self) -> Path:
        """``…/model`` for ``…/model.zip``, ``…/model.json`` or ``…/model.safetensors``."""
        return self.model_path.with_suffix("")


def resolve_source(target: str | Path, best: bool = False) -> Source:
    """The model that ``target`` (a run folder or a file) names, preferring its safe copy."""
    from recurrent_rl.export.safe import has_safe_copy, safe_paths
    from recurrent_rl.io import run_folder as folders
    from recurrent_rl.runs.evaluation import resolve_model_path

    target = Path(target)
    if target.is_dir():
        name = (folders.BEST_MODEL if best else folders.MODEL).removesuffix(".zip")
        if folders.is_run_dir(target) and has_safe_copy(target / name):
            return Source(safe_paths(target / name)[1], True, target)
    elif target.suffix in (".json", ".safetensors"):
        if best:
            raise UserInputError("--best picks the best model of a run folder; give the folder, not a file")
        if not has_safe_copy(target):
            weights, config = safe_paths(target)
            raise UserInputError(
                f"a safe copy is {weights.name} and {config.name} side by side; "
                f"{weights if not weights.is_file() else config} is missing"
            )
        return Source(safe_paths(target)[1], True, _run_dir_of(target))
    elif target.is_file() and best:
        raise UserInputError("--best picks the best model of a run folder; give the folder, not a file")
    model_path, run_dir, note = resolve_model_path(target, best)
    if has_safe_copy(model_path):
        return Source(safe_paths(model_path)[1], True, run_dir, note)
    return Source(model_path, False, run_dir, note)


def _run_dir_of(path: Path) -> Path | None:
    from recurrent_rl.io import run_folder as folders

    for parent in list(path.resolve().parents)[:3]:
        if folders.is_run_dir(parent):
            return parent
    return None


def _env_id(source: Source, typed: str | None = None) -> str | None:
    """The env id to record: ``typed`` (``--env``, the user's own), else the run's ``config.yaml``,
    else what the safe copy records; an id read from a file only if it is registered here (one
    naming a module would import it wherever the file is played), else none, with a note."""
    from recurrent_rl.received import ReceivedFileError, env_id_from_file

    if typed:
        return env_id_from_file(typed, "--env", trusted=True)
    recorded, where = None, ""
    if source.run_dir is not None:
        from recurrent_rl.config.loading import load_config
        from recurrent_rl.io import run_folder as folders

        where = str(source.run_dir / folders.CONFIG)
        try:
            recorded = load_config(source.run_dir / folders.CONFIG, check_env=False).env
        except UserInputError as error:  # a crafted id among them: nothing of the file is recorded
            print(f"note: the export records no env id: {error}", file=sys.stderr)
            return None
    if recorded is None and source.safe:
        from recurrent_rl.export.safe import read_safe_config

        recorded, where = read_safe_config(source.model_path).get("env_id"), f"{source.model_path} (env_id)"
    if recorded is None:
        return None
    try:
        return env_id_from_file(recorded, where)
    except ReceivedFileError as error:
        print(f"note: the export records no env id: {error}", file=sys.stderr)
        return None


def load_source(source: Source, device: str = "cpu") -> tuple[Any, Any]:
    """(model, VecNormalize statistics or None): from the safe copy, or SB3's zip and pickle."""
    from recurrent_rl.io.run_folder import RunError

    if source.safe:
        from recurrent_rl.export.safe import load_safe, read_safe_vecnormalize

        return load_safe(source.model_path, device=device), read_safe_vecnormalize(source.model_path)
    import pickle

    from recurrent_rl.algorithms import ALGORITHMS
    from recurrent_rl.runs.evaluation import stats_path_for

    algorithm = ALGORITHMS["RecurrentPPO"]
    if source.run_dir is not None:  # the run's config says which algorithm wrote the zip
        from recurrent_rl.config.loading import load_config
        from recurrent_rl.io import run_folder as folders

        with contextlib.suppress(UserInputError):
            algorithm = ALGORITHMS[load_config(source.run_dir / folders.CONFIG, check_env=False).algorithm]
    try:
        model = algorithm.load(source.model_path, device=device)
    except Exception as error:  # a zip of the wrong kind fails in many ways; all mean "not loadable"
        raise RunError(
            f"cannot load a {algorithm.__name__} model from {source.model_path}: {type(error).__name__}: {error}. "
            "The file is damaged or is not a recurrent_rl model"
        ) from None
    stats_path = stats_path_for(source.model_path)
    stats = None
    if stats_path.is_file():
        try:
            with open(stats_path, "rb") as file:
                stats = pickle.load(file)  # the VecNormalize object, without its venv (only its statistics are read)
        except Exception as error:
            raise RunError(
                f"cannot read the VecNormalize statistics {stats_path}: {type(error).__name__}: {error}"
            ) from None
    return model, stats


# --- the command --------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    """Run ``export`` for parsed ``args``; returns the exit code (bad input raises UserInputError)."""
    if args.format == "safe" and (args.include_value or args.include_distribution):
        raise UserInputError("--include-value and --include-distribution are options of --format onnx")
    check_device_flag(getattr(args, "device", None))
    source = resolve_source(args.target, args.best)
    if source.note:
        print(f"note: {source.note}", file=sys.stderr)
    trust = partial(_trust, source, args)
    if args.format == "onnx":
        out = Path(args.out) if args.out else source.prefix.with_suffix(".onnx")
        _check_out(out, ".onnx")
        trust()
        model, stats = load_source(source, getattr(args, "device", "cpu"))
        from recurrent_rl.export.onnx import export_onnx

        env_id = _env_id(source, args.env)
        path = export_onnx(
            model,
            out,
            vecnormalize=stats if stats is not None else False,
            include_value=args.include_value,
            include_distribution=args.include_distribution,
            opset=args.opset,
            env_id=env_id,
        )
        print(
            f"wrote {path} ({path.stat().st_size / 1024:.0f} kB): the acting policy, its memory state as explicit "
            "inputs and outputs" + (", VecNormalize folded in" if stats is not None else "")
        )
        env_hint = f" --env {env_id}" if env_id else " --env ID"
        print(
            "run it (onnxruntime and NumPy, no torch): "
            f"python -m recurrent_rl.export.play {path}{env_hint} --episodes 10"
        )
        return 0
    from recurrent_rl.export.safe import safe_paths, save_safe
    from recurrent_rl.io.safe import env_id_of

    prefix: str | Path = args.out if args.out else source.prefix  # a string keeps "DIR/": a folder to create
    weights, config = safe_paths(prefix)
    from recurrent_rl.io.run_folder import check_can_create

    check_can_create(weights.parent, "--out")
    if source.safe and config.resolve() == source.model_path.resolve():
        raise UserInputError(f"{source.model_path} is already the safe copy; pass --out PATH to write another one")
    trust()
    model, stats = load_source(source, getattr(args, "device", "cpu"))
    env_id = _env_id(source, args.env)
    written = save_safe(model, prefix, vecnormalize=stats if stats is not None else False, env_id=env_id)
    print(f"wrote {written[0]} and {written[1]}: weights and plain data, safe to open from strangers")
    if env_id is None and env_id_of(model) is None:
        print(
            f"note: {written[1]} records no env id ({source.model_path} has no run folder around it): add --env ID, "
            "or whoever evaluates it must name the env",
            file=sys.stderr,
        )
    print(f"load it: recurrent_rl.export.load_safe({str(written[1])!r}, env=...)")
    return 0


def _trust(source: Source, args: argparse.Namespace) -> None:
    """Refuse SB3's zip without ``--trust-pickle`` (after the other checks: nothing is read yet)."""
    if source.safe:
        return
    if not getattr(args, "trust_pickle", False):
        raise refuse_pickle(
            source.model_path,
            "SB3's zip",
            f"; then `recurrent-rl export {args.target} --format safe --trust-pickle` writes a "
            "copy that opens without running anything",
        )
    print(
        f"note: reading {source.model_path}, SB3's zip, which unpickles (runs) code when it is loaded "
        f"(--trust-pickle). `recurrent-rl export {args.target} --format safe` writes a copy that opens without "
        "running anything",
        file=sys.stderr,
    )


def _check_out(out: Path, suffix: str) -> None:
    if out.is_dir():
        raise UserInputError(f"--out {out} is a folder: give a file name, e.g. {out / ('model' + suffix)}")
    if out.suffix != suffix:
        raise UserInputError(f"--out {out}: use a {suffix} file name")


def main(argv: list[str] | None = None) -> int:
    """``python -m recurrent_rl.cli.export ...``; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except UserInputError as error:
        print(f"recurrent-rl export: error: {error}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
