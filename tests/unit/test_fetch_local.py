"""file:// and pvc:// fetches: layout, sha256, folders, atomic install, permissions."""

import hashlib
import io
import os
import stat

import pytest

from modeldeploy.fetch import layout
from modeldeploy.fetch.errors import ChecksumMismatch, LayoutError, SourceError, TooLarge
from modeldeploy.fetch.layout import FetchRequest, fetch_model

PAYLOAD = b"\x08\x07onnx-model-bytes" * 1000


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch(repo, uri, fmt="onnx", name="digits", version=1, sha256=None, **kw):
    out = io.StringIO()
    target = fetch_model(FetchRequest(uri, fmt, name, version, repo, sha256), out=out, **kw)
    return target, out.getvalue()


def tree(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


@pytest.fixture
def repo(tmp_path):
    path = tmp_path / "models"
    path.mkdir()
    return path


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "src" / "digits.onnx"
    path.parent.mkdir()
    path.write_bytes(PAYLOAD)
    return path


@pytest.mark.parametrize("fmt, expected", [
    ("onnx", "model.onnx"), ("tensorrt", "model.plan"), ("torchscript", "model.pt"), ("python", "model.py"),
])
def test_file_lands_at_name_version_model_ext(repo, model_file, fmt, expected):
    target, out = fetch(repo, f"file://{model_file}", fmt=fmt, version=3)
    assert target == repo / "digits" / "3"
    assert (target / expected).read_bytes() == PAYLOAD
    assert tree(repo) == ["digits", "digits/3", f"digits/3/{expected}"]
    assert f"fetched {len(PAYLOAD)} bytes" in out


def test_sha256_ok(repo, model_file):
    target, _ = fetch(repo, f"file://{model_file}", sha256=sha(PAYLOAD))
    assert (target / "model.onnx").read_bytes() == PAYLOAD


def test_sha256_mismatch_names_both_and_leaves_nothing(repo, model_file):
    wrong = "0" * 64
    with pytest.raises(ChecksumMismatch) as err:
        fetch(repo, f"file://{model_file}", sha256=wrong)
    assert str(err.value) == f"file://{model_file}: sha256 mismatch: expected {wrong}, got {sha(PAYLOAD)}"
    assert tree(repo) == ["digits"]  # no version folder, no staging leftovers


def test_missing_source(repo, tmp_path):
    with pytest.raises(SourceError, match="no such file or directory"):
        fetch(repo, f"file://{tmp_path}/nope.onnx")
    assert tree(repo) == ["digits"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads unreadable files")
def test_unreadable_source(repo, model_file):
    model_file.chmod(0)
    with pytest.raises(SourceError, match="permission denied"):
        fetch(repo, f"file://{model_file}")
    assert tree(repo) == ["digits"]


def test_folder_is_copied_as_the_version_folder(repo, tmp_path):
    src = tmp_path / "python-model"
    (src / "lib").mkdir(parents=True)
    (src / "model.py").write_text("class TritonPythonModel: pass\n")
    (src / "lib" / "helpers.py").write_text("X = 1\n")
    target, out = fetch(repo, f"file://{src}", fmt="python", name="echo")
    assert tree(target) == ["lib", "lib/helpers.py", "model.py"]
    assert (target / "lib" / "helpers.py").read_text() == "X = 1\n"
    assert "in 2 files" in out


def test_triton_model_folder_uses_its_version_folder(repo, tmp_path):
    src = tmp_path / "digits"
    (src / "1").mkdir(parents=True)
    (src / "1" / "model.onnx").write_bytes(PAYLOAD)
    (src / "config.pbtxt").write_text("ignored: the operator mounts its own\n")
    target, _ = fetch(repo, f"file://{src}")
    assert tree(target) == ["model.onnx"]


def test_folder_without_model_file(repo, tmp_path):
    src = tmp_path / "wrong"
    src.mkdir()
    (src / "digits.onnx").write_bytes(PAYLOAD)
    (src / "sub").mkdir()
    with pytest.raises(LayoutError, match=r"has no model.onnx at its top level \(found: digits.onnx, sub/\)"):
        fetch(repo, f"file://{src}")
    assert tree(repo) == ["digits"]


def test_savedmodel_folder_becomes_model_savedmodel(repo, tmp_path):
    src = tmp_path / "saved"
    (src / "variables").mkdir(parents=True)
    (src / "saved_model.pb").write_bytes(b"pb")
    (src / "variables" / "variables.index").write_bytes(b"ix")
    target, _ = fetch(repo, f"file://{src}", fmt="savedmodel")
    assert tree(target) == ["model.savedmodel", "model.savedmodel/saved_model.pb", "model.savedmodel/variables",
                            "model.savedmodel/variables/variables.index"]


def test_savedmodel_needs_a_folder(repo, model_file):
    with pytest.raises(LayoutError, match="format savedmodel needs a folder"):
        fetch(repo, f"file://{model_file}", fmt="savedmodel")
    assert tree(repo) == ["digits"]


def test_sha256_with_a_folder_is_refused(repo, tmp_path):
    src = tmp_path / "f"
    src.mkdir()
    (src / "model.onnx").write_bytes(PAYLOAD)
    with pytest.raises(LayoutError, match="sha256 verifies a single file"):
        fetch(repo, f"file://{src}", sha256=sha(PAYLOAD))
    assert tree(repo) == ["digits"]


def test_pvc_uri_reads_from_the_claim_mount(repo, tmp_path):
    root = tmp_path / "pvc"
    (root / "model-store" / "team").mkdir(parents=True)
    (root / "model-store" / "team" / "m.onnx").write_bytes(PAYLOAD)
    target, _ = fetch(repo, "pvc://model-store/team/m.onnx", pvc_root=str(root))
    assert (target / "model.onnx").read_bytes() == PAYLOAD


def test_pvc_mount_given_explicitly(repo, tmp_path):
    mount = tmp_path / "elsewhere"
    (mount / "team").mkdir(parents=True)
    (mount / "team" / "m.onnx").write_bytes(PAYLOAD)
    target, _ = fetch(repo, "pvc://model-store/team/m.onnx", pvc_mount=str(mount))
    assert (target / "model.onnx").read_bytes() == PAYLOAD


def test_pvc_claim_root_as_folder(repo, tmp_path):
    root = tmp_path / "pvc"
    (root / "store").mkdir(parents=True)
    (root / "store" / "model.onnx").write_bytes(PAYLOAD)
    target, _ = fetch(repo, "pvc://store", pvc_root=str(root))
    assert tree(target) == ["model.onnx"]


def test_pvc_claim_not_mounted(repo, tmp_path):
    with pytest.raises(SourceError, match=f"claim 'store' is not mounted at {tmp_path}/store"):
        fetch(repo, "pvc://store/m.onnx", pvc_root=str(tmp_path))


def test_existing_version_is_replaced_whole(repo, model_file):
    old = repo / "digits" / "1"
    old.mkdir(parents=True)
    (old / "model.onnx").write_bytes(b"old")
    (old / "stale.bin").write_bytes(b"old")
    target, _ = fetch(repo, f"file://{model_file}")
    assert tree(target) == ["model.onnx"] and (target / "model.onnx").read_bytes() == PAYLOAD
    assert tree(repo) == ["digits", "digits/1", "digits/1/model.onnx"]


def test_failed_refetch_keeps_the_previous_version(repo, model_file):
    old = repo / "digits" / "1"
    old.mkdir(parents=True)
    (old / "model.onnx").write_bytes(b"old")
    with pytest.raises(ChecksumMismatch):
        fetch(repo, f"file://{model_file}", sha256="1" * 64)
    assert (old / "model.onnx").read_bytes() == b"old"
    assert tree(repo) == ["digits", "digits/1", "digits/1/model.onnx"]


def test_leftovers_of_a_killed_fetch_are_removed(repo, model_file):
    (repo / "digits" / ".fetch-1-abc" / ".download").mkdir(parents=True)
    (repo / "digits" / ".old-1-12-34").mkdir()
    (repo / "digits" / ".fetch-2-keep").mkdir()  # another version's fetch: not ours to touch
    fetch(repo, f"file://{model_file}")
    assert sorted(p.name for p in (repo / "digits").iterdir()) == [".fetch-2-keep", "1"]


def test_nothing_appears_under_the_version_name_before_the_end(repo, model_file, monkeypatch):
    """The version folder appears by one rename of a complete staging folder, never filled in place."""
    seen = []
    real_rename = os.rename

    def spy(src, dst):
        seen.append((os.path.basename(src), os.path.basename(dst), os.path.exists(os.path.join(dst, "model.onnx"))
                     if os.path.isdir(dst) else None))
        real_rename(src, dst)

    monkeypatch.setattr(layout.os, "rename", spy)
    fetch(repo, f"file://{model_file}")
    assert seen[-1][1] == "1" and seen[-1][0].startswith(".fetch-1-")
    assert [s for s in seen if s[1] == "1"] == [seen[-1]]


def test_write_failure_leaves_no_partial_file(repo, model_file, monkeypatch):
    from modeldeploy.fetch import sources, transfer
    from modeldeploy.fetch.errors import WriteError

    calls = {"n": 0}
    real_write = transfer.Sink.write

    def failing_write(self, data):
        calls["n"] += 1
        if calls["n"] == 3:
            raise WriteError(f"write {self.path}: No space left on device")
        return real_write(self, data)

    monkeypatch.setattr(sources, "CHUNK", 4096)
    monkeypatch.setattr(transfer.Sink, "write", failing_write)
    with pytest.raises(WriteError, match="No space left on device"):
        fetch(repo, f"file://{model_file}")
    assert tree(repo) == ["digits"]


def test_files_and_folders_are_readable_by_another_user(repo, tmp_path):
    src = tmp_path / "f"
    (src / "sub").mkdir(parents=True)
    (src / "model.onnx").write_bytes(PAYLOAD)
    (src / "sub" / "x").write_bytes(b"x")
    old_umask = os.umask(0o077)
    try:
        target, _ = fetch(repo, f"file://{src}")
    finally:
        os.umask(old_umask)
    for path in [repo / "digits", target, target / "sub"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o755, path
    for path in [target / "model.onnx", target / "sub" / "x"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


@pytest.mark.parametrize("kwargs, says", [
    ({"name": "../etc"}, "not a valid Triton model folder name"),
    ({"version": 0}, "version must be >= 1"),
    ({"sha256": "ABC"}, "64 lowercase hex"),
    ({"fmt": "pickle"}, "unknown model format"),
])
def test_bad_requests_fail_before_any_io(repo, model_file, kwargs, says):
    from modeldeploy.fetch.errors import FetchError

    with pytest.raises(FetchError, match=says):
        fetch(repo, f"file://{model_file}", **kwargs)
    assert tree(repo) == []


# --- symbolic links and size limits ---------------------------------------------------------------------

def test_symlink_out_of_the_source_folder_is_refused(repo, tmp_path):
    src = tmp_path / "src"
    (src / "1").mkdir(parents=True)
    (src / "1" / "model.onnx").write_bytes(PAYLOAD)
    (src / "etc").symlink_to("/etc")
    with pytest.raises(SourceError) as err:
        fetch(repo, f"file://{src}")
    assert str(err.value) == (f"file://{src}: etc is a symbolic link to a path outside the model folder; "
                              "refusing to follow it")
    assert tree(repo) == ["digits"]


def test_symlinked_file_out_of_the_source_folder_is_refused(repo, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("s3cr3t")
    src = tmp_path / "src"
    src.mkdir()
    (src / "model.onnx").write_bytes(PAYLOAD)
    (src / "sub").mkdir()
    (src / "sub" / "key").symlink_to(secret)
    with pytest.raises(SourceError, match="sub/key is a symbolic link to a path outside the model folder"):
        fetch(repo, f"file://{src}")
    assert "s3cr3t" not in "".join(p.read_text(errors="ignore") for p in repo.rglob("*") if p.is_file())


def test_symlinks_inside_the_source_folder_are_followed(repo, tmp_path):
    src = tmp_path / "src"
    (src / "blobs").mkdir(parents=True)
    (src / "blobs" / "abc").write_bytes(PAYLOAD)
    (src / "model.onnx").symlink_to("blobs/abc")
    target, _ = fetch(repo, f"file://{src}")
    assert (target / "model.onnx").read_bytes() == PAYLOAD
    assert not (target / "model.onnx").is_symlink()


def test_a_symlink_loop_is_refused(repo, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "model.onnx").write_bytes(PAYLOAD)
    (src / "loop").symlink_to(".")
    with pytest.raises(SourceError, match="loop is a symbolic link to a folder it is in"):
        fetch(repo, f"file://{src}")


def test_pvc_symlink_out_of_the_claim_is_refused(repo, tmp_path):
    mount = tmp_path / "mnt" / "store"
    (mount / "m").mkdir(parents=True)
    (mount / "m" / "model.onnx").symlink_to("/etc/hostname")
    with pytest.raises(SourceError, match="m/model.onnx is a symbolic link to a path outside the claim"):
        fetch(repo, "pvc://store/m/model.onnx", pvc_root=str(tmp_path / "mnt"))
    with pytest.raises(SourceError, match="model.onnx is a symbolic link to a path outside the claim"):
        fetch(repo, "pvc://store/m/", pvc_root=str(tmp_path / "mnt"))


def test_pvc_symlink_within_the_claim_is_followed(repo, tmp_path):
    mount = tmp_path / "mnt" / "store"
    (mount / "blobs").mkdir(parents=True)
    (mount / "blobs" / "x").write_bytes(PAYLOAD)
    (mount / "m").mkdir()
    (mount / "m" / "model.onnx").symlink_to("../blobs/x")
    target, _ = fetch(repo, "pvc://store/m/model.onnx", pvc_root=str(tmp_path / "mnt"))
    assert (target / "model.onnx").read_bytes() == PAYLOAD


def test_size_limit_counts_every_file_of_a_folder(repo, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "model.onnx").write_bytes(PAYLOAD)
    (src / "extra.bin").write_bytes(PAYLOAD)
    with pytest.raises(TooLarge, match=f"more than the limit of {len(PAYLOAD) + 10} bytes"):
        fetch(repo, f"file://{src}", max_bytes=len(PAYLOAD) + 10)
    assert tree(repo) == ["digits"]
    target, _ = fetch(repo, f"file://{src}", max_bytes=2 * len(PAYLOAD))
    assert (target / "extra.bin").read_bytes() == PAYLOAD


def test_size_limit_of_a_single_file(repo, model_file):
    with pytest.raises(TooLarge, match=f"{len(PAYLOAD)} bytes, more than the limit of 10 bytes"):
        fetch(repo, f"file://{model_file}", max_bytes=10)
