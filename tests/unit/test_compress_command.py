"""``modeldeploy compress`` end to end on the digits CNN: a passing gate, a failing gate, errors, plug-ins."""

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import modeldeploy.compress as compress_pkg
from modeldeploy.cli import build_parser, main
from modeldeploy.compress import command
from modeldeploy.models import digits
from modeldeploy.policy.compression_result import parse_message

ROOT = Path(__file__).resolve().parents[2]
FAST = {"runs": 3, "warmup": 1}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return digits.build(tmp_path_factory.mktemp("digits"))["model_path"]


def run(tmp_path, model, recipe, *extra, out="out", dataset="builtin://digits"):
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(recipe))
    argv = ["compress", "--model", str(model), "--recipe", str(path), "--out", str(tmp_path / out),
            "--termination-log", str(tmp_path / "termination-log")]
    if dataset:
        argv += ["--dataset", dataset]
    return main(argv + list(extra))


def report(tmp_path, out="out"):
    return json.loads((tmp_path / out / "report.json").read_text())


def test_registered_in_the_cli():
    args = build_parser().parse_args(["compress", "--model", "m.onnx", "--recipe", "r.json", "--out", "o"])
    assert args.func is command.run and args.dataset is None


def test_help_works_as_a_module():
    result = subprocess.run([sys.executable, "-m", "modeldeploy", "compress", "--help"], capture_output=True,
                            text=True, env={"PYTHONPATH": str(ROOT / "operator")}, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "--termination-log" in result.stdout


def test_passing_gate_serves_the_smallest_variant(tmp_path, model, capsys):
    # A gate every variant passes on any CPU (100 pt): which variants lose an image or two depends on the
    # network trained on this machine; the choice among passing variants does not.
    recipe = {"quantization": [{"mode": "fp16"}, {"mode": "int8-dynamic"}, {"mode": "int8-static"}],
              "evaluation": {"maxAccuracyDrop": 100, **FAST}, "select": "smallest"}
    assert run(tmp_path, model, recipe) == 0
    out = capsys.readouterr().out
    r = report(tmp_path)
    base, static = r["baseline"], r["variants"][2]
    for line in ("compress: dataset builtin://digits: classification, 360 held-out, 1437 training",
                 f"compress: [0] fp32: {base['size_bytes']:,} bytes, accuracy {100 * base['accuracy']:.2f}%",
                 "compress: [1/3] fp16: build (fp16)", f"compress: [3/3] int8-static: {static['size_bytes']:,} bytes",
                 "compress: decision (select smallest): int8-static chosen"):
        assert line in out, line
    assert (r["schema"], r["status"], r["exit_code"]) == ("modeldeploy.io/compress-report/v1", "chosen", 0)
    assert [v["name"] for v in r["variants"]] == ["fp16", "int8-dynamic", "int8-static"]
    assert r["decision"]["chosen"] == "int8-static" and r["selected"] == "selected/model.onnx"
    assert r["decision"]["passed"] == ["fp16", "int8-dynamic", "int8-static"]
    assert re.fullmatch("[0-9a-f]{64}", r["recipe_hash"])
    assert r["gate"] == {"maxAccuracyDrop": 100.0, "minCosine": None, "source": "recipe"}
    assert r["environment"]["intra_op_num_threads"] == 1 and r["environment"]["statistic"] == "median"
    # the baseline is the model that was built, measured on the same 360 images
    assert round(base["accuracy"] * 360) == round(digits.build()["accuracy"] * 360)
    assert min(v["size_bytes"] for v in r["variants"]) == static["size_bytes"] < base["size_bytes"]
    assert static["weight_ratio"] >= 3.8  # INT8 weights are a quarter of FP32's, whatever their values
    assert static["details"]["calibration_split"] == "x_train" and static["gate"] == {"passed": True, "reasons": []}
    assert set(static["latency_ms"]) == set(static["speedup"]) == {"1", "32"}
    selected = tmp_path / "out" / "selected" / "model.onnx"
    assert selected.read_bytes() == (tmp_path / "out" / static["file"]).read_bytes()
    assert not (tmp_path / "out" / "work").exists()
    summary = parse_message((tmp_path / "termination-log").read_text()).summary
    assert (summary["status"], summary["selected"], summary["file"]) == ("chosen", "int8-static", r["selected"])
    assert summary["sha256"] == hashlib.sha256(selected.read_bytes()).hexdigest()
    assert [v["name"] for v in summary["variants"]] == ["fp16", "int8-dynamic", "int8-static"]
    assert summary["variants"][2]["sizeBytes"] == static["size_bytes"] and summary["variants"][2]["passed"]


def test_inline_json_recipe_is_what_the_operator_passes(tmp_path, model):
    recipe = {"quantization": {"mode": "fp16"}, "evaluation": FAST}
    argv = ["compress", "--model", str(model), "--recipe-json", json.dumps(recipe), "--dataset", "builtin://digits",
            "--out", str(tmp_path / "out"), "--termination-log", str(tmp_path / "termination-log")]
    assert main(argv) == 0
    assert report(tmp_path)["decision"]["chosen"] == "fp16"


def damaging_technique(src, dst, options, ctx):
    """A deliberately broken "compression": the last layer's weights zeroed, so every image gets the same
    class (about one in ten right, on any CPU)."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(src))
    for init in model.graph.initializer:
        if init.name == "fc.weight":
            init.CopyFrom(numpy_helper.from_array(np.zeros_like(numpy_helper.to_array(init)), init.name))
    onnx.save(model, str(dst))
    return {"damaged": "fc.weight"}


def test_failing_gate_exits_3_explains_with_numbers_and_removes_a_stale_selection(tmp_path, model, capsys,
                                                                                   monkeypatch):
    assert run(tmp_path, model, {"quantization": {"mode": "fp16"}, "evaluation": {"maxAccuracyDrop": 100, **FAST}}) == 0
    assert (tmp_path / "out" / "selected" / "model.onnx").exists()
    monkeypatch.setitem(compress_pkg.TECHNIQUES, "damage", f"{__name__}:damaging_technique")
    recipe = {"variants": [{"technique": "damage"}], "evaluation": {"maxAccuracyDrop": 1, **FAST}, "select": "damage"}
    assert run(tmp_path, model, recipe) == 3
    r = report(tmp_path)
    v = r["variants"][0]
    assert (r["status"], r["exit_code"], r["decision"]["chosen"], r["selected"]) == ("gate-failed", 3, None, None)
    assert v["accuracy"] < r["baseline"]["accuracy"] and v["gate"]["passed"] is False
    assert v["accuracy_drop_pt"] == pytest.approx(100 * (r["baseline"]["accuracy"] - v["accuracy"]))
    assert v["accuracy_drop_pt"] > 1
    expected = (f"accuracy {100 * v['accuracy']:.2f}% is {v['accuracy_drop_pt']:.2f} pt below FP32 "
                f"{100 * r['baseline']['accuracy']:.2f}% (> 1 pt allowed)")
    assert v["gate"]["reasons"] == [expected]
    message = f"GateFailed: gate maxAccuracyDrop 1 pt: selected damage failed: damage: {expected}"
    assert r["decision"]["message"] == message.removeprefix("GateFailed: ")
    summary = parse_message((tmp_path / "termination-log").read_text()).summary
    assert (summary["status"], summary["selected"], summary["sha256"]) == ("gate-failed", None, None)
    assert summary["message"] == r["decision"]["message"]
    assert summary["variants"][0]["reason"] == expected and summary["variants"][0]["passed"] is False
    assert capsys.readouterr().err.strip() == message
    assert not (tmp_path / "out" / "selected").exists()


def test_yaml_recipe_with_its_own_dataset(tmp_path, model):
    (tmp_path / "r.yaml").write_text("quantization:\n  mode: int8-dynamic\nevaluation:\n  dataset: builtin://digits\n"
                                     "  runs: 2\n  warmup: 0\n  batchSizes: [4]\n")
    code = main(["compress", "--model", str(model), "--recipe", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "o"),
                 "--termination-log", str(tmp_path / "log")])
    r = json.loads((tmp_path / "o" / "report.json").read_text())
    assert code == 0 and r["dataset"]["uri"] == "builtin://digits" and set(r["baseline"]["latency_ms"]) == {"4"}
    assert r["gate"] == {"maxAccuracyDrop": 1.0, "minCosine": None, "source": "default"}


@pytest.mark.parametrize("recipe,dataset,message", [
    ({"quantization": {"mode": "int4"}}, "builtin://digits",
     "CompressError: recipe: quantization.mode: 'int4' is not one of fp16, int8-dynamic, int8-static"),
    ({"quantization": {"mode": "int8-static", "perchanel": True}}, "builtin://digits",
     "CompressError: recipe: int8-static: unknown option(s) perchanel"),
    ({"quantization": {"mode": "fp16"}}, None,
     "CompressError: no dataset: pass --dataset or set evaluation.dataset in the recipe"),
    ({"quantization": {"mode": "fp16"}}, "file:///nonexistent/d.npz",
     "CompressError: dataset file:///nonexistent/d.npz: no such file: /nonexistent/d.npz"),
])
def test_errors_exit_1_with_the_cause_in_the_termination_log(tmp_path, model, recipe, dataset, message):
    assert run(tmp_path, model, recipe, dataset=dataset) == 1
    assert (tmp_path / "termination-log").read_text().startswith(message)


def test_missing_model(tmp_path):
    assert run(tmp_path, tmp_path / "nope.onnx", {"quantization": {"mode": "fp16"}}) == 1
    assert (tmp_path / "termination-log").read_text() == f"CompressError: model {tmp_path}/nope.onnx: no such file\n"


# --- the technique registry, as prune/distill plug in --------------------------------------------------

def copy_technique(src, dst, options, ctx):
    ctx.log(f"copying with {dict(options)}")
    shutil.copyfile(src, dst)
    return {"copied": True, "task": ctx.dataset.task}


def failing_technique(src, dst, options, ctx):
    raise RuntimeError("out of ideas")


def test_registry_dispatch_failures_and_chaining(tmp_path, model, monkeypatch, capsys):
    monkeypatch.setitem(compress_pkg.TECHNIQUES, "copy", f"{__name__}:copy_technique")
    monkeypatch.setitem(compress_pkg.TECHNIQUES, "fail", f"{__name__}:failing_technique")
    recipe = {"variants": [{"technique": "copy", "level": 1}, {"name": "copy+fp16", "technique": "fp16", "from": "copy"},
                           {"technique": "fail"}, {"name": "fail+fp16", "technique": "fp16", "from": "fail"}],
              "evaluation": {"maxAccuracyDrop": 0, **FAST}}
    assert run(tmp_path, model, recipe) == 0
    r = report(tmp_path)
    by = {v["name"]: v for v in r["variants"]}
    assert by["copy"]["details"] == {"copied": True, "task": "classification"} and by["copy"]["size_ratio"] == 1.0
    assert by["copy+fp16"]["from"] == "copy" and by["copy+fp16"]["size_ratio"] > 1.8
    assert by["fail"]["error"] == "RuntimeError: out of ideas"
    assert by["fail"]["gate"]["reasons"] == ["not built: RuntimeError: out of ideas"]
    assert by["fail+fp16"]["error"] == "its input variant fail was not built"
    assert r["decision"]["chosen"] == "copy+fp16"
    out = capsys.readouterr().out
    assert "compress: [1/4] copy: copying with {'level': 1}" in out
    assert "compress: [3/4] fail: failed: RuntimeError: out of ideas" in out


def test_a_technique_whose_module_is_missing_fails_before_any_work(tmp_path, model, monkeypatch):
    monkeypatch.setitem(compress_pkg.TECHNIQUES, "prune", "modeldeploy.compress.no_such_module:run")
    assert run(tmp_path, model, {"pruning": {"amount": 0.5}}) == 1
    assert (tmp_path / "termination-log").read_text() == (
        "CompressError: technique prune is not available in this build "
        "(modeldeploy.compress.no_such_module is missing)\n")
    assert not (tmp_path / "out").exists()


def test_embedding_dataset_gates_on_cosine_to_the_fp32_outputs(tmp_path, model):
    import numpy as np

    x = digits.load_split()[2][:64]
    np.savez(tmp_path / "emb.npz", x_test=x)  # no labels: embeddings, reference = the FP32 outputs
    recipe = {"quantization": [{"mode": "fp16"}, {"mode": "int8-static"}],
              "evaluation": {"minCosine": 0.999, "output": "logits", **FAST}, "select": "fastest"}
    code = run(tmp_path, model, recipe, dataset=f"file://{tmp_path}/emb.npz")
    r = report(tmp_path)
    by = {v["name"]: v for v in r["variants"]}
    assert r["dataset"]["task"] == "embedding" and r["dataset"]["reference"] == "fp32 outputs"
    assert "cosine" not in r["baseline"] and "accuracy" not in by["fp16"]
    assert by["fp16"]["cosine"] > 0.9999 and by["fp16"]["gate"]["passed"]
    assert by["int8-static"]["details"]["calibration_split"] == "x_test"  # warned: nothing else to calibrate on
    assert code == 0 and r["decision"]["chosen"] in by


def test_a_dataset_that_does_not_fit_the_model_is_an_error(tmp_path, model):
    import numpy as np

    np.savez(tmp_path / "flat.npz", x_test=np.zeros((4, 64), np.float32), y_test=np.arange(4))
    assert run(tmp_path, model, {"quantization": {"mode": "fp16"}}, dataset=f"file://{tmp_path}/flat.npz") == 1
    assert (tmp_path / "termination-log").read_text().startswith(
        f"CompressError: measure {model} on file://{tmp_path}/flat.npz: InvalidArgument: ")
