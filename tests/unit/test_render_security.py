"""What every rendered pod promises about security: Pod Security "restricted", resources, no service
account token, Triton's control API closed to all but the model agent, the agent's token from the Secret.

The Pod Security rules are checked here in Python (a transcription of the "restricted" profile for the
fields our pods use) and, against the real API server's admission, in
tests/integration/test_pod_security.py.
"""

from pathlib import Path

import pytest
import yaml

from modeldeploy.api import agent_auth
from modeldeploy.api.spec import parse_spec
from modeldeploy.render import compression_job, names
from modeldeploy.render import triton as t

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
OWNER = t.Owner("digits", "team-a", "uid-1")
OPTIONS = t.RenderOptions()
ALLOWED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                   "projected", "secret"}


def restricted_violations(pod_spec: dict) -> list[str]:
    """Pod Security Standards "restricted" (Kubernetes 1.35), for the fields our pods use."""
    problems = []
    pod_sc = pod_spec.get("securityContext") or {}
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod_spec.get(key):
            problems.append(key)
    for volume in pod_spec.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUMES:
            problems.append(f"volume {volume['name']}: {kinds}")
    for c in [*(pod_spec.get("initContainers") or []), *pod_spec["containers"]]:
        sc = c.get("securityContext") or {}
        name = c["name"]
        if sc.get("privileged"):
            problems.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation must be false")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            problems.append(f"{name}: must drop ALL capabilities")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: adds capabilities")
        if not (sc.get("runAsNonRoot") is True or (pod_sc.get("runAsNonRoot") is True
                                                    and sc.get("runAsNonRoot") is not False)):
            problems.append(f"{name}: runAsNonRoot")
        if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
            problems.append(f"{name}: runAsUser 0")
        seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: seccompProfile {seccomp}")
        for port in c.get("ports") or []:
            if port.get("hostPort"):
                problems.append(f"{name}: hostPort")
    return problems


def golden_specs():
    for path in sorted(GOLDEN.glob("*.input.yaml")):
        md = yaml.safe_load(path.read_text())
        yield path.name.removesuffix(".input.yaml"), parse_spec(md["metadata"]["name"], md["spec"])


def serving_pod(spec) -> dict:
    revision = names.revision_of(spec, OPTIONS.triton_image, OPTIONS.fetcher_image)
    return t.render_deployment(OWNER, spec, revision, OPTIONS)["spec"]["template"]["spec"]


def containers(pod_spec) -> list[dict]:
    return [*(pod_spec.get("initContainers") or []), *pod_spec["containers"]]


@pytest.mark.parametrize("case, spec", list(golden_specs()), ids=lambda x: x if isinstance(x, str) else "")
def test_serving_pods_pass_pod_security_restricted(case, spec):
    pod = serving_pod(spec)
    assert restricted_violations(pod) == []
    assert pod["automountServiceAccountToken"] is False
    for c in containers(pod):
        resources = c["resources"]
        assert set(resources["requests"]) >= {"cpu", "memory"}, c["name"]
        assert set(resources["limits"]) >= {"cpu", "memory"}, c["name"]
        assert c["securityContext"]["readOnlyRootFilesystem"] is True, c["name"]


def test_the_compression_job_passes_pod_security_restricted():
    for path in sorted((GOLDEN / "compression").glob("*.input.yaml")):
        md = yaml.safe_load(path.read_text())
        spec = parse_spec(md["metadata"]["name"], md["spec"])
        job = compression_job.render_job(OWNER, spec, "k" * 64, spec.compression.recipe, OPTIONS)
        pod = job["spec"]["template"]["spec"]
        assert restricted_violations(pod) == [], path.name
        assert pod["automountServiceAccountToken"] is False
        for c in containers(pod):
            assert set(c["resources"]["requests"]) >= {"cpu", "memory"} and set(c["resources"]["limits"]) >= {"cpu", "memory"}


