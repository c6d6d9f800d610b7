"""The sandbox gateway, pure parts: Gateway API objects -> proxy matches, weighted backends and statuses; that
as an HAProxy config, server slots and runtime commands. Then the real HAProxy (Debian's) taking the config,
splitting by weight exactly, and changing weights and structure under load without failing a request."""

import doctest
import http.client
import http.server
import os
import subprocess
import threading
import time

import pytest

from modeldeploy.sandbox.gateway import haproxy as hx
from modeldeploy.sandbox.gateway import model

GW = {"metadata": {"namespace": "gateway-system", "name": "sandbox", "generation": 1},
      "spec": {"gatewayClassName": "modeldeploy-sandbox",
               "listeners": [{"name": "http", "port": 80, "protocol": "HTTP",
                              "allowedRoutes": {"namespaces": {"from": "All"}}}]}}
PARENT = {"name": "sandbox", "namespace": "gateway-system"}


def test_docstring_examples():
    assert doctest.testmod(model).failed == 0 and doctest.testmod(hx).failed == 0


def service(name, ns="t", ports=(("http", 8000),), selector=True):
    spec = {"ports": [{"name": n, "port": p} for n, p in ports]}
    if selector:
        spec["selector"] = {"app": name}
    return {"metadata": {"namespace": ns, "name": name}, "spec": spec}


def slice_(svc, *ips, ns="t", port=8000, ready=True, serving=True, terminating=False, name="http"):
    return {"metadata": {"namespace": ns, "name": f"{svc}-{ips[0] if ips else 'x'}",
                         "labels": {model.SERVICE_NAME_LABEL: svc}},
            "addressType": "IPv4", "ports": [{"name": name, "port": port}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": ready, "serving": serving,
                                                             "terminating": terminating},
                           "targetRef": {"kind": "Pod", "namespace": ns, "name": f"pod-{ip}"}} for ip in ips]}


def route(name="r", ns="t", rules=None, parents=(PARENT,), hostnames=(), created="2026-11-30T00:00:00Z"):
    return {"metadata": {"namespace": ns, "name": name, "generation": 3, "creationTimestamp": created},
            "spec": {"parentRefs": list(parents), "hostnames": list(hostnames),
                     "rules": rules if rules is not None else [
                         {"backendRefs": [{"name": "stable", "port": 8000, "weight": 90},
                                          {"name": "canary", "port": 8000, "weight": 10}]}]}}


def conds(result, key=("t", "r")):
    (parent,) = result.route_parents[key]
    return {c["type"]: (c["status"], c["reason"]) for c in parent["conditions"]}


SERVICES = [service("stable"), service("canary")]
SLICES = [slice_("stable", "10.244.3.2"), slice_("canary", "10.244.3.3")]


def test_weighted_route_splits_by_its_weights_and_is_accepted():
    result = model.build(GW, "10.244.3.1", [route()], SERVICES, SLICES)
    backend = result.config.backend("route_t_r_0")
    assert [(s.address, s.port, s.weight) for s in backend.servers] == [("10.244.3.2", 8000, 9), ("10.244.3.3", 8000, 1)]
    assert conds(result) == {"Accepted": ("True", "Accepted"), "ResolvedRefs": ("True", "ResolvedRefs")}
    assert result.attached == {"http": 1} and result.config.ports == (80,)
    assert result.route_parents[("t", "r")][0]["conditions"][0]["observedGeneration"] == 3


def test_a_ref_weight_is_spread_over_its_services_ready_endpoints():
    slices = [slice_("stable", "10.244.3.2", "10.244.3.4"), slice_("canary", "10.244.3.3")]
    backend = model.build(GW, "a", [route()], SERVICES, slices).config.backend("route_t_r_0")
    assert {s.address: s.weight for s in backend.servers} == {"10.244.3.2": 9, "10.244.3.4": 9, "10.244.3.3": 2}


@pytest.mark.parametrize("endpoint,expected", [
    ({"ready": True}, ["10.244.3.2"]),
    ({"ready": False, "serving": True, "terminating": True}, ["10.244.3.2"]),    # the only one left: still used
    ({"ready": False, "serving": False, "terminating": True}, []),
    ({"ready": False, "serving": False, "terminating": False}, []),
])
def test_endpoint_conditions(endpoint, expected):
    slices = [slice_("stable", "10.244.3.2", **endpoint)]
    backend = model.build(GW, "a", [], [service("stable")], slices).config.backend("svc_t_stable")
    assert [s.address for s in backend.servers] == expected


