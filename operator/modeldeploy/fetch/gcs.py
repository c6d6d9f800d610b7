"""gs:// through google-cloud-storage: Google Cloud Storage, or a GCS-compatible endpoint.

Credentials: ``GOOGLE_APPLICATION_CREDENTIALS`` names a credentials file; the pod mounts ``gcs.json`` from
``spec.model.credentialsSecret`` there. The file is loaded here, explicitly, so that a broken or wrong file
is reported as such ("credentials file …: …") instead of silently falling back to anonymous access.
Without that variable, the environment's default credentials (GKE workload identity, a metadata
server) are used, and with none, anonymous access (public buckets).

Endpoint: ``STORAGE_EMULATOR_HOST`` (``http://host:port``), the variable Google's client libraries honour,
e.g. for fake-gcs-server. The library alone would then ignore every credential (it sends anonymous
requests to an emulator); here the credentials above are still used when a file is given, so the token
exchange the file describes (``token_uri``) runs as it would against Google. In a pod the variable comes
from the optional key ``STORAGE_EMULATOR_HOST`` of the same Secret.

The download is the library's: streamed to the hashing ``Sink`` (flat memory), the object's CRC32C or
MD5 checked, and on a broken connection retried with a Range request from the last byte received, until
``--timeout`` seconds of retries have passed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping

from modeldeploy.fetch.errors import SourceError
from modeldeploy.fetch.sources import Context, Fetched, _network_reason, import_gcs
from modeldeploy.fetch.transfer import Sink, make_dirs
from modeldeploy.fetch.uri import ModelURI

READ_ONLY_SCOPE = "https://www.googleapis.com/auth/devstorage.read_only"


def _one_line(text: Any, limit: int = 200) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _api_cause(message: str) -> str:
    """An API error's message without the request line google-api-core puts first.

    >>> _api_cause("GET http://127.0.0.1:4443/storage/v1/b/nobucket/o?prefix=m%2F: Not Found")
    'Not Found'
    """
    return _one_line(re.sub(r"^(GET|HEAD|POST|PUT|PATCH|DELETE) \S+: ", "", message or ""))


def _auth_cause(err: Exception) -> str:
    """google-auth errors carry (message, response body) as args; the message is the cause."""
    return _one_line(err.args[0] if err.args else err)


def load_credentials(env: Mapping[str, str], uri: ModelURI):
    """The credentials in the file GOOGLE_APPLICATION_CREDENTIALS names (read-only scope), or None when unset.

    Only the two kinds of key file a Secret holds are accepted: a service-account key and an authorized
    user's refresh token. Other kinds (external accounts, impersonation) can make the library run commands
    or call URLs named in the file, so they are refused rather than loaded blindly.
    """
    path = env.get("GOOGLE_APPLICATION_CREDENTIALS")
    if not path:
        return None
    from google.auth import exceptions as auth_exceptions  # type: ignore[import-not-found]
    from google.oauth2 import credentials as user_credentials  # type: ignore[import-not-found]
    from google.oauth2 import service_account  # type: ignore[import-not-found]

    where = f"GET {uri}: credentials file {path} (key gcs.json of spec.model.credentialsSecret)"
    try:
        info = json.loads(Path(path).read_text())
    except OSError as err:
        raise SourceError(f"{where}: {err.strerror or err}") from None
    except ValueError as err:
        raise SourceError(f"{where}: not JSON ({err})") from None
    kind = info.get("type") if isinstance(info, dict) else None
    try:
        if kind == "service_account":
            return service_account.Credentials.from_service_account_info(info, scopes=[READ_ONLY_SCOPE])
        if kind == "authorized_user":
            return user_credentials.Credentials.from_authorized_user_info(info, scopes=[READ_ONLY_SCOPE])
    except (ValueError, KeyError, auth_exceptions.GoogleAuthError) as err:
        raise SourceError(f"{where}: not a valid {kind} key: {_one_line(err)}") from None
    raise SourceError(f"{where}: type {kind!r} is not supported (a service_account key or authorized_user)")


def client_for(ctx: Context, uri: ModelURI):
    """A storage client from ``ctx.env`` only: endpoint override and credentials as the module docstring says."""
    storage, _, auth_exceptions = import_gcs()
    from google.auth.credentials import AnonymousCredentials  # type: ignore[import-not-found]

    endpoint = ctx.env.get("STORAGE_EMULATOR_HOST") or None
    options = {"api_endpoint": endpoint} if endpoint else None
    credentials = load_credentials(ctx.env, uri)
    if credentials is None and endpoint:
        credentials = AnonymousCredentials()
    if credentials is not None:
        return storage.Client(project=None, credentials=credentials, client_options=options)
    try:
        return storage.Client()
    except auth_exceptions.DefaultCredentialsError:
        return storage.Client.create_anonymous_client()


def fetch_gs(uri: ModelURI, dest: Path, ctx: Context) -> Fetched:
    """A blob (``gs://b/key``) or, when no such blob exists, every blob under ``key/``."""
    storage, api_exceptions, auth_exceptions = import_gcs()
    retry = storage.retry.DEFAULT_RETRY
    retry = (getattr(retry, "with_timeout", None) or retry.with_deadline)(ctx.timeout)  # default: 120 s
    op = "GET"
    try:
        client = client_for(ctx, uri)
        bucket = client.bucket(uri.location)
        if not uri.is_prefix:
            blob = bucket.get_blob(uri.path, timeout=ctx.timeout, retry=retry)
            if blob is not None:
                ctx.progress.expect(blob.size)
                with Sink(dest, ctx.progress) as sink:
                    blob.download_to_file(sink, timeout=ctx.timeout, retry=retry)
                    return Fetched("file", sink.hexdigest())
        op = "LIST"
        prefix = uri.path.rstrip("/") + "/" if uri.path else ""
        blobs = [b for b in client.list_blobs(uri.location, prefix=prefix, timeout=ctx.timeout, retry=retry)
                 if not b.name.endswith("/")]
        if not blobs:
            raise SourceError(f"{op} {uri}: no such object, and no objects under {prefix or 'the bucket'}",
                              status=404)
        ctx.progress.expect(sum(b.size or 0 for b in blobs))
        make_dirs(dest)
        op = "GET"
        for blob in blobs:
            rel = blob.name[len(prefix):]
            if any(part in ("", ".", "..") for part in rel.split("/")):
                raise SourceError(f"{op} {uri}: object name {blob.name!r} does not map to a file path")
            with Sink(dest / rel, ctx.progress) as sink:
                blob.download_to_file(sink, timeout=ctx.timeout, retry=retry)
        return Fetched("folder")
    except SourceError:
        raise
    except api_exceptions.RetryError as err:
        cause = err.cause
        detail = ("connection refused" if "Connection refused" in str(cause)
                  else _network_reason(cause, ctx.timeout) if isinstance(cause, OSError) else str(cause))
        raise SourceError(f"{op} {uri}: gave up after {ctx.timeout:g} s of retries: {_one_line(detail, 300)}") from None
    except api_exceptions.GoogleAPICallError as err:
        status = getattr(err, "code", None)
        raise SourceError(f"{op} {uri}: {status} {_api_cause(err.message)}".strip(), status=status) from None
    except auth_exceptions.RefreshError as err:
        raise SourceError(f"{op} {uri}: the credentials were refused: {_auth_cause(err)} "
                          "(check gcs.json in spec.model.credentialsSecret)") from None
    except auth_exceptions.GoogleAuthError as err:
        raise SourceError(f"{op} {uri}: credentials: {_auth_cause(err)}") from None
    except (OSError, ValueError) as err:  # requests' network errors are OSErrors
        raise SourceError(f"{op} {uri}: {_one_line(err)}") from None
