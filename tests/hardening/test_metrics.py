#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""/metrics: valid Prometheus text (promtool check metrics), exact counter
values after known traffic, a separate metrics socket ([server]
metrics_listen) and the metrics key ([auth] metrics_key_credential)."""

import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hlib  # noqa: E402
from hlib import bearer, chat, check, eq, metric, raw_request, scrape, test  # noqa: E402


def promtool_check(t, text):
    promtool = shutil.which("promtool")
    if not promtool:
        t.note("promtool not installed (Debian package prometheus): format check skipped")
        return
    p = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30)
    out = (p.stdout + p.stderr).decode("utf-8", "replace").strip()
    eq(p.returncode, 0, f"promtool check metrics: {out}")
    t.note("promtool check metrics: ok" + (f" ({out})" if out else ""))


def expect(text, name, value, **labels):
    eq(metric(text, name, **labels), value, f"{name}{labels}")


@test(timeout=40)
def test_counters_exact(t):
    alice, alice_line = hlib.keygen(t, "alice")
    keys = hlib.write_file(t, "keys", alice_line + " rpm=2\n")
    a = t.start(hlib.config({("auth", "keys_file"): keys}))

    r = raw_request(a.port, "GET", "/metrics")
    eq(r.status, 200, "GET /metrics")
    check((r.header("content-type") or "").startswith("text/plain; version=0.0.4"),
          f"content-type {r.header('content-type')!r}")
    first = r.body.decode()
    promtool_check(t, first)
    for name in ("aigw_http_requests_total", "aigw_auth_failures_total", "aigw_ratelimited_total",
                 "aigw_tokens_total", "aigw_inflight_requests", "aigw_backend_up"):
        check(f"# TYPE {name} " in first, f"no TYPE line for {name}")
    expect(first, "aigw_backend_up", 1, backend="mock")
    expect(first, "aigw_inflight_requests", 0)

    # known traffic: 2 answered (3 + 2 words, echoed), 1 over rpm=2, 1
    # without a key, 1 with a wrong key, 1 malformed body, 1 /health
    eq(chat(a, "one two three", headers=bearer(alice)).status, 200, "chat 1")
    eq(chat(a, "four five", headers=bearer(alice)).status, 200, "chat 2")
    eq(chat(a, "six", headers=bearer(alice)).status, 429, "chat 3 over rpm=2")
    eq(chat(a, "seven").status, 401, "chat without a key")
    eq(chat(a, "eight", headers=bearer("aigw-" + "C" * 43)).status, 401, "chat with a wrong key")
    eq(raw_request(a.port, "POST", "/v1/chat/completions", b"{", headers={"Content-Type": "application/json"},
                   ).status, 400, "malformed body")
    eq(raw_request(a.port, "GET", "/health").status, 200, "/health")

    # requests are counted when they end, just after the answer: scrape
    # until the last one shows (a scrape counts once it is done)
    scrapes = 1
    for _ in range(100):
        m = scrape(a.port)
        scrapes += 1
        if metric(m, "aigw_http_requests_total", route="health", code="200") == 1:
            break
        hlib.time.sleep(0.02)
    hlib.time.sleep(0.1)  # so that the last scrape is counted, too
    m = scrape(a.port)
    scrapes += 1
    promtool_check(t, m)
    expect(m, "aigw_http_requests_total", 2, route="chat_completions", code="200")
    expect(m, "aigw_http_requests_total", 1, route="chat_completions", code="429")
    expect(m, "aigw_http_requests_total", 2, route="chat_completions", code="401")
    expect(m, "aigw_http_requests_total", 1, route="chat_completions", code="400")
    expect(m, "aigw_http_requests_total", 1, route="health", code="200")
    expect(m, "aigw_http_requests_total", scrapes - 1, route="metrics", code="200")
    expect(m, "aigw_auth_failures_total", 1, reason="missing")
    expect(m, "aigw_auth_failures_total", 1, reason="invalid")
    expect(m, "aigw_ratelimited_total", 1, reason="requests")
    expect(m, "aigw_ratelimited_total", 0, reason="tokens")
    expect(m, "aigw_ratelimited_total", 0, reason="inflight")
    expect(m, "aigw_ratelimited_total", 0, reason="global_inflight")
    expect(m, "aigw_tokens_total", 5, backend="mock", model="mock", kind="prompt")
    expect(m, "aigw_tokens_total", 5, backend="mock", model="mock", kind="completion")
    expect(m, "aigw_http_request_duration_seconds_count", 6, route="chat_completions")
    expect(m, "aigw_inflight_requests", 0)
    # the key never appears, its name may
    check(alice not in m, "the API key appears in /metrics")


@test(timeout=40)
def test_metrics_listen(t):
    mport = harness_port()
    a = t.start(hlib.config({("server", "metrics_listen"): f"127.0.0.1:{mport}"}))
    eq(chat(a, "counted").status, 200, "a chat request on the main port")
    r = raw_request(a.port, "GET", "/metrics")
    eq(r.status, 404, "/metrics on the main port with a metrics socket")
    check("metrics socket" in r.error()["message"], f"404 message {r.body[:200]!r}")
    hlib.wait_metric(mport, "aigw_http_requests_total", 1, route="chat_completions", code="200")
    m = scrape(mport)
    promtool_check(t, m)
    expect(m, "aigw_http_requests_total", 1, route="metrics", code="404")
    # the metrics socket serves metrics (and /health), not the API
    eq(raw_request(mport, "GET", "/health").status, 200, "/health on the metrics socket")
    r = raw_request(mport, "POST", "/v1/chat/completions", hlib.chat_body("x"))
    eq(r.status, 404, "the chat API on the metrics socket")
    eq(raw_request(a.port, "GET", "/health").status, 200, "/health on the main port")


def harness_port():
    return hlib.harness.free_port()


@test(timeout=40)
def test_metrics_key(t):
    mkey = "metrics-secret-7c1d2e9f"
    creds = hlib.cred_dir(t, {"aigw-metrics-key": mkey + "\n"})
    a = t.start(hlib.config({("auth", "metrics_key_credential"): "aigw-metrics-key"}),
                env={"CREDENTIALS_DIRECTORY": creds})
    for hdrs, what in (({}, "no key"), (bearer("wrong"), "a wrong key"), ({"x-api-key": mkey}, "x-api-key"),
                       (bearer(mkey + "x"), "an extended key"), (bearer(mkey[:-1]), "a truncated key")):
        r = raw_request(a.port, "GET", "/metrics", headers=hdrs)
        eq(r.status, 401, f"/metrics with {what}")
        wa = r.header("www-authenticate")
        check(wa is not None and wa.lower().startswith("bearer"), f"/metrics with {what}: WWW-Authenticate {wa!r}")
        r.error()
    hlib.wait_metric(a.port, "aigw_http_requests_total", 5, headers=bearer(mkey), route="metrics", code="401")
    # the chat API stays open (no API keys configured) and /health needs nothing
    eq(chat(a, "x").status, 200, "chat without API keys")
    eq(raw_request(a.port, "GET", "/health").status, 200, "/health")
    check(all(mkey not in line for line in a.logs()), "the metrics key appears in aigw's output")

    # with a metrics socket, the key is not needed there
    mport = harness_port()
    b = t.start(hlib.config({("auth", "metrics_key_credential"): "aigw-metrics-key",
                             ("server", "metrics_listen"): f"127.0.0.1:{mport}"}),
                env={"CREDENTIALS_DIRECTORY": creds}, config_name="b.conf")
    eq(raw_request(mport, "GET", "/metrics").status, 200, "/metrics on the metrics socket without the key")
    eq(raw_request(b.port, "GET", "/metrics", headers=bearer(mkey)).status, 404,
       "/metrics on the main port when a metrics socket exists")


if __name__ == "__main__":
    hlib.main()
