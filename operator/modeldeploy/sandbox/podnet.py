"""The sandbox's pod network: a /24 of 10.244.0.0/16 per sandbox, one address per pod on ``lo``.

Why: on a cluster every pod has an IP that other pods, kube-proxy, gateways and Prometheus reach, and the
EndpointSlice controller publishes those IPs. The pod runner's pods are host processes, so the nearest
thing is an extra address on the loopback interface per pod (``ip addr add 10.244.3.7/32 dev lo``) with the
pod's processes bound to it on their real container ports. Loopback itself (127.0.0.0/8) would need no
privilege, but Kubernetes refuses loopback addresses in EndpointSlices, so pods would be unreachable
through Services; hence a non-loopback range and root (FACTS.md: "A pod network for the sandbox").

Several sandboxes run on one machine at once (a demo, test sessions, other checkouts), all sharing ``lo``,
so each takes its own /24 through a *claim*: an exclusive ``flock`` on a lock file in a machine-wide folder
(:func:`lock_dir`). The lock is held by the sandbox's long-lived processes (the supervisor, the pod runner
and the gateway controller inherit the locked descriptor), so it is released by the kernel when they die however they die:
a claim of a dead sandbox is free again, and whoever claims it next first removes the addresses that
sandbox may have left on ``lo``. The trade-off: a claim says nothing about *which* sandbox holds it
except through the owner line written into the file (for people reading it).

Layout of a range: ``.1`` is the sandbox's gateway (its HTTP front door), ``.2``-``.254`` are pod addresses,
given out round-robin (:func:`next_address`) so a deleted pod's address is not reused at once (Prometheus'
``instance`` and a proxy's connection pool would otherwise mix two pods).

Pure: :class:`PodRange`, :func:`candidate_ranges`, :func:`next_address`, :func:`parse_addresses`.
I/O: :func:`claim_range`, :class:`Loopback` (``ip`` from iproute2).
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterable, Protocol

POD_SUPERNET = "10.244.0.0/16"
RANGE_PREFIX = 24
#: Set to ``loopback`` to force the fallback (pods on 127.0.0.1 with mapped ports), e.g. to try it as root.
MODE_ENV = "MODELDEPLOY_POD_NETWORK"
LOCK_DIR_ENV = "MODELDEPLOY_POD_RANGE_LOCKS"


class AddressError(RuntimeError):
    """Adding or removing an address on ``lo`` failed; the message carries ``ip``'s own words."""


class RangeBusy(RuntimeError):
    """Every pod range is claimed by a live sandbox."""


@dataclass(frozen=True)
class PodRange:
    """One sandbox's pod range.

    >>> r = PodRange.parse("10.244.3.0/24")
    >>> r.gateway, r.first_pod, r.last_pod, r.contains("10.244.3.9"), r.contains("10.244.4.9")
    ('10.244.3.1', '10.244.3.2', '10.244.3.254', True, False)
    """

    network: ipaddress.IPv4Network

    @classmethod
    def parse(cls, cidr: str) -> "PodRange":
        network = ipaddress.IPv4Network(cidr, strict=True)
        if network.num_addresses < 8:
            raise ValueError(f"pod range {cidr}: too small (need a /29 or larger)")
        return cls(network)

    @property
    def cidr(self) -> str:
        return str(self.network)

    @property
    def gateway(self) -> str:
        return str(self.network.network_address + 1)

    @property
    def first_pod(self) -> str:
        return str(self.network.network_address + 2)

    @property
    def last_pod(self) -> str:
        return str(self.network.broadcast_address - 1)

    @property
    def is_loopback(self) -> bool:
        """Inside 127.0.0.0/8: every address already answers on ``lo`` (unit tests use such ranges)."""
        return self.network.subnet_of(ipaddress.IPv4Network("127.0.0.0/8"))

    def contains(self, ip: str | None) -> bool:
        try:
            return ip is not None and ipaddress.IPv4Address(ip) in self.network
        except ValueError:
            return False

    def pod_addresses(self) -> list[str]:
        first, last = int(ipaddress.IPv4Address(self.first_pod)), int(ipaddress.IPv4Address(self.last_pod))
        return [str(ipaddress.IPv4Address(i)) for i in range(first, last + 1)]


def candidate_ranges(supernet: str = POD_SUPERNET, prefix: int = RANGE_PREFIX) -> list[PodRange]:
    """The ranges a sandbox may claim, in the order tried (10.244.0.0/24 is left to clusters' defaults).

    >>> [r.cidr for r in candidate_ranges("10.244.0.0/22")]
    ['10.244.1.0/24', '10.244.2.0/24', '10.244.3.0/24']
    """
    subnets = list(ipaddress.IPv4Network(supernet).subnets(new_prefix=prefix))
    return [PodRange(n) for n in subnets[1:]]


def next_address(pod_range: PodRange, used: Iterable[str], last: str | None = None) -> str | None:
    """The next free pod address after ``last`` (round-robin, wrapping), or None when all are in use.

    >>> r = PodRange.parse("10.244.3.0/29")          # pods .2-.6
    >>> next_address(r, []), next_address(r, ["10.244.3.2"]), next_address(r, [], last="10.244.3.4")
    ('10.244.3.2', '10.244.3.3', '10.244.3.5')
    >>> next_address(r, ["10.244.3.2"], last="10.244.3.6")   # wraps, skipping the used one
    '10.244.3.3'
    >>> next_address(r, [f"10.244.3.{i}" for i in range(2, 7)]) is None
    True
    """
    pool = pod_range.pod_addresses()
    taken = set(used)
    start = pool.index(last) + 1 if last in pool else 0
    for ip in pool[start:] + pool[:start]:
        if ip not in taken:
            return ip
    return None


