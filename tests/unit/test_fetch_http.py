"""http(s):// fetches against a real ``http.server`` on 127.0.0.1 in a thread (no mocks)."""

import hashlib
import io
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from modeldeploy.fetch.errors import ChecksumMismatch, SourceError, TooLarge
from modeldeploy.fetch.layout import FetchRequest, fetch_model
from modeldeploy.fetch.transfer import Progress

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


class Handler(BaseHTTPRequestHandler):
    requests: list[str] = []

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        Handler.requests.append(self.path)
        path = self.path.split("?", 1)[0]
        if path == "/m.onnx":
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD)
        elif path == "/chunked.onnx":  # no Content-Length: read to the end of the stream
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(PAYLOAD)
            self.close_connection = True
        elif path == "/moved":
            self.send_response(302)
            self.send_header("Location", "/m.onnx")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path in ("/to-ftp", "/to-file", "/to-other-host"):
            target = {"/to-ftp": "ftp://127.0.0.1/m.onnx", "/to-file": "file:///etc/passwd",
                      "/to-other-host": f"http://localhost:{self.server.server_address[1]}/m.onnx"}[path]
            self.send_response(302)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path == "/liar.onnx":  # announces 1000 bytes, but sends the whole payload chunked (which wins)
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                for i in range(0, len(PAYLOAD), 65536):
                    part = PAYLOAD[i:i + 65536]
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                pass  # the client stopped reading (that is the test)
            self.close_connection = True
        elif path == "/forbidden.onnx":
            self.send_error(403)
        elif path == "/truncated.onnx":
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD[:1000])
            self.wfile.flush()
            self.close_connection = True
        elif path == "/slow.onnx":
            time.sleep(1.5)
            try:
                self.send_response(200)
                self.send_header("Content-Length", "1")
                self.end_headers()
                self.wfile.write(b"x")
            except OSError:
                pass  # the client gave up (that is the test)
        else:
            self.send_error(404)


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def fetch(repo, uri, sha256=None, **kw):
    out = io.StringIO()
    target = fetch_model(FetchRequest(uri, "onnx", "digits", 1, repo, sha256), out=out, **kw)
    return target, out.getvalue()


def leftovers(repo):
    return sorted(p.relative_to(repo).as_posix() for p in repo.rglob("*"))


def test_200(server, tmp_path):
    target, out = fetch(tmp_path, f"{server}/m.onnx", sha256=hashlib.sha256(PAYLOAD).hexdigest())
    assert (target / "model.onnx").read_bytes() == PAYLOAD
    assert f"{server}/m.onnx: fetched {len(PAYLOAD)} bytes" in out


def test_without_content_length(server, tmp_path):
    target, _ = fetch(tmp_path, f"{server}/chunked.onnx")
    assert (target / "model.onnx").read_bytes() == PAYLOAD


def test_redirect_is_followed(server, tmp_path):
    target, _ = fetch(tmp_path, f"{server}/moved")
    assert (target / "model.onnx").read_bytes() == PAYLOAD


def test_sha256_mismatch(server, tmp_path):
    with pytest.raises(ChecksumMismatch, match=f"expected {'a' * 64}, got {hashlib.sha256(PAYLOAD).hexdigest()}"):
        fetch(tmp_path, f"{server}/m.onnx", sha256="a" * 64)
    assert leftovers(tmp_path) == ["digits"]


@pytest.mark.parametrize("path, status, phrase", [("/missing.onnx", 404, "Not Found"),
                                                  ("/forbidden.onnx", 403, "Forbidden")])
def test_http_error_status(server, tmp_path, path, status, phrase):
    with pytest.raises(SourceError) as err:
        fetch(tmp_path, f"{server}{path}")
    assert str(err.value) == f"GET {server}{path}: {status} {phrase}"
    assert err.value.status == status
    assert leftovers(tmp_path) == ["digits"]


def test_query_string_is_not_in_the_error(server, tmp_path):
    with pytest.raises(SourceError) as err:
        fetch(tmp_path, f"{server}/missing.onnx?X-Amz-Signature=s3cr3t")
    assert "s3cr3t" not in str(err.value)
    assert str(err.value) == f"GET {server}/missing.onnx?…: 404 Not Found"


