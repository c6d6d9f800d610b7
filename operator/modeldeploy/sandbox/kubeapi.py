"""A minimal HTTPS client for the sandbox's own API server, built from its kubeconfig.

Why not the `kubernetes` package: the sandbox only needs a handful of raw calls (readyz, version,
create nodes, list nodes) and must give precise errors while components are still starting; plain
urllib with the admin client certificate does that with no client-configuration layer in between.
"""

from __future__ import annotations

import base64
import json
import ssl
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml


class KubeHttpError(RuntimeError):
    def __init__(self, method: str, path: str, code: int | None, detail: str):
        self.method, self.path, self.code, self.detail = method, path, code, detail
        where = f"HTTP {code}" if code is not None else "no response"
        super().__init__(f"{method} {path}: {where}: {detail}")


def _material(entry: dict[str, Any], key: str, tmpdir: Path) -> str | None:
    """Path to a credential given either as `<key>` (file) or `<key>-data` (base64)."""
    if entry.get(key):
        return str(entry[key])
    data = entry.get(f"{key}-data")
    if not data:
        return None
    out = tmpdir / key
    out.write_bytes(base64.b64decode(data))
    return str(out)


class KubeHttp:
    """Raw REST calls with the current context of a kubeconfig (client-certificate auth)."""

    def __init__(self, kubeconfig: Path, timeout: float = 10.0):
        cfg = yaml.safe_load(Path(kubeconfig).read_text())
        ctx_name = cfg.get("current-context") or cfg["contexts"][0]["name"]
        ctx = next(c["context"] for c in cfg["contexts"] if c["name"] == ctx_name)
        cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
        user = next(u["user"] for u in cfg["users"] if u["name"] == ctx["user"])
        self.server = cluster["server"].rstrip("/")
        self.timeout = timeout
        self._tmp = tempfile.TemporaryDirectory(prefix="modeldeploy-kube-")
        tmp = Path(self._tmp.name)
        ca = _material(cluster, "certificate-authority", tmp)
        if cluster.get("insecure-skip-tls-verify"):
            self._ssl = ssl._create_unverified_context()  # noqa: S323 - local sandbox only
        else:
            self._ssl = ssl.create_default_context(cafile=ca)
        cert = _material(user, "client-certificate", tmp)
        key = _material(user, "client-key", tmp)
        if cert and key:
            self._ssl.load_cert_chain(cert, key)
        self._token = user.get("token")

    def request(self, method: str, path: str, body: Any = None,
                content_type: str = "application/json", ok: tuple[int, ...] = ()) -> tuple[int, Any]:
        """Send one request; return (status, parsed JSON or text). Raises KubeHttpError on
        connection failure or on an HTTP error status not listed in `ok`."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", content_type)
        if self._token:
            req.add_header("Authorization", f"Bearer {self._token}")
        try:
            with urllib.request.urlopen(req, context=self._ssl, timeout=self.timeout) as resp:
                return resp.status, _parse(resp.read())
        except urllib.error.HTTPError as exc:
            payload = _parse(exc.read())
            if exc.code in ok:
                return exc.code, payload
            detail = payload.get("message") if isinstance(payload, dict) else str(payload)
            raise KubeHttpError(method, path, exc.code, str(detail)[:2000]) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise KubeHttpError(method, path, None, str(reason)) from None

    def get(self, path: str) -> Any:
        return self.request("GET", path)[1]


def _parse(raw: bytes) -> Any:
    text = raw.decode(errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text