def test_the_check_has_teeth():
    spec = parse_spec("digits", {"model": {"uri": "s3://b/m.onnx", "format": "onnx"}})
    pod = serving_pod(spec)
    pod["containers"][0]["securityContext"] = {}
    pod["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
    problems = restricted_violations(pod)
    assert "triton: allowPrivilegeEscalation must be false" in problems
    assert any(p.startswith("volume host") for p in problems)


def test_triton_runs_as_its_image_user_with_a_read_only_root_and_a_writable_tmp():
    pod = serving_pod(parse_spec("digits", {"model": {"uri": "s3://b/m.onnx", "format": "onnx"}}))
    triton = pod["containers"][0]
    assert triton["name"] == "triton"
    sc = triton["securityContext"]
    assert (sc["runAsUser"], sc["runAsGroup"], sc["runAsNonRoot"]) == (t.TRITON_UID, t.TRITON_UID, True)
    assert t.TRITON_UID == 1000  # the triton-server user of NVIDIA's tritonserver images
    mounts = {m["mountPath"]: m["name"] for m in triton["volumeMounts"]}
    assert mounts["/tmp"] == "tmp" and mounts["/dev/shm"] == "dshm"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes["tmp"]


def test_default_and_explicit_resources_of_triton():
    base = {"model": {"uri": "s3://b/m.onnx", "format": "onnx"}}
    default = serving_pod(parse_spec("d", base))["containers"][0]["resources"]
    assert default["requests"] == {"cpu": t.DEFAULT_TRITON_CPU, "memory": t.DEFAULT_TRITON_MEMORY}
    assert default["limits"] == {"cpu": t.DEFAULT_TRITON_CPU, "memory": t.DEFAULT_TRITON_MEMORY, "nvidia.com/gpu": 1}
    given = serving_pod(parse_spec("d", {**base, "resources": {"cpu": "6", "memory": "24Gi", "gpu": {"count": 0}}}))
    assert given["containers"][0]["resources"] == {"requests": {"cpu": "6", "memory": "24Gi"},
                                                   "limits": {"cpu": "6", "memory": "24Gi"}}


def test_replicas_spread_over_nodes_by_default_overridable_and_can_be_turned_off():
    base = {"model": {"uri": "s3://b/m.onnx", "format": "onnx"}}
    (spread,) = serving_pod(parse_spec("digits", base))["topologySpreadConstraints"]
    assert spread == {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway",
                      "labelSelector": {"matchLabels": names.selector_labels("digits")},
                      "matchLabelKeys": ["pod-template-hash"]}
    zone = {"maxSkew": 2, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app": "x"}}}
    given = serving_pod(parse_spec("digits", {**base, "placement": {"topologySpreadConstraints": [zone]}}))
    assert given["topologySpreadConstraints"] == [zone]
    off = serving_pod(parse_spec("digits", {**base, "placement": {"topologySpreadConstraints": []}}))
    assert "topologySpreadConstraints" not in off


def secret_env(container: dict, name: str) -> dict | None:
    for env in container.get("env") or []:
        if env["name"] == name:
            return env["valueFrom"]["secretKeyRef"]
    return None


def test_tritons_control_api_is_restricted_to_a_key_only_the_agent_holds():
    pod = serving_pod(parse_spec("digits", {"model": {"uri": "s3://b/m.onnx", "format": "onnx"}}))
    triton, agent = pod["containers"]
    key = f"$({agent_auth.TRITON_KEY_ENV})"
    restricted = ",".join(agent_auth.TRITON_RESTRICTED_APIS)
    assert f"--http-restricted-api={restricted}:{agent_auth.TRITON_KEY_HEADER}={key}" in triton["args"]
    assert f"--grpc-restricted-protocol={restricted}:{agent_auth.TRITON_KEY_HEADER}={key}" in triton["args"]
    assert set(agent_auth.TRITON_RESTRICTED_APIS) == {"model-repository", "model-config", "shared-memory", "trace",
                                                      "logging"}
    ref = {"name": names.agent_token_name("digits"), "key": agent_auth.TRITON_KEY_SECRET_KEY}
    assert secret_env(triton, agent_auth.TRITON_KEY_ENV) == ref
    assert secret_env(agent, agent_auth.TRITON_KEY_ENV) == ref
    assert secret_env(pod["initContainers"][0], agent_auth.TRITON_KEY_ENV) is None  # the fetcher has no use for it


def test_the_agent_reads_its_token_from_the_mounted_secret_not_an_env_var():
    pod = serving_pod(parse_spec("digits", {"model": {"uri": "s3://b/m.onnx", "format": "onnx"}}))
    agent = pod["containers"][1]
    assert agent["name"] == "model-agent"
    assert all(e["name"] != "MODELDEPLOY_AGENT_TOKEN" for e in agent.get("env") or [])
    i = agent["args"].index("--token-file")
    assert agent["args"][i + 1] == f"{t.AGENT_SECRET_DIR}/{t.AGENT_TOKEN_KEY}"
    mount = next(m for m in agent["volumeMounts"] if m["mountPath"] == t.AGENT_SECRET_DIR)
    assert mount["readOnly"] is True
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == names.agent_token_name("digits")
    assert "items" not in volume["secret"]  # a previous-token key added during a rotation shows up too
    assert all(m["name"] != mount["name"] for c in (pod["containers"][0], pod["initContainers"][0])
               for m in c["volumeMounts"])
