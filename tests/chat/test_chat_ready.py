#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""/ready follows the default model's backends (probes, breaker, missing
keys); a backend without its key is "unconfigured" and its models answer
503 naming the setting."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chatlib  # noqa: E402
from chatlib import (GEMINI_KEY, OPENAI_KEY, Mock, backend, chat, check, check_error, config, eq, fail,  # noqa: E402
                     model, start, user)
from harness import curl, test  # noqa: E402


def ready(t, a):
    r = curl(t, a.url("/ready"))
    check(r.status in (200, 503), f"/ready status {r.status}")
    return r.status, r.json()


def wait_ready(t, a, status, timeout=5, what="/ready"):
    deadline = time.monotonic() + timeout
    while True:
        st, j = ready(t, a)
        if st == status:
            return j
        if time.monotonic() > deadline:
            fail(f"{what}: /ready stayed {st} ({j}), expected {status} within {timeout} s")
        time.sleep(0.1)


@test(timeout=40)
def test_ready_follows_probes(t):
    m = Mock(t, "openai")
    g = Mock(t, "gemini")
    a = start(t, config(backend("oa", "openai", m.url, probe_interval="1s"),
                        backend("gm", "gemini", g.url, probe_interval="1s"),
                        model("gpt", "oa"), model("gem", "gm"), default_model="gpt"))
    j = wait_ready(t, a, 200, what="at start")
    eq(j["status"], "ready", "status")
    eq(j["default_model"], "gpt", "default_model")
    m.wait(lambda rs: [x for x in rs if x["method"] == "GET"], what="the OpenAI probe")
    g.wait(lambda rs: [x for x in rs if x["method"] == "GET"], what="the Gemini probe")
    deadline = time.monotonic() + 3
    while not (j["backends"]["oa"]["checked"] and j["backends"]["gm"]["checked"]):
        check(time.monotonic() < deadline, f"backends not checked: {j}")
        time.sleep(0.1)
        _, j = ready(t, a)
    for name, typ in (("oa", "openai"), ("gm", "gemini")):
        b = j["backends"][name]
        eq((b["type"], b["state"], b["last_error"]), (typ, "up", None), f"{name} in /ready")
        check(isinstance(b["last_latency_ms"], (int, float)), f"{name}: last_latency_ms {b['last_latency_ms']!r}")

    p = m.probes()[0]
    eq(p["raw_path"], "/v1/models", "OpenAI probe path")
    eq(p["headers"].get("authorization"), f"Bearer {OPENAI_KEY}", "OpenAI probe auth")
    p = g.probes()[0]
    eq((p["path"], p["query"]), ("/v1beta/models", "pageSize=1"), "Gemini probe path and query")
    eq(p["headers"].get("x-goog-api-key"), GEMINI_KEY, "Gemini probe key header")
    check(GEMINI_KEY not in p["raw_path"], "the key is in the probe URL")

    # the default model's backend fails its probe: not ready
    m.probe({"status": 500})
    j = wait_ready(t, a, 503, timeout=5, what="after a failing probe")
    eq(j["status"], "unavailable", "status")
    eq(j["backends"]["oa"]["state"], "down", "oa state")
    check("500" in (j["backends"]["oa"]["last_error"] or ""), f"last_error {j['backends']['oa']['last_error']!r}")
    eq(j["backends"]["gm"]["state"], "up", "gm unaffected")
    # a Gemini backend going down is shown; the default model does not use it
    g.probe({"status": 503})
    deadline = time.monotonic() + 5
    while True:
        st, j = ready(t, a)
        eq(st, 503, "/ready (the default model's backend is still down)")
        if j["backends"]["gm"]["state"] == "down":
            break
        check(time.monotonic() < deadline, f"gm not down 5 s after its probe began failing: {j}")
        time.sleep(0.1)
    # and back
    m.probe({})
    j = wait_ready(t, a, 200, timeout=5, what="after the probe succeeds again")
    eq(j["backends"]["oa"]["state"], "up", "oa state after recovery")
    a.wait_log(r"backend oa is up again", timeout=3)
    check(a.find_log(r"backend oa is down"), "no log line for the backend going down")
    check(OPENAI_KEY not in chatlib.log_text(a) and GEMINI_KEY not in chatlib.log_text(a), "a key in the log")


