"""``modeldeploy fetch``: the CLI of the storage initializer (the pod's ``fetch-model`` init container).

Exit status 0 when the model is in place; 1 with a one-line cause on stderr and in the termination log
when the fetch failed (``FetchError``); 2 for a bug (unexpected exception, traceback on stderr). Kubernetes
copies the termination log into ``status.containerStatuses[].state.terminated.message`` of the pod, so
``kubectl describe pod`` shows ``SourceError: GET https://...: 403 Forbidden`` without reading logs.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

from modeldeploy.termination import add_argument as add_termination_log_argument
from modeldeploy.termination import write_termination_log


def register(subparsers) -> None:
    from modeldeploy.api.constants import MODEL_REPOSITORY
    from modeldeploy.api.spec import MODEL_FORMATS
    from modeldeploy.fetch.uri import PVC_MOUNT_ROOT

    p = subparsers.add_parser(
        "fetch", help="fetch a model into a Triton model repository (the serving pod's init container)",
        description="Fetch spec.model.uri into <repository>/<name>/<version>/model.<ext>, atomically. "
                    "Schemes: file://, http(s)://, pvc://<claim>/<path> (read from <pvc-mount>/<path>), "
                    "s3:// (boto3; AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL), "
                    "gs:// (google-cloud-storage; GOOGLE_APPLICATION_CREDENTIALS).")
    p.add_argument("--uri", help="model file or folder (s3/gs: object or prefix)")
    p.add_argument("--format", required=True, choices=MODEL_FORMATS, help="model format (decides the file name)")
    p.add_argument("--name", required=True, help="Triton model name (the folder under the repository)")
    p.add_argument("--version", type=int, default=1, help="Triton model version (the folder under the model)")
    p.add_argument("--source-file", metavar="PATH",
                   help="JSON {uri, version, sha256} that replaces --uri/--version/--sha256 (what the operator "
                        "mounts from the Secret <deployment>-model)")
    p.add_argument("--sha256", type=str.lower, help="expected SHA-256 of the model file (hex)")
    p.add_argument("--repository", default=MODEL_REPOSITORY, help="model repository folder (default: %(default)s)")
    add_termination_log_argument(p)
    p.add_argument("--pvc-mount", metavar="PATH",
                   help=f"where the claim of a pvc:// URI is mounted (default: {PVC_MOUNT_ROOT}/<claim>)")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="network connect/read timeout in seconds (default: %(default)s)")
    add_max_bytes_argument(p)
    p.set_defaults(func=run)


def add_max_bytes_argument(parser) -> None:
    """``--max-bytes N``: the most one fetch may write (spec.model.maxBytes), shared with the agent."""
    from modeldeploy.api.spec import DEFAULT_MAX_BYTES

    parser.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES, metavar="N",
                        help="stop with an error once the model passes N bytes (all files of a folder "
                             "counted; default: %(default)s)")



def run(args: argparse.Namespace) -> int:
    from modeldeploy.api.redact import redact_text
    from modeldeploy.fetch.errors import FetchError
    from modeldeploy.fetch.layout import FetchRequest, fetch_model
    from modeldeploy.fetch.source_file import SourceFileError, apply_source_file

    try:
        apply_source_file(args)
        if not args.uri:
            raise SourceFileError("no model: pass --uri or --source-file")
    except SourceFileError as err:
        message = redact_text(f"FetchError: {err}")
        print(message, file=sys.stderr, flush=True)
        write_termination_log(args.termination_log, message, prog="fetch")
        return 1
    request = FetchRequest(uri=args.uri, format=args.format, name=args.name, version=args.version,
                           repository=Path(args.repository), sha256=args.sha256)
    try:
        target = fetch_model(request, timeout=args.timeout, pvc_mount=args.pvc_mount, max_bytes=args.max_bytes)
    except FetchError as err:
        message = f"{type(err).__name__}: {err}"
        code = 1
    except Exception as err:  # noqa: BLE001 - a bug; still leave a cause in the pod status
        print(redact_text(traceback.format_exc()), file=sys.stderr, end="", flush=True)
        message = f"FetchError: unexpected {type(err).__name__}: {err}"
        code = 2
    else:
        print(f"model {args.name} version {args.version} ready in {target}", flush=True)
        return 0
    message = redact_text(message)
    print(message, file=sys.stderr, flush=True)
    write_termination_log(args.termination_log, message, prog="fetch")
    return code
