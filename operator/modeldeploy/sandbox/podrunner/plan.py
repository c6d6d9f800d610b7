"""Pod spec -> local processes: command lines, environment, folders, ports. Pure.

A container here is a plain process on the host, so what a container runtime gives for free is
emulated by rewriting the process's view instead of the filesystem:

- **Volumes** become folders under the pod's folder (``<pod>/volumes/<name>``): an emptyDir is an
  empty folder, a configMap/secret/projected/downwardAPI volume is a folder of files written from the
  API, a PVC is ``<pvc_root>/<namespace>/<claim>`` (shared by every pod that mounts the claim, like a
  ReadWriteMany volume), a hostPath is itself.
- **Mounts** become a per-container table ``container path -> host path`` (``subPath`` included).
  Every command-line argument and environment value that is an absolute path under a mount (alone
  or as the value of ``--flag=value``) is rewritten to the host path. A mount nested inside another
  mount of the same container (the operator's ``config.pbtxt`` subPath inside ``/models``) becomes a
  symlink inside the outer mount's folder, created before the container starts.
- **Addresses.** Each pod has its own IP (the runner puts it on ``lo``, see sandbox/podnet.py), and its
  processes bind that IP on their real container ports: ``tritonserver`` gets ``--http/grpc/metrics-address``,
  the model agent ``--address``. The downward API's ``status.podIP`` is that IP, and ``$(VAR)`` references in
  command, args and env values are expanded as the kubelet does (:func:`expand`), so the operator's
  ``--triton-url $(POD_IP):8000`` reaches the pod's Triton. Only in the fallback without a pod network
  (no privilege to add addresses) is the pod's IP 127.0.0.1: then ports are mapped to free loopback ports,
  kept in the pod annotation :data:`claim.PORTS_ANNOTATION`, and a modeldeploy container's arguments that
  name a pod port (``127.0.0.1:<port>``, ``--port <port>``) are rewritten to the host port
  (:func:`translate_ports`).
- **Images** are not run: the Triton image's ``tritonserver`` is the PyPI wheel's binary
  (:mod:`.triton`), the modeldeploy image's entrypoint ``modeldeploy`` is ``python -m modeldeploy``.

Not emulated (documented in docs/podrunner.md): ``/dev/shm`` mounts (the host's is used), user and
security contexts, resource limits, ``readOnly``, DNS and service environment variables.
"""

from __future__ import annotations

import base64
import json
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from modeldeploy.agent.sandbox import SHIM_ENV
from modeldeploy.sandbox.podrunner import claim, triton

DEFAULT_TERMINATION_PATH = "/dev/termination-log"
#: Mount paths left to the host (no per-pod folder makes sense there).
HOST_MOUNTS = ("/dev/shm",)

Lookup = Callable[[str, str], "dict[str, Any] | None"]
"""``lookup(kind, name)`` -> the object (ConfigMap, Secret) in the pod's namespace, or None if absent.
For ``kind == "ServiceAccountToken"`` it returns ``{"token": ...}`` for the named service account."""


