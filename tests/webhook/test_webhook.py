#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""POST /webhook with the built-in mock model: Dialogflow ES and CX
response shapes (tests/data/dialogflow samples), CX session parameters
kept, Basic and header authentication, the time budget and its fallback
text, a failing backend, malformed requests, reply truncation at a
sentence boundary."""

import base64
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "hardening"))
sys.path.insert(0, HERE)
import hlib  # noqa: E402
from hlib import check, curl, eq, raw_request, test  # noqa: E402
from wlib import FALLBACK, cx, es, post, query_text, reply_of, samples, shape, webhook_config  # noqa: E402

@test(timeout=40)
def test_samples_shape(t):
    a = t.start(webhook_config())
    for name, raw, req, expected in samples():
        for proto in ("http/1.1", "h2c"):
            if proto == "http/1.1":
                r = post(a, raw)
                status, ctype, body = r.status, r.header("content-type"), r.body
            else:
                path = os.path.join(t.tmpdir, "req.json")
                with open(path, "wb") as f:
                    f.write(raw)
                c = curl(t, a.url("/webhook"), "--http2-prior-knowledge", "-H", "Content-Type: application/json",
                         "--data-binary", "@" + path)
                status, ctype, body = c.status, c.header("content-type"), c.body
            eq(status, 200, f"{name} over {proto}: status ({body[:200]!r})")
            check((ctype or "").startswith("application/json"), f"{name}: content-type {ctype!r}")
            resp = json.loads(body)
            # same structure as the reference answer: keys, nesting, types
            eq(shape(resp), shape(expected), f"{name}: response structure")
            reply = reply_of(resp)
            text = query_text(req)
            if text:
                eq(reply, text, f"{name}: the mock's echo of the query")
            else:
                # an event or intent without words: the model is told what happened
                names = [req.get("fulfillmentInfo", {}).get("tag"), req.get("intentInfo", {}).get("displayName")]
                check(any(n and n in reply for n in names), f"{name}: reply {reply!r} for a call without words")
            if "sessionInfo" in req:
                params = req["sessionInfo"].get("parameters")
                if params is None:
                    check("sessionInfo" not in resp, f"{name}: sessionInfo without parameters in the request")
                else:
                    # exactly as received (a null deletes a parameter in CX)
                    eq(resp["sessionInfo"]["parameters"], params, f"{name}: session parameters")
                    eq(resp["sessionInfo"]["parameters"], expected["sessionInfo"]["parameters"],
                       f"{name}: parameters vs the reference answer")
                check("fulfillmentText" not in resp, f"{name}: ES field in a CX answer")
            else:
                check("fulfillmentResponse" not in resp and "sessionInfo" not in resp,
                      f"{name}: CX field in an ES answer")
    # the log names the kind, session hash and outcome; never the session id
    line = a.wait_log(r"webhook CX session [0-9a-f]{16}: ok .*AIGW_TAG=llm-answer").string
    check("AIGW_FALLBACK=no" in line.split() and "AIGW_WEBHOOK_OUTCOME=ok" in line.split(), f"log line {line!r}")
    check("session-7f3e9a" not in "\n".join(a.logs()), "a Dialogflow session id appears in the log")
    m = hlib.scrape(a.port)
    eq(hlib.metric(m, "aigw_webhook_requests_total", kind="es", outcome="ok"), 4.0, "ES webhook requests ok")
    eq(hlib.metric(m, "aigw_webhook_requests_total", kind="cx", outcome="ok"), 8.0, "CX webhook requests ok")


@test(timeout=40)
def test_cx_parameters_kept(t):
    a = t.start(webhook_config())
    params = {"s": "é ünïcode \u2603", "n": 1.5, "big": 12345678901234, "neg": -3, "t": True, "f": False,
              "null": None, "list": [1, "two", {"three": [3]}], "obj": {"deep": {"er": {"x": ""}}},
              "quote": "a \"quoted\" \\ back\\slash </script>", "empty": {}}
    r = post(a, cx("keep my parameters", params=params))
    eq(r.status, 200, f"status ({r.body[:200]!r})")
    resp = r.json()
    eq(resp["sessionInfo"]["parameters"], params, "parameters echoed exactly")
    eq(reply_of(resp), "keep my parameters", "echo")
    r = post(a, cx("no parameters"))
    check("sessionInfo" not in r.json(), f"sessionInfo without parameters: {r.body!r}")
    r = post(a, cx("empty parameters", params={}))
    eq(r.json().get("sessionInfo"), {"parameters": {}}, "empty parameters")


def basic(user_pass):
    return {"Authorization": "Basic " + base64.b64encode(user_pass.encode()).decode()}


@test(timeout=40)
def test_basic_auth(t):
    secret = "dialogflow:pa:ss-w0rd"
    creds = hlib.cred_dir(t, {"webhook-basic-auth": secret + "\n"})
    a = t.start(webhook_config({("webhook", "basic_auth_credential"): "webhook-basic-auth"}),
                env={"CREDENTIALS_DIRECTORY": creds})
    for hdrs, what in (({}, "no credentials"), (basic("dialogflow:wrong"), "a wrong password"),
                       (basic("other:pa:ss-w0rd"), "a wrong user"), (basic("dialogflow:pa:ss-w0r"), "a short password"),
                       (basic(secret + "x"), "a longer password"), (basic("dialogflow"), "no password"),
                       ({"Authorization": "Basic !!!notbase64"}, "broken base64"),
                       ({"Authorization": "Bearer " + secret}, "Bearer"), ({"Authorization": "Basic"}, "empty Basic")):
        r = post(a, es("hi"), headers=hdrs)
        eq(r.status, 401, f"webhook with {what}")
        wa = r.header("www-authenticate")
        check(wa is not None and wa.startswith("Basic"), f"{what}: WWW-Authenticate {wa!r}")
        eq(r.error()["type"], "authentication_error", f"{what}: error type")
    r = post(a, es("authorized"), headers=basic(secret))
    eq(r.status, 200, f"the right credentials ({r.body[:200]!r})")
    eq(reply_of(r.json()), "authorized", "echo")
    r = post(a, es("lower-case scheme"), headers={"Authorization": "basic " +
                                                   base64.b64encode(secret.encode()).decode()})
    eq(r.status, 200, "'basic' in lower case")
    check(a.find_log(r"webhook has no authentication") is None, "warned about an open webhook")
    text = "\n".join(a.logs())
    check("pa:ss-w0rd" not in text and base64.b64encode(secret.encode()).decode() not in text,
          "the credentials appear in the log")
    # the chat API is not behind the webhook's credentials
    eq(hlib.chat(a, "x").status, 200, "chat API")


@test(timeout=40)
def test_header_auth(t):
    token = "tok-5f2e1d9c8b7a"
    creds = hlib.cred_dir(t, {"webhook-token": token + "\n"})
    a = t.start(webhook_config({("webhook", "header_name"): "x-webhook-token",
                                ("webhook", "header_value_credential"): "webhook-token"}),
                env={"CREDENTIALS_DIRECTORY": creds})
    for hdrs, what in (({}, "no header"), ({"x-webhook-token": "wrong"}, "a wrong value"),
                       ({"x-webhook-token": token[:-1]}, "a prefix of the value"),
                       ({"x-webhook-token": token + "0"}, "a longer value"),
                       ({"x-other-token": token}, "another header"), ({"Authorization": "Bearer " + token}, "Bearer")):
        r = post(a, cx("hi"), headers=hdrs)
        eq(r.status, 401, f"webhook with {what}")
        wa = r.header("www-authenticate")
        check(wa is None or not wa.startswith("Basic"), f"{what}: WWW-Authenticate {wa!r} without Basic auth")
        r.error()
    for name in ("x-webhook-token", "X-Webhook-Token"):
        r = post(a, cx("authorized"), headers={name: token})
        eq(r.status, 200, f"header {name} with the right value ({r.body[:200]!r})")
        eq(reply_of(r.json()), "authorized", "echo")
    check(token not in "\n".join(a.logs()), "the token appears in the log")

    # both configured: either one is enough
    creds = hlib.cred_dir(t, {"webhook-token": token, "webhook-basic-auth": "u:p"})
    b = t.start(webhook_config({("webhook", "header_name"): "x-webhook-token",
                                ("webhook", "header_value_credential"): "webhook-token",
                                ("webhook", "basic_auth_credential"): "webhook-basic-auth"}),
                env={"CREDENTIALS_DIRECTORY": creds}, config_name="both.conf")
    eq(post(b, cx("x"), headers={"x-webhook-token": token}).status, 200, "header with both configured")
    eq(post(b, cx("x"), headers=basic("u:p")).status, 200, "Basic with both configured")
    r = post(b, cx("x"))
    eq(r.status, 401, "nothing with both configured")
    check((r.header("www-authenticate") or "").startswith("Basic"), "WWW-Authenticate Basic")


@test(timeout=40)
def test_time_budget_fallback(t):
    a = t.start(webhook_config({("webhook", "time_budget"): "500ms"}, latency="3s"))
    for body, kind in ((es("slow question"), "ES"), (cx("slow question", params={"k": "v"}), "CX")):
        r = post(a, body)
        t.note(f"{kind}: fallback after {r.elapsed * 1000:.0f} ms (time_budget 500ms, model 3 s)")
        eq(r.status, 200, f"{kind}: status ({r.body[:200]!r})")
        check(0.45 <= r.elapsed <= 0.75, f"{kind}: the fallback came after {r.elapsed:.3f} s, expected ~0.5 s")
        resp = r.json()
        eq(reply_of(resp), FALLBACK, f"{kind}: fallback text")
        if kind == "CX":
            eq(resp["sessionInfo"]["parameters"], {"k": "v"}, "CX parameters with the fallback")
        line = a.wait_log(rf"webhook {kind} session [0-9a-f]{{16}}: timeout \(fallback text\)").string
        check("AIGW_WEBHOOK_OUTCOME=timeout" in line.split() and "AIGW_FALLBACK=yes" in line.split(),
              f"log line {line!r}")
    hlib.wait_metric(a.port, "aigw_webhook_timeouts_total", 2)
    m = hlib.scrape(a.port)
    eq(hlib.metric(m, "aigw_webhook_fallbacks_total"), 2.0, "aigw_webhook_fallbacks_total")
    eq(hlib.metric(m, "aigw_webhook_requests_total", kind="es", outcome="timeout"), 1.0, "ES timeouts")
    eq(hlib.metric(m, "aigw_webhook_requests_total", kind="cx", outcome="timeout"), 1.0, "CX timeouts")
    # the abandoned model calls do not pile up
    hlib.wait_metric(a.port, "aigw_inflight_requests", 0, timeout=5)
    check(a.running(), "aigw exited")


@test(timeout=40)
def test_backend_error_fallback(t):
    port = hlib.harness.free_port()  # nothing listens there
    append = f"""