def test_a_terminating_endpoint_leaves_as_soon_as_another_is_ready():
    slices = [slice_("stable", "10.244.3.2", ready=False, terminating=True), slice_("stable", "10.244.3.5")]
    backend = model.build(GW, "a", [], [service("stable")], slices).config.backend("svc_t_stable")
    assert [s.address for s in backend.servers] == ["10.244.3.5"]


def test_unreachable_endpoints_are_left_out():
    slices = [slice_("stable", "10.244.3.2", "10.0.0.7")]  # 10.0.0.7: a kwok pod, nothing listens there
    result = model.build(GW, "a", [], [service("stable")], slices, reachable=lambda ip: ip.startswith("10.244.3."))
    assert [s.address for s in result.config.backend("svc_t_stable").servers] == ["10.244.3.2"]


def test_service_port_is_resolved_by_name_in_the_slices():
    svc = service("triton", ports=(("http", 8000), ("metrics", 8002)))
    slices = [slice_("triton", "10.244.3.2", port=8002, name="metrics"), slice_("triton", "10.244.3.2", port=8000)]
    r = route(rules=[{"backendRefs": [{"name": "triton", "port": 8002}]}])
    result = model.build(GW, "a", [r], [svc], slices)
    assert [(s.address, s.port) for s in result.config.backend("route_t_r_0").servers] == [("10.244.3.2", 8002)]
    assert [(s.address, s.port) for s in result.config.backend("svc_t_triton").servers] == [("10.244.3.2", 8000)]


@pytest.mark.parametrize("ref,grants,reason", [
    ({"name": "nope", "port": 8000}, [], "BackendNotFound"),
    ({"name": "stable", "port": 9999}, [], "BackendNotFound"),
    ({"name": "stable", "port": 8000, "kind": "Pod"}, [], "InvalidKind"),
    ({"name": "other", "namespace": "o", "port": 8000}, [], "RefNotPermitted"),
    ({"name": "other", "namespace": "o", "port": 8000},
     [{"metadata": {"namespace": "o"}, "spec": {"from": [{"group": model.GROUP, "kind": "HTTPRoute", "namespace": "t"}],
                                                "to": [{"group": "", "kind": "Service", "name": "other"}]}}], None),
])
def test_resolved_refs(ref, grants, reason):
    result = model.build(GW, "a", [route(rules=[{"backendRefs": [ref]}])],
                         [*SERVICES, service("other", ns="o")], [*SLICES, slice_("other", "10.244.3.9", ns="o")],
                         grants=grants)
    resolved = conds(result)["ResolvedRefs"]
    backend = result.config.backend("route_t_r_0")
    if reason is None:
        assert resolved == ("True", "ResolvedRefs") and [s.address for s in backend.servers] == ["10.244.3.9"]
    else:
        assert resolved == ("False", reason) and backend.status == 500   # the spec's answer: 500


@pytest.mark.parametrize("gateway_change,route_kw,reason", [
    ({"allowedRoutes": {"namespaces": {"from": "Same"}}}, {}, "NotAllowedByListeners"),
    ({"hostname": "*.example.com"}, {"hostnames": ["other.org"]}, "NoMatchingListenerHostname"),
    ({}, {"parents": ({**PARENT, "sectionName": "https"},)}, "NoMatchingParent"),
    ({}, {"rules": [{"filters": [{"type": "RequestHeaderModifier"}], "backendRefs": [{"name": "stable", "port": 8000}]}]},
     "UnsupportedValue"),
])
def test_routes_that_are_not_accepted_say_why_and_route_nothing(gateway_change, route_kw, reason):
    gw = {**GW, "spec": {**GW["spec"], "listeners": [{**GW["spec"]["listeners"][0], **gateway_change}]}}
    result = model.build(gw, "a", [route(**route_kw)], SERVICES, SLICES)
    assert conds(result)["Accepted"] == ("False", reason)
    assert not [m for m in result.config.matches if m.backend.startswith("route_")]
    assert result.attached == {"http": 0}


