"""Pod runner, pure parts: claiming pods, the kwok patch, pod spec -> process plan, Triton argv/config."""

import base64
import copy
import doctest
import json
from pathlib import Path

import pytest

from modeldeploy.agent.sandbox import SHIM_ENV
from modeldeploy.api.spec import parse_spec
from modeldeploy.render.triton import Owner, RenderOptions, render_children
from modeldeploy.sandbox import nodes
from modeldeploy.sandbox.podrunner import claim, lifecycle, onnx_python_model, plan, triton

CONFIG = plan.HostConfig(
    pods_root=Path("/r/pods"), pvc_root=Path("/r/pvc"), triton_binary=Path("/w/bin/tritonserver"),
    backend_dir=Path("/r/backends"), python="/v/bin/python", base_env={"PATH": "/v/bin:/usr/bin"},
)


@pytest.mark.parametrize("module", [claim, plan, lifecycle, triton, onnx_python_model])
def test_docstring_examples(module):
    assert doctest.testmod(module).failed == 0


def operator_pod(init_containers=()):
    """A pod as the ReplicaSet controller creates it from the operator's rendered Deployment."""
    md = {"model": {"uri": "https://x/digits/1/model.onnx", "format": "onnx", "name": "digits"},
          "serving": {"maxBatchSize": 8}, "resources": {"gpu": {"count": 1}}}
    children = render_children(Owner("digits", "t-unit", "uid-1"), parse_spec("digits", md), "abc123", RenderOptions())
    cm, deployment = children[1], children[3]
    template = copy.deepcopy(deployment["spec"]["template"])
    spec = template["spec"]
    spec["initContainers"] = list(init_containers)
    spec["nodeName"] = "local-0"
    spec["restartPolicy"] = "Always"
    pod = {"metadata": {"name": "digits-stable-xyz", "namespace": "t-unit", "uid": "0123456789ab",
                        "labels": template["metadata"]["labels"], "annotations": {}}, "spec": spec}
    return pod, cm


FETCH = {"name": "fetch-model", "image": "ghcr.io/modeldeploy/modeldeploy:0.1.0",
         "args": ["fetch", "--uri", "https://x/digits/1/model.onnx", "--repository", "/models",
                  "--termination-log", "/dev/termination-log"],
         "volumeMounts": [{"name": "model-repository", "mountPath": "/models"}]}


def lookup_from(objects):
    return lambda kind, name: objects.get((kind, name))


# --- claim -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("image,kind", [
    ("nvcr.io/nvidia/tritonserver:25.10-py3", "triton"),
    ("tritonserver", "triton"),
    ("registry.local:5000/team/tritonserver@sha256:abc", "triton"),
    ("ghcr.io/modeldeploy/modeldeploy:0.1.0", "modeldeploy"),
    ("localhost:5000/modeldeploy", "modeldeploy"),
    ("busybox:1.36", None),
    ("nvcr.io/nvidia/tritonserver-client:25.10", None),
])
def test_image_kind(image, kind):
    assert claim.image_kind(image) == kind


@pytest.mark.parametrize("node_name,claimed", [("local-0", True), ("gpu-h100-0", False), (None, False)])
def test_claims_every_pod_bound_to_the_runner_node_only(node_name, claimed):
    pod = {"metadata": {"name": "p"}, "spec": {"nodeName": node_name, "containers": []}}
    assert claim.claims(pod, "local-0") is claimed


def test_unrunnable_images_are_named():
    pod, _ = operator_pod([FETCH, {"name": "side", "image": "busybox"}])
    assert claim.unrunnable_images(pod) == ["busybox"]


def test_runner_node_is_a_gpu_node_kwok_does_not_manage():
    node = claim.runner_node("local-0", gpus=2)
    assert nodes.KWOK_ANNOTATION not in node["metadata"]["annotations"]
    assert node["status"]["allocatable"]["nvidia.com/gpu"] == "2"
    assert node["metadata"]["labels"][nodes.POOL_LABEL] == "local"
    assert node["metadata"]["labels"]["nvidia.com/gpu.product"] == nodes.H100.product
    assert claim.RUNNER_TAINT in node["spec"]["taints"] and nodes.GPU_TAINT in node["spec"]["taints"]
    # the simulated nodes keep the annotation kwok is told to select on
    assert all(n["metadata"]["annotations"][nodes.KWOK_ANNOTATION] == "fake" for n in nodes.default_nodes())


