#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""POST /webhook against the mock OpenAI upstream (tests/upstream/), which
records what aigw sends: multi-turn memory per Dialogflow session (bounded
by max_turns, fallbacks not remembered), per-tag (CX) and per-intent (ES)
overrides of model and system prompt, {language}/{intent}/{tag} filled in,
an upstream error answered with the fallback text."""

import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "hardening"))
sys.path.insert(0, HERE)
import hlib  # noqa: E402
from hlib import check, eq, test  # noqa: E402
from wlib import DATA, FALLBACK, cx, es, post, reply_of  # noqa: E402

PROMPT = "Answer in {language}. Intent: {intent}. Tag: {tag}. Braces {{literal}}."


def upstream_config(mock, webhook=None, append=""):
    s = {("webhook", "fallback_text"): FALLBACK, ("webhook", "time_budget"): "1s",
         ("webhook", "model"): "up", ("webhook", "system_prompt"): PROMPT, ("webhook", "max_turns"): 2}
    for k, v in (webhook or {}).items():
        s[("webhook", k)] = v
    text = f"""
[backend "up"]
type = openai
url = {mock.url}
max_retries = 0
probe_interval = 0
breaker_threshold = 0

[model "up"]
backend = up
upstream_model = base-model

[model "tagged"]
backend = up
upstream_model = tag-model

[model "intent"]
backend = up
upstream_model = intent-model
""" + append
    return hlib.config(s, text)


def messages(rec):
    return [(m["role"], m["content"]) for m in rec["json"]["messages"]]


def last_request(mock, n_before):
    reqs = mock.requests()
    eq(len(reqs), n_before + 1, "requests the mock upstream received")
    return reqs[-1]


def turn(a, mock, body):
    n = len(mock.requests())
    r = post(a, body)
    eq(r.status, 200, f"webhook status ({r.body[:200]!r})")
    return reply_of(r.json()), last_request(mock, n)


@test(timeout=60)
def test_multi_turn_memory(t):
    mock = hlib.MockUpstream(t, "openai")
    a = t.start(upstream_config(mock))
    s1, s2 = "projects/p/agent/sessions/one", "projects/p/agent/sessions/two"
    system = ("system", "Answer in en. Intent: faq. Tag: . Braces {literal}.")

    reply1, rec = turn(a, mock, es("first question", s1, intent="faq"))
    eq(reply1, "mock answer: first question", "reply 1")
    eq(rec["json"]["model"], "base-model", "upstream model")
    eq(messages(rec), [system, ("user", "first question")], "turn 1 of session one")

    reply2, rec = turn(a, mock, es("second question", s1, intent="faq"))
    eq(messages(rec), [system, ("user", "first question"), ("assistant", reply1), ("user", "second question")],
       "turn 2 of session one carries turn 1")

    # another session starts empty
    _, rec = turn(a, mock, es("other session", s2, intent="faq"))
    eq(messages(rec), [system, ("user", "other session")], "turn 1 of session two")

    # max_turns = 2: the oldest turn drops out
    reply3, rec = turn(a, mock, es("third question", s1, intent="faq"))
    eq(messages(rec), [system, ("user", "first question"), ("assistant", reply1),
                       ("user", "second question"), ("assistant", reply2), ("user", "third question")],
       "turn 3 of session one")
    _, rec = turn(a, mock, es("fourth question", s1, intent="faq"))
    eq(messages(rec), [system, ("user", "second question"), ("assistant", reply2),
                       ("user", "third question"), ("assistant", reply3), ("user", "fourth question")],
       "turn 4 of session one: only the last max_turns = 2 turns")

    # a CX session: the same memory, keyed by sessionInfo.session
    c1 = "projects/p/locations/global/agents/a/sessions/cx-1"
    cx_system = ("system", "Answer in de. Intent: . Tag: info. Braces {literal}.")
    reply_cx, rec = turn(a, mock, cx("erste Frage", c1, tag="info", lang="de"))
    eq(messages(rec), [cx_system, ("user", "erste Frage")], "CX turn 1")
    _, rec = turn(a, mock, cx("zweite Frage", c1, tag="info", lang="de"))
    eq(messages(rec), [cx_system, ("user", "erste Frage"), ("assistant", reply_cx), ("user", "zweite Frage")],
       "CX turn 2")

    # a model call that misses the budget is answered with the fallback and
    # not remembered; neither is an upstream error
    s3 = "projects/p/agent/sessions/three"
    reply_a, _ = turn(a, mock, es("remember me", s3, intent="faq"))
    mock.control(queue=[{"delay": 3}])
    n = len(mock.requests())
    t0 = time.monotonic()
    r = post(a, es("too slow", s3, intent="faq"))
    dt = time.monotonic() - t0
    eq(reply_of(r.json()), FALLBACK, "reply when the upstream is slower than time_budget")
    check(dt < 1.5, f"the fallback took {dt:.2f} s (time_budget 1s)")
    a.wait_log(r"webhook ES session [0-9a-f]{16}: timeout \(fallback text\)")
    mock.control(queue=[{"status": 500}])
    r = post(a, es("upstream fails", s3, intent="faq"))
    eq(reply_of(r.json()), FALLBACK, "reply when the upstream answers 500")
    a.wait_log(r"webhook ES session [0-9a-f]{16}: error \(fallback text\)")
    _, rec = turn(a, mock, es("after the fallbacks", s3, intent="faq"))
    eq(len(mock.requests()), n + 3, "upstream requests")
    eq(messages(rec), [system, ("user", "remember me"), ("assistant", reply_a), ("user", "after the fallbacks")],
       "the fallback answers are not part of the session's memory")
    # the abandoned slow call was cancelled upstream
    deadline = time.monotonic() + 5
    slow = mock.requests()[n]
    while not (slow["client_closed"] or slow["done"]) and time.monotonic() < deadline:
        time.sleep(0.05)
        slow = mock.requests()[n]
    check(slow["client_closed"], f"the timed-out upstream call was not cancelled: {slow['status']} done={slow['done']}")


@test(timeout=60)
def test_overrides_and_prompt(t):
    mock = hlib.MockUpstream(t, "openai")
    append = """
