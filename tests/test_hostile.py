"""No request can hurt another: against a real uvicorn process, hostile clients (slow loris on
the headers and on the body, a 100 MB body, a gzip bomb, 10,000 form fields, deep nesting,
invalid UTF-8) each get their 4xx or a closed connection while a normal client keeps being
served, and only the normal client's events are stored."""

from __future__ import annotations

import gzip
import socket
import threading

import httpx

from tests.ingest.test_events_api import HOSTILE_BODIES
from tests.servers import count_in_events, free_port, local_http, start_server

GOOD = {"dt": 1735689600, "event": "e", "user_id": "good"}


def raw(port: int, head: bytes, body_parts: list[bytes] = (), timeout: float = 20) -> bytes:
    """Send bytes on a socket of our own; return what the server answered (b"" if it closed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(head)
        try:
            for part in body_parts:
                s.sendall(part)
        except OSError:
            pass  # the server answered and closed while we were still sending: that is the point
        try:
            return s.recv(65536)
        except OSError:
            return b""


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def test_hostile_clients_do_not_stop_a_normal_one(tmp_path):
    port = free_port()
    server = start_server(tmp_path / "data", port, BODY_TIMEOUT_SECONDS="2")
    url = f"http://127.0.0.1:{port}/events"
    hostile: dict[str, int] = {}
    try:
        # Slow loris on the headers: a request that never finishes its headers, held open.
        loris = socket.create_connection(("127.0.0.1", port))
        loris.sendall(b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")

        def slow_body():
            head = b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
            hostile["slow body"] = status_of(raw(port, head + b'{"dt": 1, '))

        def huge_chunked():
            head = b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            chunk = b"%x\r\n%s\r\n" % (1 << 20, b"[" * (1 << 20))
            hostile["100 MB chunked"] = status_of(raw(port, head, [chunk] * 100))

        def huge_declared():
            head = (b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 104857600\r\n\r\n")
            hostile["100 MB declared"] = status_of(raw(port, head))

        def bombs():
            bomb = gzip.compress(b"[" + b" " * (200 << 20) + b"]")
            hostile["gzip bomb"] = httpx.post(url, content=bomb, timeout=30, headers={
                "Content-Type": "application/json", "Content-Encoding": "gzip"}).status_code
            for n, (body, content_type) in enumerate(HOSTILE_BODIES):
                hostile[f"hostile body {n}"] = httpx.post(url, content=body, timeout=30,
                                                          headers={"Content-Type": content_type}).status_code

        threads = [threading.Thread(target=f) for f in (slow_body, huge_chunked, huge_declared, bombs)]
        for thread in threads:
            thread.start()
        with local_http(timeout=10) as http:  # a new connection a request, as a new client would
            served = [http.post(url, json=GOOD, headers={"Connection": "close"}).status_code for _ in range(50)]
        for thread in threads:
            thread.join(timeout=60)
        loris.close()
        assert served == [202] * 50
        assert hostile["slow body"] == 408
        assert hostile["100 MB declared"] == 413
        assert hostile["100 MB chunked"] in (413, 0)  # its 413, or the connection closed mid-send
        assert all(400 <= status < 500 for name, status in hostile.items() if name != "100 MB chunked"), hostile
        assert httpx.post(url, json=GOOD).status_code == 202
    finally:
        server.terminate()
        server.wait(timeout=60)
    assert count_in_events(tmp_path / "data") == 51
