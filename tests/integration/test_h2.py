#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""HTTP/2: h2c by prior knowledge and by Upgrade (curl, nghttp), and TLS
with ALPN (h2 and http/1.1) on a self-signed certificate made with openssl."""

import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import REQUEST_ID_RE, check, curl, eq, make_tls_cert, nghttp, test  # noqa: E402


def access_line(a, request_id, timeout=5):
    return a.wait_log(r"AIGW_REQUEST_ID=" + re.escape(request_id) + r"(\s|$)", timeout=timeout,
                      what=f"access log line for {request_id}").string


def check_health(r, what):
    eq(r.status, 200, f"{what}: status")
    body = r.json()
    eq(body.get("status"), "ok", f"{what}: body status")
    check(r.header("content-type").startswith("application/json"), f"{what}: content-type")
    rid = r.header("x-request-id")
    check(rid and REQUEST_ID_RE.match(rid), f"{what}: x-request-id {rid!r}")
    return rid


@test
def test_h2c_prior_knowledge_curl(t):
    a = t.start()
    r = curl(t, a.url("/health"), "--http2-prior-knowledge")
    eq(r.http_version, "2", "HTTP version")
    check(r.status_line.startswith("HTTP/2 200"), f"status line {r.status_line!r}")
    eq(len(r.header_blocks), 1, "header blocks (no 101 with prior knowledge)")
    rid = check_health(r, "h2c GET /health")
    check("AIGW_PROTOCOL=h2c" in access_line(a, rid).split(), "access log protocol is not h2c")

    r = curl(t, a.url("/nope"), "--http2-prior-knowledge")
    eq((r.http_version, r.status), ("2", 404), "h2c 404")
    eq(r.json()["error"]["code"], "not_found", "h2c 404 error.code")

    r = curl(t, a.url("/health"), "--http2-prior-knowledge", "-X", "POST", "-d", "{}")
    eq((r.http_version, r.status), ("2", 405), "h2c 405")
    eq(sorted(x.strip() for x in r.header("allow").split(",")), ["GET", "HEAD"], "h2c Allow")

    r = curl(t, a.url("/health"), "--http2-prior-knowledge", "-H", "X-Request-Id: h2-kept.1")
    eq(r.header_all("x-request-id"), ["h2-kept.1"], "h2c x-request-id kept")
    r = curl(t, a.url("/health"), "--http2-prior-knowledge", "-H", "X-Request-Id: not valid")
    check(REQUEST_ID_RE.match(r.header("x-request-id") or ""), "h2c invalid x-request-id replaced")

    r = curl(t, a.url("/health"), "--http2-prior-knowledge", "--head")
    eq((r.http_version, r.status), ("2", 200), "h2c HEAD")


@test
def test_h2c_prior_knowledge_nghttp(t):
    a = t.start()
    r = nghttp(t, a.url("/health"))
    check("recv SETTINGS frame" in r.out, "no SETTINGS from the server")
    check("HTTP Upgrade" not in r.out, "nghttp used Upgrade instead of prior knowledge")
    eq([s for _, s in r.statuses()], [200], "statuses")
    rid = r.header("x-request-id")
    check(rid and REQUEST_ID_RE.match(rid), f"x-request-id {rid!r}")
    check(re.search(r"recv DATA frame <length=\d+, flags=0x01", r.out), "no DATA frame with END_STREAM")
    check("AIGW_PROTOCOL=h2c" in access_line(a, rid).split(), "protocol not h2c")

    # -n (discard bodies), several streams on one connection
    r = nghttp(t, a.url("/health"), "-n", a.url("/nope"), a.url("/health?x=1"))
    eq(sorted(s for _, s in r.statuses()), [200, 200, 404], "statuses of three streams")
    ids = [v for k, v in r.headers() if k == "x-request-id"]
    eq(len(set(ids)), 3, f"distinct request ids over one h2 connection: {ids}")
    peers = {re.search(r"AIGW_PEER=(\S+)", access_line(a, i)).group(1) for i in ids}
    eq(len(peers), 1, "peer addresses (one connection)")

    r = nghttp(t, a.url("/health"), "-n", "-H", "x-request-id: from-nghttp")
    eq(r.header("x-request-id"), "from-nghttp", "x-request-id kept over h2c")


@test
def test_h2c_upgrade_curl(t):
    a = t.start()
    r = curl(t, a.url("/health"), "--http2")
    eq(r.http_version, "2", "HTTP version after Upgrade")
    eq([b[0].split()[1] for b in r.header_blocks], ["101", "200"], "status codes (101, then 200)")
    up = dict((k.lower(), v) for k, v in r.header_blocks[0][1])
    eq(up.get("upgrade", "").lower(), "h2c", "Upgrade header of the 101")
    rid = check_health(r, "upgraded GET /health")
    check("AIGW_PROTOCOL=h2c" in access_line(a, rid).split(), "upgraded request not logged as h2c")

    r = curl(t, a.url("/missing"), "--http2", "-H", "X-Request-Id: upgrade-404")
    eq((r.http_version, r.status), ("2", 404), "upgraded 404")
    eq(r.header_all("x-request-id"), ["upgrade-404"], "x-request-id kept over Upgrade")


@test
def test_h2c_upgrade_nghttp(t):
    a = t.start()
    r = nghttp(t, a.url("/health"), "-u")
    check("HTTP Upgrade success" in r.out, f"no Upgrade success:\n{r.out[-1500:]}")
    check(re.search(r"HTTP/1.1 101 ", r.out), "no 101 Switching Protocols")
    eq([s for _, s in r.statuses()], [200], "statuses")
    eq(r.statuses()[0][0], 1, "the upgraded request is stream 1")
    rid = r.header("x-request-id")
    check(rid and REQUEST_ID_RE.match(rid), f"x-request-id {rid!r}")

    r = nghttp(t, a.url("/health"), "-u", "-n", a.url("/nope"))
    eq(sorted(s for _, s in r.statuses()), [200, 404], "upgrade + a second stream")


def s_client_alpn(t, port, offer):
    argv = [t.tool("openssl"), "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
            "-alpn", offer]
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=15)
    out = p.stdout.decode("utf-8", "replace")
    if "No ALPN negotiated" in out:
        return None
    m = re.search(r"ALPN protocol: (\S+)", out)
    check(m, f"openssl s_client: no ALPN line (rc {p.returncode}):\n{out[-1500:]}\n{p.stderr.decode()[-500:]}")
    return m.group(1)


@test
def test_tls_alpn(t):
    cert, key = make_tls_cert(t)
    cfg = t.config(settings={("server", "tls_certificate"): cert, ("server", "tls_key"): key})
    a = t.start(cfg, tls=True)

    r = curl(t, a.url("/health"), "-k", "--http2")
    eq(r.http_version, "2", "curl -k --http2: negotiated version")
    eq(len(r.header_blocks), 1, "no Upgrade over TLS")
    rid = check_health(r, "h2 over TLS")
    check("AIGW_PROTOCOL=h2" in access_line(a, rid).split(), "not logged as h2")

    r = curl(t, a.url("/health"), "-k", "--http1.1")
    eq(r.http_version, "1.1", "curl -k --http1.1: version")
    rid = check_health(r, "http/1.1 over TLS")
    check("AIGW_PROTOCOL=http/1.1" in access_line(a, rid).split(), "not logged as http/1.1")

    r = curl(t, a.url("/health"), "--cacert", cert, "--http2")
    eq((r.http_version, r.status), ("2", 200), "verified against the self-signed certificate")

    eq(s_client_alpn(t, a.port, "h2,http/1.1"), "h2", "ALPN for h2,http/1.1")
    # aigw.conf: "With them, ALPN offers h2 and http/1.1."
    eq(s_client_alpn(t, a.port, "http/1.1"), "http/1.1",
       "ALPN selected for a client offering only http/1.1 (None: the server selected nothing)")
    eq(s_client_alpn(t, a.port, "h2"), "h2", "ALPN for h2")

    r = nghttp(t, a.url("/health"), "-n")
    eq([s for _, s in r.statuses()], [200], "nghttp over TLS")

    # cleartext to the TLS port is not served
    r = curl(t, f"http://127.0.0.1:{a.port}/health", expect_rc=None, timeout=5)
    check(r.rc != 0 and r.status != 200, f"cleartext request to the TLS port got {r}")
    # and the listener still works afterwards
    eq(curl(t, a.url("/health"), "-k").status, 200, "after a cleartext attempt")
    eq(a.stop(), 0, "exit code")


@test
def test_tls_unreadable_certificate(t):
    cert = os.path.join(t.tmpdir, "missing-cert.pem")
    key = os.path.join(t.tmpdir, "missing-key.pem")
    cfg = t.config(settings={("server", "tls_certificate"): cert, ("server", "tls_key"): key})
    a = t.start(cfg, tls=True, expect_ready=False)
    rc = a.wait_exit(10)
    check(rc != 0, f"aigw started without its certificate (exit code {rc})")
    a.wait_log(r"TLS: cannot load " + re.escape(cert), timeout=1)
    check(not a.notify_events("READY"), "READY=1 sent although startup failed")


@test
def test_tls_key_without_certificate(t):
    cert, key = make_tls_cert(t)
    cfg = t.config(settings={("server", "tls_key"): key})
    a = t.start(cfg, tls=True, expect_ready=False)
    rc = a.wait_exit(10)
    check(rc != 0, f"aigw started with tls_key alone (exit code {rc})")
    a.wait_log(r"tls_certificate and tls_key must be set together", timeout=1)


if __name__ == "__main__":
    harness.main()
