"""Typed, defaulted view of ``spec.rollout.canary``: steps, traffic routing and analysis. Pure.

Why a module of its own: the canary is the largest part of the spec and the one with the most
cross-field rules (a metric must name a limit, a custom query must be per revision, analysis and its
opt-out exclude each other), and three parts of the operator read it — the step machine
(policy/canary.py), the analysis verdict (policy/analysis.py) and the metrics reader
(reconcile/analysis.py). ``parse_canary`` applies the same defaults as the CRD and raises
:class:`~modeldeploy.api.spec.SpecError` naming the field, like ``parse_spec`` (which calls it).

Safe by default: without an ``analysis`` block a canary is still judged, by the built-in checks
:data:`DEFAULT_METRICS` (error rate at most 1.5x stable's, p99 latency at most 1.2x stable's); the
only way to promote unjudged is ``skipAnalysis: true``, which cannot be combined with ``analysis``.

Worked example::

    steps: [{setWeight: 10}, {pause: {duration: 1m}}, {setWeight: 50}, {pause: {}}]
    trafficRouting: {parentRefs: [{name: gw}], headerMatch: {name: x-canary, value: "1"}}

parses to four steps (weight 10, a 60 s pause, weight 50, a pause until promoted by hand), Gateway
API routing through Gateway ``gw`` with requests carrying ``x-canary: 1`` sent to the canary at any
weight, and the default analysis (every 10 s, over at most the last 5 min, at least 100 canary
requests before a step may pass, the two default checks at significance 0.005 each).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Union

# A module import, not `from ... import SpecError`: api/spec.py imports this module, and this way either
# may be imported first without a circular-import error.
from modeldeploy.api import spec as _spec

PATH = "spec.rollout.canary"

# Built-in metrics, computed per revision from Triton's own series (render/promql.py, policy/analysis.py).
ERROR_RATE = "errorRate"  # failed / all requests, limits in percent
LATENCY_P99 = "latencyP99"  # request latency p99 (Triton's summary), limits in milliseconds
LATENCY_MEAN = "latencyMean"  # mean request latency (duration / count counters), milliseconds
QUEUE_TIME = "queueTime"  # mean time waiting in Triton's queue, milliseconds
THROUGHPUT = "throughput"  # requests per second per ready pod
BUILTIN_METRICS = (ERROR_RATE, LATENCY_P99, LATENCY_MEAN, QUEUE_TIME, THROUGHPUT)

#: Which limits each kind of metric takes ("custom" = a PromQL query).
ALLOWED_LIMITS = {
    ERROR_RATE: ("max", "maxRatio"),
    LATENCY_P99: ("max", "maxRatio"),
    LATENCY_MEAN: ("max", "maxRatio"),
    QUEUE_TIME: ("max", "maxRatio"),
    THROUGHPUT: ("min", "minRatio"),
    "custom": ("max", "min", "maxRatio", "minRatio"),
}

PLACEHOLDERS = ("namespace", "revision", "model")
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_DURATION = re.compile(r"^(?:[0-9]+(?:\.[0-9]+)?(?:ms|s|m|h))+$")
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$")
_METRIC_NAME = re.compile(r"^[a-z][A-Za-z0-9-]{0,62}$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@dataclass(frozen=True)
class SetWeight:
    """Send ``weight`` percent of the traffic to the canary."""

    weight: int


@dataclass(frozen=True)
class Pause:
    """Wait ``seconds``; ``None``: wait until promoted by hand (``modeldeploy promote``)."""

    seconds: float | None = None

    @property
    def indefinite(self) -> bool:
        return self.seconds is None


Step = Union[SetWeight, Pause]


@dataclass(frozen=True)
class ParentRef:
    """A Gateway API parentRef of the HTTPRoute the operator owns for the model."""

    name: str
    namespace: str | None = None
    section_name: str | None = None
    port: int | None = None
    group: str = "gateway.networking.k8s.io"
    kind: str = "Gateway"

    def as_gateway_api(self) -> dict[str, Any]:
        out: dict[str, Any] = {"group": self.group, "kind": self.kind, "name": self.name}
        if self.namespace:
            out["namespace"] = self.namespace
        if self.section_name:
            out["sectionName"] = self.section_name
        if self.port is not None:
            out["port"] = self.port
        return out


@dataclass(frozen=True)
class HeaderMatch:
    """Requests whose header ``name`` matches ``value`` go to the canary at any weight (A/B testing)."""

    name: str
    value: str
    type: str = "Exact"  # or RegularExpression (Gateway API HTTPHeaderMatch)

    def as_gateway_api(self) -> dict[str, Any]:
        return {"type": self.type, "name": self.name, "value": self.value}


@dataclass(frozen=True)
class TrafficRouting:
    """Gateway API routing: an HTTPRoute with weighted stable/canary backendRefs under ``parent_refs``."""

    parent_refs: tuple[ParentRef, ...]
    hostnames: tuple[str, ...] = ()
    header_match: HeaderMatch | None = None


@dataclass(frozen=True)
class MetricCheck:
    """One analysis check. Limits are in the user's units: percent (errorRate), milliseconds
    (latencies, queue time), requests/s per pod (throughput), the query's own unit (custom)."""

    name: str
    query: str | None = None  # custom PromQL with {{namespace}}, {{revision}}, {{model}}
    max: float | None = None
    min: float | None = None
    max_ratio: float | None = None  # canary <= max_ratio x stable
    min_ratio: float | None = None  # canary >= min_ratio x stable

    @property
    def kind(self) -> str:
        return "custom" if self.query is not None else self.name

    @property
    def relative(self) -> bool:
        return self.max_ratio is not None or self.min_ratio is not None

    def limits(self) -> str:
        """The limits in words, e.g. "<= 1.5x stable, <= 2%"."""
        unit = {ERROR_RATE: "%", LATENCY_P99: " ms", LATENCY_MEAN: " ms", QUEUE_TIME: " ms",
                THROUGHPUT: " req/s"}.get(self.kind, "")
        words = []
        if self.max_ratio is not None:
            words.append(f"<= {self.max_ratio:g}x stable")
        if self.min_ratio is not None:
            words.append(f">= {self.min_ratio:g}x stable")
        if self.max is not None:
            words.append(f"<= {self.max:g}{unit}")
        if self.min is not None:
            words.append(f">= {self.min:g}{unit}")
        return ", ".join(words)


