"""The ``smartassign`` command line.

Sub-commands import their dependencies lazily so ``smartassign --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from smartassign.config import Config, ConfigError, load_config

if TYPE_CHECKING:
    import torch


def _model_summary(args: argparse.Namespace) -> int:
    from smartassign.builder import build_model
    from smartassign.model.summary import summarize

    cfg = _load(args)
    if args.variant:
        cfg = cfg.override({"model.variant": args.variant})
    model = build_model(cfg)
    summary = summarize(model, args.height, args.width, depth=args.depth)
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2))
    else:
        print(f"SmartAssign variant {cfg.model.variant.value}")
        print(summary.table())
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from smartassign.data.prepare import prepare

    report = prepare(_load(args), strict=args.strict, progress=not args.quiet)
    print(report.summary())
    return 0


def _overrides(pairs: Sequence[str]) -> dict[str, object]:
    """``["train.epochs=3", ...]`` -> ``{"train.epochs": 3}`` (values parsed as YAML)."""
    import yaml

    updates: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ConfigError(f"--set {pair}: expected KEY=VALUE, e.g. train.epochs=3")
        updates[key.strip()] = yaml.safe_load(value)
    return updates


def _load(args: argparse.Namespace) -> Config:
    """``--params`` with its named experiment (``--experiment``, else the file's own)."""
    return load_config(args.params, experiment=args.experiment)


def _config(args: argparse.Namespace) -> Config:
    """``--params`` and its experiment with the ``--set`` overrides applied."""
    return _load(args).override(_overrides(args.set))


def _interrupted(what: str, path: str) -> int:
    """Say how to resume an interrupted sweep or study; the exit code of Ctrl+C."""
    print(f"{what} interrupted; run the same command again to resume it ({path})", file=sys.stderr)
    return 130


def _train(args: argparse.Namespace) -> int:
    from smartassign.engine.reports import write_train_reports
    from smartassign.engine.run import train
    from smartassign.tuning import apply_tuned

    cfg = apply_tuned(_config(args))
    if args.init:
        cfg = cfg.override({"train.init": args.init})
    result = train(cfg, track=not args.no_mlflow)
    write_train_reports(result, args.out)
    print(f"model written to {result.model_dir}")
    if result.run_id:
        print(f"MLflow run {result.run_id}")
    for key in sorted(k for k in result.metrics if k.startswith("val/")):
        print(f"  {key:32s} {result.metrics[key]:.4f}")
    return 0


def _tune(args: argparse.Namespace) -> int:
    from smartassign.tuning.sweep import sweep

    result = sweep(_config(args), fresh=args.fresh)
    if result.interrupted:
        return _interrupted("sweep", result.path)
    print(result.table)
    print(f"MLflow parent run {result.parent_run_id}")
    if result.best_params is None:
        print("smartassign tune: error: no trial reported the objective", file=sys.stderr)
        return 1
    print(f"best params written to {result.best_params} (use with train.tuned_params)")
    return 0


def _tuned_args(args: argparse.Namespace) -> int:
    from smartassign.tuning.best import dvc_set_args

    cfg = _load(args)
    print(" ".join(dvc_set_args(cfg, args.file or cfg.tune.best_params)))
    return 0


def _ablate(args: argparse.Namespace) -> int:
    from smartassign.ablation.study import ablate

    result = ablate(_config(args), fresh=args.fresh)
    if result.interrupted:
        return _interrupted("ablation study", result.path)
    if result.failed:
        print("smartassign ablate: error: runs failed:", file=sys.stderr)
        for line in result.failed:
            print(f"  {line}", file=sys.stderr)
        print("run the same command again to retry them (finished runs are kept)", file=sys.stderr)
        return 1
    print(result.tables)
    files = "tables.md, metrics.json, runs.csv, knowledge.csv, ablation.png"
    print(f"written to {result.out_dir}/ ({files})")
    print(f"MLflow parent run {result.parent_run_id}")
    return 0


def _write_json(path: str, payload: dict[str, object]) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(payload, indent=2, default=str) + "\n")


