"""Real requests through the sandbox's Gateway API front door: the split is the proxy's, not the client's.

Two ModelDeployments (runner pods, real Triton) serve the digits model as version 1 ("stable") and version 2
("canary"); Triton's answer says which version answered. An HTTPRoute attached to Gateway
``gateway-system/sandbox`` splits 90/10 between their Services; the gateway controller turns that and the
Services' EndpointSlices into HAProxy's config. Then: a weight change under load, a pod deleted under load
(the endpoint leaves the proxy before the process stops: preStop, readiness, grace period as a kubelet
does), and a route whose backend does not exist.
"""

from __future__ import annotations

import hashlib
import time

import pytest
from kubernetes import client

from modeldeploy.sandbox import podnet
from modeldeploy.sandbox.examples import gateway_target

from .conftest import wait_for
from .test_dataplane import local_md
from .test_operator import create_md, pods_of, wait_ready
from modeldeploy.sandbox.traffic import Traffic

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

GROUP, VERSION = "gateway.networking.k8s.io", "v1"
PARENT = {"name": "sandbox", "namespace": "gateway-system"}
HOST = "digits.example"


def route_body(name: str, refs: list[dict], hostnames=(HOST,)) -> dict:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "HTTPRoute", "metadata": {"name": name},
            "spec": {"parentRefs": [PARENT], "hostnames": list(hostnames), "rules": [{"backendRefs": refs}]}}


def refs(stable: int, canary: int) -> list[dict]:
    return [{"name": "stable", "port": 8000, "weight": stable}, {"name": "canary", "port": 8000, "weight": canary}]


def route_conditions(api, namespace: str, name: str) -> dict:
    route = client.CustomObjectsApi(api).get_namespaced_custom_object(GROUP, VERSION, namespace, "httproutes", name)
    parents = (route.get("status") or {}).get("parents") or []
    ours = [p for p in parents if p.get("controllerName") == "modeldeploy.io/sandbox-gateway"]
    return {c["type"]: (c["status"], c["reason"], c.get("observedGeneration")) for c in ours[0]["conditions"]} \
        if ours else {}


def digits_md(name: str, model, version: int, replicas: int = 1) -> dict:
    body = local_md(name, f"file://{model}", sha256=hashlib.sha256(model.read_bytes()).hexdigest())
    body["spec"]["model"]["version"] = version
    body["spec"]["replicas"] = replicas
    return body


def test_weighted_route_splits_90_10_and_a_weight_change_takes_effect_without_failures(
        api, operator, namespace, runner_node, digits_model, gateway_url):
    out, _ = digits_model
    model = out / "model.onnx"
    create_md(api, namespace, digits_md("stable", model, 1))
    create_md(api, namespace, digits_md("canary", model, 2))
    wait_ready(api, namespace, "stable", timeout=180)
    wait_ready(api, namespace, "canary", timeout=180)
    routes = client.CustomObjectsApi(api)
    routes.create_namespaced_custom_object(GROUP, VERSION, namespace, "httproutes", route_body("split", refs(90, 10)))
    wait_for(lambda: route_conditions(api, namespace, "split") == {"Accepted": ("True", "Accepted", 1),
                                                                    "ResolvedRefs": ("True", "ResolvedRefs", 1)},
             30, what="HTTPRoute split Accepted and ResolvedRefs")
    hostport, _ = gateway_target(gateway_url, "unused", namespace)

    traffic = Traffic(hostport, host=HOST, threads=2, total=2000).start().join()
    assert traffic.failures == [], traffic.failures[:5]
    versions = traffic.versions()
    assert sum(versions.values()) == 2000 and set(versions) == {"1", "2"}, versions
    share = versions["1"] / 2000
    print(f"\n90/10 route: {versions} ({share:.1%} to version 1)")
    assert abs(share - 0.90) <= 0.03, versions

    # Under load, all traffic moves to the canary: within 2 s no request starts going to version 1.
    with Traffic(hostport, host=HOST, threads=2) as load:
        load.wait_for(200)
        patched = time.monotonic()
        routes.patch_namespaced_custom_object(GROUP, VERSION, namespace, "httproutes", "split",
                                              {"spec": {"rules": [{"backendRefs": refs(0, 100)}]}})
        wait_for(lambda: load.versions(since=time.monotonic() - 1.0).get("1", 0) == 0
                 and load.versions(since=time.monotonic() - 1.0).get("2", 0) > 0, 10, interval=0.1,
                 what="only version 2 answering")
        settled = time.monotonic()
        while time.monotonic() < settled + 2:   # and it stays so
            time.sleep(0.1)
    last_v1 = max(o.started for o in load.outcomes if o.version == "1")
    print(f"weights 0/100: the last request to version 1 started {last_v1 - patched:+.2f}s after the patch; "
          f"{len(load.outcomes)} requests, {len(load.failures)} failed")
    assert load.failures == [], load.failures[:5]
    assert last_v1 - patched <= 2.0
    assert load.versions(since=patched + 2.0).keys() == {"2"}
    wait_for(lambda: route_conditions(api, namespace, "split").get("Accepted", (0, 0, 0))[2] == 2, 10,
             what="status observedGeneration 2")


