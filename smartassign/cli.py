"""The ``smartassign`` command line.

Sub-commands import their dependencies lazily so ``smartassign --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from smartassign.config import ConfigError, load_config


def _model_summary(args: argparse.Namespace) -> int:
    from smartassign.model import SmartAssign
    from smartassign.model.summary import summarize

    cfg = load_config(args.params)
    if args.variant:
        cfg = cfg.override({"model.variant": args.variant})
    model = SmartAssign.from_config(cfg)
    summary = summarize(model, args.height, args.width, depth=args.depth)
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2))
    else:
        print(f"SmartAssign variant {cfg.model.variant.value}")
        print(summary.table())
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from smartassign.data.prepare import prepare

    report = prepare(load_config(args.params), strict=args.strict, progress=not args.quiet)
    print(report.summary())
    return 0


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
    summary.add_argument("--params", default="params.yaml", help="params file")
    summary.add_argument("--height", type=int, default=256, help="input height (default: 256)")
    summary.add_argument("--width", type=int, default=256, help="input width (default: 256)")
    summary.add_argument("--depth", type=int, default=2, help="breakdown depth (default: 2)")
    summary.add_argument("--variant", help="override model.variant (V1-V6, K1, K2)")
    summary.add_argument("--json", action="store_true", help="print JSON instead of a table")
    summary.set_defaults(handler=_model_summary)

    prep = commands.add_parser("prepare", help="build the data manifests (DVC stage 'prepare')")
    prep.add_argument("--params", default="params.yaml", help="params file")
    prep.add_argument("--strict", action="store_true", help="fail on any skipped file")
    prep.add_argument("--quiet", action="store_true", help="no progress bar")
    prep.set_defaults(handler=_prepare)
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