#: The request-latency summary quantiles (quantile, rank error) the operator asks Triton for
#: (``--metrics-config=summary_quantiles=...``): Triton's defaults (0.5, 0.9, 0.95, 0.99, 0.999) plus 0.97 and
#: 0.98. The p99 check counts the requests a quantile reading above the limit proves slower (at least
#: 1 - q - error of them); with nothing between 0.95 and 0.99 a canary whose slow band is 1-5 % of its requests
#: could not be told from one within the limit (the sandbox e2e found p99 x1.5 canaries passing for minutes).
SUMMARY_QUANTILES: tuple[tuple[float, float], ...] = (
    (0.5, 0.05), (0.9, 0.01), (0.95, 0.001), (0.97, 0.001), (0.98, 0.001), (0.99, 0.001), (0.999, 0.001))


def summary_quantiles_flag() -> str:
    """The value of Triton's ``summary_quantiles`` metrics setting for :data:`SUMMARY_QUANTILES`.

    >>> summary_quantiles_flag()
    '0.5:0.05,0.9:0.01,0.95:0.001,0.97:0.001,0.98:0.001,0.99:0.001,0.999:0.001'
    """
    return ",".join(f"{q:g}:{e:g}" for q, e in SUMMARY_QUANTILES)


#: What is judged when the canary has no ``analysis.metrics``.
DEFAULT_METRICS = (
    MetricCheck(ERROR_RATE, max_ratio=1.5),
    MetricCheck(LATENCY_P99, max_ratio=1.2),
)


