#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Signals: SIGTERM drains in-flight requests (HTTP/1.1 and HTTP/2), the
drain timeout, SIGHUP reloads (valid, invalid, missing file, during a
request). Slow requests come from the mock backend's mock_latency."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, curl, eq, fail, http_conn, http_request, test  # noqa: E402

MOCK = 'backend "mock"'


def chat_body(text="hi", model="mock"):
    return {"model": model, "messages": [{"role": "user", "content": text}]}


def slow_config(t, latency="3s", drain="10s", workers="1", base="minimal"):
    return t.config(base=base, settings={("server", "workers"): workers, ("server", "drain_timeout"): drain,
                                         (MOCK, "mock_latency"): latency})


def check_chat_ok(status, headers, body, text, what):
    eq(status, 200, f"{what}: status (body {body[:300]!r})")
    try:
        j = json.loads(body)
    except ValueError:
        fail(f"{what}: body is not JSON: {body[:300]!r}")
    choices = j.get("choices")
    check(isinstance(choices, list) and choices, f"{what}: no choices in {j}")
    content = (choices[0].get("message") or {}).get("content", "")
    check(text in content, f"{what}: the mock's answer {content!r} does not echo {text!r}")
    return j


class ChatInFlight:
    """A chat request on its own HTTP/1.1 connection, in a thread."""

    def __init__(self, a, text, timeout=30, model="mock"):
        self.result = {}
        self.text = text
        self.t_start = time.monotonic()

        def run():
            conn = http_conn(a, timeout=timeout)
            try:
                self.result["response"] = http_request(conn, "POST", "/v1/chat/completions",
                                                       body=chat_body(text, model),
                                                       headers={"X-Request-Id": "inflight-" + text})
            except Exception as e:
                self.result["error"] = e
            finally:
                self.result["t_end"] = time.monotonic()
                conn.close()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def join(self, timeout):
        self.thread.join(timeout)
        check(not self.thread.is_alive(), f"the chat request did not finish within {timeout} s")
        return self.result


def unanswered(a, wait=0.7):
    """True if a new connection is not served (refused, reset or silent)."""
    try:
        s = socket.create_connection(("127.0.0.1", a.port), timeout=2)
    except OSError:
        return True
    with s:
        try:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            s.settimeout(wait)
            data = s.recv(4096)
        except socket.timeout:
            return True
        except OSError:
            return True
        return data == b""


@test(timeout=60)
def test_sigterm_drains_inflight_http1(t):
    a = t.start(slow_config(t, latency="3s", drain="10s"))
    # the keep-alive connection is opened (and used) before the drain
    ka = http_conn(a)
    eq(http_request(ka, "GET", "/health")[0], 200, "keep-alive /health before the drain")
    chat = ChatInFlight(a, "drain-me")
    time.sleep(0.5)  # the request is in aigw's hands, waiting on the mock

    t_sig = a.send_signal(signal.SIGTERM)
    ev = a.wait_notify("STOPPING", "1", timeout=5, since=t_sig)
    eq(ev.fields.get("STATUS"), "Draining 1 in-flight requests", "STATUS with STOPPING=1")
    a.wait_log(r"received Terminated: draining 1 in-flight requests \(up to 10000 ms\)", timeout=2)
    time.sleep(0.3)  # a worker tick (100 ms) closes the listeners

    # an existing keep-alive connection is still served during the drain:
    # /health says "draining" with 503, and the connection is not kept
    status, headers, body = http_request(ka, "GET", "/health")
    eq(status, 503, f"/health during the drain (body {body!r})")
    eq(json.loads(body).get("status"), "draining", "/health body during the drain")
    eq(headers.get("connection", "").lower(), "close", "Connection header of the 503 during the drain")
    ka.close()
    # new connections are not accepted any more
    check(unanswered(a), "a new connection was served during the drain")
    check(a.running(), f"aigw exited with a request in flight{a.tail()}")

    res = chat.join(15)
    check("error" not in res, f"the in-flight chat failed: {res.get('error')!r}{a.tail()}")
    check_chat_ok(*res["response"], "drain-me", "in-flight chat")
    took = res["t_end"] - chat.t_start
    check(took >= 2.8, f"the chat took {took:.2f} s with mock_latency = 3s")
    rc = a.wait_exit(5)
    t_exit = time.monotonic()
    eq(rc, 0, "exit code after the drain")
    t.note(f"drain: request done {res['t_end'] - t_sig:.2f} s after SIGTERM, exit {t_exit - res['t_end']:.2f} s later")
    check(t_exit - res["t_end"] < 2, f"exit {t_exit - res['t_end']:.2f} s after the last request")
    check(a.find_log(r"drain timeout") is None, "drain timeout logged although the request finished")
    line = a.wait_log(r"AIGW_REQUEST_ID=inflight-drain-me(\s|$)", timeout=1).string
    check("AIGW_STATUS=200" in line.split(), f"access log: {line}")
    a.wait_log(r"aigw stopped after serving \d+ requests", timeout=1)