class PlanError(Exception):
    """The pod cannot be started as specified; ``reason`` is what the container's waiting state says
    (kubelet's vocabulary: CreateContainerConfigError, CreateContainerError, ErrImageNeverPull)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class HostConfig:
    """Runner-wide settings: where pods live, and the local stand-ins for the images."""

    pods_root: Path
    pvc_root: Path
    triton_binary: Path
    backend_dir: Path
    python: str
    base_env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Mount:
    container_path: str
    host_path: str


@dataclass(frozen=True)
class ProcessPlan:
    """Everything needed to start one container as a process."""

    name: str
    kind: str
    argv: list[str]
    env: dict[str, str]
    cwd: str
    mounts: list[Mount]
    links: list[tuple[str, str]]
    """(link path, target): nested mounts, created as symlinks before start."""
    termination_log: str
    folders: list[str]
    """Host folders to create before start (cwd, emptyDirs, PVC folders, the termination log's)."""


def pod_dir(config: HostConfig, pod: dict[str, Any]) -> Path:
    meta = pod["metadata"]
    return config.pods_root / f"{meta['namespace']}_{meta['name']}_{meta.get('uid', '')[:8]}"


# --- volumes ---------------------------------------------------------------------------------------

def volume_host_path(config: HostConfig, pod: dict[str, Any], volume: dict[str, Any]) -> str:
    if "persistentVolumeClaim" in volume:
        claim_name = volume["persistentVolumeClaim"]["claimName"]
        return str(config.pvc_root / pod["metadata"]["namespace"] / claim_name)
    if "hostPath" in volume:
        return volume["hostPath"]["path"]
    return str(pod_dir(config, pod) / "volumes" / volume["name"])


def _decoded(obj: dict[str, Any], kind: str) -> dict[str, bytes]:
    out = {k: v.encode() for k, v in (obj.get("data") or {}).items()} if kind == "ConfigMap" else {}
    if kind == "Secret":
        out.update({k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()})
        out.update({k: v.encode() for k, v in (obj.get("stringData") or {}).items()})
    out.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    return out


def _keyed_files(source: dict[str, Any], kind: str, name: str, lookup: Lookup) -> dict[str, bytes]:
    obj = lookup(kind, name)
    if obj is None:
        if source.get("optional"):
            return {}
        raise PlanError("CreateContainerConfigError", f"{kind.lower()} {name!r} not found")
    data = _decoded(obj, kind)
    items = source.get("items")
    if not items:
        return data
    files = {}
    for item in items:
        if item["key"] not in data:
            if source.get("optional"):
                continue
            raise PlanError("CreateContainerConfigError", f"{kind.lower()} {name!r} has no key {item['key']!r}")
        files[item["path"]] = data[item["key"]]
    return files


def _field(pod: dict[str, Any], path: str, pod_ip: str = "127.0.0.1") -> str:
    """Downward API ``fieldRef.fieldPath`` (what the kubelet supports), with the runner's addresses."""
    meta, spec = pod["metadata"], pod.get("spec") or {}
    simple = {
        "metadata.name": meta.get("name"), "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"), "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.podIP": pod_ip, "status.hostIP": "127.0.0.1", "status.podIPs": pod_ip,
        "status.hostIPs": "127.0.0.1",
    }
    if path in simple:
        return simple[path] or ""
    for prefix, source in (("metadata.labels", meta.get("labels")), ("metadata.annotations", meta.get("annotations"))):
        if path == prefix:
            return "\n".join(f'{k}="{v}"' for k, v in sorted((source or {}).items()))
        if path.startswith(prefix + "['") and path.endswith("']"):
            return (source or {}).get(path[len(prefix) + 2:-2], "")
    raise PlanError("CreateContainerConfigError", f"fieldRef {path!r} is not supported by the pod runner")


def volume_files(pod: dict[str, Any], volume: dict[str, Any], lookup: Lookup,
                 pod_ip: str = "127.0.0.1") -> dict[str, bytes] | None:
    """Files (relative path -> content) of an API-backed volume, or None for a plain folder volume."""
    if "configMap" in volume:
        src = volume["configMap"]
        return _keyed_files(src, "ConfigMap", src["name"], lookup)
    if "secret" in volume:
        src = volume["secret"]
        return _keyed_files(src, "Secret", src["secretName"], lookup)
    if "downwardAPI" in volume:
        return {i["path"]: _field(pod, i["fieldRef"]["fieldPath"], pod_ip).encode()
                for i in volume["downwardAPI"].get("items", []) if "fieldRef" in i}
    if "projected" in volume:
        files: dict[str, bytes] = {}
        for src in volume["projected"].get("sources") or []:
            if "configMap" in src:
                files.update(_keyed_files(src["configMap"], "ConfigMap", src["configMap"]["name"], lookup))
            elif "secret" in src:
                files.update(_keyed_files(src["secret"], "Secret", src["secret"]["name"], lookup))
            elif "downwardAPI" in src:
                files.update({i["path"]: _field(pod, i["fieldRef"]["fieldPath"], pod_ip).encode()
                              for i in src["downwardAPI"].get("items", []) if "fieldRef" in i})
            elif "serviceAccountToken" in src:
                account = (pod.get("spec") or {}).get("serviceAccountName") or "default"
                token = lookup("ServiceAccountToken", account) or {}
                files[src["serviceAccountToken"]["path"]] = str(token.get("token", "")).encode()
        return files
    if any(k in volume for k in ("emptyDir", "persistentVolumeClaim", "hostPath")):
        return None
    kind = next((k for k in volume if k != "name"), "?")
    raise PlanError("CreateContainerConfigError", f"volume {volume['name']!r}: {kind} is not supported by the pod runner")


