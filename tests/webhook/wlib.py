# SPDX-License-Identifier: MIT
"""Shared helpers of the /webhook tests: Dialogflow ES/CX request builders,
the sample requests in tests/data/dialogflow, reading a WebhookResponse."""

import glob
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "hardening"))
import hlib  # noqa: E402
from hlib import check, eq, raw_request  # noqa: E402

DATA = os.path.join(os.path.dirname(HERE), "data", "dialogflow")
FALLBACK = "Sorry, the assistant is busy. Please try again."


def webhook_config(settings=None, append="", latency="0"):
    s = {("webhook", "fallback_text"): FALLBACK, ("webhook", "time_budget"): "2s"}
    s.update(settings or {})
    return hlib.config(s, append).replace("mock_latency = 0", f"mock_latency = {latency}")


def samples():
    out = []
    for req in sorted(glob.glob(os.path.join(DATA, "*.request.json"))):
        resp = req.replace(".request.json", ".response.json")
        with open(req, "rb") as f:
            raw = f.read()
        with open(resp, encoding="utf-8") as f:
            expected = json.load(f)
        out.append((os.path.basename(req)[:-len(".request.json")], raw, json.loads(raw), expected))
    check(out, f"no samples in {DATA}")
    return out


def post(a, body, headers=None, timeout=10):
    hdrs = {"Content-Type": "application/json"}
    hdrs.update(headers or {})
    if not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    return raw_request(a.port, "POST", "/webhook", body, headers=hdrs, timeout=timeout)


def shape(x):
    if isinstance(x, dict):
        return {k: shape(v) for k, v in x.items()}
    if isinstance(x, list):
        return [shape(v) for v in x]
    return type(x).__name__


def reply_of(resp):
    """The reply text of an ES or CX WebhookResponse (checked consistent)."""
    if "fulfillmentText" in resp:
        msgs = resp["fulfillmentMessages"]
        eq(len(msgs), 1, "ES fulfillmentMessages")
        eq(msgs[0]["text"]["text"], [resp["fulfillmentText"]], "ES message text vs fulfillmentText")
        return resp["fulfillmentText"]
    msgs = resp["fulfillmentResponse"]["messages"]
    eq(len(msgs), 1, "CX messages")
    eq(len(msgs[0]["text"]["text"]), 1, "CX text list")
    return msgs[0]["text"]["text"][0]


def query_text(req):
    if "queryResult" in req:
        return req["queryResult"].get("queryText", "")
    return req.get("text") or req.get("transcript") or ""


def es(text, session="projects/p/agent/sessions/s1", intent="greeting", lang="en"):
    return {"session": session, "queryResult": {"queryText": text, "languageCode": lang,
                                                "intent": {"displayName": intent}}}


def cx(text, session="projects/p/locations/global/agents/a/sessions/s1", tag="t", params=None, lang="en"):
    b = {"sessionInfo": {"session": session}, "fulfillmentInfo": {"tag": tag}, "text": text, "languageCode": lang}
    if params is not None:
        b["sessionInfo"]["parameters"] = params
    return b
