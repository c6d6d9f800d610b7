"""Kubernetes' own syntax rules for names, labels, quantities, images and scheduling fields, in Python.

Why: a spec the CRD accepts but from which no valid child can be built (a Service for a ModelDeployment
named ``7digits``, a label ``k-``, a toleration with a value and operator Exists) used to retry forever as
ApplyFailed. The CRD now refuses such specs at ``kubectl apply`` (its CEL rules and patterns say the same
as these functions); ``parse_spec`` checks them again with these functions, because objects stored before
a rule existed, dry-run clients and unit tests bypass the API server, and the renderers must only ever
see what Kubernetes will accept. The tests check every rendered child with the same predicates.

The rules are those of k8s.io/apimachinery ``pkg/util/validation`` and k8s.io/kubernetes
``pkg/apis/core/validation`` (v1.35): ``IsDNS1035Label``, ``IsDNS1123Subdomain``, ``IsQualifiedName``,
``IsValidLabelValue``, ``ValidateTolerations``, ``ValidateNodeSelectorRequirement``, ``validatePodAffinityTerm``,
``ValidateLabelSelector``, resource.Quantity's grammar; image references follow the grammar of
github.com/distribution/reference. Where Kubernetes tolerates a value only in some contexts (an invalid label
value in a *preferred* node affinity term), the stricter rule is applied everywhere.

Each check returns an error message or None; ``check_*`` helpers that walk a structure return
``(field path, message)`` pairs, so callers name the offending field.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, Iterator, Mapping

DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_NAME_PART = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
#: Triton model name: a folder name and a URL path segment; a label value once fitted to 63 characters.
MODEL_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?")
MODEL_NAME_MAX = 128
#: resource.Quantity without a sign (requests and limits are never negative): 4, 500m, 1.5Gi, 1e3.
QUANTITY = re.compile(r"\+?([0-9]+(\.[0-9]*)?|\.[0-9]+)([KMGTPE]i|[numkMGTPE]|[eE][+-]?[0-9]+)?")
_IMAGE_NAME = (r"(((?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*"
               r"[a-zA-Z0-9]))*|\[[a-fA-F0-9:]+\])(:[0-9]+)?/)?[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*"
               r"(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*")
#: An image reference (distribution/reference): [host[:port]/]path[:tag][@digest].
IMAGE = re.compile(_IMAGE_NAME + r"(:[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,127})?(@[A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?")
IMAGE_NAME_MAX = 255

_BINARY = {"Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "Pi": 2 ** 50, "Ei": 2 ** 60}
_DECIMAL = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1), "k": Decimal("1e3"),
            "M": Decimal("1e6"), "G": Decimal("1e9"), "T": Decimal("1e12"), "P": Decimal("1e15"), "E": Decimal("1e18")}
INT64_MAX = 2 ** 63 - 1
INT32_MAX = 2 ** 31 - 1
#: Upper bound of spec.resources.cpu (and the Job's): the CRD's CEL rule says the same.
MAX_CPU = Decimal(1_000_000)

TOLERATION_OPERATORS = ("Exists", "Equal")
TAINT_EFFECTS = ("", "NoSchedule", "PreferNoSchedule", "NoExecute")
NODE_SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt")
LABEL_SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


def _full(pattern: re.Pattern, value: str) -> bool:
    return pattern.fullmatch(value) is not None


def dns1035_label(value: str) -> str | None:
    """What Service names must be: the name of every ModelDeployment, since its Service takes it.

    >>> dns1035_label("digits"), dns1035_label("digits-v2")
    (None, None)
    >>> dns1035_label("7digits")
    'must be a DNS-1035 label: lowercase letters, digits and -, starting with a letter and ending with a letter or digit (e.g. digits-v2)'
    >>> dns1035_label("a" * 64)
    'must be at most 63 characters (a DNS-1035 label)'
    """
    if len(value) > 63:
        return "must be at most 63 characters (a DNS-1035 label)"
    if not _full(DNS1035_LABEL, value):
        return ("must be a DNS-1035 label: lowercase letters, digits and -, starting with a letter and ending with "
                "a letter or digit (e.g. digits-v2)")
    return None


def dns1123_subdomain(value: str) -> str | None:
    """Names of Secrets, PersistentVolumeClaims, ConfigMaps.

    >>> dns1123_subdomain("aws-creds"), dns1123_subdomain("creds.v2")
    (None, None)
    >>> dns1123_subdomain("Creds_1")
    'must be a DNS-1123 subdomain: lowercase letters, digits, - and ., starting and ending with a letter or digit'
    """
    if len(value) > 253:
        return "must be at most 253 characters (a DNS-1123 subdomain)"
    if not _full(DNS1123_SUBDOMAIN, value):
        return ("must be a DNS-1123 subdomain: lowercase letters, digits, - and ., starting and ending with a "
                "letter or digit")
    return None


def label_value(value: str) -> str | None:
    """A label value: empty, or 63 characters at most of [A-Za-z0-9_.-], alphanumeric at both ends.

    >>> label_value("NVIDIA-H100-80GB-HBM3"), label_value("")
    (None, None)
    >>> label_value("k-")
    'must be a label value: 63 characters at most, letters, digits, -, _ and ., starting and ending with a letter or digit'
    """
    if len(value) > 63 or not _full(LABEL_VALUE, value):
        return ("must be a label value: 63 characters at most, letters, digits, -, _ and ., starting and ending "
                "with a letter or digit")
    return None


def label_key(value: str) -> str | None:
    """A label key (Kubernetes' "qualified name"): ``[prefix/]name``, the prefix a DNS-1123 subdomain.

    >>> label_key("nvidia.com/gpu.product"), label_key("pool")
    (None, None)
    >>> label_key("bad key")
    'must be a label key: [a DNS-1123 subdomain/]name, the name 63 characters at most of letters, digits, -, _ and ., starting and ending with a letter or digit'
    """
    prefix, slash, name = value.rpartition("/")
    bad = ("must be a label key: [a DNS-1123 subdomain/]name, the name 63 characters at most of letters, digits, -, "
           "_ and ., starting and ending with a letter or digit")
    if slash and (not prefix or len(prefix) > 253 or not _full(DNS1123_SUBDOMAIN, prefix)):
        return bad
    if not name or len(name) > 63 or not _full(_NAME_PART, name):
        return bad
    return None


def model_name(value: str) -> str | None:
    """A Triton model name: a folder, a URL segment, and (fitted) a label value.

    >>> model_name("digits"), model_name("all-MiniLM-L6-v2")
    (None, None)
    >>> model_name("digits.")
    'must be 128 characters at most of letters, digits, _, . and -, starting and ending with a letter or digit'
    """
    if len(value) > MODEL_NAME_MAX or not _full(MODEL_NAME, value):
        return ("must be 128 characters at most of letters, digits, _, . and -, starting and ending with a letter "
                "or digit")
    return None


def image(value: str) -> str | None:
    """A container image reference, as the kubelet parses it (no spaces, a lowercase repository path).

    >>> image("nvcr.io/nvidia/tritonserver:25.10-py3"), image("localhost:5000/triton@sha256:" + "a" * 64)
    (None, None)
    >>> image("nvcr.io/nvidia/triton server:25.10")
    'must be an image reference such as nvcr.io/nvidia/tritonserver:25.10-py3 ([registry/]path[:tag][@digest], the path lowercase)'
    """
    ref = value.split("@", 1)[0]
    name = ref[:ref.rfind(":")] if ref.rfind(":") > ref.rfind("/") else ref  # without :tag
    if len(value) > 512 or len(name) > IMAGE_NAME_MAX or not _full(IMAGE, value):
        return ("must be an image reference such as nvcr.io/nvidia/tritonserver:25.10-py3 "
                "([registry/]path[:tag][@digest], the path lowercase)")
    return None


def quantity_value(value: Any) -> Decimal | None:
    """The value of a non-negative Kubernetes quantity (int or string), or None when it is not one.

    >>> quantity_value("500m"), quantity_value("1.5Gi"), quantity_value(4), quantity_value("1e3")
    (Decimal('0.500'), Decimal('1610612736.0'), Decimal('4'), Decimal('1000'))
    >>> quantity_value("lots"), quantity_value("-1"), quantity_value(True), quantity_value(" 4")
    (None, None, None, None)
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value) if value >= 0 else None
    if not isinstance(value, str) or len(value) > 64:
        return None
    match = QUANTITY.fullmatch(value)
    if not match:
        return None
    number, suffix = match.group(1), match.group(3) or ""
    try:
        if suffix in _BINARY:
            return Decimal(number) * _BINARY[suffix]
        if suffix in _DECIMAL:
            return Decimal(number) * _DECIMAL[suffix]
        return Decimal(number) * Decimal(10) ** int(suffix[1:])
    except (ArithmeticError, ValueError):  # decimal.Overflow and InvalidOperation are ArithmeticErrors
        return None