# --- paths -----------------------------------------------------------------------------------------

def container_mounts(config: HostConfig, pod: dict[str, Any], container: dict[str, Any]) -> list[Mount]:
    """The container's mount table, host mounts (/dev/shm) left out."""
    volumes = {v["name"]: v for v in (pod.get("spec") or {}).get("volumes") or []}
    mounts = []
    for vm in container.get("volumeMounts") or []:
        if vm["mountPath"].rstrip("/") in HOST_MOUNTS:
            continue
        if vm["name"] not in volumes:
            raise PlanError("CreateContainerConfigError", f"volumeMount {vm['name']!r}: no such volume in the pod")
        host = volume_host_path(config, pod, volumes[vm["name"]])
        if vm.get("subPath"):
            host = posixpath.join(host, vm["subPath"])
        mounts.append(Mount(posixpath.normpath(vm["mountPath"]), host))
    return mounts


def to_host(path: str, mounts: Sequence[Mount]) -> str | None:
    """The host path for an absolute container path, by the longest mount that contains it.

    >>> m = [Mount("/models", "/p/v/repo"), Mount("/models/d/config.pbtxt", "/p/v/cfg/config.pbtxt")]
    >>> to_host("/models/d/1/model.onnx", m), to_host("/models/d/config.pbtxt", m), to_host("/etc/x", m)
    ('/p/v/repo/d/1/model.onnx', '/p/v/cfg/config.pbtxt', None)
    >>> to_host("/modelsX", m) is None
    True
    """
    if not path.startswith("/"):
        return None
    best = None
    for m in mounts:
        cp = m.container_path
        if path == cp or path.startswith(cp.rstrip("/") + "/"):
            if best is None or len(cp) > len(best.container_path):
                best = m
    if best is None:
        return None
    rest = path[len(best.container_path):].lstrip("/")
    return posixpath.join(best.host_path, rest) if rest else best.host_path


def translate_arg(arg: str, mounts: Sequence[Mount]) -> str:
    """An argument with its path (whole, or the value of ``--flag=value``) moved to the host.

    >>> m = [Mount("/models", "/p/repo")]
    >>> translate_arg("--model-repository=/models", m), translate_arg("/models/x", m), translate_arg("fetch", m)
    ('--model-repository=/p/repo', '/p/repo/x', 'fetch')
    """
    if arg.startswith("-") and "=" in arg:
        flag, value = arg.split("=", 1)
        host = to_host(value, mounts)
        return f"{flag}={host}" if host else arg
    return to_host(arg, mounts) or arg


_LOOPBACK = re.compile(r"^(?P<flag>--[A-Za-z0-9-]+=)?(?:127\.0\.0\.1|localhost):(?P<port>\d+)$")


