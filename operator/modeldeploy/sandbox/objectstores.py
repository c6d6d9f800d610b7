"""Real object stores for the sandbox and the tests: SeaweedFS (S3) and fake-gcs-server (GCS).

Why: ``s3://`` and ``gs://`` model URIs must be fetched from servers that speak the real protocols, with
real request signing, real error bodies and real streaming, not from a mock of the SDK. Both servers are
Go programs built once from upstream sources through the Go module proxy (``build-object-stores.sh``)
into ``$MODELDEPLOY_CACHE/bin/<name>-<version>/``, then reused (a file lock serialises concurrent
first builds, as for the control plane).

- **SeaweedFS** (``weed server -s3``: master, volume server, filer and S3 gateway in one process) checks
  AWS Signature V4 against the identities in its ``-s3.config``: here an ``admin`` (uploads, buckets)
  and a read-only ``reader`` (what a ModelDeployment's credentials Secret holds). A wrong secret key is
  refused with ``SignatureDoesNotMatch``, an unknown key with ``InvalidAccessKeyId``, as AWS does.
- **fake-gcs-server** serves the GCS JSON API (uploads, metadata, media downloads with CRC32C/MD5). It
  checks no credentials. So that the key in a ``gs://`` credentials Secret matters, :class:`TokenEndpoint`
  plays Google's OAuth token endpoint (RFC 7523 JWT-bearer grant, what a service-account key file is
  exchanged at): it verifies the RS256 signature of the assertion against the keys it issued and answers
  ``400 invalid_grant`` otherwise, with Google's wording. The ``gcs.json`` files made by
  :func:`service_account_key` point their ``token_uri`` at it. This endpoint is the one stand-in here.

Servers listen on ``host`` (default ``$MODELDEPLOY_OBJECT_STORE_HOST`` or ``127.0.0.1``) on free ports,
keep their data under the folder they are given, and stop with :meth:`stop` (or the ``with`` block). The
sandbox's pods run in the host's network namespace, so a loopback address reaches them; a pod network
that is not the host's needs ``host`` set to an address the pods can reach.

Run by hand: ``python -m modeldeploy.sandbox.objectstores DIR`` starts both, prints the endpoints and
keys, and serves until interrupted.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, TextIO

from modeldeploy.sandbox.binaries import cache_dir

BUILD_SCRIPT = Path(__file__).with_name("build-object-stores.sh")
DEFAULT_HOST = "127.0.0.1"
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"


class ObjectStoreError(RuntimeError):
    """An object store could not be built or started; the message says which and why."""


@dataclass(frozen=True)
class Build:
    name: str  # the script's target and the folder prefix
    version: str
    binary: str
    env: str  # the script's variable for the version

    def folder(self) -> Path:
        return cache_dir() / "bin" / f"{self.name}-{self.version}"

    def path(self) -> Path:
        return self.folder() / self.binary

    def is_built(self) -> bool:
        return (self.folder() / ".complete").is_file() and self.path().is_file()


SEAWEEDFS = Build("seaweedfs", "v0.0.0-20261109003541-7506e5f91cd6", "weed", "SEAWEEDFS_VERSION")  # weed 4.53
FAKE_GCS = Build("fake-gcs-server", "v1.56.1", "fake-gcs-server", "FAKE_GCS_VERSION")
BUILDS = (SEAWEEDFS, FAKE_GCS)


def ensure_built(build: Build, out: TextIO | None = None) -> Path:
    """The server's binary, built first if needed (progress lines to ``out``, default stderr).

    Measured here: SeaweedFS about 4.5 min and fake-gcs-server about 1.5 min from empty Go caches on 2 cores
    (docs/benchmarks.md); later calls return at once.
    """
    out = out or sys.stderr
    if build.is_built():
        return build.path()
    lock_path = cache_dir() / "build" / f".lock-{build.name}"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another {build.name} build (lock {lock_path})", file=out, flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        if not build.is_built():
            print(f"building {build.name} {build.version} into {build.folder()} (first time only; minutes)",
                  file=out, flush=True)
            _run_build(build, out)
    if not build.is_built():
        raise ObjectStoreError(f"{build.name}: the build finished but {build.path()} is missing")
    return build.path()


def _run_build(build: Build, out: TextIO) -> None:
    env = dict(os.environ, MODELDEPLOY_CACHE=str(cache_dir()), **{build.env: build.version})
    tail: deque[str] = deque(maxlen=40)
    with subprocess.Popen(["bash", str(BUILD_SCRIPT), build.name], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, bufsize=1) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            tail.append(line)
            if not line.startswith("go: downloading"):
                out.write(line)
                out.flush()
        rc = proc.wait()
    if rc != 0:
        raise ObjectStoreError(f"{build.name} build failed (exit {rc}, script {BUILD_SCRIPT}); last output:\n"
                               + "".join(tail))


def default_host() -> str:
    return os.environ.get("MODELDEPLOY_OBJECT_STORE_HOST") or DEFAULT_HOST


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _wait(check: Callable[[], bool], timeout: float, what: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ObjectStoreError(f"{what}: the server exited with {proc.returncode}; log {log}:\n"
                                   + _tail(log))
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise ObjectStoreError(f"{what}: not ready after {timeout:g} s; log {log}:\n" + _tail(log))


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class _Server:
    """A server process with its log in ``<data_dir>/<name>.log``; stops on ``stop()`` or leaving ``with``."""

    name = "server"

    def __init__(self, data_dir: str | Path, host: str | None = None):
        self.data_dir = Path(data_dir)
        self.host = host or default_host()
        self.proc: subprocess.Popen | None = None
        self.log_path = self.data_dir / f"{self.name}.log"

    def _spawn(self, argv: list[str]) -> subprocess.Popen:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        finally:
            log.close()
        return self.proc

    def stop(self, timeout: float = 15) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self):  # pragma: no cover - overridden
        raise NotImplementedError


# --- S3: SeaweedFS -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class S3Identity:
    name: str
    access_key: str
    secret_key: str
    actions: tuple[str, ...]

    @classmethod
    def generate(cls, name: str, actions: tuple[str, ...]) -> "S3Identity":
        return cls(name, "MD" + secrets.token_hex(9).upper(), secrets.token_urlsafe(30), actions)


class SeaweedS3(_Server):
    """``weed server -s3`` on free ports: :attr:`endpoint` is the S3 API, :attr:`admin` and :attr:`reader`
    its identities (fresh keys each start)."""

    name = "seaweedfs"

    def __init__(self, data_dir: str | Path, host: str | None = None):
        super().__init__(data_dir, host)
        self.admin = S3Identity.generate("admin", ("Admin", "Read", "List", "Tagging", "Write"))
        self.reader = S3Identity.generate("reader", ("Read", "List"))
        self.ports: dict[str, int] = {}

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.ports['s3']}"

    def config(self) -> dict[str, Any]:
        """The ``-s3.config`` identities file."""
        return {"identities": [{"name": i.name, "credentials": [{"accessKey": i.access_key, "secretKey": i.secret_key}],
                                "actions": list(i.actions)} for i in (self.admin, self.reader)]}

    def start(self, timeout: float = 90) -> "SeaweedS3":
        weed = ensure_built(SEAWEEDFS)
        names = ("master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3", "s3_grpc")
        self.ports = {n: free_port(self.host) for n in names}
        p = self.ports
        store = self.data_dir / "data"
        store.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "s3.json"
        config.write_text(json.dumps(self.config()))
        config.chmod(0o600)
        argv = [str(weed), "server", f"-dir={store}", f"-ip={self.host}", f"-ip.bind={self.host}",
                f"-master.port={p['master']}", f"-master.port.grpc={p['master_grpc']}",
                f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume_grpc']}",
                "-filer", f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer_grpc']}",
                "-s3", f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3_grpc']}", f"-s3.config={config}",
                "-s3.port.iceberg=0", "-s3.port.lance=0",
                "-master.volumeSizeLimitMB=1024", "-volume.max=0", "-volume.preStopSeconds=0",
                "-master.peers=none"]
        proc = self._spawn(argv)
        _wait(self._writable, timeout, f"SeaweedFS at {self.endpoint}", proc, self.log_path)
        return self

    def _writable(self) -> bool:
        """The S3 gateway answers and the master can place a write (a volume server has registered)."""
        with urllib.request.urlopen(f"http://{self.host}:{self.ports['master']}/dir/assign", timeout=5) as r:
            if "fid" not in json.loads(r.read() or b"{}"):
                return False
        try:
            urllib.request.urlopen(self.endpoint, timeout=5).close()
        except urllib.error.HTTPError:
            pass  # 403 for an anonymous request: the gateway is up
        return True

    def client(self, identity: S3Identity | None = None):
        """A boto3 S3 client for ``identity`` (default: admin)."""
        import boto3
        import botocore.config

        ident = identity or self.admin
        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=ident.access_key,
                            aws_secret_access_key=ident.secret_key, region_name="us-east-1",
                            config=botocore.config.Config(s3={"addressing_style": "path"},
                                                          retries={"max_attempts": 8, "mode": "standard"}))

    def secret_env(self, identity: S3Identity | None = None) -> dict[str, str]:
        """What a credentials Secret for ``s3://`` holds (default: the read-only identity)."""
        ident = identity or self.reader
        return {"AWS_ACCESS_KEY_ID": ident.access_key, "AWS_SECRET_ACCESS_KEY": ident.secret_key,
                "AWS_ENDPOINT_URL": self.endpoint, "AWS_REGION": "us-east-1"}


