#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""API keys: [auth] keys_file / keys_credential, Bearer and x-api-key,
401 with WWW-Authenticate, open health endpoints, the key's name (never the
key) in the logs, reload with SIGHUP."""

import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hlib  # noqa: E402
from hlib import bearer, chat, check, eq, raw_request, test  # noqa: E402


def access_line(a, request_id, timeout=5):
    return a.wait_log(r"AIGW_REQUEST_ID=" + re.escape(request_id) + r"(\s|$)", timeout=timeout,
                      what=f"access log line for {request_id}").string


def fields(line):
    return dict(f.split("=", 1) for f in line.split() if re.match(r"AIGW_[A-Z_]+=", f))


def check_401(r, what):
    eq(r.status, 401, f"{what}: status ({r.body[:200]!r})")
    wa = r.header("www-authenticate")
    check(wa is not None and wa.split()[0].lower() == "bearer", f"{what}: WWW-Authenticate {wa!r}")
    check((r.header("content-type") or "").startswith("application/json"), f"{what}: content-type")
    e = r.error()
    eq(e["type"], "authentication_error", f"{what}: error type")
    eq(e["code"], "invalid_api_key", f"{what}: error code")
    return e


@test(timeout=40)
def test_keys_file(t):
    alice, alice_line = hlib.keygen(t, "alice")
    bob, bob_line = hlib.keygen(t, "bob")
    check(alice != bob, "keygen made the same key twice")
    keys = hlib.write_file(t, "keys", f"# API keys\n{alice_line}\n\n{bob_line}\n")
    a = t.start(hlib.config({("auth", "keys_file"): keys, ("log", "level"): "debug"}))
    a.wait_log(r"2 API keys loaded; keys required", what="the keys count at start")

    # no key at all, on both chat routes
    for path in ("/v1/chat/completions", "/chat"):
        r = chat(a, "no key", path=path)
        e = check_401(r, f"{path} without a key")
        check("missing API key" in e["message"], f"message {e['message']!r}")
        line = access_line(a, r.header("x-request-id"))
        check("AIGW_STATUS=401" in line.split() and "AIGW_KEY=" not in line, f"access line {line!r}")

    # a key that is not in the file, Bearer and x-api-key; an empty Bearer
    wrong = "aigw-" + "A" * 43
    e = check_401(chat(a, "x", headers=bearer(wrong)), "unknown Bearer key")
    eq(e["message"], "invalid API key", "message for an unknown key")
    check_401(chat(a, "x", headers={"x-api-key": wrong}), "unknown x-api-key")
    check_401(chat(a, "x", headers={"Authorization": "Bearer"}), "empty Bearer")
    check_401(chat(a, "x", headers={"Authorization": "Basic " + "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="}),
              "Basic instead of Bearer")
    # a key is compared whole: a prefix or an extension of a real key is wrong
    check_401(chat(a, "x", headers=bearer(alice[:-1])), "truncated key")
    check_401(chat(a, "x", headers=bearer(alice + "A")), "extended key")

    # the real keys, both ways of sending them; the log names the key
    for hdrs, name in ((bearer(alice), "alice"), ({"x-api-key": bob}, "bob"),
                       ({"Authorization": "bearer  " + bob}, "bob")):
        r = chat(a, "hello key", headers=hdrs)
        eq(r.status, 200, f"{hdrs}: status ({r.body[:200]!r})")
        eq(r.json()["choices"][0]["message"]["content"], "hello key", "mock echo")
        f = fields(access_line(a, r.header("x-request-id")))
        eq(f.get("AIGW_KEY"), name, "AIGW_KEY in the access log")
        eq(f.get("AIGW_STATUS"), "200", "AIGW_STATUS")
    r = chat(a, "legacy route", headers=bearer(alice), path="/chat")
    eq(r.status, 200, f"/chat with a key ({r.body[:200]!r})")

    # no key needed for the probes
    for path in ("/health", "/ready"):
        r = raw_request(a.port, "GET", path)
        eq(r.status, 200, f"GET {path} without a key ({r.body[:200]!r})")
        check(r.header("www-authenticate") is None, f"{path} asks for credentials")

    # the keys themselves never reach the log (nor their digests' key halves)
    time.sleep(0.2)
    text = "\n".join(a.logs())
    for k in (alice, bob, wrong, alice[:-1]):
        check(k not in text, f"a presented key appears in aigw's output")
        check(k[5:25] not in text, f"part of a presented key appears in aigw's output")
    eq(a.stop(), 0, "exit code")


@test(timeout=40)
def test_keys_credential(t):
    alice, alice_line = hlib.keygen(t, "alice")
    bob, bob_line = hlib.keygen(t, "bob")
    creds = hlib.cred_dir(t, {"aigw-keys": f"{alice_line}\n{bob_line}\n"})
    text = hlib.config({("auth", "keys_credential"): "aigw-keys"})

    # without $CREDENTIALS_DIRECTORY the configuration is refused, naming the credential
    conf = hlib.write_file(t, "check.conf", text)
    env = {k: v for k, v in os.environ.items() if k != "CREDENTIALS_DIRECTORY"}
    p = subprocess.run([t.aigw, "--check-config", "--config", conf], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=10, env=env)
    check(p.returncode != 0, "--check-config accepted keys_credential without $CREDENTIALS_DIRECTORY")
    out = (p.stdout + p.stderr).decode("utf-8", "replace")
    check("aigw-keys" in out and "keys_credential" in out, f"error does not name the credential: {out!r}")
    # ... and accepted with it
    p = subprocess.run([t.aigw, "--check-config", "--config", conf], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=10, env=dict(env, CREDENTIALS_DIRECTORY=creds))
    eq(p.returncode, 0, f"--check-config with the credential ({p.stderr!r})")

    a = t.start(text, env={"CREDENTIALS_DIRECTORY": creds})
    a.wait_log(r"2 API keys loaded", what="the keys count")
    check_401(chat(a, "x"), "no key")
    check_401(chat(a, "x", headers=bearer("aigw-" + "B" * 43)), "wrong key")
    for key, name in ((alice, "alice"), (bob, "bob")):
        r = chat(a, "cred", headers=bearer(key))
        eq(r.status, 200, f"{name}'s key from the credential ({r.body[:200]!r})")
        eq(fields(access_line(a, r.header("x-request-id"))).get("AIGW_KEY"), name, "AIGW_KEY")
    eq(a.stop(), 0, "exit code")


@test(timeout=40)
def test_keys_reload(t):
    alice, alice_line = hlib.keygen(t, "alice")
    bob, bob_line = hlib.keygen(t, "bob")
    keys = hlib.write_file(t, "keys", alice_line + "\n")
    a = t.start(hlib.config({("auth", "keys_file"): keys}))
    pid = a.pid
    eq(chat(a, "x", headers=bearer(alice)).status, 200, "alice before the reload")
    check_401(chat(a, "x", headers=bearer(bob)), "bob before the reload")

    # a new keys file: bob in, alice out, without a restart
    hlib.write_file(t, "keys", bob_line + " rpm=100\n")
    mark = a.log_index()
    a.send_signal(signal.SIGHUP)
    a.wait_log(r"configuration reloaded", start=mark, what="the reload message")
    eq(a.pid, pid, "pid after the reload")
    # systemd considers the reload done at READY=1 (sent with this message):
    # the next request must see the new keys
    r = chat(a, "after reload", headers=bearer(bob))
    if r.status != 200:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 3 and chat(a, "x", headers=bearer(bob)).status != 200:
            time.sleep(0.01)
        late = time.monotonic() - t0
        hlib.fail(f"bob's key was refused ({r.status}) right after 'configuration reloaded'; "
                  + (f"it took effect only {late * 1000:.0f} ms later" if late < 3 else "it never took effect"))
    eq(fields(access_line(a, r.header("x-request-id"))).get("AIGW_KEY"), "bob", "AIGW_KEY after the reload")
    check_401(chat(a, "x", headers=bearer(alice)), "alice after the reload (removed from the file)")

    # a broken keys file: the reload is refused and the running keys stay
    hlib.write_file(t, "keys", "bob not-a-digest\n")
    mark = a.log_index()
    a.send_signal(signal.SIGHUP)
    a.wait_log(r"reload of .* failed", start=mark, what="the refused reload")
    eq(chat(a, "x", headers=bearer(bob)).status, 200, "bob after a refused reload")
    check(a.running(), "aigw exited after a bad reload")
    eq(a.stop(), 0, "exit code")


if __name__ == "__main__":
    hlib.main()