def test_kwok_patch_overrides_manage_all_nodes_in_place():
    patch = claim.kwok_controller_patch()
    args = {a["key"]: a for a in patch["extraArgs"]}
    assert patch["name"] == "kwok-controller"
    assert args["manage-all-nodes"] == {"key": "manage-all-nodes", "value": "false", "override": True}
    assert args["manage-nodes-with-annotation-selector"]["value"] == "kwok.x-k8s.io/node=fake"
    assert not args["manage-nodes-with-annotation-selector"].get("override")


# --- plan: the operator's Triton pod -----------------------------------------------------------------

AGENT_SECRET = {"metadata": {"name": "digits-agent-keys"},
                "data": {"token": base64.b64encode(b"t0ken").decode(), "triton-key": base64.b64encode(b"k3y").decode()}}


def test_operator_triton_pod_becomes_the_wheel_tritonserver_on_remapped_ports():
    pod, cm = operator_pod()
    ports = plan.assign_ports(plan.wanted_ports(pod), None, iter([41000, 41001, 41002, 41009]))
    assert ports == {8000: 41000, 8001: 41001, 8002: 41002, 8009: 41009}  # Triton's three and the agent's
    triton_c = pod["spec"]["containers"][0]
    p = plan.plan_container(CONFIG, pod, triton_c, ports, lookup_from({("ConfigMap", cm["metadata"]["name"]): cm,
                                                                       ("Secret", "digits-agent-keys"): AGENT_SECRET}))
    # $(VAR) in the arguments is expanded from the container's environment, as the kubelet does: Triton's
    # control API is restricted with the Secret's key, not with the literal "$(...)"
    assert ("--http-restricted-api=model-repository,model-config,shared-memory,trace,logging:"
            "modeldeploy-triton-key=k3y") in p.argv
    assert not any("$(" in a for a in p.argv)
    repo = "/r/pods/t-unit_digits-stable-xyz_01234567/volumes/model-repository"
    assert p.argv[0] == "/w/bin/tritonserver"
    assert f"--model-repository={repo}" in p.argv
    assert "--load-model=digits" in p.argv and "--model-control-mode=explicit" in p.argv
    assert [a for a in p.argv if a.split("=")[0] in triton.PORT_FLAGS] == [
        "--http-port=41000", "--grpc-port=41001", "--metrics-port=41002"]
    assert "--backend-directory=/r/backends" in p.argv and "--http-address=127.0.0.1" in p.argv
    # the config.pbtxt subPath mount inside /models becomes a symlink into the repository folder
    assert p.links == [(f"{repo}/digits/config.pbtxt",
                        "/r/pods/t-unit_digits-stable-xyz_01234567/volumes/model-config/config.pbtxt")]
    assert all(m.container_path != "/dev/shm" for m in p.mounts)
    assert p.env["HOSTNAME"] == "digits-stable-xyz" and p.env["PATH"] == "/v/bin:/usr/bin"
    assert repo in p.folders


@pytest.mark.parametrize("text, expected", [
    ("--k=$(A)", "--k=1"), ("$(A)$(B)", "12"), ("$(MISSING)", "$(MISSING)"), ("$$(A)", "$(A)"), ("$$$(A)", "$1"),
    ("$(A", "$(A"), ("cost $5", "cost $5"), ("$", "$"), ("$()", "$()"), ("a$(A)b", "a1b"),
])
def test_env_references_expand_as_the_kubelet_expands_them(text, expected):
    assert plan.expand(text, {"A": "1", "B": "2"}) == expected