@test(timeout=60)
def test_sigterm_drains_inflight_h2(t):
    a = t.start(slow_config(t, latency="3s", drain="10s"))
    body = os.path.join(t.tmpdir, "chat.json")
    with open(body, "w") as f:
        json.dump(chat_body("h2-drain"), f)
    argv = [t.tool("nghttp"), "-v", "--timeout", "20", "-d", body, "-H", "content-type: application/json",
            a.url("/v1/chat/completions")]
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(0.5)
        t_sig = a.send_signal(signal.SIGTERM)
        a.wait_notify("STOPPING", "1", timeout=5, since=t_sig)
        out, err = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(5)
    out = out.decode("utf-8", "replace")
    eq(p.returncode, 0, f"nghttp exit code ({err.decode()[-500:]})")
    check(re.search(r"recv GOAWAY frame", out), f"no GOAWAY during the drain:\n{out[-2000:]}")
    check(re.search(r"recv \(stream_id=\d+\) :status: 200", out), f"the in-flight h2 stream did not get 200:\n{out[-2000:]}")
    check("h2-drain" in out or re.search(r"recv DATA frame <length=[1-9]", out), "no answer data")
    eq(a.wait_exit(5), 0, "exit code")


@test(timeout=60)
def test_drain_timeout_cuts_requests(t):
    a = t.start(slow_config(t, latency="5s", drain="1s"))
    chat = ChatInFlight(a, "too-slow")
    time.sleep(0.5)
    t_sig = a.send_signal(signal.SIGTERM)
    a.wait_notify("STOPPING", "1", timeout=5, since=t_sig)
    rc = a.wait_exit(10)
    took = time.monotonic() - t_sig
    eq(rc, 0, "exit code after the drain timeout")
    t.note(f"drain_timeout = 1s: exit {took:.2f} s after SIGTERM")
    check(0.9 <= took <= 3, f"exit {took:.2f} s after SIGTERM with drain_timeout = 1s")
    a.wait_log(r"drain timeout: 1 requests were still in flight", timeout=1)
    res = chat.join(10)
    check("error" in res or res["response"][0] != 200, f"the cut request got {res.get('response')!r}")


@test(timeout=60)
def test_watchdog_during_slow_request(t):
    a = t.start(slow_config(t, latency="3s"), watchdog_usec=1000000)
    chat = ChatInFlight(a, "wd")
    start = time.monotonic()
    time.sleep(2.5)
    pings = a.notify_events("WATCHDOG", "1", since=start)
    check(len(pings) >= 3, f"{len(pings)} WATCHDOG=1 in 2.5 s while a slow request was in flight")
    eq(curl(t, a.url("/health")).status, 200, "/health while the worker waits on the mock")
    res = chat.join(10)
    check("error" not in res, f"chat failed: {res.get('error')!r}")
    check_chat_ok(*res["response"], "wd", "chat")


# ---- SIGHUP ----------------------------------------------------------------------------------


def model_ids(t, a):
    r = curl(t, a.url("/v1/models"))
    eq(r.status, 200, f"GET /v1/models: {r}")
    data = r.json().get("data")
    check(isinstance(data, list), f"/v1/models: no data list: {r.body[:300]!r}")
    return [m.get("id") for m in data]


