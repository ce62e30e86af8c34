"""A minimal HTTP/1.1 server on ``asyncio.Protocol``: keep-alive, Content-Length bodies.

Just what Data API clients send (requests, httpx, the SDK): one request at a time per
connection, in order (pipelined requests wait their turn), bodies with Content-Length.
Chunked request bodies are refused (411). It exists because the benchmark target
(thousands of pages a second from one core) leaves no room for a framework's layers.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from connector.emulator.endpoint import Delivery, Reply

Handler = Callable[[str, str, bytes], Reply]

MAX_HEAD: Final = 16 * 1024
MAX_BODY: Final = 4 * 1024 * 1024
_REASONS: Final = {
    200: b"OK",
    400: b"Bad Request",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    411: b"Length Required",
    413: b"Payload Too Large",
    429: b"Too Many Requests",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
}


@dataclass(frozen=True, slots=True)
class RequestHead:
    method: str
    target: str
    length: int
    keep_alive: bool


def parse_head(head: str) -> RequestHead | int:
    """The request line and the headers that matter, or the HTTP status refusing them."""
    lines = head.split("\r\n")
    request_line = lines[0].split(" ")
    if len(request_line) != 3 or not request_line[2].startswith("HTTP/1."):
        return 400
    method, target, version = request_line
    length = 0
    keep_alive = version == "HTTP/1.1"
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            if not value.strip().isdigit():
                return 400
            length = int(value)
        elif name == "connection":
            option = value.strip().lower()
            keep_alive = option == "keep-alive" or (keep_alive and option != "close")
        elif name == "transfer-encoding":
            return 411
    if length > MAX_BODY:
        return 413
    return RequestHead(method, target, length, keep_alive)


class HttpProtocol(asyncio.Protocol):
    def __init__(self, handler: Handler, connections: set[HttpProtocol]) -> None:
        self._handler = handler
        self._connections = connections
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._busy = False  # an answer is delayed: later requests wait in the buffer
        self._write_paused = False
        self._closing = False

    # --- asyncio callbacks -----------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._connections.add(self)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.discard(self)
        self._transport = None

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._serve()

    def pause_writing(self) -> None:
        self._write_paused = True
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._transport is not None:
            self._transport.resume_reading()
        self._serve()

    # --- requests --------------------------------------------------------------------
    def _serve(self) -> None:
        buffer = self._buffer
        while not self._busy and not self._closing and not self._write_paused:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HEAD:
                    self._fail(431)
                return
            head = parse_head(bytes(buffer[:end]).decode("latin-1"))
            if isinstance(head, int):
                self._fail(head)
                return
            total = end + 4 + head.length
            if len(buffer) < total:
                return
            body = bytes(buffer[end + 4 : total])
            del buffer[:total]
            reply = self._handler(head.method, head.target, body)
            if reply.delay_seconds > 0:
                self._busy = True
                asyncio.get_running_loop().call_later(
                    reply.delay_seconds, self._send_later, reply, head.keep_alive
                )
                return
            self._send(reply, head.keep_alive)

    def _send_later(self, reply: Reply, keep_alive: bool) -> None:
        self._busy = False
        self._send(reply, keep_alive)
        self._serve()

    def _send(self, reply: Reply, keep_alive: bool) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if reply.delivery is Delivery.RESET:
            self._reset()
            return
        body = reply.body
        truncated = reply.delivery is Delivery.TRUNCATED
        if truncated:
            keep_alive = False
        head = [
            b"HTTP/1.1 %d %s\r\n" % (reply.status, _REASONS.get(reply.status, b"Unknown")),
            b"Content-Type: %s\r\n" % reply.content_type.encode(),
            b"Content-Length: %d\r\n" % len(body),
        ]
        head.extend(b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in reply.headers)
        if not keep_alive:
            head.append(b"Connection: close\r\n")
        head.append(b"\r\n")
        transport.write(b"".join(head) + (body[: len(body) // 2] if truncated else body))
        if not keep_alive:
            self._closing = True
            transport.close()

    def _fail(self, status: int) -> None:
        self._send(Reply(status, b"", content_type="text/plain"), keep_alive=False)

    def _reset(self) -> None:
        """Close with RST, not FIN: the client sees 'connection reset by peer'."""
        transport = self._transport
        if transport is None:
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._closing = True
        transport.abort()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


async def start_server(
    handler: Handler, host: str, port: int
) -> tuple[asyncio.Server, set[HttpProtocol]]:
    """Listen on ``host:port`` (0: a free port); returns the server and its connections."""
    connections: set[HttpProtocol] = set()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: HttpProtocol(handler, connections), host, port, reuse_address=True, backlog=1024
    )
    return server, connections