def test_operator_pod_with_a_pod_ip_binds_it_on_the_real_ports_and_the_agent_reaches_triton_there():
    pod, cm = operator_pod()
    ports = {p: p for p in plan.wanted_ports(pod)}          # a pod with its own IP keeps its container ports
    objects = {("ConfigMap", cm["metadata"]["name"]): cm,
               ("Secret", "digits-agent-keys"): {"data": {"token": base64.b64encode(b"t").decode(),
                                                        "triton-key": base64.b64encode(b"k3y").decode()}}}
    triton_c, agent_c = pod["spec"]["containers"]
    p = plan.plan_container(CONFIG, pod, triton_c, ports, lookup_from(objects), "10.244.3.7")
    assert [a for a in p.argv if a.split("=")[0] in (*triton.PORT_FLAGS, *triton.ADDRESS_FLAGS)] == [
        "--http-address=10.244.3.7", "--grpc-address=10.244.3.7", "--metrics-address=10.244.3.7",
        "--http-port=8000", "--grpc-port=8001", "--metrics-port=8002"]
    a = plan.plan_container(CONFIG, pod, agent_c, ports, lookup_from(objects), "10.244.3.7")
    assert a.argv[a.argv.index("--triton-url") + 1] == "10.244.3.7:8000"       # $(POD_IP) from the downward API
    assert a.argv[a.argv.index("--triton-grpc-url") + 1] == "10.244.3.7:8001"
    assert a.argv[a.argv.index("--port") + 1] == "8009" and a.argv[-1] == "--address=10.244.3.7"
    assert a.env["POD_IP"] == "10.244.3.7" and a.env["MODELDEPLOY_TRITON_API_KEY"] == "k3y"
    # the fallback (no pod network): the same pod on 127.0.0.1 with mapped ports, sibling URL rewritten
    mapped = {8000: 41000, 8001: 41001, 8002: 41002, 8009: 41009}
    a = plan.plan_container(CONFIG, pod, agent_c, mapped, lookup_from(objects))
    assert a.argv[a.argv.index("--triton-url") + 1] == "127.0.0.1:41000"
    assert a.argv[a.argv.index("--port") + 1] == "41009" and a.argv[-1] == "--address=127.0.0.1"


@pytest.mark.parametrize("text,env,expected", [
    ("$(A)", {"A": "1"}, "1"),
    ("x$(A)y$(B)z", {"A": "1", "B": "2"}, "x1y2z"),
    ("$(UNSET)", {}, "$(UNSET)"),              # undefined: left as written
    ("$$(A)", {"A": "1"}, "$(A)"),             # escaped
    ("$$$(A)", {"A": "1"}, "$1"),
    ("$(A", {"A": "1"}, "$(A"),                # incomplete
    ("100$", {}, "100$"),
    ("$A", {"A": "1"}, "$A"),                  # only the $(...) form
    ("$()", {"": "e"}, "e"),
])
def test_expand_follows_the_kubelet(text, env, expected):
    assert plan.expand(text, env) == expected