def cpu(value: Any) -> str | None:
    """A CPU amount: a quantity below a million cores.

    >>> cpu("500m"), cpu(4), cpu("lots")
    (None, None, 'must be a Kubernetes quantity of CPU, e.g. 4 or 500m (below 1M cores)')
    """
    amount = quantity_value(value)
    if amount is None or amount >= MAX_CPU:
        return "must be a Kubernetes quantity of CPU, e.g. 4 or 500m (below 1M cores)"
    return None


def memory(value: Any) -> str | None:
    """A memory amount: a quantity of whole bytes that fits in 64 bits (what the kubelet can account).

    >>> memory("16Gi"), memory("99999999999999999999Ti")
    (None, 'must be a Kubernetes quantity of memory, e.g. 16Gi or 512Mi (whole bytes, below 8Ei)')
    """
    amount = quantity_value(value)
    if amount is None or amount > INT64_MAX or amount != amount.to_integral_value():
        return "must be a Kubernetes quantity of memory, e.g. 16Gi or 512Mi (whole bytes, below 8Ei)"
    return None


# --- structures: (path, message) pairs -----------------------------------------------------------------

Problem = tuple[str, str]


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _expect(value: Any, kind: type | tuple, path: str, what: str) -> Iterator[Problem]:
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        yield path, f"must be {what}, got {type(value).__name__}"