def test_deleting_a_pod_under_load_fails_no_request(api, operator, namespace, runner_node, digits_model, gateway_url,
                                                    sandbox):
    out, _ = digits_model
    create_md(api, namespace, digits_md("digits", out / "model.onnx", 1, replicas=2))
    wait_ready(api, namespace, "digits", timeout=180)
    pods = [p for p in pods_of(api, namespace, "digits") if p.metadata.deletion_timestamp is None]
    ips = {p.metadata.name: p.status.pod_ip for p in pods}
    pod_range = sandbox.pod_range()
    assert len(ips) == 2 and all(pod_range.contains(ip) for ip in ips.values()), ips
    lo = podnet.Loopback()
    assert set(ips.values()) <= set(lo.addresses())
    # The real EndpointSlice controller publishes exactly those addresses for the Service.
    slices = client.DiscoveryV1Api(api).list_namespaced_endpoint_slice(
        namespace, label_selector="kubernetes.io/service-name=digits").items
    assert {a for s in slices for e in (s.endpoints or []) for a in e.addresses} == set(ips.values())
    # The gateway programs HAProxy from those slices at its next sync (every 0.5 s): the load starts once
    # both pods are servers (its config file is written after the running HAProxy matches it). Without
    # this wait the first requests could meet a backend not programmed yet (503s unrelated to the delete).
    config = sandbox.gateway_dir / "haproxy.cfg"
    wait_for(lambda: all(f" {ip}:" in config.read_text() for ip in ips.values()), 15, interval=0.1,
             what="both pods programmed in the gateway's HAProxy")

    victim = sorted(ips)[0]
    core = client.CoreV1Api(api)
    hostport, host = gateway_target(gateway_url, "digits", namespace)
    with Traffic(hostport, host=host, threads=2) as load:
        load.wait_for(100)
        core.delete_namespaced_pod(victim, namespace)        # default grace: the pod's 30 s, preStop 5 s first
        deleted = time.monotonic()

        def gone():
            try:
                core.read_namespaced_pod(victim, namespace)
                return False
            except client.ApiException as err:
                return err.status == 404
        wait_for(gone, 60, interval=0.25, what=f"pod {victim} gone")
        took = time.monotonic() - deleted
        wait_ready(api, namespace, "digits", timeout=180)     # the replacement is Ready, traffic goes on
        count = len(load.outcomes)
        load.wait_for(count + 100)
    print(f"\npod {victim} deleted under load: gone after {took:.1f}s; {len(load.outcomes)} requests, "
          f"{len(load.failures)} failed")
    assert load.failures == [], load.failures[:5]
    assert took >= 5.0                                          # it kept serving through its preStop sleep
    assert ips[victim] not in lo.addresses()                    # its address was released


def test_a_route_to_a_missing_service_is_not_resolved_and_answers_500(api, namespace, gateway_url):
    import urllib.error
    import urllib.request

    client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, "httproutes",
        route_body("broken", [{"name": "no-such-service", "port": 8000}], hostnames=[f"broken.{namespace}.example"]))
    wait_for(lambda: route_conditions(api, namespace, "broken").get("ResolvedRefs", ("",))[:2]
             == ("False", "BackendNotFound"), 30, what="ResolvedRefs False/BackendNotFound")
    assert route_conditions(api, namespace, "broken")["Accepted"][:2] == ("True", "Accepted")
    request = urllib.request.Request(f"{gateway_url}/v2/health/ready", headers={"Host": f"broken.{namespace}.example"})

    def answers_500():
        try:
            urllib.request.urlopen(request, timeout=5)
            return False
        except urllib.error.HTTPError as err:
            return err.code == 500
    wait_for(answers_500, 15, what="HTTP 500 from the gateway")