def test_env_values_expand_earlier_variables_only():
    pod, _ = operator_pod()
    container = {"name": "c", "image": "ghcr.io/modeldeploy/modeldeploy:0.1.0", "args": ["x", "$(LATER)"],
                 "env": [{"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                         {"name": "URL", "value": "http://$(IP):8000/$(LATER)"},
                         {"name": "LATER", "value": "l"}]}
    p = plan.plan_container(CONFIG, pod, container, {}, lookup_from({}), "10.244.3.9")
    assert p.env["URL"] == "http://10.244.3.9:8000/$(LATER)" and p.argv[-1] == "l"


def test_init_container_of_modeldeploy_image_runs_python_module_with_host_paths():
    pod, _ = operator_pod([FETCH])
    p = plan.plan_container(CONFIG, pod, FETCH, {}, lookup_from({}))
    base = "/r/pods/t-unit_digits-stable-xyz_01234567"
    assert p.argv == ["/v/bin/python", "-m", "modeldeploy", "fetch", "--uri", "https://x/digits/1/model.onnx",
                      "--repository", f"{base}/volumes/model-repository",
                      "--termination-log", f"{base}/containers/fetch-model/termination-log"]
    assert p.termination_log == f"{base}/containers/fetch-model/termination-log"
    assert p.env[SHIM_ENV] == str(triton.SHIM_MODEL)  # the model agent shims the versions it fetches
    assert p.cwd == f"{base}/containers/fetch-model/rootfs"


@pytest.mark.parametrize("container,reason", [
    ({"name": "c", "image": "busybox", "args": ["sleep", "1"]}, "ErrImageNeverPull"),
    ({"name": "c", "image": "nvcr.io/nvidia/tritonserver:25.10-py3", "command": ["bash", "-c", "x"]},
     "CreateContainerError"),
    ({"name": "c", "image": "x/modeldeploy:1", "command": ["sh"]}, "CreateContainerError"),
    ({"name": "c", "image": "x/modeldeploy:1", "volumeMounts": [{"name": "nope", "mountPath": "/x"}]},
     "CreateContainerConfigError"),
    ({"name": "c", "image": "x/modeldeploy:1", "env": [{"name": "X", "valueFrom": {"resourceFieldRef": {}}}]},
     "CreateContainerConfigError"),
    ({"name": "c", "image": "x/modeldeploy:1", "env": [{"name": "X", "valueFrom": {
        "configMapKeyRef": {"name": "missing", "key": "k"}}}]}, "CreateContainerConfigError"),
])
def test_unrunnable_containers_fail_with_the_kubelets_reason(container, reason):
    pod = {"metadata": {"name": "p", "namespace": "ns", "uid": "u"}, "spec": {"containers": [container]}}
    with pytest.raises(plan.PlanError) as err:
        plan.plan_container(CONFIG, pod, container, {}, lookup_from({}))
    assert err.value.reason == reason


def test_env_sources():
    pod = {"metadata": {"name": "p", "namespace": "ns", "uid": "u", "labels": {"app": "a"}},
           "spec": {"nodeName": "local-0", "volumes": [{"name": "data", "emptyDir": {}}]}}
    container = {"name": "c", "image": "x/modeldeploy:1",
                 "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                 "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"}],
                 "env": [{"name": "PLAIN", "value": "hello"},
                         {"name": "DIR", "value": "/data/sub"},
                         {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                         {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                         {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                         {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "s", "key": "pw"}}},
                         {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "s", "key": "no", "optional": True}}}]}
    objects = {("ConfigMap", "cm"): {"data": {"A": "1"}},
               ("Secret", "s"): {"data": {"pw": base64.b64encode(b"secret").decode()}}}
    env = plan.plan_container(CONFIG, pod, container, {}, lookup_from(objects)).env
    assert {k: env[k] for k in ("CM_A", "PLAIN", "DIR", "POD", "IP", "APP", "PW")} == {
        "CM_A": "1", "PLAIN": "hello", "DIR": "/r/pods/ns_p_u/volumes/data/sub", "POD": "p",
        "IP": "127.0.0.1", "APP": "a", "PW": "secret"}
    assert "OPT" not in env


# --- plan: volumes -----------------------------------------------------------------------------------

POD = {"metadata": {"name": "p", "namespace": "ns", "uid": "u"}, "spec": {"serviceAccountName": "sa"}}