def parse_addresses(ip_output: str) -> list[str]:
    """IPv4 addresses in ``ip -4 -o addr show dev lo`` output.

    >>> parse_addresses("1: lo    inet 127.0.0.1/8 scope host lo\\\\       valid_lft forever\\n"
    ...                 "1: lo    inet 10.244.3.2/32 scope global lo\\\\       valid_lft forever\\n")
    ['127.0.0.1', '10.244.3.2']
    """
    out = []
    for line in ip_output.splitlines():
        words = line.split()
        if "inet" in words:
            out.append(words[words.index("inet") + 1].split("/", 1)[0])
    return out


# --- addresses on lo (I/O) -------------------------------------------------------------------------
class Addresses(Protocol):
    """What the runner and the sandbox need of the host's network: add, remove, list pod addresses."""

    def add(self, ip: str) -> None: ...
    def remove(self, ip: str) -> None: ...
    def addresses(self) -> list[str]: ...


class Loopback:
    """Addresses on ``lo`` through ``ip`` (iproute2). Adding an address that is there, or removing one that is
    not, is not an error (both calls are idempotent, as a level-based loop needs)."""

    def __init__(self, binary: str = "ip", device: str = "lo"):
        self.binary, self.device = binary, device

    def _ip(self, *args: str) -> str:
        try:
            proc = subprocess.run([self.binary, *args], capture_output=True, text=True, timeout=10)
        except FileNotFoundError:
            raise AddressError(f"`{self.binary}` not found (Debian package iproute2)") from None
        except subprocess.TimeoutExpired:
            raise AddressError(f"`{self.binary} {' '.join(args)}` did not finish in 10 s") from None
        if proc.returncode != 0:
            raise AddressError(f"`{self.binary} {' '.join(args)}` failed: {proc.stderr.strip() or proc.returncode}")
        return proc.stdout

    def add(self, ip: str) -> None:
        try:
            self._ip("addr", "add", f"{ip}/32", "dev", self.device)
        except AddressError as exc:
            if "File exists" not in str(exc):
                raise

    def remove(self, ip: str) -> None:
        try:
            self._ip("addr", "del", f"{ip}/32", "dev", self.device)
        except AddressError as exc:
            if "Cannot assign requested address" not in str(exc):
                raise

    def addresses(self) -> list[str]:
        return parse_addresses(self._ip("-4", "-o", "addr", "show", "dev", self.device))


class NoAddresses:
    """For ranges inside 127.0.0.0/8: every such address already answers on ``lo``; nothing to add."""

    def add(self, ip: str) -> None:
        pass

    def remove(self, ip: str) -> None:
        pass

    def addresses(self) -> list[str]:
        return []


def addresses_for(pod_range: PodRange) -> Addresses:
    return NoAddresses() if pod_range.is_loopback else Loopback()


def flush(pod_range: PodRange, addresses: Addresses, keep: Iterable[str] = ()) -> list[str]:
    """Remove every address of ``pod_range`` from ``lo`` except ``keep``; returns those removed."""
    kept = set(keep)
    gone = [ip for ip in addresses.addresses() if pod_range.contains(ip) and ip not in kept]
    for ip in gone:
        addresses.remove(ip)
    return gone


# --- range claims (I/O) ------------------------------------------------------------------------------
def lock_dir() -> Path:
    """``$MODELDEPLOY_POD_RANGE_LOCKS``, else ``/run/modeldeploy/pod-ranges`` (machine-wide, emptied at boot like
    the addresses themselves), else the same under the temp folder when /run is not writable."""
    value = os.environ.get(LOCK_DIR_ENV)
    if value:
        return Path(value)
    run = Path("/run")
    if os.access(run, os.W_OK):
        return run / "modeldeploy" / "pod-ranges"
    return Path(tempfile.gettempdir()) / "modeldeploy-pod-ranges"


@dataclass
class RangeClaim:
    """A held claim: the range and the locked file. Pass ``fileno()`` to the processes that must keep the claim
    alive (``subprocess.Popen(pass_fds=...)``); the claim ends when every holder has closed it."""

    pod_range: PodRange
    path: Path
    handle: IO[str]

    def fileno(self) -> int:
        return self.handle.fileno()

    def release(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.handle.close()


def claim_range(owner: str, directory: Path | None = None,
                candidates: Iterable[PodRange] | None = None) -> RangeClaim:
    """Claim the first free range: an exclusive, non-blocking ``flock`` on ``<dir>/<a.b.c.d>-<prefix>.lock``.
    The file then names ``owner`` (the sandbox's state folder) and this process, for people looking."""
    folder = directory or lock_dir()
    folder.mkdir(parents=True, exist_ok=True)
    for pod_range in candidates if candidates is not None else candidate_ranges():
        path = folder / f"{pod_range.cidr.replace('/', '-')}.lock"
        handle = open(path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"owner": owner, "pid": os.getpid(), "since": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                          time.gmtime())}) + "\n")
        handle.flush()
        return RangeClaim(pod_range, path, handle)
    raise RangeBusy(f"no free pod range in {POD_SUPERNET}: every /{RANGE_PREFIX} is claimed (lock files in {folder})")


def holder(path: Path) -> str:
    """Who a claim file says holds it (best effort, for messages)."""
    try:
        return json.loads(path.read_text()).get("owner", "?")
    except (OSError, ValueError, AttributeError):
        return "?"


def is_claimed(pod_range: PodRange, directory: Path | None = None) -> bool:
    """Whether a live process holds ``pod_range``'s claim (tries the lock without keeping it)."""
    path = (directory or lock_dir()) / f"{pod_range.cidr.replace('/', '-')}.lock"
    if not path.exists():
        return False
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False
