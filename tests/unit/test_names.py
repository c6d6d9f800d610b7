from modeldeploy.api.spec import parse_spec
from modeldeploy.render import names

BASE = {"model": {"uri": "s3://bucket/m.onnx", "format": "onnx"}}


def test_fit_keeps_short_names():
    assert names.fit("digits") == "digits"


def test_fit_cuts_long_names_uniquely_and_stably():
    a, b = "x" * 80, "x" * 79 + "y"
    assert len(names.fit(a)) <= 63 and len(names.fit(b)) <= 63
    assert names.fit(a) != names.fit(b)
    assert names.fit(a) == names.fit(a)


def test_service_name_is_a_valid_dns_label_for_long_names():
    svc = names.service_name("m" * 200)
    assert len(svc) <= 63 and not svc.endswith("-")


def test_revision_ignores_replicas_and_rollout():
    a = parse_spec("m", {**BASE, "replicas": 1})
    b = parse_spec("m", {**BASE, "replicas": 5, "rollout": {"strategy": "Rolling"}})
    assert names.revision_of(a, "img") == names.revision_of(b, "img")


def test_revision_changes_with_model_serving_resources_and_image():
    base = parse_spec("m", BASE)
    rev = names.revision_of(base, "img")
    assert names.revision_of(base, "img2") != rev
    assert names.revision_of(base, "img", "fetcher:2") != names.revision_of(base, "img", "fetcher:1")
    for change in (
        {"model": {**BASE["model"], "name": "other"}},
        {"model": {**BASE["model"], "format": "torchscript"}},
        {"model": {**BASE["model"], "credentialsSecret": "creds"}},
        {"model": {**BASE["model"], "uri": "pvc://claim/m.onnx"}},  # the pod mounts the claim
        {"serving": {"maxBatchSize": 4}},
        {"resources": {"gpu": {"count": 2}}},
        {"placement": {"nodeSelector": {"a": "b"}}},
    ):
        assert names.revision_of(parse_spec("m", {**BASE, **change}), "img") != rev, change


def test_revision_same_whether_defaults_explicit_or_not():
    explicit = {"model": {**BASE["model"], "version": 1}, "serving": {"instancesPerDevice": 1},
                "resources": {"gpu": {"count": 1}}}
    assert names.revision_of(parse_spec("m", explicit), "i") == names.revision_of(parse_spec("m", BASE), "i")


def test_a_new_model_version_or_file_is_not_a_new_revision():
    """The pods swap those in place (model agent); the pod template must not change."""
    rev = names.revision_of(parse_spec("m", BASE), "img")
    for change in ({"version": 2}, {"uri": "s3://elsewhere/v2/model.onnx"}, {"sha256": "a" * 64}):
        assert names.revision_of(parse_spec("m", {**BASE, "model": {**BASE["model"], **change}}), "img") == rev