# --- GCS: fake-gcs-server and a token endpoint --------------------------------------------------------

class FakeGCS(_Server):
    """fake-gcs-server over plain HTTP with a filesystem backend; :attr:`endpoint` is what
    ``STORAGE_EMULATOR_HOST`` takes."""

    name = "fake-gcs-server"

    def __init__(self, data_dir: str | Path, host: str | None = None, port: int = 0,
                 external_url: str | None = None):
        super().__init__(data_dir, host)
        self.port = port
        self.external_url = external_url

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 60) -> "FakeGCS":
        """Listen on ``port`` (default: a free one). Objects' ``mediaLink`` (where clients download from, as
        ``storage.googleapis.com/download/…`` on Google) points at ``external_url``, default the endpoint."""
        binary = ensure_built(FAKE_GCS)
        self.port = self.port or free_port(self.host)
        root = self.data_dir / "storage"
        root.mkdir(parents=True, exist_ok=True)
        public = urllib.parse.urlsplit(self.external_url or self.endpoint).netloc
        argv = [str(binary), "-scheme", "http", "-host", self.host, "-port", str(self.port),
                "-backend", "filesystem", "-filesystem-root", str(root),
                "-external-url", self.external_url or self.endpoint, "-public-host", public, "-log-level", "warn"]
        proc = self._spawn(argv)

        def listening() -> bool:
            with urllib.request.urlopen(f"{self.endpoint}/storage/v1/b", timeout=5) as r:
                return r.status == 200
        _wait(listening, timeout, f"fake-gcs-server at {self.endpoint}", proc, self.log_path)
        return self

    def client(self):
        """A google-cloud-storage client for setup (anonymous: the emulator checks no credentials)."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(project="modeldeploy-sandbox", credentials=AnonymousCredentials(),
                              client_options={"api_endpoint": self.endpoint})


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class TokenEndpoint:
    """Google's OAuth 2.0 token endpoint for service-account keys, as far as a key file uses it.

    ``POST /token`` with ``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<JWT>``: the
    JWT must be RS256-signed by a key registered for its ``iss`` (the ``client_email``), with ``aud`` Google's
    token endpoint (what google-auth always puts there, whatever ``token_uri`` says) or this endpoint's URL,
    and ``exp`` in the future; the answer is ``{"access_token", "expires_in",
    "token_type"}``, else ``400 {"error": "invalid_grant", "error_description": …}`` in Google's words.
    Runs in a thread of the calling process. ``issued`` counts the tokens handed out.
    """

    host: str = field(default_factory=default_host)
    keys: dict[str, Any] = field(default_factory=dict)  # client_email -> public key
    issued: int = 0
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        return f"http://{self.host}:{self._server.server_address[1]}/token"

    def start(self) -> "TokenEndpoint":
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                status, body = endpoint.grant(form)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer((self.host, 0), Handler)
        threading.Thread(target=self._server.serve_forever, name="token-endpoint", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> "TokenEndpoint":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def grant(self, form: dict[str, list[str]], now: float | None = None) -> tuple[int, dict[str, Any]]:
        """The answer to one token request (pure apart from the key table and the counter)."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        def invalid(description: str) -> tuple[int, dict[str, Any]]:
            return 400, {"error": "invalid_grant", "error_description": description}

        if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"]:
            return 400, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type"}
        try:
            header_b64, payload_b64, signature_b64 = form["assertion"][0].split(".")
            header = json.loads(_unb64url(header_b64))
            payload = json.loads(_unb64url(payload_b64))
            signature = _unb64url(signature_b64)
        except (KeyError, ValueError):
            return invalid("Invalid JWT: not a JWT.")
        key = self.keys.get(payload.get("iss"))
        if key is None:
            return invalid("Invalid grant: account not found")
        if header.get("alg") != "RS256":
            return invalid("Invalid JWT: unsupported algorithm.")
        try:
            key.verify(signature, f"{header_b64}.{payload_b64}".encode(), padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return invalid("Invalid JWT Signature.")
        if payload.get("aud") not in (GOOGLE_TOKEN_AUDIENCE, self.url):
            return invalid("Invalid JWT: Failed audience check.")
        if float(payload.get("exp", 0)) < (time.time() if now is None else now):
            return invalid("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.")
        self.issued += 1
        return 200, {"access_token": "ya29." + secrets.token_urlsafe(32), "expires_in": 3599, "token_type": "Bearer"}

    def service_account_key(self, email: str = "model-reader@modeldeploy-sandbox.iam.gserviceaccount.com",
                            register: bool = True) -> dict[str, Any]:
        """A new service-account key file (the content of ``gcs.json``) whose ``token_uri`` is this endpoint.

        With ``register=False`` the key is not known to the endpoint for ``email`` (a revoked or wrong key):
        the token request is refused with ``Invalid JWT Signature.`` when another key is registered.
        """
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
        if register:
            self.keys[email] = private.public_key()
        return {"type": "service_account", "project_id": "modeldeploy-sandbox",
                "private_key_id": secrets.token_hex(20), "private_key": pem, "client_email": email,
                "client_id": str(secrets.randbelow(10**20)), "token_uri": self.url}


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m modeldeploy.sandbox.objectstores",
                                     description="Start SeaweedFS (S3) and fake-gcs-server (GCS) until interrupted.")
    parser.add_argument("data_dir", help="folder for the servers' data and logs")
    parser.add_argument("--host", default=None, help=f"listen address (default {default_host()})")
    args = parser.parse_args(argv)
    with SeaweedS3(Path(args.data_dir) / "s3", args.host) as s3, FakeGCS(Path(args.data_dir) / "gcs", args.host) as gcs:
        print(f"S3  (SeaweedFS {SEAWEEDFS.version}): {s3.endpoint}")
        for ident in (s3.admin, s3.reader):
            print(f"    {ident.name}: AWS_ACCESS_KEY_ID={ident.access_key} AWS_SECRET_ACCESS_KEY={ident.secret_key}")
        print(f"GCS (fake-gcs-server {FAKE_GCS.version}): STORAGE_EMULATOR_HOST={gcs.endpoint}", flush=True)
        try:
            while s3.proc.poll() is None and gcs.proc.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