def test_routes_of_other_gateways_get_no_status_from_us():
    result = model.build(GW, "a", [route(parents=({"name": "other-gw"},))], SERVICES, SLICES)
    assert result.route_parents == {}


def test_matches_and_precedence():
    """Exact paths first, then longer prefixes, then more headers; a specific hostname beats none; the older
    route wins a tie; Services (host <svc>.<ns>) come after routes of the same specificity."""
    older = route("old", created="2026-01-01T00:00:00Z", rules=[
        {"matches": [{"path": {"type": "PathPrefix", "value": "/v2/"}}], "backendRefs": [{"name": "stable", "port": 8000}]}])
    newer = route("new", created="2026-06-01T00:00:00Z", rules=[
        {"matches": [{"path": {"type": "PathPrefix", "value": "/v2"}}], "backendRefs": [{"name": "canary", "port": 8000}]},
        {"matches": [{"path": {"type": "PathPrefix", "value": "/v2"},
                      "headers": [{"name": "x-canary", "value": "yes"}]}],
         "backendRefs": [{"name": "canary", "port": 8000}]},
        {"matches": [{"path": {"type": "Exact", "value": "/v2/health/ready"}}], "backendRefs": [{"name": "stable", "port": 8000}]}])
    hosted = route("hosted", hostnames=["stable.t"], rules=[{"backendRefs": [{"name": "canary", "port": 8000}]}])
    result = model.build(GW, "a", [newer, older, hosted], SERVICES, SLICES)
    order = [(m.backend, m.hostname, m.path_type, m.path, len(m.headers)) for m in result.config.matches]
    on_host = [o for o in order if o[1] == "stable.t"]      # a route's host beats the Service's same host
    assert on_host == [("route_t_hosted_0", "stable.t", "PathPrefix", "/", 0), ("svc_t_stable", "stable.t", "PathPrefix", "/", 0)]
    assert order.index(on_host[1]) < order.index(("route_t_new_2", None, "Exact", "/v2/health/ready", 0))
    rest = [o for o in order if o[1] is None]
    assert rest == [("route_t_new_2", None, "Exact", "/v2/health/ready", 0),
                    ("route_t_new_1", None, "PathPrefix", "/v2", 1),     # more headers
                    ("route_t_old_0", None, "PathPrefix", "/v2", 0),     # "/v2/" is "/v2": the older route wins
                    ("route_t_new_0", None, "PathPrefix", "/v2", 0)]


@pytest.mark.parametrize("groups,expected", [
    ([(90, 1), (10, 1)], [9, 1]),
    ([(50, 1), (50, 1)], [1, 1]),
    ([(1, 2), (1, 3)], [3, 2]),
    ([(0, 1), (0, 1)], [0, 0]),
    ([(100, 0), (1, 1)], [0, 1]),          # a ref without endpoints takes no share (the rest gets it all)
    ([(255, 1), (1, 1)], [255, 1]),
    ([(1000, 1), (1, 1)], [256, 1]),       # past HAProxy's 256: scaled, the small one kept above 0
    ([(1, 1)] * 3, [1, 1, 1]),
])
def test_spread_weights(groups, expected):
    assert model.spread_weights(groups) == expected


def test_statuses_keep_transition_times_and_other_controllers_entries():
    result = model.build(GW, "a", [route()], SERVICES, SLICES)
    other = {"parentRef": {"name": "elsewhere"}, "controllerName": "example.com/other", "conditions": []}
    first = model.route_status({"status": {"parents": [other]}}, result.route_parents[("t", "r")], "t1")
    assert first["parents"][0] == other and first["parents"][1]["conditions"][0]["lastTransitionTime"] == "t1"
    second = model.route_status({"status": first}, result.route_parents[("t", "r")], "t2")
    assert second == first and not model.status_changed(first, second)
    gone = model.route_status({"status": first}, [], "t3")      # no longer names our Gateway: our entry goes
    assert gone == {"parents": [other]} and model.status_changed(first, gone)
    gw = model.gateway_status(GW, result, True, "", "t1")
    assert gw["addresses"] == [{"type": "IPAddress", "value": "a"}]
    assert {c["type"]: c["status"] for c in gw["conditions"]} == {"Accepted": "True", "Programmed": "True"}
    assert gw["listeners"][0]["attachedRoutes"] == 1