[webhook "tag:llm-answer"]
model = tagged
system_prompt = Tag prompt for {tag} in {language}, intent {intent}.

[webhook "intent:weather.forecast"]
model = intent
system_prompt = Weather prompt for {intent} in {language}.

[webhook "intent:smalltalk.greeting"]
system_prompt = Greeting prompt only.
"""
    a = t.start(upstream_config(mock, append=append))

    def sample(name):
        with open(os.path.join(DATA, name + ".request.json"), "rb") as f:
            return json.loads(f.read())

    # CX, fulfillment tag "llm-answer": the tag override (model and prompt)
    reply, rec = turn(a, mock, sample("cx-text-tag"))
    eq(rec["json"]["model"], "tag-model", "model for tag llm-answer")
    eq(messages(rec)[0], ("system", "Tag prompt for llm-answer in en, intent order.status."), "tag prompt")
    eq(messages(rec)[-1], ("user", "Where is my order A-1234?"), "CX query")
    eq(reply, "mock answer: Where is my order A-1234?", "reply")
    # ES, intent weather.forecast: the intent override
    _, rec = turn(a, mock, sample("es-weather-en"))
    eq(rec["json"]["model"], "intent-model", "model for intent weather.forecast")
    eq(messages(rec)[0], ("system", "Weather prompt for weather.forecast in en."), "intent prompt")
    # ES without an override: [webhook] model and system_prompt, filled in
    _, rec = turn(a, mock, sample("es-booking-de"))
    eq(rec["json"]["model"], "base-model", "model without an override")
    eq(messages(rec)[0], ("system", "Answer in de. Intent: Tisch reservieren – Abend. Tag: . Braces {literal}."),
       "default prompt with {language} and {intent}")
    eq(messages(rec)[-1], ("user", "Ich möchte für morgen Abend einen Tisch für vier Personen reservieren"),
       "ES query")
    # an override without a model keeps the [webhook] model
    _, rec = turn(a, mock, es("hello", intent="smalltalk.greeting"))
    eq(rec["json"]["model"], "base-model", "model of an override that names none")
    eq(messages(rec)[0], ("system", "Greeting prompt only."), "prompt of the intent override")
    # CX without a matching tag or intent: the defaults; a transcript is the query
    _, rec = turn(a, mock, sample("cx-transcript"))
    eq(rec["json"]["model"], "base-model", "model without an override (CX)")
    eq(messages(rec)[0], ("system", "Answer in de. Intent: Default Welcome Intent. Tag: smalltalk. Braces {literal}."),
       "default prompt for a CX request")
    eq(messages(rec)[-1], ("user", "wie spät ist es in tokio"), "CX transcript as the query")
    # a tag that merely resembles an override does not match
    _, rec = turn(a, mock, cx("x", tag="llm-answer-2"))
    eq(rec["json"]["model"], "base-model", "model for tag llm-answer-2")



@test(timeout=30)
def test_intent_override_display_name_with_spaces(t):
    # Dialogflow intent display names have spaces and any Unicode ("Default
    # Welcome Intent", the sample's "Tisch reservieren – Abend"); an
    # [webhook "intent:NAME"] override must be able to name them
    mock = hlib.MockUpstream(t, "openai")
    append = """
[webhook "intent:Default Welcome Intent"]
model = intent
system_prompt = Welcome prompt.

[webhook "intent:Tisch reservieren – Abend"]
model = tagged
system_prompt = Reservierung.
"""
    a = t.start(upstream_config(mock, append=append))
    _, rec = turn(a, mock, es("hi", intent="Default Welcome Intent"))
    eq((rec["json"]["model"], messages(rec)[0]), ("intent-model", ("system", "Welcome prompt.")),
       "override for intent 'Default Welcome Intent'")
    with open(os.path.join(DATA, "es-booking-de.request.json"), "rb") as f:
        _, rec = turn(a, mock, json.loads(f.read()))
    eq((rec["json"]["model"], messages(rec)[0]), ("tag-model", ("system", "Reservierung.")),
       "override for intent 'Tisch reservieren – Abend'")


if __name__ == "__main__":
    hlib.main()