def reload(a, timeout=10):
    """SIGHUP; return (RELOADING event, READY event) after checking order."""
    t_hup = a.send_signal(signal.SIGHUP)
    rel = a.wait_notify("RELOADING", "1", timeout=timeout, since=t_hup)
    mono = rel.fields.get("MONOTONIC_USEC")
    check(mono and mono.isdigit(), f"RELOADING=1 without MONOTONIC_USEC: {rel.raw!r}")
    skew = abs(int(mono) / 1e6 - rel.t)
    check(skew < 2, f"MONOTONIC_USEC is {skew:.3f} s off CLOCK_MONOTONIC")
    check(a.config_path in rel.fields.get("STATUS", ""), f"STATUS with RELOADING=1: {rel.raw!r}")
    ready = a.wait_notify("READY", "1", timeout=timeout, since=rel.t)
    return rel, ready


@test
def test_reload_adds_model(t):
    cfg = t.config(base="repo")
    a = t.start(cfg)
    m = a.wait_log(r"started in .*, (\d+) models", timeout=2)
    n = int(m.group(1))
    ids = model_ids(t, a)
    check("mock" in ids and "mock-reloaded" not in ids, f"models before: {ids}")

    a.write_config(cfg + '\n[model "mock-reloaded"]\nbackend = mock\n')
    start = a.log_index()
    rel, ready = reload(a)
    t.note(f"SIGHUP reload: RELOADING=1 -> READY=1 in {(ready.t - rel.t) * 1000:.2f} ms")
    a.wait_log(r"configuration reloaded from " + re.escape(a.config_path) + r" \(%d models\)" % (n + 1),
               timeout=2, start=start)
    # systemctl reload returns at READY=1: the new configuration must be in
    # effect for the next request already
    ids = model_ids(t, a)
    check("mock-reloaded" in ids, f"the added model is not listed right after READY=1: {ids}")
    r = curl(t, a.url("/v1/chat/completions"), "-H", "content-type: application/json",
             "--data-binary", '{"model":"mock-reloaded","messages":[{"role":"user","content":"new"}]}')
    check_chat_ok(r.status, None, r.body, "new", "chat with the added model")
    st = a.wait_notify("STATUS", timeout=3, since=ready.t)
    check(st.fields["STATUS"].startswith("Serving on"), f"STATUS after the reload: {st.raw!r}")
    eq(a.stop(), 0, "exit code")


@test
def test_reload_log_level(t):
    a = t.start()
    eq(curl(t, a.url("/health"), "-H", "X-Request-Id: before-reload").status, 200, "status")
    a.wait_log(r"AIGW_REQUEST_ID=before-reload", timeout=2)

    a.write_config(t.config(settings={("log", "level"): "notice"}))
    start = a.log_index()
    reload(a)
    a.wait_log(r"configuration reloaded from ", timeout=2, start=start)
    eq(curl(t, a.url("/health"), "-H", "X-Request-Id: at-notice").status, 200, "status")
    time.sleep(0.3)
    check(a.find_log(r"AIGW_REQUEST_ID=at-notice") is None, "access log (info) written at level notice")

    a.write_config(t.config(settings={("log", "level"): "info"}))
    reload(a)
    eq(curl(t, a.url("/health"), "-H", "X-Request-Id: back-at-info").status, 200, "status")
    a.wait_log(r"AIGW_REQUEST_ID=back-at-info", timeout=2)


INVALID_RELOAD = """\
[server]
workers = 2
drain_timeout = forever

[log]
level = info
colour = blue

[backend "mock"]
type = mock

[model "mock"]
backend = mock
"""


@test
def test_reload_invalid_keeps_running(t):
    good = t.config()
    a = t.start(good)
    before = model_ids(t, a)
    a.write_config(INVALID_RELOAD)
    start = a.log_index()
    rel, ready = reload(a)
    p = re.escape(a.config_path)
    a.wait_log(r"reload: " + p + r':3: drain_timeout: "forever" is not a duration', timeout=2, start=start)
    a.wait_log(r"reload: " + p + r':7: unknown key "colour" in section \[log\]', timeout=2, start=start)
    a.wait_log(r"reload of " + p + r" failed with 2 error\(s\); keeping the running configuration",
               timeout=2, start=start)
    errs = [ln for ln in a.logs(start) if re.search(p + r":\d+: ", ln)]
    eq(len(errs), 2, f"file:line errors logged: {errs}")
    check(all(ln.startswith("<3>") for ln in errs), f"errors not logged at priority err: {errs}")
    check(a.find_log(r"configuration reloaded", start) is None, "'configuration reloaded' after a failed reload")
    check(ready.t > rel.t, "READY=1 before RELOADING=1")
    # still serving, with the old configuration
    r = curl(t, a.url("/health"), "-H", "X-Request-Id: after-bad-reload")
    eq(r.status, 200, "status after a failed reload")
    a.wait_log(r"AIGW_REQUEST_ID=after-bad-reload", timeout=2)
    eq(model_ids(t, a), before, "models after a failed reload")
    # and a later valid reload works
    a.write_config(good + '\n[model "second"]\nbackend = mock\n')
    start = a.log_index()
    reload(a)
    a.wait_log(r"configuration reloaded from .* \(2 models\)", timeout=2, start=start)
    check("second" in model_ids(t, a), "the valid reload after a failed one did not apply")


