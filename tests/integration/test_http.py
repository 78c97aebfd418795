#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""HTTP/1.1 with curl: /health, HEAD, 404, 405 + Allow, X-Request-Id."""

import os
import re
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import REQUEST_ID_RE, check, curl, eq, http_conn, http_request, test  # noqa: E402


def binary_version(t):
    out = subprocess.run([t.aigw, "--version"], capture_output=True, timeout=10).stdout.decode()
    m = re.fullmatch(r"aigw (\S+)\n", out)
    check(m, f"aigw --version printed {out!r}")
    return m.group(1)


def access_line(a, request_id, timeout=5):
    return a.wait_log(r"AIGW_REQUEST_ID=" + re.escape(request_id) + r"(\s|$)", timeout=timeout,
                      what=f"access log line for {request_id}").string


@test
def test_health_get(t):
    a = t.start()
    r = curl(t, a.url("/health"), "--http1.1")
    eq(r.status, 200, "status")
    eq(r.http_version, "1.1", "HTTP version")
    check(r.header("content-type").startswith("application/json"), f"content-type {r.header('content-type')}")
    eq(r.header("cache-control"), "no-store", "cache-control")
    eq(int(r.header("content-length")), len(r.body), "content-length")
    body = r.json()
    eq(sorted(body), ["status", "uptime_seconds", "version"], "keys of the body")
    eq(body["status"], "ok", "status field")
    eq(body["version"], binary_version(t), "version field (as aigw --version)")
    check(isinstance(body["uptime_seconds"], int) and 0 <= body["uptime_seconds"] < 60,
          f"uptime_seconds {body['uptime_seconds']!r}")
    rid = r.header("x-request-id")
    check(rid and REQUEST_ID_RE.match(rid), f"x-request-id {rid!r} is not 32 hex digits")
    line = access_line(a, rid)
    for field in ("AIGW_ROUTE=health", "AIGW_METHOD=GET", "AIGW_STATUS=200", "AIGW_PROTOCOL=http/1.1"):
        check(field in line.split(), f"{field} missing in access log line {line!r}")
    check(line.startswith("<6>GET /health 200 "), f"access log line {line!r}")
    eq(a.stop(), 0, "exit code")


def raw_exchange(a, request, timeout=5):
    """Send one request on a raw socket; return (head bytes, socket)."""
    s = socket.create_connection(("127.0.0.1", a.port), timeout=timeout)
    s.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    return data, s