def translate_ports(args: Sequence[str], ports: Mapping[int, int]) -> list[str]:
    """Arguments of a modeldeploy container with the pod's ports moved to the host ports: a loopback
    address ``127.0.0.1:<port>`` (alone or as ``--flag=value``; how one container of a pod reaches
    another) and the value of ``--port`` (the port the container itself listens on).

    >>> translate_ports(["--triton-url", "127.0.0.1:8000", "--x=localhost:8001", "--port", "8009", "9"],
    ...                 {8000: 41000, 8001: 41001, 8009: 41009})
    ['--triton-url', '127.0.0.1:41000', '--x=127.0.0.1:41001', '--port', '41009', '9']
    """
    out: list[str] = []
    for i, arg in enumerate(args):
        m = _LOOPBACK.match(arg)
        if m and int(m.group("port")) in ports:
            arg = f"{m.group('flag') or ''}127.0.0.1:{ports[int(m.group('port'))]}"
        elif i > 0 and args[i - 1] == "--port" and arg.isdigit() and int(arg) in ports:
            arg = str(ports[int(arg)])
        elif arg.startswith("--port=") and arg[7:].isdigit() and int(arg[7:]) in ports:
            arg = f"--port={ports[int(arg[7:])]}"
        out.append(arg)
    return out


def nested_links(mounts: Sequence[Mount]) -> list[tuple[str, str]]:
    """Mounts lying inside another mount: (where the link goes on the host, its target).

    >>> nested_links([Mount("/models", "/p/repo"), Mount("/models/d/config.pbtxt", "/p/cfg/config.pbtxt")])
    [('/p/repo/d/config.pbtxt', '/p/cfg/config.pbtxt')]
    """
    links = []
    for inner in mounts:
        outer = [m for m in mounts if m is not inner
                 and inner.container_path.startswith(m.container_path.rstrip("/") + "/")]
        if outer:
            parent = max(outer, key=lambda m: len(m.container_path))
            rest = inner.container_path[len(parent.container_path):].lstrip("/")
            links.append((posixpath.join(parent.host_path, rest), inner.host_path))
    return links


# --- ports -----------------------------------------------------------------------------------------

def wanted_ports(pod: dict[str, Any]) -> list[int]:
    """Every container port of the pod, plus the ports tritonserver binds without declaring them."""
    ports: list[int] = []
    for c in (pod.get("spec") or {}).get("containers") or []:
        ports += [p["containerPort"] for p in c.get("ports") or []]
        if claim.image_kind(c.get("image", "")) == claim.TRITON:
            ports += triton.triton_ports([*(c.get("command") or []), *(c.get("args") or [])])
    return sorted(set(ports))


def assign_ports(wanted: Sequence[int], recorded: str | None, free: Iterator[int]) -> dict[int, int]:
    """Container port -> loopback port: the recorded annotation's choices kept, new ports from ``free``.

    >>> assign_ports([8000, 8001], '{"8000": 41000}', iter([42000, 42001]))
    {8000: 41000, 8001: 42000}
    """
    try:
        known = {int(k): int(v) for k, v in json.loads(recorded or "{}").items()}
    except (ValueError, TypeError, AttributeError):
        known = {}
    return {port: known[port] if port in known else next(free) for port in wanted}


def ports_annotation(ports: Mapping[int, int]) -> str:
    return json.dumps({str(k): v for k, v in sorted(ports.items())}, separators=(",", ":"))


def named_port(pod: dict[str, Any], container: dict[str, Any], port: int | str) -> int:
    """A probe's ``port`` (number or name of one of the container's ports) as a container port."""
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return int(p["containerPort"])
    raise PlanError("CreateContainerConfigError", f"container {container['name']!r} has no port named {port!r}")


# --- env and argv ----------------------------------------------------------------------------------

_OPERATOR, _OPEN, _CLOSE = "$", "(", ")"