def _unknown_keys(obj: Mapping[str, Any], known: tuple[str, ...], path: str) -> Iterator[Problem]:
    extra = sorted(k if isinstance(k, str) and k.isprintable() else repr(k) for k in obj if k not in known)
    if extra:
        yield path, f"unknown field(s) {', '.join(extra)} (known: {', '.join(known)})"


def check_node_selector(selector: Any, path: str) -> Iterator[Problem]:
    """A nodeSelector map: label keys to label values.

    >>> list(check_node_selector({"pool": "gpu", "bad key": "x", "zone": "a-"}, "spec.placement.nodeSelector"))[0]
    ('spec.placement.nodeSelector', "key 'bad key' must be a label key: [a DNS-1123 subdomain/]name, the name 63 characters at most of letters, digits, -, _ and ., starting and ending with a letter or digit")
    """
    if not isinstance(selector, Mapping):
        yield from _expect(selector, Mapping, path, "an object of label keys to values")
        return
    for key, value in selector.items():
        if (msg := label_key(key)) is not None:
            yield path, f"key {key!r} {msg}"
        elif not _is_str(value):
            yield path, f"value of {key} must be a string, got {type(value).__name__}"
        elif (msg := label_value(value)) is not None:
            yield path, f"value {value!r} of {key} {msg}"


def check_toleration(tol: Any, path: str) -> Iterator[Problem]:
    """One core/v1 Toleration, by ValidateTolerations' rules.

    >>> [p for p, _ in check_toleration({"key": "k", "operator": "Exists", "value": "v"}, "t[0]")]
    ['t[0].value']
    >>> [m for _, m in check_toleration({"operator": "Equal"}, "t[0]")]
    ['operator must be Exists when key is empty (that tolerates every taint)']
    """
    if not isinstance(tol, Mapping):
        yield from _expect(tol, Mapping, path, "an object (a core/v1 Toleration)")
        return
    yield from _unknown_keys(tol, ("key", "operator", "value", "effect", "tolerationSeconds"), path)
    key, op = tol.get("key", ""), tol.get("operator", "Equal")
    value, effect = tol.get("value", ""), tol.get("effect", "")
    for name, item in (("key", key), ("operator", op), ("value", value), ("effect", effect)):
        if not _is_str(item):
            yield f"{path}.{name}", f"must be a string, got {type(item).__name__}"
            return
    if key and (msg := label_key(key)) is not None:
        yield f"{path}.key", msg
    if op not in TOLERATION_OPERATORS:
        yield f"{path}.operator", f"must be one of {', '.join(TOLERATION_OPERATORS)}, got {op!r}"
    elif op == "Exists" and value:
        yield f"{path}.value", "must be empty when operator is Exists"
    elif op == "Equal" and (msg := label_value(value)) is not None:
        yield f"{path}.value", msg
    if not key and op != "Exists":
        yield f"{path}.operator", "operator must be Exists when key is empty (that tolerates every taint)"
    if effect not in TAINT_EFFECTS:
        yield f"{path}.effect", f"must be one of NoSchedule, PreferNoSchedule, NoExecute or empty, got {effect!r}"
    seconds = tol.get("tolerationSeconds")
    if seconds is not None:
        if isinstance(seconds, bool) or not isinstance(seconds, int):
            yield f"{path}.tolerationSeconds", f"must be an integer, got {type(seconds).__name__}"
        elif effect != "NoExecute":
            yield f"{path}.tolerationSeconds", "is only allowed with effect NoExecute"


