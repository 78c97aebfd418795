# SPDX-License-Identifier: MIT
"""Helpers for the hardening and webhook tests (Python 3 standard library).

Builds on tests/integration/harness.py (process handling, the runner,
curl/nghttp wrappers), used read-only. These tests check behaviour that
does not depend on how aigw got its socket, so they run in the harness's
"direct" mode unless --mode is given.

raw_request() is a deliberately tolerant HTTP/1.1 client: one request per
connection (Connection: close), the response read to EOF and parsed by
hand, so a malformed header (a NUL byte, a control character) is reported
by the test that looks for it instead of making http.client raise in the
middle of an unrelated check.
"""

import json
import os
import re
import select
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(TESTS, "integration"))

import harness  # noqa: E402
from harness import Skip, check, curl, eq, fail, test  # noqa: E402,F401

UPSTREAM_DIR = os.path.join(TESTS, "upstream")

BASE_CONFIG = """\
[server]
workers = 2
drain_timeout = 5s
request_timeout = 10s
idle_timeout = 30s
default_model = mock

[log]
level = info
access_log = yes

[backend "mock"]
type = mock
mock_latency = 0

[model "mock"]
backend = mock
"""


def main():
    if not any(a == "--mode" or a.startswith("--mode=") for a in sys.argv[1:]):
        sys.argv[1:1] = ["--mode", "direct"]
    harness.main()


def config(settings=None, append="", base=BASE_CONFIG):
    """BASE_CONFIG with {(section, key): value} set and text appended."""
    text = base
    for (section, key), value in (settings or {}).items():
        text = harness.config_set(text, section, key, value)
    if append:
        text = text.rstrip("\n") + "\n\n" + append.strip("\n") + "\n"
    return text