@pytest.mark.parametrize("volume,files", [
    ({"name": "v", "emptyDir": {}}, None),
    ({"name": "v", "persistentVolumeClaim": {"claimName": "models"}}, None),
    ({"name": "v", "configMap": {"name": "cm"}}, {"config.pbtxt": b"name: \"d\"", "bin": b"\x00\x01"}),
    ({"name": "v", "configMap": {"name": "cm", "items": [{"key": "config.pbtxt", "path": "d/config.pbtxt"}]}},
     {"d/config.pbtxt": b"name: \"d\""}),
    ({"name": "v", "configMap": {"name": "absent", "optional": True}}, {}),
    ({"name": "v", "secret": {"secretName": "s"}}, {"token": b"t0k"}),
    ({"name": "v", "downwardAPI": {"items": [{"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
     {"ns": b"ns"}),
    ({"name": "kube-api-access", "projected": {"sources": [
        {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}]}},
     {"token": b"jwt-for-sa", "ca.crt": b"PEM", "namespace": b"ns"}),
])
def test_volume_files(volume, files):
    objects = {("ConfigMap", "cm"): {"data": {"config.pbtxt": 'name: "d"'},
                                     "binaryData": {"bin": base64.b64encode(b"\x00\x01").decode()}},
               ("ConfigMap", "kube-root-ca.crt"): {"data": {"ca.crt": "PEM"}},
               ("Secret", "s"): {"data": {"token": base64.b64encode(b"t0k").decode()}},
               ("ServiceAccountToken", "sa"): {"token": "jwt-for-sa"}}
    assert plan.volume_files(POD, volume, lookup_from(objects)) == files


@pytest.mark.parametrize("volume,error", [
    ({"name": "v", "configMap": {"name": "absent"}}, "configmap 'absent' not found"),
    ({"name": "v", "configMap": {"name": "cm", "items": [{"key": "nope", "path": "x"}]}}, "has no key 'nope'"),
    ({"name": "v", "nfs": {"server": "s", "path": "/"}}, "nfs is not supported"),
])
def test_volume_errors(volume, error):
    with pytest.raises(plan.PlanError, match=error):
        plan.volume_files(POD, volume, lookup_from({("ConfigMap", "cm"): {"data": {"a": "b"}}}))


@pytest.mark.parametrize("volume,host", [
    ({"name": "v", "emptyDir": {"medium": "Memory"}}, "/r/pods/ns_p_u/volumes/v"),
    ({"name": "v", "configMap": {"name": "cm"}}, "/r/pods/ns_p_u/volumes/v"),
    ({"name": "v", "persistentVolumeClaim": {"claimName": "models", "readOnly": True}}, "/r/pvc/ns/models"),
    ({"name": "v", "hostPath": {"path": "/srv/models"}}, "/srv/models"),
])
def test_volume_host_paths(volume, host):
    assert plan.volume_host_path(CONFIG, POD, volume) == host


@pytest.mark.parametrize("arg,expected", [
    ("--model-repository=/models", "--model-repository=/host/models"),
    ("/models/digits/1/model.onnx", "/host/models/digits/1/model.onnx"),
    ("/mnt/pvc/claim/a", "/r/pvc/ns/claim/a"),
    ("--x=/etc/hosts", "--x=/etc/hosts"),
    ("relative/models", "relative/models"),
    ("--flag", "--flag"),
    ("https://x/models", "https://x/models"),
])
def test_translate_arg(arg, expected):
    mounts = [plan.Mount("/models", "/host/models"), plan.Mount("/mnt/pvc/claim", "/r/pvc/ns/claim")]
    assert plan.translate_arg(arg, mounts) == expected


# --- ports -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("recorded,expected", [
    (None, {8000: 1, 8001: 2, 8002: 3}),
    ('{"8000": 40000, "8001": 40001, "8002": 40002}', {8000: 40000, 8001: 40001, 8002: 40002}),
    ('{"8001": 40001}', {8000: 1, 8001: 40001, 8002: 2}),
    ("not json", {8000: 1, 8001: 2, 8002: 3}),
])
def test_assign_ports_keeps_recorded_choices(recorded, expected):
    assert plan.assign_ports([8000, 8001, 8002], recorded, iter(range(1, 10))) == expected


def test_ports_annotation_round_trips():
    value = plan.ports_annotation({8002: 3, 8000: 1})
    assert value == '{"8000":1,"8002":3}'
    assert plan.assign_ports([8000, 8002], value, iter([])) == {8000: 1, 8002: 3}


def test_triton_ports_without_flags_are_remapped_too():
    pod = {"spec": {"containers": [{"name": "t", "image": "nvcr.io/nvidia/tritonserver:1",
                                    "args": ["tritonserver", "--model-repository=/m", "--grpc-port=9001"]}]}}
    assert plan.wanted_ports(pod) == [8000, 8002, 9001]


@pytest.mark.parametrize("port,expected", [("http", 8000), (8002, 8002), ("8001", 8001)])
def test_named_port(port, expected):
    pod, _ = operator_pod()
    assert plan.named_port(pod, pod["spec"]["containers"][0], port) == expected


# --- triton ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["tritonserver", "--http-port", "8000", "--backend-directory", "/opt/x", "--log-verbose=1"],
    ["tritonserver", "--http-port=8000", "--http-address=0.0.0.0", "--log-verbose=1"],
])
def test_triton_argv_replaces_runner_flags_in_both_spellings(args):
    argv = triton.triton_argv(args, Path("/w/tritonserver"), Path("/b"), {8000: 1, 8001: 2, 8002: 3})
    assert argv == ["/w/tritonserver", "--log-verbose=1", "--backend-directory=/b", "--http-address=127.0.0.1",
                    "--grpc-address=127.0.0.1", "--metrics-address=127.0.0.1", "--http-port=1", "--grpc-port=2",
                    "--metrics-port=3"]