def check_tolerations(tolerations: Any, path: str) -> Iterator[Problem]:
    if not isinstance(tolerations, list):
        yield from _expect(tolerations, list, path, "a list of tolerations")
        return
    for i, tol in enumerate(tolerations):
        yield from check_toleration(tol, f"{path}[{i}]")


def _check_strings(values: Any, path: str, check) -> Iterator[Problem]:
    if not isinstance(values, list):
        yield from _expect(values, list, path, "a list of strings")
        return
    for i, value in enumerate(values):
        if not _is_str(value):
            yield f"{path}[{i}]", f"must be a string, got {type(value).__name__}"
        elif (msg := check(value)) is not None:
            yield f"{path}[{i}]", msg


def _check_requirement(req: Any, path: str, operators: tuple[str, ...]) -> Iterator[Problem]:
    """A NodeSelectorRequirement or a LabelSelectorRequirement."""
    if not isinstance(req, Mapping):
        yield from _expect(req, Mapping, path, "an object with key, operator and values")
        return
    yield from _unknown_keys(req, ("key", "operator", "values"), path)
    key, op, values = req.get("key"), req.get("operator"), req.get("values", [])
    if not _is_str(key) or (msg := label_key(key)) is not None:
        yield f"{path}.key", msg if _is_str(key) else "is required (a label key)"
    if op not in operators:
        yield f"{path}.operator", f"must be one of {', '.join(operators)}, got {op!r}"
    yield from _check_strings(values, f"{path}.values", label_value)
    if isinstance(values, list):
        if op in ("In", "NotIn") and not values:
            yield f"{path}.values", "must list at least one value when operator is In or NotIn"
        if op in ("Exists", "DoesNotExist") and values:
            yield f"{path}.values", "must be empty when operator is Exists or DoesNotExist"
        if op in ("Gt", "Lt") and (len(values) != 1 or not (_is_str(values[0]) and values[0].isdigit())):
            yield f"{path}.values", "must be one integer when operator is Gt or Lt"


def _check_list(items: Any, path: str, check) -> Iterator[Problem]:
    if not isinstance(items, list):
        yield from _expect(items, list, path, "a list")
        return
    for i, item in enumerate(items):
        yield from check(item, f"{path}[{i}]")


def _check_node_selector_term(term: Any, path: str) -> Iterator[Problem]:
    if not isinstance(term, Mapping):
        yield from _expect(term, Mapping, path, "an object (a NodeSelectorTerm)")
        return
    yield from _unknown_keys(term, ("matchExpressions", "matchFields"), path)
    yield from _check_list(term.get("matchExpressions", []), f"{path}.matchExpressions",
                           lambda r, p: _check_requirement(r, p, NODE_SELECTOR_OPERATORS))
    yield from _check_list(term.get("matchFields", []), f"{path}.matchFields", _check_field_requirement)


def _check_field_requirement(req: Any, path: str) -> Iterator[Problem]:
    """A node field selector: only ``metadata.name In|NotIn [one node name]``."""
    if not isinstance(req, Mapping):
        yield from _expect(req, Mapping, path, "an object with key, operator and values")
        return
    yield from _unknown_keys(req, ("key", "operator", "values"), path)
    if req.get("key") != "metadata.name":
        yield f"{path}.key", "must be metadata.name (the only node field selector)"
    if req.get("operator") not in ("In", "NotIn"):
        yield f"{path}.operator", "must be In or NotIn"
    values = req.get("values")
    if not isinstance(values, list) or len(values) != 1 or not _is_str(values[0]) \
            or dns1123_subdomain(values[0]) is not None:
        yield f"{path}.values", "must be exactly one node name"


def _check_label_selector(selector: Any, path: str) -> Iterator[Problem]:
    if not isinstance(selector, Mapping):
        yield from _expect(selector, Mapping, path, "an object (a LabelSelector)")
        return
    yield from _unknown_keys(selector, ("matchLabels", "matchExpressions"), path)
    yield from check_node_selector(selector.get("matchLabels", {}), f"{path}.matchLabels")
    yield from _check_list(selector.get("matchExpressions", []), f"{path}.matchExpressions",
                           lambda r, p: _check_requirement(r, p, LABEL_SELECTOR_OPERATORS))


