"""Model URIs: parsing per scheme, redaction, the pvc:// mount convention, and the optional cloud libraries.

s3:// and gs:// are tested only as far as no cloud is needed: URI parsing and the error when the client
library is missing. Their downloads are not exercised here.
"""

import sys

import pytest

from modeldeploy.fetch.errors import FetchError, InvalidURI, MissingDependency
from modeldeploy.fetch.layout import FetchRequest, fetch_model
from modeldeploy.fetch.sources import import_boto3, import_gcs
from modeldeploy.fetch.uri import PVC_MOUNT_ROOT, parse_uri, pvc_mount_path, redact


@pytest.mark.parametrize("uri, scheme, location, path, is_prefix", [
    ("file:///srv/models/m.onnx", "file", "", "/srv/models/m.onnx", False),
    ("file://localhost/srv/m", "file", "", "/srv/m", False),
    ("https://models.example.com/digits/1/model.onnx", "https", "models.example.com", "/digits/1/model.onnx", False),
    ("http://127.0.0.1:8080/m.onnx?sig=abc", "http", "127.0.0.1:8080", "/m.onnx", False),
    ("pvc://model-store/vision/resnet50/", "pvc", "model-store", "vision/resnet50/", True),
    ("pvc://model-store/m.onnx", "pvc", "model-store", "m.onnx", False),
    ("pvc://model-store", "pvc", "model-store", "", True),
    ("s3://bucket/minilm/model.onnx", "s3", "bucket", "minilm/model.onnx", False),
    ("s3://bucket/minilm/", "s3", "bucket", "minilm/", True),
    ("s3://bucket", "s3", "bucket", "", True),
    ("s3://bucket/key with ?and#/x", "s3", "bucket", "key with ?and#/x", False),  # keys are literal
    ("gs://team-models/embedder/", "gs", "team-models", "embedder/", True),
    ("gs://team-models/embedder/model.py", "gs", "team-models", "embedder/model.py", False),
])
def test_parse(uri, scheme, location, path, is_prefix):
    parsed = parse_uri(uri)
    assert (parsed.scheme, parsed.location, parsed.path, parsed.is_prefix) == (scheme, location, path, is_prefix)


@pytest.mark.parametrize("uri, says", [
    ("models/m.onnx", "not a URI"),
    ("ftp://host/m.onnx", "unsupported scheme ftp://"),
    ("file://relative/m.onnx", "absolute path"),
    ("https:///m.onnx", "no host"),
    ("http://host:99999/m", "out of range"),
    ("s3:///key", "no bucket name"),
    ("gs:///key", "no bucket name"),
    ("pvc:///path", "no claim name"),
    ("pvc://Model_Store/m.onnx", "not a valid PersistentVolumeClaim name"),
    ("pvc://store/../other/m.onnx", "'..' is not allowed"),
    ("file:///srv/../etc/passwd", "'..' is not allowed"),
])
def test_invalid(uri, says):
    with pytest.raises(InvalidURI, match=says.replace("?", r"\?")) as err:
        parse_uri(uri)
    assert isinstance(err.value, FetchError) and isinstance(err.value, ValueError)
    assert "\n" not in str(err.value)


def test_redact_drops_credentials_and_query():
    assert redact("https://user:pw@host:8443/a/m.onnx?X-Amz-Signature=s3cr3t") == "https://host:8443/a/m.onnx?…"
    assert redact("https://host/m.onnx") == "https://host/m.onnx"
    assert redact("s3://bucket/key") == "s3://bucket/key"
    assert str(parse_uri("https://u:p@h/m?sig=x")) == "https://h/m?…"


def test_pvc_mount_path():
    assert PVC_MOUNT_ROOT == "/mnt/pvc"
    assert pvc_mount_path("model-store") == "/mnt/pvc/model-store"
    assert pvc_mount_path("c", "/tmp/x/") == "/tmp/x/c"


@pytest.mark.parametrize("module, importer, scheme, package", [
    ("boto3", import_boto3, "s3", "boto3"),
    ("google.cloud.storage", import_gcs, "gs", "google-cloud-storage"),
])
def test_missing_cloud_library(monkeypatch, module, importer, scheme, package):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    with pytest.raises(MissingDependency, match=f"{scheme}:// needs {package}.*modeldeploy\\[fetch\\]"):
        importer()


@pytest.mark.parametrize("module, uri", [("boto3", "s3://bucket/m.onnx"), ("google.cloud.storage", "gs://b/m.onnx")])
def test_missing_cloud_library_fails_the_fetch_and_leaves_nothing(monkeypatch, tmp_path, module, uri):
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(MissingDependency):
        fetch_model(FetchRequest(uri, "onnx", "m", 1, tmp_path), out=open("/dev/null", "w"))
    assert [p.name for p in (tmp_path / "m").iterdir()] == []