@dataclass(frozen=True)
class AnalysisSpec:
    interval_seconds: float = 10.0
    window_seconds: float = 300.0
    min_requests: int = 100
    failure_limit: int = 0
    significance: float = 0.005
    metrics_outage_limit_seconds: float | None = None
    metrics: tuple[MetricCheck, ...] = DEFAULT_METRICS


@dataclass(frozen=True)
class CanarySpec:
    steps: tuple[Step, ...]
    traffic_routing: TrafficRouting | None = None
    analysis: AnalysisSpec | None = field(default_factory=AnalysisSpec)  # None only with skipAnalysis
    progress_deadline_seconds: int = 600

    @property
    def skip_analysis(self) -> bool:
        return self.analysis is None


def _err(path: str, message: str) -> Exception:
    return _spec.SpecError(path, message)


def parse_duration(value: Any, path: str) -> float:
    """Seconds in a Go-style duration ("30s", "5m", "1h30m", "500ms").

    >>> parse_duration("1h30m", "x"), parse_duration("1.5s", "x"), parse_duration("250ms", "x")
    (5400.0, 1.5, 0.25)
    """
    if not isinstance(value, str) or not _DURATION.match(value):
        raise _err(path, f"must be a duration such as 30s, 5m or 1h30m, got {value!r}")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(value))


