"""The proxy behind the sandbox gateway: Debian's HAProxy 2.6, programmed without failing requests.

Two ways to change a running HAProxy, and when each is used:

- **Runtime API** (no restart at all): server addresses, weights and up/down states. Every backend is
  rendered with a fixed number of server *slots* (:func:`slot_count`: a power of two, at least 4); a slot
  holds one endpoint or is disabled. New endpoints, removed endpoints and new weights are then
  ``set server ... addr/weight/state`` commands (:func:`runtime_commands`), applied in microseconds
  between requests. This covers pods coming and going and HTTPRoute weight changes: the frequent cases.
- **Hitless reload** when the structure changes (a route, a match, a backend, or a backend outgrowing its
  slots; :func:`structure` compares exactly that): HAProxy runs in master-worker mode, the new config is
  checked (``haproxy -c``), then the master is told ``reload``; it starts new workers that take over the
  listening sockets (``expose-fd listeners``), and the old workers finish their requests and leave.
  ``option idle-close-on-response`` makes an old worker answer one more request on each idle keep-alive
  connection with ``Connection: close`` instead of closing it under the client's feet (measured without
  it: 4 failed of 2,213 requests across 20 reloads; with it: none; docs/sandbox.md).

The rendered file always holds the full current state (servers in their slots, weights), so a reload
never undoes what the runtime API did. Pure: :func:`slot_count`, :func:`assign_slots`, :func:`render`,
:func:`structure`, :func:`runtime_commands`. I/O: :class:`HAProxy`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

from .model import Backend, Match, ProxyConfig, Server

MIN_SLOTS = 4
PARKED = "127.0.0.1:1"
"""Where an empty slot points (disabled, never connected to)."""

Slots = Mapping[str, Sequence["Server | None"]]


def slot_count(servers: int) -> int:
    """Slots for a backend of ``servers`` endpoints: a power of two, at least 4 (room to grow in place).

    >>> [slot_count(n) for n in (0, 4, 5, 9)]
    [4, 4, 8, 16]
    """
    n = MIN_SLOTS
    while n < servers:
        n *= 2
    return n


def assign_slots(config: ProxyConfig, previous: Slots | None = None) -> dict[str, list[Server | None]]:
    """Each backend's servers placed into slots: an endpoint (address, port) keeps the slot it had, new ones
    take free slots (long-empty ones before just-emptied ones), and the slot count only changes when the
    servers no longer fit.

    >>> from .model import Backend, ProxyConfig, Server
    >>> a, b, c = Server("10.0.0.2", 80, 1), Server("10.0.0.3", 80, 1), Server("10.0.0.4", 80, 1)
    >>> cfg = lambda *s: ProxyConfig("x", (80,), (), (Backend("be", tuple(s)),))
    >>> first = assign_slots(cfg(a, b))
    >>> [s and s.address for s in first["be"]]
    ['10.0.0.2', '10.0.0.3', None, None]
    >>> [s and s.address for s in assign_slots(cfg(b, c), first)["be"]]    # b stays in slot 2
    [None, '10.0.0.3', '10.0.0.4', None]
    """
    out: dict[str, list[Server | None]] = {}
    for backend in config.backends:
        if backend.status is not None:
            out[backend.name] = []
            continue
        old = list((previous or {}).get(backend.name) or [])
        size = len(old) if len(old) >= len(backend.servers) and old else slot_count(len(backend.servers))
        slots: list[Server | None] = [None] * size
        where = {(s.address, s.port): i for i, s in enumerate(old) if s is not None}
        rest = []
        for server in backend.servers:
            i = where.get((server.address, server.port))
            if i is not None and i < size:
                slots[i] = server
            else:
                rest.append(server)
        # Free slots that were already empty first: a slot just emptied may still carry requests (and idle
        # connections) to the endpoint that left.
        free = sorted((i for i, s in enumerate(slots) if s is None),
                      key=lambda i: (i < len(old) and old[i] is not None, i))
        for server, i in zip(rest, free):
            slots[i] = server
        out[backend.name] = slots
    return out


def _q(value: str) -> str:
    """A value in HAProxy's strong (single) quotes: no escapes, no variable expansion inside.

    >>> _q("a b"), _q("it's")
    ("'a b'", "'it'\\\\''s'")
    """
    return "'" + value.replace("'", "'\\''") + "'"


def _conditions(match: Match) -> list[list[str]]:
    """The match as alternatives (OR) of ANDed anonymous ACLs."""
    common: list[str] = []
    if match.hostname is not None:
        host = "req.hdr(host),field(1,:),lower"
        if match.hostname.startswith("*."):
            common.append(f"{{ {host} -m end {_q(match.hostname[1:].lower())} }}")
        else:
            common.append(f"{{ {host} -m str {_q(match.hostname.lower())} }}")
    if match.ports:
        common.append("{ dst_port " + " ".join(str(p) for p in match.ports) + " }")
    if match.method:
        common.append(f"{{ method {_q(match.method)} }}")
    for kind, name, value in match.headers:
        flag = "-m reg" if kind == "RegularExpression" else "-m str"
        common.append(f"{{ req.fhdr({name}) {flag} {_q(value)} }}")
    for kind, name, value in match.query:
        flag = "-m reg" if kind == "RegularExpression" else "-m str"
        common.append(f"{{ urlp({name}) {flag} {_q(value)} }}")
    if match.path_type == "Exact":
        return [common + [f"{{ path -m str {_q(match.path)} }}"]]
    if match.path_type == "RegularExpression":
        return [common + [f"{{ path -m reg {_q(match.path)} }}"]]
    if match.path == "/":
        return [common]
    return [common + [f"{{ path -m str {_q(match.path)} }}"], common + [f"{{ path -m beg {_q(match.path + '/')} }}"]]


def use_backend_line(match: Match) -> str:
    """One ``use_backend`` line for ``match``.

    >>> from .model import Match
    >>> use_backend_line(Match("b", hostname="digits.t-1", path="/v2"))  # doctest: +NORMALIZE_WHITESPACE
    "use_backend b if { req.hdr(host),field(1,:),lower -m str 'digits.t-1' } { path -m str '/v2' } ||
     { req.hdr(host),field(1,:),lower -m str 'digits.t-1' } { path -m beg '/v2/' }"
    >>> use_backend_line(Match("b"))
    'use_backend b'
    """
    alternatives = _conditions(match)
    if alternatives == [[]]:
        return f"use_backend {match.backend}"
    return f"use_backend {match.backend} if " + " || ".join(" ".join(a) for a in alternatives)


def _server_line(i: int, server: Server | None) -> str:
    if server is None:
        return f"    server s{i} {PARKED} weight 1 disabled"
    note = f"  # {server.target}" if server.target else ""
    return f"    server s{i} {server.address}:{server.port} weight {server.weight}{note}"


def render(config: ProxyConfig, slots: Slots, stats_socket: str, log_level: str = "info") -> str:
    """The whole ``haproxy.cfg`` for ``config`` with servers placed as ``slots`` says."""
    lines = [
        "# Written by the modeldeploy sandbox gateway controller; changes are overwritten.",
        "global",
        f"    stats socket {stats_socket} mode 600 level admin expose-fd listeners",
        "    hard-stop-after 30s",
        f"    log stderr format short local0 {log_level}",
        "",
        "defaults",
        "    mode http",
        "    log global",
        "    option httplog",
        "    option dontlog-normal",            # log only errors and abnormal ends
        "    option idle-close-on-response",    # reloads: close idle keep-alive connections after a response
        "    option redispatch 1",
        "    retries 2",
        "    retry-on conn-failure empty-response",
        "    timeout connect 2s",
        "    timeout client 60s",
        "    timeout server 60s",
        "    timeout http-request 10s",
        "    timeout http-keep-alive 10s",
        "",
        "frontend gateway",
        *(f"    bind {config.address}:{port}" for port in config.ports),
        *(f"    {use_backend_line(m)}" for m in config.matches),
        "    default_backend no_route",
        "",
        "backend no_route",
        "    http-request return status 404 content-type text/plain string 'no route'",
    ]
    for backend in config.backends:
        lines += ["", f"backend {backend.name}"]
        if backend.source:
            lines.append(f"    description {_q(backend.source)}")
        if backend.status is not None:
            lines.append(f"    http-request return status {backend.status} content-type text/plain "
                         f"string 'no backendRef of this rule resolved'")
            continue
        lines.append("    balance roundrobin")
        lines += [_server_line(i + 1, s) for i, s in enumerate(slots.get(backend.name) or [])]
    return "\n".join(lines) + "\n"


def structure(config: ProxyConfig, slots: Slots) -> str:
    """What a reload is needed for: the config with every slot emptied (matches, backends, slot counts).

    >>> from .model import Backend, ProxyConfig, Server
    >>> one = ProxyConfig("x", (80,), (), (Backend("be", (Server("10.0.0.2", 80, 1),)),))
    >>> two = ProxyConfig("x", (80,), (), (Backend("be", (Server("10.0.0.3", 80, 9),)),))
    >>> structure(one, assign_slots(one)) == structure(two, assign_slots(two))
    True
    """
    empty = {name: [None] * len(s) for name, s in slots.items()}
    return render(ProxyConfig(config.address, config.ports, config.matches,
                              tuple(Backend(b.name, (), b.status, b.source) for b in config.backends)),
                  empty, "-")


def runtime_commands(old: Slots, new: Slots) -> list[str]:
    """Runtime API commands turning the servers of ``old`` into ``new`` (same backends and slot counts).

    Every server that comes or changes is readied before any goes to maintenance: a backend whose only
    server moves to another slot (a pod replaced by one at a new address) always has one to send to.

    >>> from .model import Server
    >>> a, a9, b = Server("10.0.0.2", 8000, 1), Server("10.0.0.2", 8000, 9), Server("10.0.0.3", 8000, 1)
    >>> runtime_commands({"be": [a, None]}, {"be": [a9, b]})       # doctest: +NORMALIZE_WHITESPACE
    ['set server be/s1 weight 9', 'set server be/s2 addr 10.0.0.3 port 8000', 'set server be/s2 weight 1',
     'set server be/s2 state ready']
    >>> runtime_commands({"be": [a, b]}, {"be": [None, b]})
    ['set server be/s1 state maint']
    >>> runtime_commands({"be": [a, None]}, {"be": [None, b]})     # doctest: +NORMALIZE_WHITESPACE
    ['set server be/s2 addr 10.0.0.3 port 8000', 'set server be/s2 weight 1', 'set server be/s2 state ready',
     'set server be/s1 state maint']
    """
    ready, maint = [], []
    for name, slots in new.items():
        before = list(old.get(name) or [None] * len(slots))
        for i, (was, now) in enumerate(zip(before, slots), start=1):
            srv = f"{name}/s{i}"
            if now is None:
                if was is not None:
                    maint.append(f"set server {srv} state maint")
                continue
            if was is None or (was.address, was.port) != (now.address, now.port):
                ready += [f"set server {srv} addr {now.address} port {now.port}",
                          f"set server {srv} weight {now.weight}", f"set server {srv} state ready"]
            elif was.weight != now.weight:
                ready.append(f"set server {srv} weight {now.weight}")
    return ready + maint


# --- I/O -------------------------------------------------------------------------------------------
class HAProxyError(RuntimeError):
    pass


def find_binary() -> str | None:
    """``$MODELDEPLOY_HAPROXY`` or ``haproxy`` on PATH (Debian: /usr/sbin/haproxy)."""
    import shutil

    value = os.environ.get("MODELDEPLOY_HAPROXY") or shutil.which("haproxy") or (
        "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").is_file() else None)
    return value if value and Path(value).is_file() else None


def _socket_path(folder: Path, name: str) -> Path:
    """A unix socket path under ``folder``, or under a short temp folder when it would pass the kernel's
    108-byte limit."""
    path = folder / name
    if len(str(path)) < 100:
        return path
    return Path(tempfile.mkdtemp(prefix="md-gw-")) / name


def _cli(path: Path, command: str, timeout: float = 5.0) -> str:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        s.sendall(command.encode() + b"\n")
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks).decode(errors="replace")


def parse_show_proc(text: str) -> tuple[int, int, list[int]]:
    """(master reloads, failed reloads, current worker pids) from the master CLI's ``show proc``.

    >>> parse_show_proc('''#<PID>  <type>  <reloads>  <uptime>  <version>
    ... 3505   master   2 [failed: 1]   0d00h10m30s   2.6.12
    ... # workers
    ... 24653  worker   0   0d00h00m01s   2.6.12
    ... # old workers
    ... 24600  worker   1   0d00h00m09s   2.6.12
    ... # programs
    ... ''')
    (2, 1, [24653])
    """
    reloads = failed = 0
    workers: list[int] = []
    section = None
    for line in text.splitlines():
        words = line.split()
        if line.startswith("#"):
            section = line.strip("# ").strip()
            continue
        if len(words) >= 3 and words[1] == "master":
            reloads = int(words[2])
            if "[failed:" in line:
                failed = int(line.split("[failed:")[1].split("]")[0])
        elif len(words) >= 2 and words[1] == "worker" and section == "workers":
            workers.append(int(words[0]))
    return reloads, failed, workers


class HAProxy:
    """One HAProxy in master-worker mode, owned by the controller (it dies with the controller)."""

    def __init__(self, binary: str, folder: Path, log: Path, preexec: Callable[[], None] | None = None):
        self.binary, self.folder, self.log = binary, Path(folder), Path(log)
        self.config_path = self.folder / "haproxy.cfg"
        self.master_socket = _socket_path(self.folder, "master.sock")
        self.stats_socket = _socket_path(self.folder, "stats.sock")
        self.proc: subprocess.Popen | None = None
        self.preexec = preexec
        self.reloads = 0

    def check(self, text: str) -> None:
        candidate = self.folder / "haproxy.cfg.next"
        candidate.write_text(text)
        proc = subprocess.run([self.binary, "-c", "-q", "-f", str(candidate)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise HAProxyError(f"haproxy -c refused the config ({candidate}):\n{(proc.stdout + proc.stderr)[-3000:]}")

    def start(self, text: str, timeout: float = 20.0) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.check(text)
        os.replace(self.folder / "haproxy.cfg.next", self.config_path)
        with contextlib.suppress(FileNotFoundError):
            self.master_socket.unlink()
        out = open(self.log, "ab")
        self.proc = subprocess.Popen([self.binary, "-W", "-db", "-S", f"{self.master_socket},mode,600",
                                      "-f", str(self.config_path)], stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=self.preexec)
        out.close()
        self._wait(lambda: self.workers(), timeout, "haproxy did not start a worker")

    def _wait(self, done: Callable[[], object], timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < end:
            if self.proc is not None and self.proc.poll() is not None:
                raise HAProxyError(f"haproxy exited with {self.proc.returncode}; see {self.log}")
            try:
                if done():
                    return
            except OSError as exc:
                last = exc
            time.sleep(0.05)
        raise HAProxyError(f"{what} within {timeout:.0f}s ({last}); see {self.log}")

    def show_proc(self) -> tuple[int, int, list[int]]:
        return parse_show_proc(_cli(self.master_socket, "show proc"))

    def workers(self) -> list[int]:
        return self.show_proc()[2]

    def reload(self, text: str, timeout: float = 20.0) -> None:
        """Check ``text``, make it the config, reload hitlessly, and return once the new worker serves."""
        self.check(text)
        reloads, failed, before = self.show_proc()
        os.replace(self.folder / "haproxy.cfg.next", self.config_path)
        with contextlib.suppress(OSError):  # the master re-executes itself and drops the connection
            _cli(self.master_socket, "reload")

        def done() -> bool:
            now_reloads, now_failed, workers = self.show_proc()
            if now_failed > failed:
                raise HAProxyError(f"haproxy reload failed (the old config keeps serving); see {self.log}")
            return now_reloads > reloads and bool(workers) and not set(workers) & set(before)

        self._wait(done, timeout, "haproxy reload did not finish")
        self.reloads += 1

    def write_config(self, text: str) -> None:
        """Replace the config file without reloading (the running state already matches it)."""
        tmp = self.folder / "haproxy.cfg.tmp"
        tmp.write_text(text)
        os.replace(tmp, self.config_path)

    def runtime(self, commands: Sequence[str]) -> None:
        """Send runtime API commands to the current worker (through the master CLI); any answer but an empty
        one is an error."""
        for command in commands:
            answer = _cli(self.master_socket, f"@1 {command}").strip()
            if answer and "changed" not in answer and "no need to change" not in answer:
                raise HAProxyError(f"haproxy refused {command!r}: {answer}")

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


if __name__ == "__main__":  # pragma: no cover - a debugging aid: print the master's `show proc`
    print(_cli(Path(sys.argv[1]), " ".join(sys.argv[2:]) or "show proc"))