def write_file(t, name, text, mode=0o600):
    path = os.path.join(t.tmpdir, name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


def cred_dir(t, creds):
    """A directory standing in for $CREDENTIALS_DIRECTORY with {id: text}."""
    d = os.path.join(t.tmpdir, "credentials")
    os.makedirs(d, exist_ok=True)
    for k, v in creds.items():
        with open(os.path.join(d, k), "w", encoding="utf-8") as f:
            f.write(v)
        os.chmod(os.path.join(d, k), 0o400)
    return d


def keygen(t, name):
    """`aigw keygen NAME` -> (key, keys-file line)."""
    p = subprocess.run([t.aigw, "keygen", name], stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
    eq(p.returncode, 0, f"aigw keygen {name} exit code ({p.stderr!r})")
    lines = [ln.strip() for ln in p.stdout.decode().splitlines()]
    key = next((ln for ln in lines if ln.startswith("aigw-")), None)
    line = next((ln for ln in lines if ln.startswith(name + " sha256:")), None)
    check(key and line, f"aigw keygen output not understood: {p.stdout!r}")
    return key, line


# ---- a tolerant HTTP/1.1 client ---------------------------------------------------------


class Resp:
    def __init__(self, status, reason, headers, body, raw_head, elapsed):
        self.status = status
        self.reason = reason
        self.headers = headers  # [(name lower-case, value)] as str (latin-1)
        self.body = body
        self.raw_head = raw_head
        self.elapsed = elapsed

    def header(self, name):
        for k, v in self.headers:
            if k == name.lower():
                return v
        return None

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError as e:
            fail(f"body is not JSON ({e}): status {self.status}, {self.body[:300]!r}")

    def error(self):
        """The OpenAI-shaped error object of the body (checked)."""
        j = self.json()
        check(isinstance(j, dict) and isinstance(j.get("error"), dict), f"not an OpenAI error body: {j!r}")
        e = j["error"]
        for k in ("message", "type", "param", "code"):
            check(k in e, f"error body lacks {k!r}: {j!r}")
        check(isinstance(e["message"], str) and e["message"], f"error without message: {j!r}")
        return e

    def head_is_clean(self):
        """Every header line is visible ASCII "name: value"."""
        for line in self.raw_head.split(b"\r\n")[1:]:
            if not line:
                continue
            if not re.fullmatch(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[ \t]*[\x20-\x7e\t]*", line):
                return False, line
        return True, None

    def __repr__(self):
        return f"<{self.status} {self.headers} {self.body[:200]!r}>"


def raw_request(port, method, path, body=None, headers=None, timeout=10, host="127.0.0.1"):
    """One request on a fresh connection; returns Resp. Raises Fail when the
    connection closes without a complete status line."""
    hdrs = {"Host": f"{host}:{port}", "Connection": "close"}
    if body is not None and not isinstance(body, (bytes, str)):
        body = json.dumps(body)
        hdrs["Content-Type"] = "application/json"
    if isinstance(body, str):
        body = body.encode("utf-8")
    hdrs.update(headers or {})
    if body is not None:
        hdrs["Content-Length"] = str(len(body))
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
    t0 = time.monotonic()
    s = socket.create_connection((host, port), timeout=timeout)
    try:
        s.settimeout(timeout)
        s.sendall(head.encode("latin-1") + (body or b""))
        data = b""
        deadline = t0 + timeout
        while True:
            if time.monotonic() > deadline:
                fail(f"{method} {path}: no complete response within {timeout} s (got {data[:300]!r})")
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                fail(f"{method} {path}: no complete response within {timeout} s (got {data[:300]!r})")
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
            if _complete(data):
                break
    finally:
        s.close()
    elapsed = time.monotonic() - t0
    if b"\r\n\r\n" not in data:
        fail(f"{method} {path}: connection closed without a response (got {data[:300]!r})")
    raw_head, rest = data.split(b"\r\n\r\n", 1)
    lines = raw_head.split(b"\r\n")
    m = re.match(rb"HTTP/1\.[01] (\d{3}) ?(.*)", lines[0])
    if not m:
        fail(f"{method} {path}: bad status line {lines[0]!r}")
    headers = []
    for line in lines[1:]:
        if b":" in line:
            k, v = line.split(b":", 1)
            headers.append((k.decode("latin-1").strip().lower(), v.decode("latin-1").strip()))
    cl = next((v for k, v in headers if k == "content-length"), None)
    body_out = rest[:int(cl)] if cl is not None and cl.isdigit() else rest
    return Resp(int(m.group(1)), m.group(2).decode("latin-1"), headers, body_out, raw_head, elapsed)


def _complete(data):
    if b"\r\n\r\n" not in data:
        return False
    head, rest = data.split(b"\r\n\r\n", 1)
    m = re.search(rb"\r\ncontent-length:[ \t]*(\d+)", head, re.I)
    return bool(m) and len(rest) >= int(m.group(1))


def chat_body(text="hello", model="mock", **extra):
    b = {"model": model, "messages": [{"role": "user", "content": text}]}
    b.update(extra)
    return b


def chat(a, text="hello", headers=None, path="/v1/chat/completions", timeout=10, **extra):
    return raw_request(a.port, "POST", path, chat_body(text, **extra), headers=headers, timeout=timeout)


def bearer(key):
    return {"Authorization": f"Bearer {key}"}


def parallel(fns, timeout=20):
    """Run the callables at once (threads released together); return their
    results in order (an exception is returned as the result)."""
    results = [None] * len(fns)
    barrier = threading.Barrier(len(fns))

    def run(i, fn):
        try:
            barrier.wait(timeout)
            results[i] = fn()
        except BaseException as e:  # reported by the caller
            results[i] = e

    threads = [threading.Thread(target=run, args=(i, fn), daemon=True) for i, fn in enumerate(fns)]
    for th in threads:
        th.start()
    deadline = time.monotonic() + timeout
    for th in threads:
        th.join(max(0.0, deadline - time.monotonic()))
    check(not any(th.is_alive() for th in threads), f"parallel requests still running after {timeout} s")
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results


def in_background(fn):
    """Start fn in a daemon thread; returns join(timeout) -> result."""
    box = {}

    def run():
        try:
            box["result"] = fn()
        except BaseException as e:
            box["error"] = e

    th = threading.Thread(target=run, daemon=True)
    th.start()

    def join(timeout=20):
        th.join(timeout)
        check(not th.is_alive(), f"background request still running after {timeout} s")
        if "error" in box:
            raise box["error"]
        return box["result"]

    return join


# ---- metrics ------------------------------------------------------------------------------


def scrape(port, headers=None):
    r = raw_request(port, "GET", "/metrics", headers=headers)
    eq(r.status, 200, f"GET /metrics status ({r.body[:200]!r})")
    return r.body.decode("utf-8")


def metric(text, name, **labels):
    """Value of the sample name{labels} (labels must match exactly), or None."""
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        if got == {k: str(v) for k, v in labels.items()}:
            return float(m.group(4))
    return None


def wait_metric(port, name, value, timeout=5, headers=None, **labels):
    """Wait until the sample has the value (requests are counted when they end)."""
    deadline = time.monotonic() + timeout
    while True:
        v = metric(scrape(port, headers), name, **labels)
        if v == value:
            return
        if time.monotonic() > deadline:
            fail(f"{name}{labels} is {v}, expected {value}")
        time.sleep(0.05)


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# ---- mock upstream (tests/upstream/mock_openai.py) ------------------------------------------


class MockUpstream:
    """tests/upstream/mock_<flavor>.py as a child process (the harness kills
    it in the teardown; it also exits when our end of its stdin closes)."""

    def __init__(self, t, flavor="openai"):
        script = os.path.join(UPSTREAM_DIR, f"mock_{flavor}.py")
        if not os.path.exists(script):
            raise Skip(f"{script} is missing")
        self.proc = subprocess.Popen([sys.executable, script, "--exit-on-stdin-eof"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
        t.processes.append(self)
        r, _, _ = select.select([self.proc.stdout], [], [], 10)
        line = self.proc.stdout.readline().decode().strip() if r else ""
        if not line.isdigit():
            self.proc.kill()
            fail(f"mock_{flavor}.py did not print its port (got {line!r})")
        self.port = int(line)
        self.url = f"http://127.0.0.1:{self.port}"

    def _call(self, method, path, body=None):
        r = raw_request(self.port, method, path, body)
        eq(r.status, 200, f"mock {method} {path}")
        return r.json()

    def control(self, **ctl):
        return self._call("POST", "/_control", ctl)

    def requests(self, path="/v1/chat/completions"):
        return [rec for rec in self._call("GET", "/_requests")["requests"] if rec["path"] == path]