def _number(value: Any, path: str, *, minimum: float | None = None, maximum: float | None = None,
            exclusive_minimum: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _err(path, f"must be a number, got {value!r}")
    value = float(value)
    if minimum is not None and (value < minimum or (exclusive_minimum and value == minimum)):
        raise _err(path, f"must be {'>' if exclusive_minimum else '>='} {minimum:g}, got {value:g}")
    if maximum is not None and value > maximum:
        raise _err(path, f"must be <= {maximum:g}, got {value:g}")
    return value


def _int(value: Any, path: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _err(path, f"must be an integer, got {value!r}")
    if value < minimum:
        raise _err(path, f"must be >= {minimum}, got {value}")
    return value


def _mapping(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _err(path, f"must be an object, got {value!r}")
    return value


def _string(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value:
        raise _err(path, "must be a non-empty string")
    return value


def _steps(items: Any) -> tuple[Step, ...]:
    path = f"{PATH}.steps"
    if not isinstance(items, (list, tuple)) or not items:
        raise _err(path, "must list at least one step (setWeight or pause)")
    if len(items) > 32:
        raise _err(path, f"has {len(items)} steps; at most 32")
    steps: list[Step] = []
    for i, item in enumerate(items):
        at = f"{path}[{i}]"
        item = _mapping(item, at)
        if ("setWeight" in item) == ("pause" in item):
            raise _err(at, "must set exactly one of setWeight or pause")
        if "setWeight" in item:
            weight = item["setWeight"]
            if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 100:
                raise _err(f"{at}.setWeight", f"must be an integer from 0 to 100, got {weight!r}")
            steps.append(SetWeight(weight))
        else:
            pause = _mapping(item["pause"] or {}, f"{at}.pause")
            duration = pause.get("duration")
            steps.append(Pause(None if duration is None else parse_duration(duration, f"{at}.pause.duration")))
    return tuple(steps)


def _traffic_routing(data: Any) -> TrafficRouting:
    path = f"{PATH}.trafficRouting"
    data = _mapping(data, path)
    refs = data.get("parentRefs")
    if not isinstance(refs, (list, tuple)) or not refs:
        raise _err(f"{path}.parentRefs", "must name at least one Gateway")
    if len(refs) > 32:
        raise _err(f"{path}.parentRefs", f"has {len(refs)} entries; at most 32")
    parents = []
    for i, ref in enumerate(refs):
        at = f"{path}.parentRefs[{i}]"
        ref = _mapping(ref, at)
        name = _string(ref.get("name"), f"{at}.name")
        if not _DNS_SUBDOMAIN.match(name) or len(name) > 253:
            raise _err(f"{at}.name", f"must be a DNS subdomain name, got {name!r}")
        namespace = ref.get("namespace")
        if namespace is not None and (not isinstance(namespace, str) or not _DNS_LABEL.match(namespace)
                                      or len(namespace) > 63):
            raise _err(f"{at}.namespace", f"must be a namespace name, got {namespace!r}")
        section = ref.get("sectionName")
        if section is not None and (not isinstance(section, str) or not _DNS_SUBDOMAIN.match(section)):
            raise _err(f"{at}.sectionName", f"must be a listener name, got {section!r}")
        port = ref.get("port")
        if port is not None:
            port = _int(port, f"{at}.port", 1)
            if port > 65535:
                raise _err(f"{at}.port", f"must be <= 65535, got {port}")
        parents.append(ParentRef(name=name, namespace=namespace, section_name=section, port=port,
                                 group=ref.get("group") or "gateway.networking.k8s.io",
                                 kind=ref.get("kind") or "Gateway"))
    hostnames = data.get("hostnames") or ()
    for i, host in enumerate(hostnames):
        if not isinstance(host, str) or not host or len(host) > 253:
            raise _err(f"{path}.hostnames[{i}]", f"must be a hostname, got {host!r}")
    header = None
    if data.get("headerMatch") is not None:
        at = f"{path}.headerMatch"
        match = _mapping(data["headerMatch"], at)
        name = _string(match.get("name"), f"{at}.name")
        if not _HEADER_NAME.match(name) or len(name) > 256:
            raise _err(f"{at}.name", f"must be an HTTP header name, got {name!r}")
        value = match.get("value")
        if not isinstance(value, str) or not value or len(value) > 256:
            raise _err(f"{at}.value", "must be a non-empty string of at most 256 characters")
        kind = match.get("type", "Exact")
        if kind not in ("Exact", "RegularExpression"):
            raise _err(f"{at}.type", f"must be Exact or RegularExpression, got {kind!r}")
        header = HeaderMatch(name=name, value=value, type=kind)
    return TrafficRouting(parent_refs=tuple(parents), hostnames=tuple(hostnames), header_match=header)


def _metric(item: Any, at: str) -> MetricCheck:
    item = _mapping(item, at)
    name = _string(item.get("name"), f"{at}.name")
    query = item.get("query")
    if query is None:
        if name not in BUILTIN_METRICS:
            raise _err(f"{at}.name", f"{name!r} is not a built-in metric ({', '.join(BUILTIN_METRICS)}); "
                                          "a custom metric needs a query")
        kind = name
    else:
        if name in BUILTIN_METRICS:
            raise _err(f"{at}.query", f"{name!r} is a built-in metric and takes no query; "
                                           "give the custom metric another name")
        if not _METRIC_NAME.match(name):
            raise _err(f"{at}.name", f"must start with a lowercase letter and hold letters, digits or -, "
                                          f"at most 63 characters, got {name!r}")
        query = _string(query, f"{at}.query")
        used = set(_PLACEHOLDER.findall(query))
        unknown = sorted(used - set(PLACEHOLDERS))
        if unknown:
            raise _err(f"{at}.query", f"unknown placeholder {{{{{unknown[0]}}}}}; "
                                           f"known: {', '.join('{{' + p + '}}' for p in PLACEHOLDERS)}")
        if "revision" not in used:
            raise _err(f"{at}.query", "must select one revision with {{revision}} "
                                           "(it is evaluated once for the canary and once for stable)")
        kind = "custom"
    allowed = ALLOWED_LIMITS[kind]
    limits: dict[str, float] = {}
    for key in ("max", "min", "maxRatio", "minRatio"):
        if key not in item or item[key] is None:
            continue
        if key not in allowed:
            raise _err(f"{at}.{key}", f"does not apply to {name}; it takes {' or '.join(allowed)}")
        if key.endswith("Ratio"):
            limits[key] = _number(item[key], f"{at}.{key}", minimum=0.0, exclusive_minimum=True)
        elif kind == ERROR_RATE:
            limits[key] = _number(item[key], f"{at}.{key}", minimum=0.0, maximum=100.0)
        elif kind == "custom":
            limits[key] = _number(item[key], f"{at}.{key}")
        else:
            limits[key] = _number(item[key], f"{at}.{key}", minimum=0.0)
    if not limits:
        raise _err(at, f"{name} needs a limit: {' and/or '.join(allowed)}")
    if "min" in limits and "max" in limits and limits["min"] > limits["max"]:
        raise _err(f"{at}.min", f"({limits['min']:g}) must be <= {at}.max ({limits['max']:g})")
    return MetricCheck(name=name, query=query, max=limits.get("max"), min=limits.get("min"),
                       max_ratio=limits.get("maxRatio"), min_ratio=limits.get("minRatio"))


def _analysis(data: Any) -> AnalysisSpec:
    path = f"{PATH}.analysis"
    data = _mapping(data, path)
    interval = parse_duration(data.get("interval", "10s"), f"{path}.interval")
    if interval < 1:
        raise _err(f"{path}.interval", f"must be at least 1s, got {data.get('interval')}")
    window = parse_duration(data.get("window", "5m"), f"{path}.window")
    if window < interval:
        raise _err(f"{path}.window", f"({data.get('window', '5m')}) must be at least {path}.interval "
                                          f"({data.get('interval', '10s')})")
    outage = data.get("metricsOutageLimit")
    metrics_data = data.get("metrics")
    if metrics_data is None:
        metrics = DEFAULT_METRICS
    else:
        if not isinstance(metrics_data, (list, tuple)) or not metrics_data:
            raise _err(f"{path}.metrics", "must list at least one metric (to promote unjudged, set "
                                               f"{PATH}.skipAnalysis: true instead)")
        metrics = tuple(_metric(m, f"{path}.metrics[{i}]") for i, m in enumerate(metrics_data))
        seen: set[str] = set()
        for i, m in enumerate(metrics):
            if m.name in seen:
                raise _err(f"{path}.metrics[{i}].name", f"{m.name!r} is listed twice")
            seen.add(m.name)
    return AnalysisSpec(
        interval_seconds=interval,
        window_seconds=window,
        min_requests=_int(data.get("minRequests", 100), f"{path}.minRequests", 1),
        failure_limit=_int(data.get("failureLimit", 0), f"{path}.failureLimit", 0),
        significance=_number(data.get("significance", 0.005), f"{path}.significance", minimum=0.0,
                             maximum=0.5, exclusive_minimum=True),
        metrics_outage_limit_seconds=None if outage is None else parse_duration(outage, f"{path}.metricsOutageLimit"),
        metrics=metrics,
    )


def parse_canary(data: Mapping[str, Any] | None) -> CanarySpec:
    """Parse and default ``spec.rollout.canary``; raise SpecError naming the field when it cannot be served."""
    if data is None:
        raise _err(f"{PATH}.steps", "is required when spec.rollout.strategy is Canary")
    data = _mapping(data, PATH)
    skip = data.get("skipAnalysis", False)
    if not isinstance(skip, bool):
        raise _err(f"{PATH}.skipAnalysis", f"must be true or false, got {skip!r}")
    if skip and data.get("analysis") is not None:
        raise _err(f"{PATH}.skipAnalysis", f"is true but {PATH}.analysis is set: choose one")
    routing = data.get("trafficRouting")
    return CanarySpec(
        steps=_steps(data.get("steps")),
        traffic_routing=None if routing is None else _traffic_routing(routing),
        analysis=None if skip else _analysis(data.get("analysis") or {}),
        progress_deadline_seconds=_int(data.get("progressDeadlineSeconds", 600),
                                       f"{PATH}.progressDeadlineSeconds", 1),
    )


def render_query(query: str, *, namespace: str, revision: str, model: str) -> str:
    """A custom query with its placeholders filled in. Values are substituted as they are, inside the
    quotes the user wrote: a namespace, a revision hash and a Triton model name hold no quote or
    backslash (their own validation), so they cannot break out of a PromQL string.

    >>> render_query('x{namespace="{{namespace}}",revision="{{ revision }}"}', namespace="ns",
    ...              revision="abc", model="m")
    'x{namespace="ns",revision="abc"}'
    """
    values = {"namespace": namespace, "revision": revision, "model": model}
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], query)
