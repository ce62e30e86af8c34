"""The HTTP transport: httpx2's MockTransport for what the library hands back, and a real
HTTP/1.1 server on 127.0.0.1 for sockets (keep-alive, the pool's bound, gzip, timeouts,
refused connections, proxies). No secret of the form ever reaches an error."""

from __future__ import annotations

import gzip
import socket
import ssl
import threading
import traceback
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import certifi
import httpx2
import pytest

from connector.errors import ResponseTooLargeError, TransientError
from connector.learnosity.transport import HttpTransport, tls_context

SECRET = "very-secret-signature-1234"
FORM = {"security": f'{{"signature": "{SECRET}"}}', "request": "{}", "action": "get"}
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture(autouse=True)
def no_proxy_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def everything_said(error: BaseException) -> str:
    """The error as a log would show it: message, repr, and the traceback with its causes."""
    return f"{error}\n{error!r}\n{''.join(traceback.format_exception(error))}"


# --- against httpx2's MockTransport ---------------------------------------------------
def mocked(handler: Callable[[httpx2.Request], httpx2.Response], **kwargs: int) -> HttpTransport:
    return HttpTransport(transport=httpx2.MockTransport(handler), **kwargs)


def test_a_form_is_posted_and_the_answer_returned() -> None:
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(200, content=b'{"meta": {}}', headers={"X-Thing": "1"})

    raw = mocked(handler).post_form("http://api.test/p", FORM, {"X-Learnosity-Action": "a"})
    assert (raw.status, raw.body, raw.headers["x-thing"]) == (200, b'{"meta": {}}', "1")
    request = seen[0]
    assert request.method == "POST"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.headers["user-agent"].startswith("learnosity-kafka-connector/")
    assert request.headers["x-learnosity-action"] == "a"
    assert {k: v[0] for k, v in parse_qs(request.content.decode()).items()} == FORM


def test_gzip_is_decoded_and_the_bound_applies_to_the_decoded_body() -> None:
    body = b"x" * 5000
    answer = httpx2.Response(200, content=gzip.compress(body), headers={"Content-Encoding": "gzip"})
    assert mocked(lambda _: answer).post_form("http://api.test/", FORM, {}).body == body
    small = mocked(lambda _: answer, max_response_bytes=4999)
    with pytest.raises(ResponseTooLargeError, match="4999 bytes"):
        small.post_form("http://api.test/", FORM, {})


def test_a_body_at_the_bound_passes_and_one_byte_more_does_not() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=b"y" * int(request.url.params["n"]))

    transport = mocked(handler, max_response_bytes=1000)
    assert len(transport.post_form("http://api.test/?n=1000", FORM, {}).body) == 1000
    with pytest.raises(ResponseTooLargeError):
        transport.post_form("http://api.test/?n=1001", FORM, {})


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        (httpx2.ConnectTimeout("connect timed out"), "timeout"),
        (httpx2.ReadTimeout("read timed out"), "timeout"),
        (httpx2.PoolTimeout("no free connection"), "timeout"),
        (httpx2.ConnectError("refused"), "connection"),
        (httpx2.ReadError("reset by peer"), "connection"),
        (httpx2.RemoteProtocolError("peer closed connection"), "connection"),
        (httpx2.ProxyError("proxy said no"), "connection"),
    ],
)
def test_library_failures_become_transient_errors(failure: Exception, reason: str) -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        raise failure

    with pytest.raises(TransientError) as caught:
        mocked(handler).post_form("http://user:pw@api.test/scores?x=1", FORM, {})
    assert caught.value.reason == reason
    assert "http://api.test/scores" in str(caught.value)
    assert type(failure).__name__ in str(caught.value)
    assert "pw" not in str(caught.value) and "x=1" not in str(caught.value)
    assert SECRET not in everything_said(caught.value)


def test_a_broken_gzip_body_is_a_connection_problem() -> None:
    answer = httpx2.Response(
        200, stream=httpx2.ByteStream(b"not gzip"), headers={"Content-Encoding": "gzip"}
    )
    with pytest.raises(TransientError) as caught:
        mocked(lambda _: answer).post_form("http://api.test/", FORM, {})
    assert caught.value.reason == "connection"


def test_max_connections_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_connections"):
        HttpTransport(max_connections=0)