@test
def test_health_head(t):
    a = t.start()
    g = curl(t, a.url("/health"))
    r = curl(t, a.url("/health"), "--head")
    eq(r.status, 200, "status")
    check(r.header("content-type").startswith("application/json"), f"content-type {r.header('content-type')}")
    cl = r.header("content-length")
    check(cl is None or int(cl) == len(g.body), f"HEAD content-length {cl} vs GET body {len(g.body)}")
    rid = r.header("x-request-id")
    check(rid and REQUEST_ID_RE.match(rid), f"x-request-id {rid!r}")
    check("AIGW_METHOD=HEAD" in access_line(a, rid).split(), "HEAD not logged as HEAD")

    # No body bytes after the head: the next response on the connection
    # must start right where the HEAD response's headers end.
    for path, status in (("/health", b"200"), ("/nope", b"404")):
        data, s = raw_exchange(a, f"HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        with s:
            check(data.startswith(b"HTTP/1.1 " + status + b" "), f"HEAD {path}: {data[:100]!r}")
            head, _, rest = data.partition(b"\r\n\r\n")
            s.settimeout(0.3)
            try:
                rest += s.recv(4096)
            except socket.timeout:
                pass
            eq(rest, b"", f"bytes after the HEAD {path} response headers")
            s.settimeout(5)
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            nxt = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                nxt += chunk
            check(nxt.startswith(b"HTTP/1.1 200 "), f"response after HEAD {path}: {nxt[:100]!r}")


@test
def test_health_trailing_slash_and_query(t):
    a = t.start()
    eq(curl(t, a.url("/health/")).status, 200, "/health/")
    r = curl(t, a.url("/health?secret=hunter2"))
    eq(r.status, 200, "/health?query")
    line = access_line(a, r.header("x-request-id"))
    check("hunter2" not in line, f"the query string was logged: {line!r}")


@test
def test_uptime_advances(t):
    a = t.start()
    time.sleep(1.2)
    up = curl(t, a.url("/health")).json()["uptime_seconds"]
    check(up >= 1, f"uptime_seconds {up} after 1.2 s")


@test
def test_not_found(t):
    a = t.start()
    for method, path in (("GET", "/nope"), ("POST", "/v1/nonexistent"), ("GET", "/healthz"), ("HEAD", "/x")):
        args = ["--head"] if method == "HEAD" else ["-X", method]
        r = curl(t, a.url(path), *args)
        eq(r.status, 404, f"{method} {path}")
        rid = r.header("x-request-id")
        check(rid and REQUEST_ID_RE.match(rid), f"{method} {path}: x-request-id {rid!r}")
        if method == "HEAD":
            continue
        check(r.header("content-type").startswith("application/json"), f"content-type {r.header('content-type')}")
        e = r.json()
        check(isinstance(e.get("error"), dict), f"no error object: {e}")
        eq(e["error"].get("code"), "not_found", "error.code")
        eq(e["error"].get("type"), "invalid_request_error", "error.type")
        check(path in e["error"].get("message", ""), f"message does not name the path: {e}")
        line = access_line(a, rid)
        check("AIGW_STATUS=404" in line.split() and "AIGW_ROUTE=not_found" in line.split(), line)


@test
def test_method_not_allowed(t):
    a = t.start()
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
        r = curl(t, a.url("/health"), "-X", method)
        eq(r.status, 405, f"{method} /health")
        allow = r.header("allow")
        check(allow is not None, f"{method}: no Allow header")
        eq(sorted(x.strip() for x in allow.split(",")), ["GET", "HEAD"], f"{method}: Allow")
        e = r.json()
        eq(e["error"].get("code"), "method_not_allowed", "error.code")
        check(method in e["error"].get("message", ""), f"message does not name the method: {e}")
        check(REQUEST_ID_RE.match(r.header("x-request-id") or ""), "x-request-id")


@test
def test_request_id_kept(t):
    a = t.start()
    for rid in ("abc", "A", "Req-1.2_3:4", "0123456789abcdef0123456789ABCDEF", "x" * 64,
                "01JABCDEF:trace.span-9_z"):
        r = curl(t, a.url("/health"), "-H", f"X-Request-Id: {rid}")
        eq(r.status, 200, "status")
        eq(r.header_all("x-request-id"), [rid], f"x-request-id for {rid!r}")
        access_line(a, rid)
    # also on errors, and the header name is case-insensitive
    r = curl(t, a.url("/nope"), "-H", "x-REQUEST-id: kept-on-404")
    eq(r.header_all("x-request-id"), ["kept-on-404"], "x-request-id on 404")
    r = curl(t, a.url("/health"), "-X", "POST", "-H", "X-Request-Id: kept-on-405")
    eq(r.header_all("x-request-id"), ["kept-on-405"], "x-request-id on 405")


@test
def test_request_id_generated(t):
    a = t.start()
    seen = set()
    for _ in range(5):
        r = curl(t, a.url("/health"))
        rid = r.header("x-request-id")
        check(rid and REQUEST_ID_RE.match(rid), f"generated x-request-id {rid!r} is not 32 hex digits")
        eq(len(r.header_all("x-request-id")), 1, "number of x-request-id headers")
        seen.add(rid)
    eq(len(seen), 5, "distinct generated request ids")


@test
def test_request_id_rejected_when_insane(t):
    a = t.start()
    insane = ["x" * 65, "has space", "semi;colon", "slash/y", "quote\"d", "a=b", "tab\there", "pct%41",
              "\u00e9t\u00e9", "<script>", "comma,sep", "AIGW_STATUS=500"]
    for rid in insane:
        start = a.log_index()
        r = curl(t, a.url("/health"), "-H", f"X-Request-Id: {rid}")
        eq(r.status, 200, f"status with X-Request-Id {rid!r}")
        got = r.header_all("x-request-id")
        eq(len(got), 1, f"x-request-id headers for {rid!r}")
        check(REQUEST_ID_RE.match(got[0]), f"sent {rid!r}, got {got[0]!r}: not a generated id")
        line = access_line(a, got[0])
        check(a.log_index() > start, "no access log line")
        check(rid not in line, f"the rejected id was logged: {line!r}")
    # an empty header ("X-Request-Id;" makes curl send it empty)
    r = curl(t, a.url("/health"), "-H", "X-Request-Id;")
    check(REQUEST_ID_RE.match(r.header("x-request-id") or ""), f"empty id: got {r.header('x-request-id')!r}")


@test
def test_keep_alive(t):
    a = t.start()
    conn = http_conn(a)
    try:
        ids, peers = [], set()
        for i in range(3):
            status, headers, body = http_request(conn, "GET", "/health", headers={"X-Request-Id": f"ka-{i}"})
            eq(status, 200, "status")
            eq(headers.get("x-request-id"), f"ka-{i}", "x-request-id")
            check(headers.get("connection", "keep-alive").lower() != "close", "server closed the connection")
            ids.append(headers["x-request-id"])
            m = re.search(r"AIGW_PEER=(\S+)", access_line(a, f"ka-{i}"))
            check(m, "no AIGW_PEER in the access log")
            peers.add(m.group(1))
        eq(len(peers), 1, "peer addresses of three keep-alive requests (one connection)")
    finally:
        conn.close()


@test
def test_http10(t):
    a = t.start()
    r = curl(t, a.url("/health"), "--http1.0")
    eq(r.status, 200, "status")
    eq(r.json()["status"], "ok", "body")
    check("AIGW_PROTOCOL=http/1.0" in access_line(a, r.header("x-request-id")).split(), "protocol http/1.0")


@test
def test_clean_stop(t):
    a = t.start()
    eq(curl(t, a.url("/health")).status, 200, "status")
    eq(a.stop(), 0, "exit code after SIGTERM")
    a.wait_log(r"aigw stopped after serving \d+ requests", timeout=1)


if __name__ == "__main__":
    harness.main()
