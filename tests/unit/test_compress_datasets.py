"""Datasets by URI: builtin://digits, file:// .npz (classification and embeddings), others through fetch."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from modeldeploy.compress import CompressError
from modeldeploy.compress.datasets import load_dataset


def test_builtin_digits_is_the_split_the_model_was_trained_on():
    d = load_dataset("builtin://digits")
    assert d.task == "classification"
    assert d.x_test.shape == (360, 1, 8, 8) and d.x_test.dtype == np.float32
    assert d.y_test.shape == (360,) and d.x_train.shape == (1437, 1, 8, 8)
    x, split = d.calibration(100)
    assert split == "x_train" and np.array_equal(x, d.x_train[:100])
    assert d.describe() == "classification, 360 held-out, 1437 training"


def test_npz_classification(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x_test=np.zeros((5, 3), np.float32), y_test=np.arange(5), x_calib=np.ones((2, 3), np.float32),
             unrelated=np.zeros(1))
    d = load_dataset(f"file://{path}")
    assert (d.task, d.uri, len(d.x_test)) == ("classification", f"file://{path}", 5)
    assert d.calibration()[1] == "x_calib" and d.x_train is None


def test_npz_embeddings_with_and_without_reference(tmp_path):
    np.savez(tmp_path / "e.npz", x_test=np.zeros((4, 2), np.float32), reference=np.ones((4, 8), np.float32))
    d = load_dataset(f"file://{tmp_path}/e.npz")
    assert d.task == "embedding" and d.reference.shape == (4, 8)
    assert d.calibration() [1] == "x_test"  # nothing else to calibrate on (quantize warns)
    np.savez(tmp_path / "f.npz", x_test=np.zeros((4, 2), np.float32))
    assert load_dataset(f"file://{tmp_path}/f.npz").task == "embedding"


@pytest.mark.parametrize("arrays,message", [
    ({"x": np.zeros(3)}, "no x_test array (found: x;"),
    ({"x_test": np.zeros((3, 2)), "y_test": np.arange(4)}, "y_test has 4 rows but x_test has 3"),
    ({"x_test": np.zeros((3, 2)), "y_test": np.zeros(3)}, "y_test must hold integer class labels, got float64"),
    ({"x_test": np.zeros((0, 2))}, "x_test is empty"),
    ({"x_test": np.zeros((3, 2)), "y_train": np.arange(3)}, "y_train has 3 rows but x_train has missing"),
])
def test_bad_npz(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(CompressError, match="dataset file://.*: " + message.replace("(", r"\(")):
        load_dataset(f"file://{tmp_path}/bad.npz")


def test_unreadable_and_malformed_uris(tmp_path):
    (tmp_path / "t.npz").write_text("not a zip")
    with pytest.raises(CompressError, match="not a readable .npz file"):
        load_dataset(f"file://{tmp_path}/t.npz")
    with pytest.raises(CompressError, match="no such file"):
        load_dataset(f"file://{tmp_path}/missing.npz")
    with pytest.raises(CompressError, match="not a URI"):
        load_dataset("digits")
    with pytest.raises(CompressError, match="unknown builtin"):
        load_dataset("builtin://mnist")
    with pytest.raises(CompressError, match="InvalidURI: .*unsupported scheme ftp://"):
        load_dataset("ftp://host/d.npz")


def test_s3_goes_through_the_fetchers_sources():
    try:
        import boto3  # noqa: F401
    except ImportError:
        with pytest.raises(CompressError, match="MissingDependency: s3:// needs boto3"):
            load_dataset("s3://bucket/d.npz")
    else:
        pytest.skip("boto3 installed: s3 would try the network")


def test_https_dataset_is_fetched_with_the_fetch_readers(tmp_path, capsys):
    np.savez(tmp_path / "d.npz", x_test=np.zeros((3, 2), np.float32), y_test=np.arange(3))
    payload = (tmp_path / "d.npz").read_bytes()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            if self.path.startswith("/d.npz"):
                self.send_response(200)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            else:
                self.send_error(404)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        d = load_dataset(f"{base}/d.npz?X-Amz-Signature=secret")
        assert d.task == "classification" and len(d.x_test) == 3
        assert d.uri == f"{base}/d.npz?…"  # the query string (presigned URL signature) is not kept
        assert "fetched" in capsys.readouterr().out
        with pytest.raises(CompressError, match=f"SourceError: GET {base}/missing.npz: 404"):
            load_dataset(f"{base}/missing.npz")
    finally:
        server.shutdown()
        server.server_close()