def test_tls_verifies_against_ssl_cert_file_or_certifi(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    default = tls_context()
    assert default.verify_mode == ssl.CERT_REQUIRED and default.check_hostname
    assert default.cert_store_stats()["x509_ca"] > 0  # certifi's bundle
    monkeypatch.setenv("SSL_CERT_FILE", "/nonexistent/ca.pem")
    with pytest.raises(FileNotFoundError):
        tls_context()  # the named file is used, not certifi's
    monkeypatch.setenv("SSL_CERT_FILE", certifi.where())
    assert tls_context().cert_store_stats()["x509_ca"] > 0


# --- against a real server on 127.0.0.1 -------------------------------------------------
class Server:
    """An HTTP/1.1 server in a thread: records each request's connection (client port),
    path and Accept-Encoding; the answer depends on the path."""

    def __init__(self) -> None:
        self.requests: list[tuple[int, str, str]] = []
        self.release = threading.Event()  # lets a /slow request answer
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive
            disable_nagle_algorithm = True  # the head and the body go in two writes

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                encodings = self.headers.get("Accept-Encoding", "")
                server.requests.append((self.client_address[1], self.path, encodings))
                body, headers = b'{"meta": {"status": true}}', {}
                if self.path.endswith("/slow"):
                    server.release.wait(10)
                elif self.path.endswith("/gzip"):
                    body, headers = gzip.compress(body), {"Content-Encoding": "gzip"}
                elif self.path.endswith("/big"):
                    body = b"z" * 5000
                self.send_response(200)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def connections(self) -> set[int]:
        return {port for port, _, _ in self.requests}

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)


@pytest.fixture
def server() -> Iterator[Server]:
    running = Server()
    try:
        yield running
    finally:
        running.close()


def test_requests_reuse_one_kept_alive_connection(server: Server) -> None:
    with HttpTransport(1.0, 5.0) as transport:
        for _ in range(5):
            assert transport.post_form(f"{server.url}/p", FORM, {}).status == 200
    assert len(server.requests) == 5
    assert len(server.connections()) == 1


def test_threads_share_at_most_max_connections(server: Server) -> None:
    with HttpTransport(1.0, 5.0, max_connections=2) as transport:
        start = threading.Barrier(8)

        def send() -> None:
            start.wait(10)
            for _ in range(5):
                transport.post_form(f"{server.url}/p", FORM, {})

        threads = [threading.Thread(target=send) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    assert len(server.requests) == 40
    assert 1 <= len(server.connections()) <= 2


def test_gzip_from_a_real_server_is_decoded(server: Server) -> None:
    with HttpTransport(1.0, 5.0) as transport:
        raw = transport.post_form(f"{server.url}/gzip", FORM, {})
    assert raw.headers["content-encoding"] == "gzip"
    assert raw.body == b'{"meta": {"status": true}}'
    assert "gzip" in server.requests[0][2]  # asked for


def test_a_slow_answer_is_a_timeout(server: Server) -> None:
    with HttpTransport(1.0, 0.2) as transport, pytest.raises(TransientError) as caught:
        transport.post_form(f"{server.url}/slow", FORM, {})
    assert caught.value.reason == "timeout"
    assert "ReadTimeout" in str(caught.value)
    assert SECRET not in everything_said(caught.value)


def test_a_refused_connection_is_a_connection_problem() -> None:
    with socket.socket() as bound:  # bound, not listening: connecting is refused
        bound.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{bound.getsockname()[1]}/p"
        with HttpTransport(1.0, 1.0) as transport, pytest.raises(TransientError) as caught:
            transport.post_form(url, FORM, {})
    assert caught.value.reason == "connection"
    assert "ConnectError" in str(caught.value)
    assert SECRET not in everything_said(caught.value)


def test_a_body_too_large_is_refused_and_the_next_request_goes_on(server: Server) -> None:
    with HttpTransport(1.0, 5.0, max_response_bytes=1000) as transport:
        with pytest.raises(ResponseTooLargeError) as caught:
            transport.post_form(f"{server.url}/big", FORM, {})
        assert SECRET not in everything_said(caught.value)
        assert transport.post_form(f"{server.url}/p", FORM, {}).status == 200
    assert len(server.requests) == 2


def test_the_proxy_named_by_the_environment_is_used(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", server.url)  # read when the transport is made
    with HttpTransport(1.0, 5.0) as transport:
        assert transport.post_form("http://data.example.invalid/p", FORM, {}).status == 200
    # a proxy is asked for the absolute URL
    assert server.requests[0][1] == "http://data.example.invalid/p"