@test(timeout=30)
def test_ready_with_fallback(t):
    m = Mock(t, "openai")
    m.probe({"status": 500})
    a = start(t, config(backend("oa", "openai", m.url, probe_interval="1s"), backend("local", "mock"),
                        model("gpt", "oa", fallbacks="echo"), model("echo", "local"), default_model="gpt"))
    m.wait(lambda rs: [x for x in rs if x["method"] == "GET"], what="the probe")
    deadline = time.monotonic() + 3
    while True:
        st, j = ready(t, a)
        eq(st, 200, "/ready while a fallback of the default model can answer")
        if j["backends"]["oa"]["state"] == "down":
            break
        check(time.monotonic() < deadline, f"oa not down after its probe failed: {j}")
        time.sleep(0.1)


@test(timeout=30)
def test_unconfigured_backend(t):
    m = Mock(t, "gemini")
    o = Mock(t, "openai")
    cfg = config(
        backend("gk", "gemini", m.url, api_key_env="AIGW_TEST_NOT_SET"),
        backend("gc", "gemini", m.url, api_key_env=None, api_key_credential="gemini-api-key"),
        backend("ok", "openai", o.url, api_key_env="AIGW_TEST_NOT_SET_EITHER"),
        backend("open", "openai", o.url, api_key_env=None),
        backend("local", "mock"),
        model("gem", "gk"), model("gem-cred", "gc"), model("gem-both", "gk", fallbacks="gem-cred"),
        model("gem-fb", "gk", fallbacks="echo"), model("gpt", "ok"), model("gpt-open", "open"),
        model("echo", "local"),
        default_model="gem")
    a = start(t, cfg)
    st, j = ready(t, a)
    eq(st, 503, "/ready with the default model unconfigured")
    eq(j["status"], "unavailable", "status")
    for name, setting in (("gk", "api_key_env"), ("gc", "api_key_credential"), ("ok", "api_key_env")):
        b = j["backends"][name]
        eq(b["state"], "unconfigured", f"{name} state")
        eq(b["last_error"], f"no API key: set {setting}", f"{name} last_error")
    eq(j["backends"]["open"]["state"], "up", "an OpenAI backend without any key setting needs none")
    eq(j["backends"]["local"]["state"], "up", "mock backend")

    for name, backend_name, setting in (("gem", "gk", "api_key_env"), ("gem-cred", "gc", "api_key_credential"),
                                        ("gpt", "ok", "api_key_env")):
        for stream in (False, True):
            r = chat(t, a, user("hi", model=name, stream=stream))
            e = check_error(r, 503, code="backend_not_configured", type_="api_error",
                            what=f"model {name} stream={stream}")
            check(setting in e["message"] and backend_name in e["message"],
                  f"model {name}: message does not name {setting} of {backend_name}: {e['message']!r}")
            eq(r.header("x-aigw-model"), name, "x-aigw-model of the refusal")

    # the primary's missing key is what the answer names, not the fallback's
    r = chat(t, a, user("hi", model="gem-both"))
    e = check_error(r, 503, code="backend_not_configured", what="both unconfigured")
    check("api_key_env" in e["message"] and "gk" in e["message"], f"message {e['message']!r}")
    # a configured fallback answers
    r = chat(t, a, user("hi", model="gem-fb"))
    eq(r.status, 200, "status with a mock fallback")
    eq(r.header("x-aigw-model"), "echo", "x-aigw-model of the fallback")
    # no key configured: no Authorization header
    r = chat(t, a, user("hi", model="gpt-open"))
    eq(r.status, 200, "status of a keyless OpenAI backend")
    reqs = o.chat_requests()
    eq(len(reqs), 1, "requests to the OpenAI mock (only the keyless backend's)")
    check("authorization" not in reqs[0]["headers"], "an Authorization header without a key")
    eq(m.requests(), [], "requests to the Gemini mock (none: no key)")

    # the same configuration with a working default model is ready
    a.stop()
    a2 = start(t, cfg.replace("default_model = gem", "default_model = echo"))
    st, j = ready(t, a2)
    eq(st, 200, "/ready with the default model on the mock backend")
    eq(j["backends"]["gk"]["state"], "unconfigured", "gk is still unconfigured")


if __name__ == "__main__":
    chatlib.main()
