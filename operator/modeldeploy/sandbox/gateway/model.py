"""Gateway API objects -> what the proxy must do, and the status the objects get. Pure.

Input: the Gateway this controller programs, every HTTPRoute, Service, EndpointSlice and ReferenceGrant
(plain dicts as the API returns them). Output: a :class:`ProxyConfig` (an ordered list of request
matches, each naming a backend; backends with weighted servers) and the ``status`` of the Gateway and
of each HTTPRoute that names it. Nothing here knows HAProxy (see :mod:`.haproxy`) or does I/O (see
:mod:`.controller`).

What is implemented of HTTPRoute (standard channel, v1.6):

- parentRefs to the Gateway (optionally a ``sectionName``/``port`` of one of its HTTP listeners), allowed
  by the listener's ``allowedRoutes`` (``All``, ``Same``, ``Selector`` with ``matchLabels``); hostnames
  intersected with the listener's;
- matches: path ``Exact``, ``PathPrefix`` (element-wise: ``/a`` matches ``/a`` and ``/a/b``, not ``/ab``),
  ``RegularExpression``; headers ``Exact``/``RegularExpression``; query parameters; method;
- backendRefs to Services (same namespace, or another one when a ReferenceGrant allows it), weighted:
  each ref's weight is spread evenly over that Service's ready endpoints (:func:`spread_weights`);
- precedence between rules as the spec orders it (:func:`precedence`);
- no match: 404; a rule whose refs all fail to resolve: 500; a backend without ready endpoints: 503.

Not implemented: filters (a route using one is not Accepted: ``UnsupportedValue``), timeouts, retries,
session persistence, HTTPS listeners. Besides routes, every Service is reachable by host
``<service>.<namespace>`` (also ``.svc`` and ``.svc.cluster.local``) on its port named ``http`` (else its
first port), with equal weight per ready endpoint: the sandbox's stand-in for kube-proxy.

Endpoints: ``ready`` ones; when a Service has none, its ``serving`` terminating ones (as kube-proxy does).
Endpoints outside the addresses the proxy can reach (``reachable``: the sandbox's pod range; kwok's
simulated pods have made-up IPs where nothing listens) are left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import reduce
from typing import Any, Callable, Iterable, Mapping, Sequence

GROUP = "gateway.networking.k8s.io"
CONTROLLER_NAME = "modeldeploy.io/sandbox-gateway"
MAX_WEIGHT = 256
"""HAProxy's largest server weight."""
SERVICE_NAME_LABEL = "kubernetes.io/service-name"

Obj = Mapping[str, Any]


@dataclass(frozen=True)
class Server:
    address: str
    port: int
    weight: int
    target: str = ""
    """What answers there (``namespace/pod``), for people reading the config."""


@dataclass(frozen=True)
class Backend:
    name: str
    servers: tuple[Server, ...] = ()
    status: int | None = None
    """A fixed answer instead of servers (500: no backendRef resolved)."""
    source: str = ""


@dataclass(frozen=True)
class Match:
    """One way into one backend; the proxy tries them in order, first hit wins."""

    backend: str
    hostname: str | None = None
    """Exact host, ``*.suffix``, or None for any host."""
    path_type: str = "PathPrefix"
    path: str = "/"
    headers: tuple[tuple[str, str, str], ...] = ()
    """(type, name, value) with type Exact or RegularExpression."""
    query: tuple[tuple[str, str, str], ...] = ()
    method: str | None = None
    ports: tuple[int, ...] = ()
    """Listener ports this match is bound to; empty: every listener."""


@dataclass(frozen=True)
class Listener:
    name: str
    port: int
    protocol: str
    hostname: str | None
    allowed: Mapping[str, Any]


@dataclass(frozen=True)
class ProxyConfig:
    address: str
    ports: tuple[int, ...]
    matches: tuple[Match, ...]
    backends: tuple[Backend, ...]

    def backend(self, name: str) -> Backend:
        return next(b for b in self.backends if b.name == name)


@dataclass
class Result:
    config: ProxyConfig
    route_parents: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    """(namespace, name) of each HTTPRoute naming our Gateway -> its status.parents entries of ours."""
    attached: dict[str, int] = field(default_factory=dict)
    listeners: list[dict[str, Any]] = field(default_factory=list)
    """The Gateway's status.listeners (conditions without timestamps)."""