def _evaluate(args: argparse.Namespace) -> int:
    from smartassign.data.real_checks import load_check_sets, missing_line, real_data_root
    from smartassign.evaluation import (
        evaluate,
        evaluate_real,
        log_to_mlflow,
        markdown_table,
        write_evaluation,
    )
    from smartassign.model_io import load_model
    from smartassign.model_metrics import logged_model_uri
    from smartassign.paper_report import paper_report

    cfg = _load(args)
    source = args.model or cfg.train.model_dir
    model = load_model(source, device=_device(args, cfg))
    evaluation = evaluate(model, cfg, args.split, progress=not args.quiet)
    root = None
    if not args.no_real:
        root = real_data_root(cfg.evaluate.real_data)
        checks = load_check_sets(root, cfg.evaluate.real_sets)
        skipped = missing_line(checks, root)
        if skipped:
            print(skipped)
        if checks.pairs:
            evaluation.extra.append(evaluate_real(model, checks, progress=not args.quiet))
    write_evaluation(evaluation, args.out)
    print(markdown_table(evaluation), end="")
    print(f"written to {args.out}/ (per_image.csv, summary.md, metrics.json, samples/)")
    report = paper_report(cfg, evaluation.metrics, evaluation.split)
    if report is not None:
        (Path(args.out) / "paper_report.md").write_text(report)
        print(f"the paper's Tables 1 and 2 beside this model: {args.out}/paper_report.md")
    model_uri = None if args.no_mlflow else logged_model_uri(source)
    logged = log_to_mlflow(evaluation, cfg, model_uri, root) if model_uri else None
    if logged:
        print(f"MLflow run {logged[0]}: metrics linked to logged model {logged[1]}")
    elif not args.no_mlflow:
        print(f"not logged to MLflow: no logged model of {source} in this tracking store")
    return 0


def _analyze(args: argparse.Namespace) -> int:
    from smartassign.analysis.analyze import analyze
    from smartassign.analysis.report import FILES

    cfg = _load(args)
    source = args.model or cfg.train.model_dir
    result = analyze(
        cfg,
        source,
        split=args.split,
        out_dir=args.out,
        device=_device(args, cfg),
        progress=not args.quiet,
        track=not args.no_mlflow,
    )
    analysis = result.analysis
    for line in analysis.skipped:
        print(f"skipped: {line}")
    if analysis.counts:
        counts = ", ".join(f"{name} {count}" for name, count in analysis.counts.items())
        print(f"{analysis.stats.atoms} knowledge atoms: {counts}")
    for space, value in analysis.separation.items():
        tasks = ", ".join(f"{task} {score:.3f}" for task, score in value.per_task.items())
        print(f"separation of rk / ck / sk ({space}): {value.mean:.3f} ± {value.std:.3f} ({tasks})")
    print(f"written to {result.out_dir}/ ({', '.join(FILES)})")
    if result.run_id:
        print(f"MLflow run {result.run_id}: files under analysis/")
    elif not args.no_mlflow:
        print(f"not logged to MLflow: no training run of {source} in this tracking store")
    return 0


def _register(args: argparse.Namespace) -> int:
    from smartassign.model_io import load_model_config
    from smartassign.registry import model_uri_of, register

    cfg = _load(args)
    model_dir = Path(args.model_dir or cfg.train.model_dir)
    metrics = json.loads(Path(args.metrics).read_text())
    version = register(cfg, model_uri_of(model_dir), metrics, load_model_config(model_dir))
    print(f"registered {cfg.registry.model_name} version {version} (alias challenger)")
    _write_json(args.out, {"model_name": cfg.registry.model_name, "version": version})
    return 0


