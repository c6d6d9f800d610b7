"""``modeldeploy agent``: the model agent sidecar of the Triton pod (see ``modeldeploy.agent``).

Runs until SIGTERM: one worker thread (observes Triton, runs swaps) and the HTTP API. Exit status 0
on SIGTERM/SIGINT; 1 when the API port cannot be bound (cause on stderr and in the termination log).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from modeldeploy.termination import add_argument as add_termination_log_argument
from modeldeploy.termination import write_termination_log

DEFAULT_PORT = 8009


def register(subparsers) -> None:
    from modeldeploy.api.constants import MODEL_REPOSITORY
    from modeldeploy.api.spec import MODEL_FORMATS

    p = subparsers.add_parser(
        "agent", help="model agent sidecar: swap the served model version in place (HTTP API)",
        description="Serve GET/PUT /v1/model on --port; on PUT fetch the new version into the repository, "
                    "make Triton serve it instead of the old one without a restart, delete the old one.")
    p.add_argument("--repository", default=MODEL_REPOSITORY, help="model repository folder (default: %(default)s)")
    p.add_argument("--name", required=True, help="Triton model name")
    p.add_argument("--format", required=True, choices=MODEL_FORMATS, help="model format (decides the file name)")
    p.add_argument("--triton-url", default="127.0.0.1:8000", help="Triton HTTP address (default: %(default)s)")
    p.add_argument("--triton-grpc-url", default="127.0.0.1:8001",
                   help="Triton gRPC address for model loads ('' to load over HTTP; default: %(default)s)")
    p.add_argument("--address", default="0.0.0.0", help="address of the API (default: %(default)s)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="port of the API (default: %(default)s)")
    p.add_argument("--uri", help="URI of the model the init container fetched (reported as served)")
    p.add_argument("--version", type=int, help="its version (when given, --uri is trusted only for it)")
    p.add_argument("--sha256", type=str.lower, help="its SHA-256")
    p.add_argument("--load-timeout", type=float, default=600.0,
                   help="seconds for Triton to load and ready a new version (default: %(default)s)")
    p.add_argument("--fetch-timeout", type=float, default=60.0,
                   help="network connect/read timeout of a fetch in seconds (default: %(default)s)")
    p.add_argument("--source-file", metavar="PATH",
                   help="JSON {uri, version, sha256} of the model the init container fetched; replaces "
                        "--uri/--version/--sha256 (the operator mounts it from the Secret <deployment>-model)")
    p.add_argument("--pvc-mount", metavar="PATH", help="where the claim of a pvc:// URI is mounted")
    p.add_argument("--token-file", metavar="PATH",
                   help="the operator's token (the mounted Secret's key), re-read on every PUT; PUTs must be "
                        "signed with it (api/agent_auth.py). Without it, env MODELDEPLOY_AGENT_TOKEN; with "
                        "neither, PUT is open (development only)")
    from modeldeploy.fetch.command import add_max_bytes_argument

    add_max_bytes_argument(p)
    add_termination_log_argument(p)
    p.add_argument("--verbose", "-v", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from modeldeploy.agent.api import TOKEN_ENV, AgentServer, TokenSource
    from modeldeploy.agent.repository import ModelRepository
    from modeldeploy.agent.swap import Origin, Swapper, Timeouts
    from modeldeploy.agent.triton import TritonAdapter
    from modeldeploy.api.agent_auth import TRITON_KEY_ENV
    from modeldeploy.api.redact import install_log_redaction

    from modeldeploy.fetch.source_file import SourceFileError, apply_source_file

    try:
        apply_source_file(args)
    except SourceFileError as err:
        print(f"AgentError: {err}", file=sys.stderr, flush=True)  # still serve: the origin is only a label
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    install_log_redaction()
    triton = TritonAdapter(args.triton_url, args.triton_grpc_url or None, load_timeout=args.load_timeout,
                           key=os.environ.get(TRITON_KEY_ENV) or None)
    repository = ModelRepository(Path(args.repository), args.name, args.format,
                                 fetch_timeout=args.fetch_timeout, pvc_mount=args.pvc_mount,
                                 max_bytes=args.max_bytes)
    swapper = Swapper(args.name, triton, repository, origin=Origin(args.uri, args.sha256, args.version),
                      timeouts=Timeouts(ready=args.load_timeout))
    try:
        server = AgentServer((args.address, args.port), swapper,
                             tokens=TokenSource(static=os.environ.get(TOKEN_ENV), path=args.token_file))
    except OSError as err:
        message = f"AgentError: cannot listen on {args.address}:{args.port}: {err.strerror or err}"
        print(message, file=sys.stderr, flush=True)
        write_termination_log(args.termination_log, message, prog="agent")
        return 1
    stop = threading.Event()
    worker = threading.Thread(target=swapper.run, args=(stop,), name="swap-worker", daemon=True)
    worker.start()

    def shutdown(signum, frame):  # noqa: ARG001 - signal handler signature
        stop.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    logging.getLogger("modeldeploy.agent").info(
        "agent for model %s listening on %s:%s (Triton %s, loads over %s; PUT %s; Triton's control API %s)",
        args.name, args.address, server.server_address[1], args.triton_url,
        f"gRPC {triton.grpc_url}" if triton.grpc_url else "HTTP",
        "signed with the token" if server.require_auth else "OPEN (no token configured)",
        "called with its key" if triton.key else "called without a key")
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        stop.set()
        server.server_close()
    return 0