def expand(text: str, env: Mapping[str, str]) -> str:
    """``$(VAR)`` references replaced as the kubelet does (Kubernetes' ``third_party/forked/golang/expansion``):
    a defined variable gives its value, an undefined reference stays as written, ``$$`` is a literal ``$``.

    >>> env = {"POD_IP": "10.244.3.2"}
    >>> expand("$(POD_IP):8000", env), expand("$(NOPE)", env), expand("$$(POD_IP)", env), expand("a$b$", env)
    ('10.244.3.2:8000', '$(NOPE)', '$(POD_IP)', 'a$b$')
    >>> expand("$(POD_IP", env)
    '$(POD_IP'
    """
    out: list[str] = []
    checkpoint, cursor = 0, 0
    while cursor < len(text):
        if text[cursor] == _OPERATOR and cursor + 1 < len(text):
            out.append(text[checkpoint:cursor])
            rest = text[cursor + 1:]
            if rest[0] == _OPERATOR:              # escaped operator
                out.append(_OPERATOR)
                advance = 1
            elif rest[0] == _OPEN:
                close = rest.find(_CLOSE, 1)
                if close == -1:                   # incomplete reference: kept
                    out.append(_OPERATOR + _OPEN)
                    advance = 1
                else:
                    name = rest[1:close]
                    out.append(env[name] if name in env else f"{_OPERATOR}{_OPEN}{name}{_CLOSE}")
                    advance = close + 1
            else:                                 # a lone operator
                out.append(_OPERATOR + rest[0])
                advance = 1
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    return "".join(out) + text[checkpoint:]


def container_env(pod: dict[str, Any], container: dict[str, Any], mounts: Sequence[Mount],
                  lookup: Lookup, base: Mapping[str, str], pod_ip: str = "127.0.0.1") -> dict[str, str]:
    """The process environment: ``base`` (the host's essentials) under the container's own variables
    (:func:`spec_env`)."""
    return {**base, **spec_env(pod, container, mounts, lookup, pod_ip)}


def spec_env(pod: dict[str, Any], container: dict[str, Any], mounts: Sequence[Mount], lookup: Lookup,
             pod_ip: str = "127.0.0.1") -> dict[str, str]:
    """The variables the pod spec gives the container (``envFrom``, then ``env`` in order, each value with
    ``$(VAR)`` references to earlier ones expanded), plus ``HOSTNAME``: also what ``$(VAR)`` in the command
    line may refer to."""
    env: dict[str, str] = {}
    env["HOSTNAME"] = pod["metadata"]["name"]
    for src in container.get("envFrom") or []:
        prefix = src.get("prefix", "")
        if "configMapRef" in src:
            ref, kind = src["configMapRef"], "ConfigMap"
        else:
            ref, kind = src["secretRef"], "Secret"
        obj = lookup(kind, ref["name"])
        if obj is None:
            if ref.get("optional"):
                continue
            raise PlanError("CreateContainerConfigError", f"{kind.lower()} {ref['name']!r} not found")
        env.update({prefix + k: v.decode(errors="replace") for k, v in _decoded(obj, kind).items()})
    for var in container.get("env") or []:
        name = var["name"]
        if "valueFrom" not in var:
            value = expand(var.get("value", ""), env)
            env[name] = to_host(value, mounts) or value
            continue
        vf = var["valueFrom"]
        if "fieldRef" in vf:
            env[name] = _field(pod, vf["fieldRef"]["fieldPath"], pod_ip)
        elif "configMapKeyRef" in vf or "secretKeyRef" in vf:
            kind = "ConfigMap" if "configMapKeyRef" in vf else "Secret"
            ref = vf.get("configMapKeyRef") or vf["secretKeyRef"]
            obj = lookup(kind, ref["name"])
            data = _decoded(obj, kind) if obj is not None else {}
            if ref["key"] in data:
                env[name] = data[ref["key"]].decode(errors="replace")
            elif not ref.get("optional"):
                raise PlanError("CreateContainerConfigError",
                                f"env {name}: {kind.lower()} {ref['name']!r} key {ref['key']!r} not found")
        else:
            raise PlanError("CreateContainerConfigError", f"env {name}: {next(iter(vf))} is not supported")
    return env