@test
def test_reload_missing_file(t):
    a = t.start()
    os.unlink(a.config_path)
    start = a.log_index()
    reload(a)
    a.wait_log(r"reload: " + re.escape(a.config_path) + r": cannot read: No such file or directory",
               timeout=2, start=start)
    a.wait_log(r"reload of .* failed with 1 error\(s\)", timeout=2, start=start)
    eq(curl(t, a.url("/health")).status, 200, "status")


@test
def test_reload_restart_only_settings(t):
    a = t.start()
    a.write_config(t.config(settings={("server", "workers"): "3"}))
    start = a.log_index()
    _, ready = reload(a)
    a.wait_log(r"take effect only at the next restart", timeout=2, start=start)
    st = a.wait_notify("STATUS", timeout=3, since=ready.t)
    check(st.fields["STATUS"].startswith("Serving on 2 workers"), f"STATUS after the reload: {st.raw!r}")
    eq(curl(t, a.url("/health")).status, 200, "status")


@test
def test_reload_burst(t):
    a = t.start()
    a.write_config(t.config(append='[model "burst"]\nbackend = mock\n'))
    t0 = time.monotonic()
    for _ in range(10):
        a.send_signal(signal.SIGHUP)
        time.sleep(0.01)
    time.sleep(0.5)
    rel = a.notify_events("RELOADING", "1", since=t0)
    check(rel, "no RELOADING=1 after 10 SIGHUPs")
    a.wait_notify("READY", "1", timeout=5, since=rel[-1].t)
    check(a.running(), f"aigw died under a burst of SIGHUPs{a.tail()}")
    eq(curl(t, a.url("/health")).status, 200, "status")
    check("burst" in model_ids(t, a), "the reloaded model is missing")
    eq(a.stop(), 0, "exit code")


@test(timeout=60)
def test_reload_during_inflight_request(t):
    cfg = slow_config(t, latency="2s", workers="2")
    a = t.start(cfg)
    chat = ChatInFlight(a, "across-reload")
    time.sleep(0.4)
    # the new configuration drops the latency and renames the model
    a.write_config(t.config(settings={(MOCK, "mock_latency"): "0"}).replace('[model "mock"]', '[model "other"]')
                   .replace("[server]", "[server]\ndefault_model = other"))
    reload(a)
    res = chat.join(10)
    check("error" not in res, f"in-flight chat across a reload failed: {res.get('error')!r}{a.tail()}")
    check_chat_ok(*res["response"], "across-reload", "in-flight chat across a reload")
    ids = model_ids(t, a)
    eq(ids, ["other"], "models after the reload")
    eq(a.stop(), 0, "exit code")


@test
def test_sighup_after_sigterm_ignored(t):
    a = t.start(slow_config(t, latency="2s"))
    chat = ChatInFlight(a, "hup-in-drain")
    time.sleep(0.4)
    t_sig = a.send_signal(signal.SIGTERM)
    a.wait_notify("STOPPING", "1", timeout=5, since=t_sig)
    a.send_signal(signal.SIGHUP)
    res = chat.join(10)
    check("error" not in res, f"chat failed: {res.get('error')!r}")
    eq(a.wait_exit(5), 0, "exit code")
    eq(a.notify_events("RELOADING", since=t_sig), [], "RELOADING=1 during the drain")
    eq(a.notify_events("READY", since=t_sig), [], "READY=1 during the drain")


if __name__ == "__main__":
    harness.main()