def _promote(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from smartassign.evaluation import evaluate, log_to_mlflow, split_sha256
    from smartassign.model_io import load_model
    from smartassign.registry import Reevaluation, promote

    cfg = _load(args)

    def score(version: int) -> dict[str, float | str]:
        uri = f"models:/{cfg.registry.model_name}/{version}"
        print(f"re-evaluating champion {uri} on the current test set")
        model = load_model(uri, device=_device(args, cfg))
        evaluation = evaluate(model, cfg, "test", progress=not args.quiet)
        log_to_mlflow(evaluation, cfg, uri)  # found there by the next promotion
        return {**evaluation.metrics, "manifest_sha256": evaluation.manifest_sha256}

    reevaluate = Reevaluation(test_set=lambda: split_sha256(cfg, "test"), score=score)

    version = args.version
    if args.registered:
        version = _registered_version(Path(args.registered), cfg.registry.model_name)
    decision = promote(
        cfg, version, force=args.force, reason=args.reason or "", reevaluate=reevaluate
    )
    verdict = "promoted to champion" if decision.promoted else "not promoted"
    print(f"{cfg.registry.model_name} v{decision.candidate}: {verdict} ({decision.reason})")
    if args.out:
        _write_json(args.out, asdict(decision))
    return 0


def _registered_version(path: Path, model_name: str) -> int:
    """The version a ``register`` run wrote to ``path`` (its ``--out``)."""
    if not path.is_file():
        raise FileNotFoundError(f"--registered {path}: not found; run `smartassign register` first")
    record = json.loads(path.read_text())
    if "version" not in record:
        raise ValueError(f"--registered {path}: no version in it; not a `register --out` file")
    if record.get("model_name") != model_name:
        raise ValueError(
            f"--registered {path}: it names model {record.get('model_name')!r}, "
            f"but registry.model_name is {model_name!r}"
        )
    return int(record["version"])


def _models(args: argparse.Namespace) -> int:
    from smartassign.registry import list_versions

    cfg = _load(args)
    metric = cfg.registry.metric
    versions = list_versions(cfg)
    if not versions:
        print(f"no versions of {cfg.registry.model_name} registered")
        return 0
    print(f"{'version':>7}  {'aliases':<22}  {metric:>20}  run")
    for info in versions:
        value = info.metrics.get(metric)
        shown = f"{value:.4f}" if value is not None else "-"
        print(f"{info.version:>7}  {','.join(info.aliases) or '-':<22}  {shown:>20}  {info.run_id}")
    return 0


def _device(args: argparse.Namespace, cfg: Config) -> torch.device:
    """``--device``, else ``inference.device``; ``auto`` picks CUDA, NPU or the CPU."""
    from smartassign.engine.devices import resolve_device

    if args.device:
        return resolve_device(args.device, "--device")
    return resolve_device(cfg.inference.device, "inference.device")


def _champion(cfg: Config) -> str:
    return f"models:/{cfg.registry.model_name}@champion"


def _restore(args: argparse.Namespace) -> int:
    from smartassign.inference import restore_paths
    from smartassign.model_io import load_model

    cfg = _config(args)
    model = load_model(args.model or _champion(cfg), device=_device(args, cfg))
    report = restore_paths(
        model, args.inputs, Path(args.out), args.task, cfg.inference, progress=not args.quiet
    )
    print(report.summary())
    return 0 if report.restored else 1


def _export(args: argparse.Namespace) -> int:
    from smartassign.export import export_model
    from smartassign.model_io import load_model

    cfg = _load(args)
    model = load_model(args.model or _champion(cfg), device=_device(args, cfg))
    result = export_model(
        model, Path(args.out), args.format, args.height, args.width, args.tolerance
    )
    print("\n".join(result.lines()))
    return 0


def _params_options(parser: argparse.ArgumentParser, what: str) -> None:
    """``--params`` and ``--experiment``, the configuration every command reads."""
    parser.add_argument("--params", default="params.yaml", help=what)
    parser.add_argument(
        "--experiment",
        metavar="NAME",
        help="named experiment laid over the params: experiments/NAME.yaml or a .yaml path "
        "(default: the params file's `experiment` key)",
    )


def _experiment_options(parser: argparse.ArgumentParser, what: str) -> None:
    """``--params``, ``--experiment``, ``--set`` and ``--fresh`` of a command running a Ray
    Tune experiment."""
    _params_options(parser, "params file")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a param"
    )
    parser.add_argument(
        "--fresh", action="store_true", help=f"discard an interrupted {what} instead of resuming it"
    )