def _argv(config: HostConfig, container: dict[str, Any], mounts: Sequence[Mount], ports: Mapping[int, int],
          pod_ip: str, env: Mapping[str, str]) -> list[str]:
    kind = claim.image_kind(container.get("image", ""))
    command = [expand(a, env) for a in container.get("command") or []]
    args = [expand(a, env) for a in container.get("args") or []]
    if kind == claim.TRITON:
        # NVIDIA's image runs its entrypoint script, which execs the command line it is given.
        line = [translate_arg(a, mounts) for a in command + args]
        if not line or posixpath.basename(line[0]) != "tritonserver":
            raise PlanError("CreateContainerError",
                            f"container {container['name']!r}: the pod runner runs only `tritonserver ...` "
                            f"from the Triton image, not {line[:1]}")
        return triton.triton_argv(line, config.triton_binary, config.backend_dir, ports, pod_ip)
    if kind == claim.MODELDEPLOY:
        line = (command or ["modeldeploy"]) + args
        if posixpath.basename(line[0]) != "modeldeploy":
            raise PlanError("CreateContainerError",
                            f"container {container['name']!r}: the pod runner runs only the `modeldeploy` "
                            f"entrypoint of the modeldeploy image, not {line[:1]}")
        rest = translate_ports([translate_arg(a, mounts) for a in line[1:]], ports)
        if rest[:1] == ["agent"]:
            # The agent's API listens on every address by default (0.0.0.0: in a container, the pod's own);
            # on the host that would be every pod's, so it gets the pod's IP.
            rest = [*_without_flag(rest, "--address"), f"--address={pod_ip}"]
        return [config.python, "-m", "modeldeploy", *rest]
    raise PlanError("ErrImageNeverPull",
                    f"image {container.get('image')!r}: the pod runner runs only the Triton and modeldeploy images")


def _without_flag(args: Sequence[str], flag: str) -> list[str]:
    """``args`` without ``flag value`` / ``flag=value``.

    >>> _without_flag(["agent", "--address", "0.0.0.0", "--port=1", "--address=::"], "--address")
    ['agent', '--port=1']
    """
    out: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == flag:
            skip = True
        elif not arg.startswith(flag + "="):
            out.append(arg)
    return out


def plan_container(config: HostConfig, pod: dict[str, Any], container: dict[str, Any],
                   ports: Mapping[int, int], lookup: Lookup, pod_ip: str = "127.0.0.1") -> ProcessPlan:
    """How to start ``container`` of ``pod`` as a local process, its processes bound to ``pod_ip`` (ports:
    container port -> host port, the identity when the pod has its own IP). Raises PlanError."""
    base = pod_dir(config, pod) / "containers" / container["name"]
    mounts = container_mounts(config, pod, container)
    term_path = container.get("terminationMessagePath") or DEFAULT_TERMINATION_PATH
    termination_log = str(base / "termination-log")
    mounts_with_log = [*mounts, Mount(term_path, termination_log)]
    cwd = (to_host(container["workingDir"], mounts) if container.get("workingDir") else None) or str(base / "rootfs")
    volumes = {v["name"]: v for v in (pod.get("spec") or {}).get("volumes") or []}
    folders = [cwd, str(base)]
    for vm in container.get("volumeMounts") or []:
        vol = volumes.get(vm["name"], {})
        if "emptyDir" in vol or "persistentVolumeClaim" in vol:
            folders.append(volume_host_path(config, pod, vol))
    kind = claim.image_kind(container.get("image", "")) or ""
    own_env = spec_env(pod, container, mounts_with_log, lookup, pod_ip)
    argv = _argv(config, container, mounts_with_log, ports, pod_ip, own_env)
    env = {**config.base_env, **own_env}
    if kind == claim.MODELDEPLOY:
        # The model agent copies the python-backend shim next to each model.onnx it fetches (agent.sandbox).
        env.setdefault(SHIM_ENV, str(triton.SHIM_MODEL))
    return ProcessPlan(
        name=container["name"],
        kind=kind,
        argv=argv,
        env=env,
        cwd=cwd,
        mounts=mounts,
        links=nested_links(mounts),
        termination_log=termination_log,
        folders=sorted(set(folders)),
    )