[backend "down"]
type = openai
url = http://127.0.0.1:{port}
connect_timeout = 1s
max_retries = 0
probe_interval = 0

[model "down"]
backend = down
"""
    a = t.start(webhook_config({("webhook", "model"): "down"}, append=append))
    for body, kind in ((es("anyone there?"), "ES"), (cx("anyone there?", params={"a": 1}), "CX")):
        r = post(a, body)
        eq(r.status, 200, f"{kind}: status ({r.body[:200]!r})")
        check(r.elapsed < 1.5, f"{kind}: the fallback took {r.elapsed:.2f} s")
        resp = r.json()
        eq(reply_of(resp), FALLBACK, f"{kind}: fallback text for a failing backend")
        if kind == "CX":
            eq(resp["sessionInfo"]["parameters"], {"a": 1}, "CX parameters with the fallback")
        line = a.wait_log(rf"webhook {kind} session [0-9a-f]{{16}}: error \(fallback text\)").string
        check("AIGW_MODEL=down" in line.split(), f"log line {line!r}")
    a.wait_log(r"webhook: the model failed", what="the warning about the failed model")


@test(timeout=40)
def test_bad_requests(t):
    a = t.start(webhook_config({("server", "max_body"): "1M"}))
    cases = [
        ("malformed JSON", b'{"session": "s", "queryResult": {', 400, "invalid JSON"),
        ("empty body", b"", 400, "empty"),
        ("invalid UTF-8", b'{"session":"s","queryResult":{"queryText":"\xff"}}', 400, "UTF-8"),
        ("duplicate key", b'{"session":"s","session":"t","queryResult":{"queryText":"x"}}', 400, "duplicate key"),
        ("an array", b"[]", 400, "expected a Dialogflow ES request"),
        ("an OpenAI chat request", json.dumps(hlib.chat_body("hi")).encode(), 400,
         "expected a Dialogflow ES request (queryResult.queryText, session) or a CX request"),
        ("ES without session", json.dumps({"queryResult": {"queryText": "x"}}).encode(), 400, "session"),
        ("ES with a numeric queryText", json.dumps({"session": "s", "queryResult": {"queryText": 5}}).encode(),
         400, "queryResult.queryText: expected a string"),
        ("CX without session", json.dumps({"sessionInfo": {}, "text": "x"}).encode(), 400, "sessionInfo.session"),
        ("CX parameters not an object", json.dumps({"sessionInfo": {"session": "s", "parameters": [1]},
                                                    "text": "x"}).encode(), 400, "sessionInfo.parameters"),
        ("both ES and CX", json.dumps({"session": "s", "queryResult": {"queryText": "x"},
                                       "sessionInfo": {"session": "s"}}).encode(), 400, "ambiguous"),
    ]
    for name, body, status, text in cases:
        r = post(a, body)
        eq(r.status, status, f"{name}: status ({r.body[:200]!r})")
        e = r.error()
        eq(e["type"], "invalid_request_error", f"{name}: type")
        check(text in e["message"], f"{name}: message {e['message']!r} lacks {text!r}")
    r = post(a, json.dumps(hlib.chat_body("hi")))
    eq(r.error()["code"], "invalid_webhook_request", "code of a non-Dialogflow body")
    r = raw_request(a.port, "POST", "/webhook", json.dumps(es("x")), headers={"Content-Type": "text/plain"})
    eq(r.status, 415, "text/plain")
    r = raw_request(a.port, "GET", "/webhook")
    eq(r.status, 405, "GET /webhook")
    check("POST" in (r.header("allow") or ""), f"Allow {r.header('allow')!r}")
    # far larger than anything Dialogflow sends (and than max_body)
    big = es("x" * (300 * 1024))
    r = post(a, big)
    eq(r.status, 413, "a 300 KB webhook request")
    eq(r.error()["code"], "request_too_large", "413 code")
    big = es("x" * (1100 * 1024))
    r = post(a, big)
    eq(r.status, 413, "a webhook request over max_body")
    check("exceeds the limit" in r.error()["message"], f"413 message {r.body[:200]!r}")
    r = post(a, es("x" * 5000))
    eq(r.status, 400, f"a queryText over the text limit ({r.body[:200]!r})")
    check("queryText" in r.error()["message"], f"message {r.body[:200]!r}")
    r = post(a, es("still serving"))
    eq(r.status, 200, "a good request after the bad ones")
    eq(reply_of(r.json()), "still serving", "echo")


@test(timeout=40)
def test_reply_truncation(t):
    a = t.start(webhook_config({("webhook", "max_reply_chars"): 60}))
    cases = [
        ("First sentence here. Second one is here too. Third sentence goes well past the limit.",
         "First sentence here. Second one is here too."),
        ("Is this a question? Yes! And this last sentence is far too long to fit in sixty characters.",
         "Is this a question? Yes!"),
        ("Eine Frage für Jürgen über Öl? Straße und Größe sind die Wörter. Danach kommt noch viel mehr Text.",
         "Eine Frage für Jürgen über Öl?"),
        ("Short enough.", "Short enough."),
        ("version 1.5 is out. " * 5, "version 1.5 is out. version 1.5 is out. version 1.5 is out."),
    ]
    for query, expected in cases:
        for body in (es(query), cx(query)):
            r = post(a, body)
            eq(r.status, 200, f"status ({r.body[:200]!r})")
            reply = reply_of(r.json())
            eq(reply, expected, f"reply to {query!r}")
            check(len(reply) <= 60, f"reply of {len(reply)} characters")
    # no sentence end within the limit: cut at a word boundary
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron"
    reply = reply_of(post(a, es(words)).json())
    check(len(reply) <= 60 and words.startswith(reply) and words[len(reply)] == " ",
          f"cut at a word boundary: {reply!r}")
    # characters, not bytes
    reply = reply_of(post(a, es("ä" * 59 + " ö")).json())
    eq(reply, "ä" * 59, "multi-byte characters counted as characters")


if __name__ == "__main__":
    hlib.main()