def _device_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        help="auto | cpu | cuda[:i] | npu[:i] (default: inference.device, auto: CUDA, then "
        "NPU, then CPU)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smartassign",
        description="SmartAssign deraining and desnowing: data, training, tuning, registry.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    model = commands.add_parser("model", help="inspect the network")
    model_commands = model.add_subparsers(dest="model_command", required=True)
    summary = model_commands.add_parser(
        "summary", help="parameters, FLOPs and a per-module breakdown at a given size"
    )
    _params_options(summary, "params file")
    summary.add_argument("--height", type=int, default=256, help="input height (default: 256)")
    summary.add_argument("--width", type=int, default=256, help="input width (default: 256)")
    summary.add_argument("--depth", type=int, default=2, help="breakdown depth (default: 2)")
    summary.add_argument("--variant", help="override model.variant (V1-V6, K1, K2)")
    summary.add_argument("--json", action="store_true", help="print JSON instead of a table")
    summary.set_defaults(handler=_model_summary)

    prep = commands.add_parser("prepare", help="build the data manifests (DVC stage 'prepare')")
    _params_options(prep, "params file")
    prep.add_argument("--strict", action="store_true", help="fail on any skipped file")
    prep.add_argument("--quiet", action="store_true", help="no progress bar")
    prep.set_defaults(handler=_prepare)

    train = commands.add_parser("train", help="train on Ray Train (DVC stage 'train')")
    _params_options(train, "params file")
    train.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a param"
    )
    train.add_argument(
        "--init",
        metavar="MODEL",
        help="fine-tune: start from this model's weights (folder or models:/ URI; sets train.init)",
    )
    train.add_argument("--out", default="outputs/train", help="metrics and plots folder")
    train.add_argument("--no-mlflow", action="store_true", help="do not track in MLflow")
    train.set_defaults(handler=_train)

    tune = commands.add_parser("tune", help="Ray Tune sweep (DVC stage 'tune')")
    _experiment_options(tune, "sweep")
    tune.set_defaults(handler=_tune)

    tuned = commands.add_parser(
        "tuned-args",
        help="a sweep's best params as `dvc exp run` arguments: dvc exp run $(smartassign "
        "tuned-args)",
    )
    tuned.add_argument("file", nargs="?", help="best-params file (default tune.best_params)")
    _params_options(tuned, "params file")
    tuned.set_defaults(handler=_tuned_args)

    abl = commands.add_parser(
        "ablate", help="ablation study of paper Tables 3 and 4 (DVC stage 'ablate')"
    )
    _experiment_options(abl, "study")
    abl.set_defaults(handler=_ablate)

    evaluation = commands.add_parser("evaluate", help="score a model on a test split")
    _params_options(evaluation, "params file")
    evaluation.add_argument("--model", help="model folder or MLflow URI (default train.model_dir)")
    evaluation.add_argument("--split", default="test", choices=["train", "val", "test"])
    evaluation.add_argument("--out", default="outputs/evaluate", help="output folder")
    evaluation.add_argument("--quiet", action="store_true", help="no progress bar")
    evaluation.add_argument(
        "--no-real", action="store_true", help="skip the real check sets (evaluate.real_data)"
    )
    evaluation.add_argument(
        "--no-mlflow",
        action="store_true",
        help="do not log the evaluation to MLflow (by default a model that training logged "
        "gets an evaluate run with its metrics linked to the logged model)",
    )
    _device_option(evaluation)
    evaluation.set_defaults(handler=_evaluate)

    analysis = commands.add_parser(
        "analyze",
        help="knowledge assignment of a model: gate statistics, atom classes, separation, "
        "t-SNE (paper Fig. 3; DVC stage 'analyze')",
    )
    _params_options(analysis, "params file")
    analysis.add_argument("--model", help="model folder or MLflow URI (default train.model_dir)")
    analysis.add_argument(
        "--split", choices=["val", "test"], help="split to analyse (default analysis.split)"
    )
    analysis.add_argument("--out", help="output folder (default analysis.out_dir)")
    analysis.add_argument("--quiet", action="store_true", help="no progress bar")
    analysis.add_argument(
        "--no-mlflow",
        action="store_true",
        help="do not log to MLflow (by default the files and numbers go to the model's "
        "training run, or a child run of it for a registered model)",
    )
    _device_option(analysis)
    analysis.set_defaults(handler=_analyze)

    reg = commands.add_parser("register", help="register the trained model (alias challenger)")
    _params_options(reg, "params file")
    reg.add_argument("--model-dir", help="trained model folder (default train.model_dir)")
    reg.add_argument("--metrics", default="outputs/evaluate/metrics.json")
    reg.add_argument("--out", default="outputs/register/version.json")
    reg.set_defaults(handler=_register)

    prom = commands.add_parser(
        "promote", help="move alias champion to a better version (or --force --reason)"
    )
    _params_options(prom, "params file")
    which = prom.add_mutually_exclusive_group()
    which.add_argument("--version", type=int, help="version to promote (default: challenger)")
    which.add_argument(
        "--registered",
        metavar="FILE",
        help="promote the version a `register` run wrote to FILE (its --out JSON)",
    )
    prom.add_argument("--force", action="store_true", help="promote whatever the metric says")
    prom.add_argument("--reason", help="why (required with --force; recorded)")
    prom.add_argument("--out", help="write the decision as JSON here")
    prom.add_argument("--quiet", action="store_true", help="no progress bar")
    _device_option(prom)
    prom.set_defaults(handler=_promote)

    models = commands.add_parser("models", help="list registered versions, metrics, aliases")
    _params_options(models, "params file")
    models.set_defaults(handler=_models)

    restore = commands.add_parser(
        "restore", help="derain / desnow image files and folders (any size, tiled)"
    )
    restore.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    restore.add_argument("--out", required=True, help="output folder (PNG, input names mirrored)")
    restore.add_argument(
        "--task",
        default="auto",
        choices=["auto", "rain", "snow"],
        help="decoder to use; auto: the recognition head decides per image (default)",
    )
    restore.add_argument(
        "--model",
        help="model folder or MLflow URI (default models:/<registry.model_name>@champion)",
    )
    _params_options(restore, "params file (inference section)")
    restore.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a param"
    )
    restore.add_argument("--quiet", action="store_true", help="no progress bar")
    _device_option(restore)
    restore.set_defaults(handler=_restore)

    export = commands.add_parser(
        "export", help="write the model as ONNX or TorchScript, checked against PyTorch"
    )
    export.add_argument("--format", required=True, choices=["onnx", "torchscript"])
    export.add_argument("--out", required=True, help="output file")
    export.add_argument(
        "--model",
        help="model folder or MLflow URI (default models:/<registry.model_name>@champion)",
    )
    _params_options(export, "params file (registry name)")
    export.add_argument(
        "--height", type=int, default=256, help="TorchScript height; parity check size (256)"
    )
    export.add_argument(
        "--width", type=int, default=256, help="TorchScript width; parity check size (256)"
    )
    export.add_argument(
        "--tolerance", type=float, default=1e-4, help="max abs difference allowed (1e-4)"
    )
    _device_option(export)
    export.set_defaults(handler=_export)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (ConfigError, ValueError, FileNotFoundError) as error:
        print(f"smartassign {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