# --- haproxy: slots, structure, runtime commands -----------------------------------------------------------
def config_of(*servers, name="be"):
    return model.ProxyConfig("127.0.0.1", (80,), (model.Match(name),), (model.Backend(name, tuple(servers)),))


def S(ip, weight=1, port=8000):
    return model.Server(ip, port, weight)


def test_endpoints_and_weights_change_through_the_runtime_api_and_growth_needs_a_reload():
    one = config_of(S("10.0.0.2", 9), S("10.0.0.3", 1))
    slots1 = hx.assign_slots(one)
    two = config_of(S("10.0.0.3", 5), S("10.0.0.4", 5))
    slots2 = hx.assign_slots(two, slots1)
    assert hx.structure(one, slots1) == hx.structure(two, slots2)
    assert hx.runtime_commands(slots1, slots2) == [  # the new server ready before the old one leaves
        "set server be/s2 weight 5", "set server be/s3 addr 10.0.0.4 port 8000", "set server be/s3 weight 5",
        "set server be/s3 state ready", "set server be/s1 state maint"]
    five = config_of(*(S(f"10.0.0.{i}") for i in range(2, 7)))
    slots5 = hx.assign_slots(five, slots2)
    assert len(slots5["be"]) == 8 and hx.structure(five, slots5) != hx.structure(two, slots2)
    assert slots5["be"][1].address == "10.0.0.3"          # kept its slot while growing


def test_render_writes_servers_in_their_slots_and_fixed_answers():
    cfg = model.ProxyConfig("10.244.3.1", (80,), (model.Match("be", hostname="x.t", path="/v2"), model.Match("bad")),
                            (model.Backend("be", (S("10.244.3.2", 9),)), model.Backend("bad", (), status=500)))
    text = hx.render(cfg, hx.assign_slots(cfg), "/s/stats.sock")
    assert "    bind 10.244.3.1:80\n" in text
    assert "    server s1 10.244.3.2:8000 weight 9\n" in text and "    server s4 127.0.0.1:1 weight 1 disabled" in text
    assert "http-request return status 500" in text and "default_backend no_route" in text
    assert text.index("use_backend be ") < text.index("use_backend bad")


# --- the real HAProxy -----------------------------------------------------------------------------------
def _need_haproxy():
    if hx.find_binary() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("haproxy is not installed (make system-deps installs it); CI must not skip this")
        pytest.skip("haproxy is not installed (apt-get install haproxy)")
    return hx.find_binary()


class Named(http.server.ThreadingHTTPServer):
    daemon_threads = True


def backend_server(name):
    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = name.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST

        def log_message(self, *args):
            pass

    server = Named(("127.0.0.1", 0), H)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def live(tmp_path):
    binary = _need_haproxy()
    servers = {name: backend_server(name) for name in ("a", "b", "c")}
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proxy = hx.HAProxy(binary, tmp_path, tmp_path / "haproxy.log")
    yield proxy, servers, port
    proxy.stop()
    for server in servers.values():
        server.shutdown()


def _config(servers, port, weights, extra_match=False):
    backends = (model.Backend("be", tuple(model.Server("127.0.0.1", servers[n].server_address[1], w)
                                          for n, w in weights.items())),)
    matches = [model.Match("be")]
    if extra_match:
        matches.insert(0, model.Match("be", path_type="Exact", path="/other"))
    return model.ProxyConfig("127.0.0.1", (port,), tuple(matches), backends)


def _send(port, count):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    seen = []
    for _ in range(count):
        conn.request("POST", "/", body=b"x" * 64)
        resp = conn.getresponse()
        seen.append((resp.status, resp.read().decode()))
    conn.close()
    return seen


