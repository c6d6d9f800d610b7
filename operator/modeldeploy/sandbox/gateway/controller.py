"""The I/O loop of the sandbox gateway: API objects in, HAProxy and status out.

Every ``period`` seconds (level-based, like the pod runner): list GatewayClasses, the Gateway, HTTPRoutes,
Services, EndpointSlices and ReferenceGrants (``resourceVersion=0``: served from the API server's watch
cache), compute :func:`.model.build`, bring HAProxy to it (:mod:`.haproxy`: runtime API when only servers or
weights changed, a hitless reload otherwise), and write the status of the GatewayClass, the Gateway and
every HTTPRoute naming it, only where something but timestamps changed. Polling keeps the loop simple; at
0.5 s it bounds how late a weight change or a leaving endpoint reaches the proxy (the pods' 5 s preStop
sleep covers the latter many times over).
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable, TextIO

from modeldeploy.sandbox import podnet
from modeldeploy.sandbox.kubeapi import KubeHttp, KubeHttpError

from . import haproxy, model

MERGE = "application/merge-patch+json"
API = "/apis/gateway.networking.k8s.io/v1"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Controller:
    def __init__(self, api: KubeHttp, namespace: str, name: str, address: str, proxy: haproxy.HAProxy,
                 reachable: Callable[[str], bool] = lambda ip: True, out: TextIO | None = None):
        self.api, self.namespace, self.name, self.address = api, namespace, name, address
        self.proxy, self.reachable = proxy, reachable
        self.out = out or sys.stdout
        self.slots: dict[str, list[model.Server | None]] | None = None
        self.structure: str | None = None
        self.text: str | None = None
        self.programmed, self.problem = False, "not programmed yet"

    def say(self, msg: str) -> None:
        print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} gateway: {msg}", file=self.out, flush=True)

    def _list(self, path: str, ok: tuple[int, ...] = ()) -> list[dict[str, Any]]:
        code, body = self.api.request("GET", f"{path}?resourceVersion=0", ok=ok)
        return (body or {}).get("items", []) if code == 200 else []

    def sync_once(self) -> None:
        code, gateway = self.api.request("GET", f"{API}/namespaces/{self.namespace}/gateways/{self.name}", ok=(404,))
        if code == 404:
            return
        classes = self._list(f"{API}/gatewayclasses")
        ours = [c for c in classes if (c.get("spec") or {}).get("controllerName") == model.CONTROLLER_NAME]
        for gc in ours:
            self._write(f"{API}/gatewayclasses/{gc['metadata']['name']}/status", gc, model.class_status(gc, _now()))
        if (gateway.get("spec") or {}).get("gatewayClassName") not in {c["metadata"]["name"] for c in ours}:
            return
        routes = self._list(f"{API}/httproutes")
        selector = any(((lst.get("allowedRoutes") or {}).get("namespaces") or {}).get("from") == "Selector"
                       for lst in (gateway.get("spec") or {}).get("listeners") or [])
        labels = ({n["metadata"]["name"]: n["metadata"].get("labels") or {} for n in self._list("/api/v1/namespaces")}
                  if selector else {})
        result = model.build(gateway, self.address, routes, self._list("/api/v1/services"),
                             self._list("/apis/discovery.k8s.io/v1/endpointslices"),
                             self._list("/apis/gateway.networking.k8s.io/v1beta1/referencegrants", ok=(404,)),
                             labels, self.reachable)
        self.apply(result.config)
        for route in routes:
            ns, name = route["metadata"]["namespace"], route["metadata"]["name"]
            computed = model.route_status(route, result.route_parents.get((ns, name), []), _now())
            self._write(f"{API}/namespaces/{ns}/httproutes/{name}/status", route, computed)
        self._write(f"{API}/namespaces/{self.namespace}/gateways/{self.name}/status", gateway,
                    model.gateway_status(gateway, result, self.programmed, self.problem if not self.programmed else "",
                                         _now()))

    def _write(self, path: str, obj: dict[str, Any], status: dict[str, Any]) -> None:
        if not model.status_changed(obj.get("status"), status):
            return
        try:
            self.api.request("PATCH", path, {"status": status}, content_type=MERGE, ok=(404, 409))
        except KubeHttpError as exc:
            self.say(f"status of {path}: {exc}")

    def apply(self, config: model.ProxyConfig) -> None:
        """Bring HAProxy to ``config``: start it, reload it (structure changed), or runtime commands."""
        slots = haproxy.assign_slots(config, self.slots)
        shape = haproxy.structure(config, slots)
        text = haproxy.render(config, slots, str(self.proxy.stats_socket))
        if text == self.text and self.proxy.proc is not None and self.proxy.proc.poll() is None:
            return
        servers = sum(1 for s in slots.values() for x in s if x is not None)
        summary = (f"{len(config.matches)} matches, {len(config.backends)} backends, {servers} servers")
        try:
            if self.proxy.proc is None or self.proxy.proc.poll() is not None:
                if self.proxy.proc is not None:
                    self.say(f"haproxy exited ({self.proxy.proc.returncode}); starting it again")
                started = time.monotonic()
                self.proxy.start(text)
                self.say(f"haproxy started on {config.address}:{','.join(map(str, config.ports))} "
                         f"in {time.monotonic() - started:.2f}s ({summary})")
            elif shape != self.structure:
                started = time.monotonic()
                self.proxy.reload(text)
                self.say(f"reloaded in {time.monotonic() - started:.2f}s ({summary})")
            else:
                commands = haproxy.runtime_commands(self.slots or {}, slots)
                self.proxy.runtime(commands)
                self.proxy.write_config(text)
                self.say(f"runtime API: {'; '.join(commands)}")
        except (haproxy.HAProxyError, OSError) as exc:
            self.programmed, self.problem = False, str(exc)[:1000]
            self.say(f"could not program haproxy: {exc}")
            self.text = None  # try again next time
            return
        self.slots, self.structure, self.text = slots, shape, text
        self.programmed, self.problem = True, ""

    def run(self, should_stop: Callable[[], bool], period: float = 0.5) -> None:
        self.say(f"programming Gateway {self.namespace}/{self.name} on {self.address}")
        try:
            while not should_stop():
                started = time.monotonic()
                try:
                    self.sync_once()
                except KubeHttpError as exc:
                    self.say(f"API call failed, retrying: {exc}")
                time.sleep(max(0.0, period - (time.monotonic() - started)))
        finally:
            self.proxy.stop()
            self.say("stopped")


def main(argv: list[str] | None = None) -> int:
    import argparse

    from modeldeploy.sandbox.podrunner.runner import _pdeathsig

    parser = argparse.ArgumentParser(prog="python -m modeldeploy.sandbox.gateway",
                                     description="The sandbox's dev-only Gateway API controller (HAProxy).")
    parser.add_argument("--kubeconfig", required=True, type=Path)
    parser.add_argument("--gateway", default="gateway-system/sandbox", help="namespace/name of the Gateway")
    parser.add_argument("--address", required=True, help="the address HAProxy listens on")
    parser.add_argument("--pod-cidr", default=None, help="only endpoints in this range are used (the pod network)")
    parser.add_argument("--dir", required=True, type=Path, help="folder for haproxy.cfg, sockets, its log")
    parser.add_argument("--period", type=float, default=0.5)
    args = parser.parse_args(argv)
    binary = haproxy.find_binary()
    if binary is None:
        print("gateway: haproxy is not installed (apt-get install haproxy)", file=sys.stderr)
        return 2
    pod_range = podnet.PodRange.parse(args.pod_cidr) if args.pod_cidr else None
    namespace, name = args.gateway.split("/", 1)
    args.dir.mkdir(parents=True, exist_ok=True)
    proxy = haproxy.HAProxy(binary, args.dir, args.dir / "haproxy.log", preexec=_pdeathsig())
    controller = Controller(KubeHttp(args.kubeconfig), namespace, name, args.address, proxy,
                            reachable=pod_range.contains if pod_range else (lambda ip: True))
    stop: list[int] = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    try:
        controller.run(lambda: bool(stop), args.period)
    except KeyboardInterrupt:
        pass
    return 0
