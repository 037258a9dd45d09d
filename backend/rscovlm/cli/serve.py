"""``rscovlm serve``: load the model once and serve the HTTP API to the QGIS plugin.

Also ``export_openapi``, which writes the API's schema without loading a model, so the
copy kept in ``docs/openapi.json`` can be regenerated (``--write-openapi PATH``).
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from pathlib import Path

from ..errors import UserError
from .engine_options import add_engine_arguments, load_engine

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the local backend server for the QGIS plugin",
        description="Load the model once and serve detection and question jobs over HTTP on "
        "loopback, protected by a bearer token stored in your config folder.",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to bind (default: %(default)s, loopback only)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default: %(default)s)")
    add_engine_arguments(parser, required=False)
    parser.add_argument("--max-queue", type=int, default=8, help="jobs allowed to wait (default: %(default)s)")
    parser.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also accept this Host header name (only needed when binding beyond loopback)",
    )
    parser.add_argument("--print-token", action="store_true", help="print the token itself at start-up")
    parser.add_argument(
        "--scripted-answers",
        metavar="SPEC",
        help="serve without a model, for plugin work: 'none' (every tile: There are none.), a responses "
        "file of an earlier run (.jsonl: each tile gets its recorded answer) or a text file answering everything",
    )
    parser.add_argument(
        "--write-openapi",
        metavar="PATH",
        type=Path,
        help="write the API's OpenAPI schema to PATH and exit (no model is loaded)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.write_openapi is not None:
        export_openapi(args.write_openapi)
        print(f"OpenAPI schema written to {args.write_openapi}")
        return 0
    if not args.model and not args.scripted_answers:
        raise UserError("Say which model to serve with --model (a folder or a Hugging Face id), "
                        "or serve without one with --scripted-answers none.")
    if not 1 <= args.port <= 65535:
        raise UserError(f"--port {args.port} is not a port number; use 1 to 65535.")
    if args.batch_size < 1 or args.max_queue < 1:
        raise UserError("--batch-size and --max-queue must be at least 1.")

    from .. import __version__
    from ..server.app import create_app
    from ..server.auth import allowed_hosts_for, is_loopback, load_or_create_token, token_path
    from ..server.runners import clean_responses_dir, default_runners

    if not is_loopback(args.host):
        print(
            f"WARNING: binding to {args.host}, which is not loopback: other machines can reach "
            "this server. Anyone holding the token can read any raster this account can read.",
            file=sys.stderr,
        )
    sock = _bind(args.host, args.port)  # fail fast, before minutes of model loading
    token = load_or_create_token()
    removed = clean_responses_dir()
    if removed:
        print(f"Removed {removed} unfinished responses file(s) left by a server that was stopped mid-job.")
    if args.scripted_answers:
        from ..engines.scripted import ScriptedEngine

        engine = ScriptedEngine.for_serving(args.scripted_answers, batch_size=args.batch_size,
                                            concurrency=args.max_in_flight or 1)
    else:
        engine = load_engine(args)
    described = dict(engine.describe())
    app = create_app(
        engine,
        token=token,
        version=__version__,
        runners=default_runners(),  # the engine already has its batch size and concurrency
        max_queue=args.max_queue,
        allowed_hosts=allowed_hosts_for(args.host, args.allow_host),
    )
    device = str(described.get("device") or "unknown")
    gpu = described.get("gpu")
    host_in_url = f"[{args.host}]" if ":" in args.host else args.host
    print(f"RSCoVLM backend {__version__} serving {described.get('model', args.model)}")
    print(f"  URL:        http://{host_in_url}:{args.port}")
    print(f"  token file: {token_path()}")
    if args.print_token:
        print(f"  token:      {token}")
    print(f"  device:     {device}{f' ({gpu})' if gpu else ''}")
    if device.startswith("cpu"):
        print(
            "WARNING: running on the CPU. Detection will be very slow (minutes per tile with "
            "the real 7B model); use a machine with an NVIDIA GPU and a CUDA build of torch.",
            file=sys.stderr,
        )
    _serve(app, sock)
    return 0


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UserError(
            f"Cannot listen on {host}:{port} ({exc.strerror or exc}): another server may be "
            "running there; stop it or choose another --port."
        ) from None
    sock.listen(64)
    sock.set_inheritable(True)
    return sock


def _serve(app, sock: socket.socket) -> None:
    import uvicorn

    config = uvicorn.Config(
        app,
        log_level="info",
        server_header=False,
        timeout_graceful_shutdown=30,
        # uvicorn's own proxy-header handling would trust X-Forwarded-*; nothing proxies us.
        proxy_headers=False,
    )
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C after its graceful shutdown
        pass
    print("rscovlm serve: stopped")


def export_openapi(path: str | Path) -> dict:
    """Write the API's OpenAPI schema (stable key order) to ``path`` and return it."""
    from ..server.app import create_app

    app = create_app(None, token="schema-export-only")  # the schema needs no model
    schema = app.openapi()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return schema