def test_real_haproxy_splits_exactly_by_weight_and_changes_under_load_without_failures(live):
    proxy, servers, port = live
    cfg = _config(servers, port, {"a": 3, "b": 1})
    slots = hx.assign_slots(cfg)
    proxy.start(hx.render(cfg, slots, str(proxy.stats_socket)))
    seen = _send(port, 400)
    assert {s for s, _ in seen} == {200}
    assert (sum(b == "a" for _, b in seen), sum(b == "b" for _, b in seen)) == (300, 100)   # smooth weighted RR

    failures, counts, stop = [], {"a": 0, "b": 0, "c": 0}, threading.Event()

    def load():
        conn = None
        while not stop.is_set():
            try:
                conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("POST", "/", body=b"x" * 64)
                resp = conn.getresponse()
                body = resp.read().decode()
                if resp.status != 200:
                    failures.append(resp.status)
                else:
                    counts[body] += 1
                if (resp.getheader("connection") or "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                failures.append(repr(exc))
                conn = None

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        # runtime API: b leaves, c arrives, weights move; then structure changes: 5 reloads
        new = _config(servers, port, {"a": 1, "c": 1})
        new_slots = hx.assign_slots(new, slots)
        assert hx.structure(new, new_slots) == hx.structure(cfg, slots)
        proxy.runtime(hx.runtime_commands(slots, new_slots))
        deadline = time.monotonic() + 5
        while counts["c"] < 50 and time.monotonic() < deadline:
            time.sleep(0.05)
        for i in range(5):
            grown = _config(servers, port, {"a": 1, "c": 1}, extra_match=i % 2 == 0)
            proxy.reload(hx.render(grown, hx.assign_slots(grown, new_slots), str(proxy.stats_socket)))
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert failures == [] and counts["c"] >= 50 and proxy.reloads == 5
    after = _send(port, 100)
    assert {b for _, b in after} == {"a", "c"}


def test_haproxy_refuses_a_broken_config_and_keeps_serving(live):
    proxy, servers, port = live
    cfg = _config(servers, port, {"a": 1})
    proxy.start(hx.render(cfg, hx.assign_slots(cfg), str(proxy.stats_socket)))
    with pytest.raises(hx.HAProxyError, match="haproxy -c refused"):
        proxy.reload("global\n    no-such-keyword\n")
    assert _send(port, 3) == [(200, "a")] * 3
    subprocess.run([proxy.binary, "-c", "-f", str(proxy.config_path)], check=True, capture_output=True)


def test_real_haproxy_honours_hosts_header_matches_paths_and_the_routes_precedence(live):
    """The whole chain on real objects: HTTPRoute + Services + EndpointSlices -> model.build -> haproxy.cfg."""
    proxy, servers, port = live
    gw = {**GW, "spec": {**GW["spec"], "listeners": [{**GW["spec"]["listeners"][0], "port": port}]}}
    svc = [service(n) for n in servers]
    slices = [slice_(n, "127.0.0.1", port=servers[n].server_address[1]) for n in servers]
    r = route(hostnames=["x.example"], rules=[
        {"matches": [{"path": {"type": "PathPrefix", "value": "/v2"}, "headers": [{"name": "x-canary", "value": "it's"}]}],
         "backendRefs": [{"name": "c", "port": 8000}]},
        {"matches": [{"path": {"type": "PathPrefix", "value": "/v2"}}], "backendRefs": [{"name": "a", "port": 8000}]},
        {"matches": [{"path": {"type": "Exact", "value": "/other"}}], "backendRefs": [{"name": "missing", "port": 8000}]}])
    result = model.build(gw, "127.0.0.1", [r], svc, slices)
    proxy.start(hx.render(result.config, hx.assign_slots(result.config), str(proxy.stats_socket)))

    def get(path, host, **headers):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", path, headers={"Host": host, **headers})
        resp = conn.getresponse()
        out = (resp.status, resp.read().decode())
        conn.close()
        return out
    assert get("/v2/models", "x.example", **{"x-canary": "it's"}) == (200, "c")
    assert get("/v2/models", "X.Example:80") == (200, "a")                  # host: case and port ignored
    assert get("/v2", "x.example") == (200, "a")
    assert get("/v2x", "x.example")[0] == 404                               # prefix is by path element
    assert get("/other", "x.example")[0] == 500                             # unresolved backendRef
    assert get("/v2/models", "b.t") == (200, "b")                           # a Service by <svc>.<ns>
    assert get("/v2/models", "nobody.example")[0] == 404