def _check_pod_affinity_term(term: Any, path: str) -> Iterator[Problem]:
    if not isinstance(term, Mapping):
        yield from _expect(term, Mapping, path, "an object (a PodAffinityTerm)")
        return
    yield from _unknown_keys(term, ("labelSelector", "namespaceSelector", "namespaces", "topologyKey",
                                    "matchLabelKeys", "mismatchLabelKeys"), path)
    for name in ("labelSelector", "namespaceSelector"):
        if name in term:
            yield from _check_label_selector(term[name], f"{path}.{name}")
    yield from _check_strings(term.get("namespaces", []), f"{path}.namespaces",
                              lambda v: None if len(v) <= 63 and _full(DNS1123_LABEL, v) else
                              "must be a namespace name (a DNS-1123 label)")
    topology = term.get("topologyKey")
    if not _is_str(topology) or not topology:
        yield f"{path}.topologyKey", "is required (a node label key, e.g. kubernetes.io/hostname)"
    elif (msg := label_key(topology)) is not None:
        yield f"{path}.topologyKey", msg
    for name in ("matchLabelKeys", "mismatchLabelKeys"):
        if name in term:
            yield from _check_strings(term[name], f"{path}.{name}", label_key)
            if "labelSelector" not in term:
                yield f"{path}.{name}", "needs labelSelector"


def _check_weighted(item: Any, path: str, inner: str, check) -> Iterator[Problem]:
    if not isinstance(item, Mapping):
        yield from _expect(item, Mapping, path, f"an object with weight and {inner}")
        return
    yield from _unknown_keys(item, ("weight", inner), path)
    weight = item.get("weight")
    if isinstance(weight, bool) or not isinstance(weight, int) or not 1 <= weight <= 100:
        yield f"{path}.weight", "must be an integer from 1 to 100"
    if inner not in item:
        yield f"{path}.{inner}", "is required"
    else:
        yield from check(item[inner], f"{path}.{inner}")


def check_affinity(affinity: Any, path: str) -> Iterator[Problem]:
    """A core/v1 Affinity, by the rules pod validation applies to it.

    >>> aff = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
    ...     {"matchExpressions": [{"key": "zone", "operator": "In", "values": []}]}]}}}
    >>> [p for p, _ in check_affinity(aff, "spec.placement.affinity")]
    ['spec.placement.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].values']
    """
    if not isinstance(affinity, Mapping):
        yield from _expect(affinity, Mapping, path, "an object (a core/v1 Affinity)")
        return
    yield from _unknown_keys(affinity, ("nodeAffinity", "podAffinity", "podAntiAffinity"), path)
    node = affinity.get("nodeAffinity")
    if node is not None:
        at = f"{path}.nodeAffinity"
        if not isinstance(node, Mapping):
            yield from _expect(node, Mapping, at, "an object")
        else:
            yield from _unknown_keys(node, ("requiredDuringSchedulingIgnoredDuringExecution",
                                            "preferredDuringSchedulingIgnoredDuringExecution"), at)
            required = node.get("requiredDuringSchedulingIgnoredDuringExecution")
            if required is not None:
                rat = f"{at}.requiredDuringSchedulingIgnoredDuringExecution"
                if not isinstance(required, Mapping):
                    yield from _expect(required, Mapping, rat, "an object with nodeSelectorTerms")
                else:
                    yield from _unknown_keys(required, ("nodeSelectorTerms",), rat)
                    terms = required.get("nodeSelectorTerms")
                    if not isinstance(terms, list) or not terms:
                        yield f"{rat}.nodeSelectorTerms", "must list at least one term"
                    else:
                        yield from _check_list(terms, f"{rat}.nodeSelectorTerms", _check_node_selector_term)
            yield from _check_list(node.get("preferredDuringSchedulingIgnoredDuringExecution", []),
                                   f"{at}.preferredDuringSchedulingIgnoredDuringExecution",
                                   lambda t, p: _check_weighted(t, p, "preference", _check_node_selector_term))
    for kind in ("podAffinity", "podAntiAffinity"):
        pod = affinity.get(kind)
        if pod is None:
            continue
        at = f"{path}.{kind}"
        if not isinstance(pod, Mapping):
            yield from _expect(pod, Mapping, at, "an object")
            continue
        yield from _unknown_keys(pod, ("requiredDuringSchedulingIgnoredDuringExecution",
                                       "preferredDuringSchedulingIgnoredDuringExecution"), at)
        yield from _check_list(pod.get("requiredDuringSchedulingIgnoredDuringExecution", []),
                               f"{at}.requiredDuringSchedulingIgnoredDuringExecution", _check_pod_affinity_term)
        yield from _check_list(pod.get("preferredDuringSchedulingIgnoredDuringExecution", []),
                               f"{at}.preferredDuringSchedulingIgnoredDuringExecution",
                               lambda t, p: _check_weighted(t, p, "podAffinityTerm", _check_pod_affinity_term))