def test_connection_refused(tmp_path):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(SourceError) as err:
        fetch(tmp_path, f"http://127.0.0.1:{port}/m.onnx")
    assert str(err.value) == f"GET http://127.0.0.1:{port}/m.onnx: connection refused"
    assert leftovers(tmp_path) == ["digits"]


def test_timeout(server, tmp_path):
    with pytest.raises(SourceError, match=r"slow.onnx: timed out after 0.3 s"):
        fetch(tmp_path, f"{server}/slow.onnx", timeout=0.3)
    assert leftovers(tmp_path) == ["digits"]


def test_transfer_broken_off_leaves_no_partial_file(server, tmp_path):
    with pytest.raises(SourceError, match=rf"transfer broke off after 1000 of {len(PAYLOAD)} bytes"):
        fetch(tmp_path, f"{server}/truncated.onnx")
    assert leftovers(tmp_path) == ["digits"]


def test_unresolvable_host(tmp_path):
    with pytest.raises(SourceError, match=r"GET http://no-such-host\.invalid/m\.onnx: cannot resolve host"):
        fetch(tmp_path, "http://no-such-host.invalid/m.onnx", timeout=5)


def test_progress_lines_for_a_long_download():
    out = io.StringIO()
    now = [0.0]
    progress = Progress("https://h/m.onnx", out=out, clock=lambda: now[0], interval=5)
    progress.expect(100_000_000)
    for _ in range(10):  # 10 MB per second of fake time
        now[0] += 1
        progress.add(10_000_000)
    progress.files = 1
    progress.finish()
    assert out.getvalue().splitlines() == [
        "https://h/m.onnx: 50.0 MB of 100.0 MB (50%), 10.0 MB/s",
        "https://h/m.onnx: 100.0 MB of 100.0 MB (100%), 10.0 MB/s",
        "https://h/m.onnx: fetched 100000000 bytes in 10.0 s (10.0 MB/s)",
    ]


def test_short_download_prints_only_the_summary(server, tmp_path):
    _, out = fetch(tmp_path, f"{server}/m.onnx")
    assert len(out.splitlines()) == 1


@pytest.mark.parametrize("path, scheme", [("/to-ftp", "ftp"), ("/to-file", "file")])
def test_redirects_only_to_http_or_https(server, tmp_path, path, scheme):
    with pytest.raises(SourceError) as err:
        fetch(tmp_path, f"{server}{path}")
    assert str(err.value) == (f"GET {server}{path}: redirected to a {scheme}:// URL; only http:// and https:// "
                              "redirects are followed")
    assert leftovers(tmp_path) == ["digits"]


def test_redirect_to_another_http_host_is_followed(server, tmp_path):
    target, _ = fetch(tmp_path, f"{server}/to-other-host")
    assert (target / "model.onnx").read_bytes() == PAYLOAD


def test_https_to_http_downgrade_is_refused():
    from modeldeploy.fetch.sources import check_redirect

    check_redirect("https://a/m", "https://b/m")
    check_redirect("http://a/m", "https://b/m")
    with pytest.raises(SourceError, match="from https:// to http://"):
        check_redirect("https://a/m", "http://b/m")


@pytest.mark.parametrize("path", ["/m.onnx", "/chunked.onnx"])
def test_size_limit_is_enforced_while_streaming(server, tmp_path, path):
    with pytest.raises(TooLarge) as err:
        fetch(tmp_path, f"{server}{path}", max_bytes=100_000)
    assert "more than the limit of 100000 bytes (spec.model.maxBytes)" in str(err.value)
    assert leftovers(tmp_path) == ["digits"]


def test_a_content_length_over_the_limit_fails_before_reading(server, tmp_path):
    with pytest.raises(TooLarge, match=f"GET {server}/m.onnx: {len(PAYLOAD)} bytes, more than the limit"):
        fetch(tmp_path, f"{server}/m.onnx", max_bytes=len(PAYLOAD) - 1)


def test_exactly_the_limit_is_fine(server, tmp_path):
    target, _ = fetch(tmp_path, f"{server}/m.onnx", max_bytes=len(PAYLOAD))
    assert (target / "model.onnx").read_bytes() == PAYLOAD


def test_a_server_sending_more_than_it_announced_fails(server, tmp_path):
    with pytest.raises(SourceError, match="the server sent more than the 1000 bytes it announced"):
        fetch(tmp_path, f"{server}/liar.onnx")
    assert leftovers(tmp_path) == ["digits"]
