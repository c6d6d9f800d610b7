"""Pure parts of the object-store code: the S3 endpoint rule, GCS error text, and the token endpoint's
decision on a grant (no server started; the servers themselves are tested in tests/integration)."""

from __future__ import annotations

import base64
import doctest
import json

import pytest

from modeldeploy.fetch import gcs, s3

pytest.importorskip("google.oauth2", reason="the fetch extra is not installed: pip install '.[fetch]'")


def test_docstring_examples():
    assert doctest.testmod(s3).failed == 0
    assert doctest.testmod(gcs).failed == 0


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt(private_key, claims: dict, alg: str = "RS256") -> str:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    head = _b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    body = _b64(json.dumps(claims).encode())
    signature = private_key.sign(f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{head}.{body}.{_b64(signature)}"


@pytest.fixture
def endpoint():
    from modeldeploy.sandbox.objectstores import TokenEndpoint

    with TokenEndpoint(host="127.0.0.1") as ep:
        yield ep


def _private(info: dict):
    from cryptography.hazmat.primitives import serialization

    return serialization.load_pem_private_key(info["private_key"].encode(), password=None)


GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
NOW = 1_800_000_000


@pytest.mark.parametrize("case, status, answer", [
    ("valid", 200, None),
    ("audience is this endpoint", 200, None),
    ("other key of the same account", 400, "Invalid JWT Signature."),
    ("unknown account", 400, "Invalid grant: account not found"),
    ("wrong audience", 400, "Invalid JWT: Failed audience check."),
    ("expired", 400, "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe."),
    ("not a JWT", 400, "Invalid JWT: not a JWT."),
    ("wrong grant type", 400, "Invalid grant_type"),
])
def test_token_endpoint_decides_like_googles(endpoint, case, status, answer):
    from modeldeploy.sandbox.objectstores import GOOGLE_TOKEN_AUDIENCE

    info = endpoint.service_account_key("a@p.iam.gserviceaccount.com")
    key = _private(info)
    claims = {"iss": info["client_email"], "aud": GOOGLE_TOKEN_AUDIENCE, "iat": NOW, "exp": NOW + 3600,
              "scope": gcs.READ_ONLY_SCOPE}
    grant = GRANT
    if case == "audience is this endpoint":
        claims["aud"] = endpoint.url
    elif case == "other key of the same account":
        key = _private(endpoint.service_account_key("a@p.iam.gserviceaccount.com", register=False))
    elif case == "unknown account":
        claims["iss"] = "b@p.iam.gserviceaccount.com"
    elif case == "wrong audience":
        claims["aud"] = "https://example.com/token"
    elif case == "expired":
        claims["exp"] = NOW - 1
    elif case == "wrong grant type":
        grant = "client_credentials"
    assertion = "abc" if case == "not a JWT" else _jwt(key, claims)
    got_status, body = endpoint.grant({"grant_type": [grant], "assertion": [assertion]}, now=NOW)
    assert got_status == status, body
    if status == 200:
        assert body["token_type"] == "Bearer" and body["access_token"] and endpoint.issued == 1
    else:
        assert body["error_description"] == answer and endpoint.issued == 0


def test_key_file_is_what_google_auth_loads(endpoint):
    """The file is a service-account key google-auth accepts, and the token exchange goes to this endpoint."""
    from google.oauth2 import service_account

    info = endpoint.service_account_key()
    credentials = service_account.Credentials.from_service_account_info(info, scopes=[gcs.READ_ONLY_SCOPE])
    assert credentials.service_account_email == info["client_email"]
    assert info["token_uri"] == endpoint.url
