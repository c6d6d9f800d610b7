"""``modeldeploy fetch``: wiring into the CLI, exit codes, the termination log, and the rendered init container."""

import hashlib
import os
import subprocess
import sys
import base64
import tempfile
from pathlib import Path

import pytest

from modeldeploy import termination

from modeldeploy.api.spec import parse_spec
from modeldeploy.cli import build_parser, main
from modeldeploy.fetch import command
from modeldeploy.render.triton import DEFAULT_FETCHER_IMAGE, Owner, RenderOptions, render_deployment, render_model_source

ROOT = Path(__file__).resolve().parents[2]


def run(*argv):
    return main(["fetch", *argv])


def test_registered_in_the_cli():
    args = build_parser().parse_args(["fetch", "--uri", "s3://b/k", "--format", "onnx", "--name", "m",
                                      "--version", "2", "--sha256", "AB" * 32])
    assert args.func is command.run
    assert (args.repository, args.version, args.sha256) == ("/models", 2, "ab" * 32)


def test_help_works_as_a_module():
    result = subprocess.run([sys.executable, "-m", "modeldeploy", "fetch", "--help"], capture_output=True,
                            text=True, env={"PYTHONPATH": str(ROOT / "operator")}, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "--termination-log" in result.stdout


def test_success(tmp_path, capsys):
    src = tmp_path / "m.py"
    src.write_text("class TritonPythonModel: pass\n")
    log = tmp_path / "termination-log"
    code = run("--uri", f"file://{src}", "--format", "python", "--name", "echo", "--version", "1",
               "--sha256", hashlib.sha256(src.read_bytes()).hexdigest(),
               "--repository", str(tmp_path / "models"), "--termination-log", str(log))
    assert code == 0
    assert (tmp_path / "models" / "echo" / "1" / "model.py").exists()
    assert not log.exists()
    assert "model echo version 1 ready" in capsys.readouterr().out


def test_failure_writes_the_cause_to_the_termination_log(tmp_path, capsys):
    log = tmp_path / "termination-log"
    code = run("--uri", f"file://{tmp_path}/missing.onnx", "--format", "onnx", "--name", "m", "--version", "1",
               "--repository", str(tmp_path / "models"), "--termination-log", str(log))
    expected = f"SourceError: file://{tmp_path}/missing.onnx: no such file or directory: {tmp_path}/missing.onnx"
    assert code == 1
    assert log.read_text() == expected + "\n"
    assert capsys.readouterr().err.strip() == expected


def test_termination_log_path_from_env(tmp_path, monkeypatch):
    log = tmp_path / "from-env"
    monkeypatch.setenv(termination.TERMINATION_LOG_ENV, str(log))
    code = run("--uri", "ftp://x/m", "--format", "onnx", "--name", "m", "--version", "1",
               "--repository", str(tmp_path))
    assert code == 1
    assert log.read_text().startswith("InvalidURI: ftp://x/m: unsupported scheme ftp://")


def test_unexpected_error_still_leaves_a_cause(tmp_path, monkeypatch):
    from modeldeploy.fetch import layout

    def boom(*args, **kwargs):
        raise KeyError("bug")

    monkeypatch.setattr(layout, "fetch_model", boom)
    log = tmp_path / "log"
    code = run("--uri", "file:///x", "--format", "onnx", "--name", "m", "--version", "1",
               "--termination-log", str(log))
    assert code == 2
    assert log.read_text() == "FetchError: unexpected KeyError: 'bug'\n"


def test_credentials_never_reach_the_termination_log_or_stderr(tmp_path, capsys):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "log"
    code = run("--uri", f"http://alice:PW0@127.0.0.1:{port}/m.onnx?X-Amz-Signature=SIG1", "--format", "onnx",
               "--name", "m", "--version", "1", "--repository", str(tmp_path / "models"),
               "--termination-log", str(log), "--timeout", "2")
    assert code == 1
    assert log.read_text().startswith(f"SourceError: GET http://127.0.0.1:{port}/m.onnx?…: ")
    shown = log.read_text() + capsys.readouterr().err
    assert "PW0" not in shown and "SIG1" not in shown and "alice" not in shown


def test_an_unexpected_error_quoting_a_uri_is_redacted_too(tmp_path, monkeypatch, capsys):
    from modeldeploy.fetch import layout

    def boom(*args, **kwargs):
        raise RuntimeError("cannot open https://bob:PW1@h/m.onnx?sig=SIG2")

    monkeypatch.setattr(layout, "fetch_model", boom)
    log = tmp_path / "log"
    code = run("--uri", "file:///x", "--format", "onnx", "--name", "m", "--version", "1",
               "--termination-log", str(log))
    assert code == 2
    assert log.read_text() == "FetchError: unexpected RuntimeError: cannot open https://h/m.onnx?…\n"
    err = capsys.readouterr().err
    assert "Traceback" in err and "PW1" not in err and "SIG2" not in err


def test_every_termination_message_is_redacted(tmp_path):
    log = tmp_path / "log"
    assert termination.write_termination_log(str(log), "CompressError: dataset https://u:p@h/d.npz?sig=1: 403")
    assert log.read_text() == "CompressError: dataset https://h/d.npz?…: 403\n"


def test_termination_message_is_cut_to_what_the_kubelet_keeps(tmp_path):
    log = tmp_path / "log"
    assert termination.write_termination_log(str(log), "x" * 10_000)
    assert len(log.read_text()) == termination.MAX_TERMINATION_MESSAGE + 1


def test_unwritable_termination_log_is_not_fatal(tmp_path, capsys):
    assert not termination.write_termination_log(str(tmp_path / "no" / "such" / "dir"), "cause")
    assert "cannot write termination log" in capsys.readouterr().err


# --- the init container the operator renders ------------------------------------------------------------

def read_source_text(text: str) -> dict:
    from modeldeploy.fetch.source_file import read_source

    with tempfile.NamedTemporaryFile("w", suffix=".json") as fh:
        fh.write(text)
        fh.flush()
        return read_source(fh.name)


def init_container(model: dict, **spec):
    parsed = parse_spec("md", {"model": model, **spec})
    dep = render_deployment(Owner("md", "ns", "uid"), parsed, "rev", RenderOptions(fetcher_image="img:1"))
    pod = dep["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    return init, pod


def test_rendered_args_parse_with_the_fetch_cli():
    init, _ = init_container({"uri": "s3://b/m.onnx", "format": "onnx", "name": "digits", "version": 4,
                              "sha256": "c" * 64})
    assert init["image"] == "img:1"
    args = build_parser().parse_args(init["args"])
    assert (args.func, args.format, args.name, args.repository) == (command.run, "onnx", "digits", "/models")
    # the model itself comes from the mounted Secret <deployment>-model, not the pod template
    assert args.source_file == "/etc/modeldeploy/model/source.json" and args.uri is None
    source = render_model_source(Owner("md", "ns", "uid"), parse_spec("md", {"model": {
        "uri": "s3://b/m.onnx", "format": "onnx", "name": "digits", "version": 4, "sha256": "c" * 64}}))
    assert source["kind"] == "Secret"
    assert read_source_text(base64.b64decode(source["data"]["source.json"]).decode()) == {"uri": "s3://b/m.onnx", "version": 4,
                                                               "sha256": "c" * 64}
    assert args.termination_log == init["terminationMessagePath"] == "/dev/termination-log"
    assert args.pvc_mount is None


def test_every_path_of_the_fetcher_is_an_argument():
    """A runner that maps container paths to host paths by rewriting arguments must see them all."""
    init, _ = init_container({"uri": "pvc://store/a/b.onnx", "format": "onnx"})
    args = build_parser().parse_args(init["args"])
    mounts = {m["mountPath"] for m in init["volumeMounts"]} | {init["terminationMessagePath"]}
    assert {args.repository, args.termination_log, args.pvc_mount, os.path.dirname(args.source_file)} == mounts


def test_pvc_volume_is_mounted_where_the_fetcher_reads_it():
    init, pod = init_container({"uri": "pvc://store/a/b.onnx", "format": "onnx"})
    assert {"name": "model-source", "mountPath": "/mnt/pvc/store", "readOnly": True} in init["volumeMounts"]
    assert {"name": "model-source", "persistentVolumeClaim": {"claimName": "store", "readOnly": True}} in pod["volumes"]
    triton, agent = pod["containers"]
    assert "model-source" not in str(triton)  # Triton never sees the source; the agent fetches like the init
    assert {"name": "model-source", "mountPath": "/mnt/pvc/store", "readOnly": True} in agent["volumeMounts"]


@pytest.mark.parametrize("uri", ["s3://b/m.onnx", "https://h/m.onnx"])
def test_credentials_secret_as_env(uri):
    init, _ = init_container({"uri": uri, "format": "onnx", "credentialsSecret": "creds"})
    assert init["envFrom"] == [{"secretRef": {"name": "creds", "optional": False}}]


def test_credentials_secret_for_gcs_is_a_file():
    init, pod = init_container({"uri": "gs://b/m.onnx", "format": "onnx", "credentialsSecret": "creds"})
    assert "envFrom" not in init
    assert init["env"] == [{"name": "GOOGLE_APPLICATION_CREDENTIALS",
                            "value": "/var/run/secrets/modeldeploy/gcs/gcs.json"},
                           {"name": "STORAGE_EMULATOR_HOST", "valueFrom": {"secretKeyRef": {
                               "name": "creds", "key": "STORAGE_EMULATOR_HOST", "optional": True}}}]
    volume = next(v for v in pod["volumes"] if v["name"] == "model-credentials")
    assert volume["secret"]["secretName"] == "creds"


def test_no_credentials_no_env():
    init, _ = init_container({"uri": "s3://b/m.onnx", "format": "onnx"})
    assert "envFrom" not in init and "env" not in init


def test_init_container_is_restricted():
    init, _ = init_container({"uri": "s3://b/m.onnx", "format": "onnx"})
    sc = init["securityContext"]
    assert sc["runAsNonRoot"] and not sc["allowPrivilegeEscalation"] and sc["capabilities"] == {"drop": ["ALL"]}
    assert init["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert init["resources"]["limits"]["memory"] == "1Gi"


def test_fetcher_image_from_env():
    from modeldeploy.handlers.modeldeployment import options_from_env

    assert options_from_env({}).fetcher_image == DEFAULT_FETCHER_IMAGE
    assert DEFAULT_FETCHER_IMAGE.startswith("ghcr.io/modeldeploy/modeldeploy:")
    assert options_from_env({"MODELDEPLOY_FETCHER_IMAGE": "reg/md:dev"}).fetcher_image == "reg/md:dev"