@pytest.mark.parametrize("original,adapted,onnx", [
    ('backend: "onnxruntime"\ninstance_group [ { count: 2 kind: KIND_GPU } ]\n',
     'backend: "python"\ninstance_group [ { count: 2 kind: KIND_CPU } ]\n', True),
    ('platform: "onnxruntime_onnx"\n', 'backend: "python"\n', True),
    ('backend: "python"\n', 'backend: "python"\n', False),
    ('backend: "pytorch"\n', 'backend: "pytorch"\n', False),
])
def test_adapt_config_pbtxt(original, adapted, onnx):
    assert triton.adapt_config_pbtxt(original) == adapted
    assert triton.is_onnx_config(original) is onnx


def test_operator_config_pbtxt_adapts_to_python_cpu():
    _, cm = operator_pod()
    text = triton.adapt_config_pbtxt(cm["data"]["config.pbtxt"])
    assert 'backend: "python"' in text and "KIND_CPU" in text and "KIND_GPU" not in text
    assert "max_batch_size: 8" in text


def test_prepare_backend_dir_links_the_stub(tmp_path):
    wheel = tmp_path / "wheel"
    (wheel / "backends" / "python").mkdir(parents=True)
    (wheel / "backends" / "python" / "libtriton_python.so").write_text("so")
    (wheel / "backends" / "python" / "triton_python_backend_utils.py").write_text("py")
    (wheel / "python_backend_stubs" / "3.11").mkdir(parents=True)
    (wheel / "python_backend_stubs" / "3.11" / "triton_python_backend_stub").write_text("stub")
    out = triton.prepare_backend_dir(wheel, tmp_path / "b", "3.11")
    triton.prepare_backend_dir(wheel, tmp_path / "b", "3.11")  # idempotent
    names = sorted(p.name for p in (out / "python").iterdir())
    assert names == ["libtriton_python.so", "triton_python_backend_stub", "triton_python_backend_utils.py"]
    assert (out / "python" / "triton_python_backend_stub").read_text() == "stub"
    with pytest.raises(triton.TritonNotFound, match="3.99"):
        triton.prepare_backend_dir(wheel, tmp_path / "c", "3.99")


# --- the python-backend model's helpers --------------------------------------------------------------

@pytest.mark.parametrize("name,ort_type,shape,batching,expected", [
    ("x", "tensor(float)", ["N", 1, 8, 8], True, {"name": "x", "data_type": "TYPE_FP32", "dims": [1, 8, 8]}),
    ("ids", "tensor(int64)", ["batch", "seq"], True, {"name": "ids", "data_type": "TYPE_INT64", "dims": [-1]}),
    ("x", "tensor(float16)", [4, 3], False, {"name": "x", "data_type": "TYPE_FP16", "dims": [4, 3]}),
    ("x", "tensor(uint8)", [None, 3], False, {"name": "x", "data_type": "TYPE_UINT8", "dims": [-1, 3]}),
])
def test_tensor_config_from_onnx(name, ort_type, shape, batching, expected):
    assert onnx_python_model.tensor_config(name, ort_type, shape, batching) == expected


def test_tensor_config_refuses_what_triton_cannot_type_or_batch():
    with pytest.raises(ValueError, match="no Triton equivalent"):
        onnx_python_model.tensor_config("x", "seq(tensor(float))", [1], False)
    with pytest.raises(ValueError, match="not dynamic"):
        onnx_python_model.tensor_config("x", "tensor(float)", [4, 3], True)


def test_shim_goes_next_to_model_onnx():
    assert onnx_python_model.model_path("/repo/d/1/model.py") == "/repo/d/1/model.onnx"
    assert json.dumps(triton.shim_files({"1": ["model.onnx"]})) == '["1/model.py"]'


# --- layering: the decision modules stay pure --------------------------------------------------------

@pytest.mark.parametrize("module", ["claim", "plan", "lifecycle", "triton", "onnx_python_model"])
def test_podrunner_decision_modules_do_no_network_or_process_io(module):
    import ast

    path = Path(plan.__file__).with_name(f"{module}.py")
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            imported.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    forbidden = ("subprocess", "socket", "urllib", "http", "kubernetes", "modeldeploy.sandbox.kubeapi",
                 "modeldeploy.sandbox.cluster", "modeldeploy.sandbox.podrunner.runner")
    assert [n for n in imported if any(n == f or n.startswith(f + ".") for f in forbidden)] == []
