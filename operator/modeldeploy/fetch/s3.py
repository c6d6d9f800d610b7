"""s3:// through boto3: any S3-compatible store (AWS, SeaweedFS, MinIO, Ceph RGW, …).

Configuration comes from the environment, which the pod gets from ``spec.model.credentialsSecret``
(``envFrom``): ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` (and ``AWS_SESSION_TOKEN``), the region
(``AWS_REGION`` / ``AWS_DEFAULT_REGION``), and for a store other than AWS the endpoint
(``AWS_ENDPOINT_URL_S3``, else ``AWS_ENDPOINT_URL``: the names the AWS SDKs honour). Requests to a custom
endpoint use path-style addressing (``http://host:port/bucket/key``), which every S3-compatible server
accepts; ``AWS_S3_ADDRESSING_STYLE=virtual`` switches to ``bucket.host``.

Trade-offs:

- **One GET, no HEAD first.** The GET's error says *why* (``SignatureDoesNotMatch``,
  ``InvalidAccessKeyId``, ``NoSuchBucket``); a HEAD's error has no body, only "403". ``NoSuchKey`` then
  means "maybe a folder": the key is tried as a prefix.
- **Streamed, resumed with Range.** The body is read in 1 MiB chunks into the hashing ``Sink``, so
  memory stays flat whatever the object size. When the connection breaks mid-object, the download
  continues with ``Range: bytes=<received>-`` and ``If-Match: <ETag>`` (so a replaced object is not
  spliced onto the old one's first half), up to ``RESUME_ATTEMPTS`` times, and the progress output says
  so. s3transfer's parallel ranged download was not used: it writes parts out of order, so the SHA-256
  could not be computed while downloading.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from modeldeploy.fetch.errors import SourceError
from modeldeploy.fetch.sources import Context, Fetched, _phrase, import_boto3
from modeldeploy.fetch.transfer import Progress, Sink, make_dirs
from modeldeploy.fetch.uri import ModelURI

#: How often a broken download is continued where it stopped before the fetch gives up.
RESUME_ATTEMPTS = 5
CHUNK = 1 << 20


def endpoint_from(env: Mapping[str, str]) -> str | None:
    """The S3 endpoint override the SDKs honour: the service-specific variable first.

    >>> endpoint_from({"AWS_ENDPOINT_URL": "http://a:1", "AWS_ENDPOINT_URL_S3": "http://b:2"})
    'http://b:2'
    >>> endpoint_from({}) is None
    True
    """
    return env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None


def client_for(ctx: Context):
    """A boto3 S3 client configured from ``ctx.env`` only (not the process environment), and its endpoint."""
    boto3, botocore = import_boto3()
    env = ctx.env
    endpoint = endpoint_from(env)
    style = env.get("AWS_S3_ADDRESSING_STYLE") or ("path" if endpoint else "auto")
    config = botocore.config.Config(connect_timeout=ctx.timeout, read_timeout=ctx.timeout,
                                    retries={"max_attempts": 5, "mode": "standard"},
                                    s3={"addressing_style": style})
    session = boto3.session.Session(
        aws_access_key_id=env.get("AWS_ACCESS_KEY_ID") or None,
        aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
        aws_session_token=env.get("AWS_SESSION_TOKEN") or None,
        region_name=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
    )
    return session.client("s3", endpoint_url=endpoint, config=config), endpoint


def _one_line(text: Any, limit: int = 200) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def error_of(uri: ModelURI, op: str, err: Exception, botocore, endpoint: str | None) -> SourceError:
    """A boto3/botocore exception as a one-line SourceError that says what the store answered."""
    exc = botocore.exceptions
    if isinstance(err, exc.NoCredentialsError):
        return SourceError(f"{op} {uri}: no AWS credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                           "e.g. through spec.model.credentialsSecret)")
    if isinstance(err, (exc.EndpointConnectionError, exc.ConnectTimeoutError)):
        return SourceError(f"{op} {uri}: cannot reach {endpoint or 'the S3 endpoint'}: {_one_line(err)}")
    if isinstance(err, exc.ClientError):
        error = err.response.get("Error", {})
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = error.get("Code", "")
        text = " ".join(str(x) for x in (status, code if code and code != str(status) else _phrase(status)) if x)
        message = error.get("Message")
        if message and message != code:
            text += f": {_one_line(message)}"
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch"):
            text += " (check the keys in spec.model.credentialsSecret)"
        return SourceError(f"{op} {uri}: {text}", status=status)
    return SourceError(f"{op} {uri}: {_one_line(err)}")


def _download(client, botocore, uri: ModelURI, bucket: str, key: str, dest: Path, progress: Progress,
              first: dict | None = None) -> str:
    """Stream one object into ``dest``; return its SHA-256. ``first`` is a GET response already open."""
    response = first or client.get_object(Bucket=bucket, Key=key)
    total = response.get("ContentLength")
    etag = response.get("ETag")
    resumes = 0
    with Sink(dest, progress) as sink:
        while True:
            body = response["Body"]
            try:
                for chunk in body.iter_chunks(CHUNK):
                    sink.write(chunk)
                if total is None or sink.size >= total:
                    break
                reason = f"connection closed after {sink.size} of {total} bytes"
            except (botocore.exceptions.BotoCoreError, OSError) as err:
                reason = _one_line(err, 120)
            finally:
                body.close()
            resumes += 1
            if resumes > RESUME_ATTEMPTS:
                raise SourceError(f"GET s3://{bucket}/{key}: transfer broke off after {sink.size} of "
                                  f"{total if total is not None else '?'} bytes, {RESUME_ATTEMPTS} resumes: {reason}")
            print(f"s3://{bucket}/{key}: resuming at byte {sink.size} ({reason})", file=progress.out, flush=True)
            extra = {"IfMatch": etag} if etag else {}
            response = client.get_object(Bucket=bucket, Key=key, Range=f"bytes={sink.size}-", **extra)
        return sink.hexdigest()


def fetch_s3(uri: ModelURI, dest: Path, ctx: Context) -> Fetched:
    """An object (``s3://b/key``) or, when no such object exists, every object under ``key/``."""
    _, botocore = import_boto3()
    client, endpoint = client_for(ctx)
    bucket, key = uri.location, uri.path
    op = "GET"
    try:
        if not uri.is_prefix:
            try:
                response = client.get_object(Bucket=bucket, Key=key)
            except botocore.exceptions.ClientError as err:
                if err.response.get("Error", {}).get("Code") != "NoSuchKey":
                    raise
            else:
                ctx.progress.expect(response.get("ContentLength"))
                return Fetched("file", _download(client, botocore, uri, bucket, key, dest, ctx.progress, response))
        op = "LIST"
        prefix = key.rstrip("/") + "/" if key else ""
        objects = [obj for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
                   for obj in page.get("Contents", ()) if not obj["Key"].endswith("/")]
        if not objects:
            raise SourceError(f"{op} {uri}: no such object, and no objects under {prefix or 'the bucket'}",
                              status=404)
        ctx.progress.expect(sum(obj.get("Size", 0) for obj in objects))
        make_dirs(dest)
        op = "GET"
        for obj in objects:
            rel = obj["Key"][len(prefix):]
            if any(part in ("", ".", "..") for part in rel.split("/")):
                raise SourceError(f"{op} {uri}: object key {obj['Key']!r} does not map to a file path")
            _download(client, botocore, uri, bucket, obj["Key"], dest / rel, ctx.progress)
        return Fetched("folder")
    except SourceError:
        raise
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as err:
        raise error_of(uri, op, err, botocore, endpoint) from None
