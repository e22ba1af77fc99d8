"""``optuna-mfkd proxy``: serve a study database to many workers through Optuna's gRPC proxy."""

from __future__ import annotations

import argparse
from typing import Any

from optuna_mfkd.cli.common import CLIError, one_line, port_number, sigterm_interrupts
from optuna_mfkd.cli.study import DEFAULT_STORAGE, GRPC_SCHEME, masked, open_storage


def cmd_proxy(args: argparse.Namespace) -> int:
    """Serve a study database to many workers through Optuna's gRPC storage proxy.

    One process holds the database connection and caches the studies; workers connect with
    ``--storage grpc://HOST:PORT``. Runs until stopped (Ctrl-C).
    """
    import optuna

    if args.storage.startswith(GRPC_SCHEME):
        raise CLIError(f"--storage {args.storage}: the proxy serves a database URL, not another proxy")
    try:
        from optuna.storages import run_grpc_proxy_server
    except ImportError as exc:
        raise CLIError(f"the gRPC storage proxy needs grpcio and protobuf (pip install 'optuna-mfkd[grpc]'): "
                       f"{one_line(exc)}") from None
    storage = optuna.storages.get_storage(open_storage(args.storage, None, None))
    print(f"serving {masked(args.storage)} on grpc://{args.host}:{args.port} "
          f"(workers: --storage grpc://{args.host}:{args.port})", flush=True)
    sigterm_interrupts()  # a scheduler's SIGTERM stops it like Ctrl-C (exit 130)
    try:
        run_grpc_proxy_server(storage, host=args.host, port=args.port)
    except RuntimeError as exc:  # grpc cannot bind the address
        raise CLIError(f"--host {args.host} --port {args.port}: {one_line(exc)}") from None
    return 0


def register(sub: Any) -> None:
    """Add the ``proxy`` subcommand to ``sub``."""
    p = sub.add_parser("proxy", help="serve a study database to many workers (Optuna's gRPC storage proxy)",
                       description="Serve a study database through Optuna's gRPC storage proxy; "
                                   "search and worker processes connect with --storage grpc://HOST:PORT.")
    p.add_argument("--storage", default=DEFAULT_STORAGE,
                   help=f"database URL to serve (default: {DEFAULT_STORAGE} in this folder)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=port_number, default=13000, help="port to listen on (default: 13000)")
    p.set_defaults(func=cmd_proxy)