# --- small helpers ---------------------------------------------------------------------------------
def _meta(obj: Obj) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def _key(obj: Obj) -> tuple[str, str]:
    return _meta(obj).get("namespace", ""), _meta(obj).get("name", "")


def condition(ctype: str, ok: bool, reason: str, message: str = "", generation: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": ctype, "status": "True" if ok else "False", "reason": reason, "message": message}
    if generation is not None:
        out["observedGeneration"] = generation
    return out


def safe_name(*parts: str) -> str:
    """An HAProxy proxy name from Kubernetes names (they already fit HAProxy's alphabet).

    >>> safe_name("route", "t-1", "digits", "0")
    'route_t-1_digits_0'
    """
    return "_".join(parts)


# --- weights ---------------------------------------------------------------------------------------
def spread_weights(groups: Sequence[tuple[int, int]]) -> list[int]:
    """Per-endpoint server weights for backendRefs given as (ref weight, number of ready endpoints): each
    ref's share split evenly over its endpoints, in integers (1..256 for a share above 0) in the same
    proportions, as small as they go.

    >>> spread_weights([(90, 1), (10, 1)])          # a 90/10 canary, one pod each
    [9, 1]
    >>> spread_weights([(90, 2), (10, 1)])          # 45 per stable pod, 10 for the canary's
    [9, 2]
    >>> spread_weights([(1, 3), (1, 1)])            # equal refs: the lone pod takes half
    [1, 3]
    >>> spread_weights([(100, 1), (0, 1)])          # weight 0: no traffic
    [1, 0]
    >>> spread_weights([(999, 1), (1, 7)])          # beyond 256: scaled, the small share kept at 1
    [256, 1]
    """
    nonempty = [n for _, n in groups if n > 0]
    if not nonempty:
        return [0 for _ in groups]
    lcm = reduce(lambda a, b: a * b // math.gcd(a, b), nonempty, 1)
    raw = [w * lcm // n if n > 0 else 0 for w, n in groups]
    positive = [r for r in raw if r > 0]
    if not positive:
        return [0 for _ in groups]
    g = reduce(math.gcd, positive)
    raw = [r // g for r in raw]
    top = max(raw)
    if top <= MAX_WEIGHT:
        return raw
    return [max(1, round(r * MAX_WEIGHT / top)) if r > 0 else 0 for r in raw]


# --- endpoints -------------------------------------------------------------------------------------
def _service_port(service: Obj, port: int | None) -> Mapping[str, Any] | None:
    """The Service port a backendRef's ``port`` names; without one, the port named ``http`` or the first."""
    ports = (service.get("spec") or {}).get("ports") or []
    if port is not None:
        return next((p for p in ports if p.get("port") == port), None)
    return next((p for p in ports if p.get("name") == "http"), ports[0] if ports else None)


def endpoints(service: Obj, port: Mapping[str, Any], slices: Iterable[Obj],
              reachable: Callable[[str], bool]) -> list[tuple[str, int, str]]:
    """(address, port, target pod) of the Service port's ready endpoints, sorted; the serving terminating
    ones when none is ready; unreachable addresses left out.

    >>> svc = {"metadata": {"namespace": "n", "name": "s"}, "spec": {"ports": [{"name": "http", "port": 80}]}}
    >>> sl = {"metadata": {"namespace": "n", "labels": {SERVICE_NAME_LABEL: "s"}},
    ...       "ports": [{"name": "http", "port": 8000}],
    ...       "endpoints": [{"addresses": ["10.244.3.2"], "conditions": {"ready": True}},
    ...                     {"addresses": ["10.244.3.3"], "conditions": {"ready": False, "serving": True,
    ...                                                                  "terminating": True}}]}
    >>> endpoints(svc, svc["spec"]["ports"][0], [sl], lambda ip: True)
    [('10.244.3.2', 8000, '')]
    """
    ns, name = _key(service)
    ready, fallback = set(), set()
    for sl in slices:
        meta = _meta(sl)
        if meta.get("namespace") != ns or (meta.get("labels") or {}).get(SERVICE_NAME_LABEL) != name:
            continue
        if sl.get("addressType", "IPv4") not in ("IPv4", "IPv6"):
            continue
        target_port = next((p.get("port") for p in sl.get("ports") or []
                            if (p.get("name") or "") == (port.get("name") or "")), None)
        if target_port is None:
            continue
        for ep in sl.get("endpoints") or []:
            cond = ep.get("conditions") or {}
            ref = ep.get("targetRef") or {}
            target = f"{ref.get('namespace', ns)}/{ref['name']}" if ref.get("name") else ""
            for address in (ep.get("addresses") or [])[:1]:
                if not reachable(address):
                    continue
                entry = (address, int(target_port), target)
                if cond.get("ready", True) is not False:
                    ready.add(entry)
                elif cond.get("serving") and cond.get("terminating"):
                    fallback.add(entry)
    return sorted(ready or fallback)


# --- hostnames -------------------------------------------------------------------------------------
def host_matches(pattern: str, host: str) -> bool:
    """Whether ``host`` (exact, or a wildcard itself) falls under ``pattern`` (exact or ``*.suffix``).

    >>> host_matches("*.example.com", "a.b.example.com"), host_matches("*.example.com", "example.com")
    (True, False)
    >>> host_matches("a.example.com", "a.example.com"), host_matches("*.example.com", "*.x.example.com")
    (True, True)
    """
    if pattern == host:
        return True
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return False


def effective_hostnames(listener: str | None, route: Sequence[str]) -> list[str | None] | None:
    """The hostnames a route serves on a listener, or None when they do not intersect.

    >>> effective_hostnames(None, []), effective_hostnames("*.ex.com", []), effective_hostnames(None, ["a.b"])
    ([None], ['*.ex.com'], ['a.b'])
    >>> effective_hostnames("*.ex.com", ["a.ex.com", "other.org", "*.ex.com"])
    ['a.ex.com', '*.ex.com']
    >>> effective_hostnames("a.ex.com", ["*.ex.com"]), effective_hostnames("a.ex.com", ["b.ex.com"])
    (['a.ex.com'], None)
    """
    if not route:
        return [listener]
    if listener is None:
        return list(route)
    out: list[str | None] = []
    for host in route:
        if host_matches(listener, host):
            out.append(host)
        elif host_matches(host, listener):
            out.append(listener)
    return out or None


# --- precedence ------------------------------------------------------------------------------------
_PATH_RANK = {"Exact": 0, "RegularExpression": 1, "PathPrefix": 2}


def precedence(match: Match, created: str, route: str, rule: int, index: int, kind: int = 0) -> tuple:
    """Sort key, smallest first: the most specific hostname (exact, then the longest wildcard, then none),
    Exact path, RegularExpression, the longest PathPrefix, a method, most header matches, most query
    matches; ties go to the oldest route, then ``namespace/name``, then rule and match order
    (Gateway API's HTTPRoute precedence). ``kind`` 1 puts Services after routes on a tie.

    >>> a = precedence(Match("x", path="/v2"), "2026-01-02T00:00:00Z", "n/a", 0, 0)
    >>> b = precedence(Match("x", path="/v2/models"), "2026-01-03T00:00:00Z", "n/b", 0, 0)
    >>> c = precedence(Match("x", hostname="h.n", path="/"), "2026-01-04T00:00:00Z", "n/c", 0, 0)
    >>> sorted([a, b, c]) == [c, b, a]
    True
    """
    host = match.hostname
    host_rank = (2, 0) if host is None else ((1, -len(host)) if host.startswith("*.") else (0, -len(host)))
    return (host_rank, _PATH_RANK.get(match.path_type, 3), -len(match.path), 0 if match.method else 1,
            -len(match.headers), -len(match.query), kind, created, route, rule, index)


# --- listeners and parents -------------------------------------------------------------------------
def listeners_of(gateway: Obj) -> list[Listener]:
    out = []
    for item in (gateway.get("spec") or {}).get("listeners") or []:
        out.append(Listener(item["name"], int(item["port"]), item.get("protocol", "HTTP"), item.get("hostname"),
                            (item.get("allowedRoutes") or {}).get("namespaces") or {}))
    return out


def _namespace_allowed(allowed: Mapping[str, Any], gateway_ns: str, route_ns: str,
                       namespace_labels: Mapping[str, Mapping[str, str]]) -> bool:
    source = allowed.get("from", "Same")
    if source == "All":
        return True
    if source == "Same":
        return route_ns == gateway_ns
    if source == "Selector":
        selector = allowed.get("selector") or {}
        labels = namespace_labels.get(route_ns, {})
        if selector.get("matchExpressions"):
            return False  # not implemented: refuse rather than guess
        return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())
    return False


def _refers_to(parent: Mapping[str, Any], route_ns: str, gateway: Obj) -> bool:
    gns, gname = _key(gateway)
    return (parent.get("group", GROUP) == GROUP and parent.get("kind", "Gateway") == "Gateway"
            and parent.get("name") == gname and parent.get("namespace", route_ns) == gns)


def _granted(grants: Iterable[Obj], route_ns: str, target_ns: str, service: str) -> bool:
    """A ReferenceGrant in ``target_ns`` lets HTTPRoutes of ``route_ns`` refer to the Service."""
    for grant in grants:
        if _meta(grant).get("namespace") != target_ns:
            continue
        spec = grant.get("spec") or {}
        sources = any(f.get("group") == GROUP and f.get("kind") == "HTTPRoute" and f.get("namespace") == route_ns
                      for f in spec.get("from") or [])
        targets = any((t.get("group") or "") == "" and t.get("kind") == "Service" and t.get("name") in (None, service)
                      for t in spec.get("to") or [])
        if sources and targets:
            return True
    return False


# --- the whole thing ------------------------------------------------------------------------------
def build(gateway: Obj, address: str, routes: Iterable[Obj], services: Iterable[Obj], slices: Iterable[Obj],
          grants: Iterable[Obj] = (), namespace_labels: Mapping[str, Mapping[str, str]] | None = None,
          reachable: Callable[[str], bool] = lambda ip: True) -> Result:
    """The proxy configuration and the statuses for ``gateway`` (served on ``address``)."""
    gns, _ = _key(gateway)
    listeners = listeners_of(gateway)
    http = [lst for lst in listeners if lst.protocol == "HTTP"]
    services_by_key = {_key(s): s for s in services}
    slices = list(slices)
    labels = namespace_labels or {}
    entries: list[tuple[tuple, Match]] = []
    backends: list[Backend] = []
    result = Result(ProxyConfig(address, (), (), ()))
    attached = {lst.name: 0 for lst in listeners}

    for route in sorted(routes, key=_key):
        rns, rname = _key(route)
        generation = _meta(route).get("generation")
        spec = route.get("spec") or {}
        ours = [p for p in spec.get("parentRefs") or [] if _refers_to(p, rns, gateway)]
        if not ours:
            continue
        rules = spec.get("rules") or [{}]
        resolved, resolve_reason, resolve_msg, rule_backends = _resolve_rules(
            route, rules, services_by_key, slices, grants, reachable)
        unsupported = [i for i, r in enumerate(rules)
                       if r.get("filters") or any(b.get("filters") for b in r.get("backendRefs") or [])]
        parents = []
        for parent in ours:
            candidates = [lst for lst in http if parent.get("sectionName") in (None, lst.name)
                          and parent.get("port") in (None, lst.port)]
            if not candidates:
                what = parent.get("sectionName") or parent.get("port")
                accepted = condition("Accepted", False, "NoMatchingParent",
                                     f"the Gateway has no HTTP listener {what!r}", generation)
            elif unsupported:
                accepted = condition("Accepted", False, "UnsupportedValue",
                                     f"rule(s) {unsupported}: filters are not supported by the sandbox gateway",
                                     generation)
            else:
                allowed = [lst for lst in candidates if _namespace_allowed(lst.allowed, gns, rns, labels)]
                hosted = [(lst, h) for lst in allowed
                          if (h := effective_hostnames(lst.hostname, spec.get("hostnames") or [])) is not None]
                if not allowed:
                    accepted = condition("Accepted", False, "NotAllowedByListeners",
                                         f"no listener allows routes from namespace {rns!r}", generation)
                elif not hosted:
                    accepted = condition("Accepted", False, "NoMatchingListenerHostname",
                                         "no hostname of the route matches a listener's hostname", generation)
                else:
                    accepted = condition("Accepted", True, "Accepted", "programmed into the sandbox gateway",
                                         generation)
                    for lst, hostnames in hosted:
                        attached[lst.name] += 1
                        ports = (lst.port,) if len({x.port for x in http}) > 1 else ()
                        for i, rule in enumerate(rules):
                            backend = rule_backends[i].name
                            for j, m in enumerate(rule.get("matches") or [{}]):
                                for host in hostnames:
                                    match = _match(m, backend, host, ports)
                                    entries.append((precedence(match, _meta(route).get("creationTimestamp", ""),
                                                               f"{rns}/{rname}", i, j), match))
            refs = condition("ResolvedRefs", resolved, resolve_reason, resolve_msg, generation)
            parents.append({"parentRef": dict(parent), "controllerName": CONTROLLER_NAME,
                            "conditions": [accepted, refs]})
        result.route_parents[(rns, rname)] = parents
        if any(p["conditions"][0]["status"] == "True" for p in parents):
            backends.extend(rule_backends)

    for service in sorted(services_by_key.values(), key=_key):
        sns, sname = _key(service)
        if not (service.get("spec") or {}).get("selector"):
            continue  # no selector: endpoints are someone else's (e.g. `kubernetes`)
        port = _service_port(service, None)
        if port is None:
            continue
        eps = endpoints(service, port, slices, reachable)
        backend = Backend(safe_name("svc", sns, sname),
                          tuple(Server(a, p, 1, t) for a, p, t in eps), source=f"Service {sns}/{sname}")
        backends.append(backend)
        for host in (f"{sname}.{sns}", f"{sname}.{sns}.svc", f"{sname}.{sns}.svc.cluster.local"):
            match = Match(backend.name, hostname=host)
            entries.append((precedence(match, "", f"{sns}/{sname}", 0, 0, kind=1), match))

    entries.sort(key=lambda e: e[0])
    result.config = ProxyConfig(address, tuple(sorted({lst.port for lst in http})),
                                tuple(m for _, m in entries), tuple(backends))
    result.attached = attached
    result.listeners = [_listener_status(lst, attached[lst.name]) for lst in listeners]
    return result


def _match(m: Mapping[str, Any], backend: str, host: str | None, ports: tuple[int, ...]) -> Match:
    path = m.get("path") or {}
    path_type, value = path.get("type", "PathPrefix"), path.get("value", "/")
    if path_type == "PathPrefix" and value != "/":
        value = value.rstrip("/") or "/"
    return Match(
        backend=backend, hostname=host, path_type=path_type, path=value,
        headers=tuple((h.get("type", "Exact"), h["name"], h["value"]) for h in m.get("headers") or []),
        query=tuple((q.get("type", "Exact"), q["name"], q["value"]) for q in m.get("queryParams") or []),
        method=m.get("method"), ports=ports,
    )


def _resolve_rules(route: Obj, rules: Sequence[Mapping[str, Any]], services: Mapping[tuple[str, str], Obj],
                   slices: Sequence[Obj], grants: Iterable[Obj],
                   reachable: Callable[[str], bool]) -> tuple[bool, str, str, list[Backend]]:
    """Backends of the route's rules, and the ResolvedRefs verdict (the first problem found names it)."""
    rns, rname = _key(route)
    problem: tuple[str, str] | None = None
    backends = []
    for i, rule in enumerate(rules):
        groups: list[tuple[int, list[tuple[str, int, str]]]] = []
        for ref in rule.get("backendRefs") or []:
            group, kind = ref.get("group", ""), ref.get("kind", "Service")
            tns, name = ref.get("namespace", rns), ref.get("name", "")
            if group != "" or kind != "Service":
                problem = problem or ("InvalidKind", f"rule {i}: backendRef {group or 'core'}/{kind} {name!r}: "
                                                     "only Services are supported")
                continue
            if tns != rns and not _granted(grants, rns, tns, name):
                problem = problem or ("RefNotPermitted", f"rule {i}: Service {tns}/{name}: no ReferenceGrant in "
                                                         f"{tns} allows HTTPRoutes from {rns}")
                continue
            service = services.get((tns, name))
            if service is None:
                problem = problem or ("BackendNotFound", f"rule {i}: Service {tns}/{name} not found")
                continue
            port = _service_port(service, ref.get("port"))
            if port is None:
                problem = problem or ("BackendNotFound", f"rule {i}: Service {tns}/{name} has no port "
                                                         f"{ref.get('port')}")
                continue
            groups.append((int(ref.get("weight", 1)), endpoints(service, port, slices, reachable)))
        weights = spread_weights([(w, len(eps)) for w, eps in groups])
        servers = {}
        for (_, eps), weight in zip(groups, weights):
            for address, port, target in eps:
                key = (address, port)
                prev = servers.get(key)
                servers[key] = Server(address, port, weight + (prev.weight if prev else 0), target)
        # No backendRef resolved (or none given): the rule answers 500, as the spec asks. Resolved refs
        # without a ready endpoint leave the backend empty: the proxy answers 503.
        backends.append(Backend(safe_name("route", rns, rname, str(i)),
                                tuple(sorted(servers.values(), key=lambda s: (s.address, s.port))),
                                status=None if groups else 500, source=f"HTTPRoute {rns}/{rname} rule {i}"))
    if problem:
        return False, problem[0], problem[1], backends
    return True, "ResolvedRefs", "all backendRefs resolved", backends


def _listener_status(lst: Listener, attached: int) -> dict[str, Any]:
    ok = lst.protocol == "HTTP"
    reason = "Accepted" if ok else "UnsupportedProtocol"
    message = "" if ok else f"protocol {lst.protocol} is not supported by the sandbox gateway (HTTP only)"
    return {
        "name": lst.name,
        "supportedKinds": [{"group": GROUP, "kind": "HTTPRoute"}] if ok else [],
        "attachedRoutes": attached,
        "conditions": [condition("Accepted", ok, reason, message),
                       condition("Programmed", ok, "Programmed" if ok else "Invalid", message),
                       condition("ResolvedRefs", True, "ResolvedRefs"),
                       condition("Conflicted", False, "NoConflicts")],
    }


# --- status ----------------------------------------------------------------------------------------
def with_times(new: list[dict[str, Any]], old: Iterable[Mapping[str, Any]], now: str) -> list[dict[str, Any]]:
    """Conditions stamped with ``lastTransitionTime``, kept from ``old`` where the status did not change.

    >>> with_times([{"type": "A", "status": "True"}], [{"type": "A", "status": "True", "lastTransitionTime": "t0"}], "t1")
    [{'type': 'A', 'status': 'True', 'lastTransitionTime': 't0'}]
    """
    before = {c.get("type"): c for c in old}
    out = []
    for cond in new:
        prev = before.get(cond["type"])
        keep = prev is not None and prev.get("status") == cond["status"] and prev.get("lastTransitionTime")
        out.append({**cond, "lastTransitionTime": prev["lastTransitionTime"] if keep else now})  # type: ignore[index]
    return out


def route_status(route: Obj, ours: list[dict[str, Any]], now: str) -> dict[str, Any]:
    """The route's whole ``status.parents``: other controllers' entries kept, ours replaced (timestamps kept
    where a condition did not change)."""
    old = [p for p in ((route.get("status") or {}).get("parents") or [])]
    others = [p for p in old if p.get("controllerName") != CONTROLLER_NAME]
    mine_before = {repr(sorted(p.get("parentRef", {}).items())): p for p in old
                   if p.get("controllerName") == CONTROLLER_NAME}
    new = []
    for entry in ours:
        prev = mine_before.get(repr(sorted(entry["parentRef"].items())), {})
        new.append({**entry, "conditions": with_times(entry["conditions"], prev.get("conditions") or [], now)})
    return {"parents": others + new}


def gateway_status(gateway: Obj, result: Result, programmed: bool, message: str, now: str) -> dict[str, Any]:
    old = gateway.get("status") or {}
    generation = _meta(gateway).get("generation")
    conds = [condition("Accepted", True, "Accepted", "", generation),
             condition("Programmed", programmed, "Programmed" if programmed else "Pending", message, generation)]
    old_listeners = {lst.get("name"): lst for lst in old.get("listeners") or []}
    listeners = []
    for lst in result.listeners:
        prev = old_listeners.get(lst["name"], {})
        listeners.append({**lst, "conditions": with_times(
            [{**c, "observedGeneration": generation} if generation is not None else c for c in lst["conditions"]],
            prev.get("conditions") or [], now)})
    return {"addresses": [{"type": "IPAddress", "value": result.config.address}],
            "conditions": with_times(conds, old.get("conditions") or [], now), "listeners": listeners}


def class_status(gateway_class: Obj, now: str) -> dict[str, Any]:
    generation = _meta(gateway_class).get("generation")
    old = (gateway_class.get("status") or {}).get("conditions") or []
    return {"conditions": with_times([condition("Accepted", True, "Accepted", "handled by the sandbox gateway",
                                                generation)], old, now)}


def _strip_times(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_times(v) for k, v in value.items() if k != "lastTransitionTime"}
    if isinstance(value, list):
        return [_strip_times(v) for v in value]
    return value


def status_changed(stored: Mapping[str, Any] | None, computed: Mapping[str, Any]) -> bool:
    """Whether writing ``computed`` changes anything but timestamps (only the keys we write)."""
    stored = stored or {}
    return any(_strip_times(stored.get(k)) != _strip_times(v) for k, v in computed.items())
