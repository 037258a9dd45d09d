"""The ``rscovlm`` command line: one module per subcommand, each with ``register``.

Heavy imports (torch, rasterio) happen inside each command's ``run`` so that
``rscovlm --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .. import __version__
from ..errors import UserError

COMMANDS = ("synth", "make_tiny_model", "detect", "ask", "serve", "evaluate", "prepare", "train")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rscovlm",
        description="RSCoVLM on georeferenced rasters: oriented object detection, "
        "zoom-in question answering, evaluation, and a local server for QGIS.",
    )
    parser.add_argument("--version", action="version", version=f"rscovlm {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:  # a command not built yet must not break the others
            if exc.name != f"{__name__}.{name}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(message)s",
    )
    for noisy in ("pyogrio", "rasterio", "httpx", "urllib3"):  # their INFO lines are not for users
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return int(args.run(args) or 0)
    except UserError as exc:
        print(f"rscovlm {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"rscovlm {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
