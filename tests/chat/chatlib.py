# SPDX-License-Identifier: MIT
"""Helpers for the chat integration tests: mock upstreams (tests/upstream/)
as child processes, aigw configurations with backends and models, chat
requests over HTTP/1.1 and h2c, SSE parsing.

Builds on tests/integration/harness.py (process handling, curl, the test
runner). The chat path does not depend on how aigw got its socket, so
these files run in the harness's "direct" mode unless --mode is given.
"""

import http.client
import json
import os
import re
import select
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(TESTS, "integration"))

import harness  # noqa: E402
from harness import check, curl, eq, fail  # noqa: E402,F401

UPSTREAM_DIR = os.path.join(TESTS, "upstream")

OPENAI_KEY = "sk-aigw-test-openai-5b2c1f"
GEMINI_KEY = "AIzaSy-aigw-test-gemini-9d3e7a"
KEY_ENV = {"AIGW_TEST_OPENAI_KEY": OPENAI_KEY, "AIGW_TEST_GEMINI_KEY": GEMINI_KEY}


def main():
    if not any(a == "--mode" or a.startswith("--mode=") for a in sys.argv[1:]):
        sys.argv[1:1] = ["--mode", "direct"]
    harness.main()


# ---- mock upstreams ------------------------------------------------------------------


class Mock:
    """A mock upstream process (tests/upstream/mock_<flavor>.py)."""

    def __init__(self, t, flavor="openai"):
        self.t = t
        self.flavor = flavor
        script = os.path.join(UPSTREAM_DIR, f"mock_{flavor}.py")
        self.proc = subprocess.Popen([sys.executable, script, "--exit-on-stdin-eof"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        t.processes.append(self)  # the harness kills it in the teardown
        r, _, _ = select.select([self.proc.stdout], [], [], 10)
        line = self.proc.stdout.readline().decode().strip() if r else ""
        if not line.isdigit():
            self.proc.kill()
            err = self.proc.stderr.read().decode("utf-8", "replace") if self.proc.poll() is not None else ""
            fail(f"mock_{flavor}.py did not print its port (got {line!r}) {err}")
        self.port = int(line)
        self.url = f"http://127.0.0.1:{self.port}"

    def _call(self, method, path, body=None, timeout=10):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            data = json.dumps(body) if body is not None else None
            conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
            resp = conn.getresponse()
            out = resp.read()
            check(resp.status == 200, f"mock {method} {path}: {resp.status} {out[:200]!r}")
            return json.loads(out)
        finally:
            conn.close()

    def control(self, **ctl):
        return self._call("POST", "/_control", ctl)

    def queue(self, *behaviours):
        return self.control(queue=list(behaviours))

    def default(self, behaviour):
        return self.control(default=behaviour)

    def probe(self, behaviour):
        return self.control(probe=behaviour)

    def requests(self):
        return self._call("GET", "/_requests")["requests"]

    def chat_requests(self):
        """Requests to the chat routes (POST), oldest first."""
        return [r for r in self.requests() if r["method"] == "POST"]

    def probes(self):
        return [r for r in self.requests() if r["method"] == "GET"]

    def wait(self, pred, timeout=5, what="mock condition"):
        deadline = time.monotonic() + timeout
        while True:
            reqs = self.requests()
            v = pred(reqs)
            if v:
                return v
            if time.monotonic() > deadline:
                fail(f"{what}: not reached within {timeout} s; mock log: {summarize(reqs)}")
            time.sleep(0.05)


def summarize(reqs):
    return [(r["method"], r["raw_path"], r["status"], r["events_sent"], r["client_closed"]) for r in reqs]


# ---- configuration ---------------------------------------------------------------------


def section(header, **kv):
    lines = [f"[{header}]"]
    for k, v in kv.items():
        if v is None:
            continue
        if isinstance(v, bool):
            v = "yes" if v else "no"
        lines.append(f"{k} = {v}")
    return "\n".join(lines) + "\n"


BACKEND_DEFAULTS = {
    "connect_timeout": "2s",
    "timeout": "20s",
    "idle_timeout": "20s",
    "max_retries": 0,
    "retry_base": "10ms",
    "breaker_threshold": 0,
    "probe_interval": 0,
}


def backend(name, type_, url=None, **kv):
    settings = {"type": type_, "url": url}
    if type_ != "mock":
        settings.update(BACKEND_DEFAULTS)
        if type_ == "openai":
            settings["api_key_env"] = "AIGW_TEST_OPENAI_KEY"
        elif type_ == "gemini":
            settings["api_key_env"] = "AIGW_TEST_GEMINI_KEY"
    settings.update(kv)
    return section(f'backend "{name}"', **settings)


def model(name, backend_name, **kv):
    return section(f'model "{name}"', backend=backend_name, **kv)


def config(*sections, default_model=None, server=None, level="debug"):
    srv = {"workers": 2, "request_timeout": "10s", "idle_timeout": "30s", "default_model": default_model}
    srv.update(server or {})
    text = "# written by tests/chat\n" + section("server", **srv) + "\n"
    text += section("log", level=level, access_log=True) + "\n"
    text += "\n".join(sections)
    return text


def start(t, cfg, env=None):
    e = dict(KEY_ENV)
    e.update(env or {})
    return t.start(cfg, env=e)


# ---- requests --------------------------------------------------------------------------


class _CurlDir:
    """Stands in for the test context in harness.curl() with a directory
    of its own: curl calls from several threads do not share files."""

    def __init__(self, t):
        self.t = t
        self.tmpdir = tempfile.mkdtemp(prefix="curl-", dir=t.tmpdir)

    def tool(self, name):
        return self.t.tool(name)

    def debug(self, msg):
        self.t.debug(msg)


def chat(t, a, body, path="/v1/chat/completions", proto="1.1", headers=(), timeout=15, raw=False):
    """POST a chat request with curl (proto "1.1" or "h2c"); a CurlResult.
    Safe to call from several threads at once."""
    data = body if raw else json.dumps(body)
    d = _CurlDir(t)
    req = os.path.join(d.tmpdir, "request.json")
    with open(req, "w", encoding="utf-8") as f:
        f.write(data)
    args = ["--http1.1"] if proto == "1.1" else ["--http2-prior-knowledge"]
    args += ["-X", "POST", "-H", "Content-Type: application/json", "--data-binary", "@" + req]
    for h in headers:
        args += ["-H", h]
    r = curl(d, a.url(path), *args, timeout=timeout)
    r.request_body = data
    eq(r.http_version, "1.1" if proto == "1.1" else "2", "HTTP version of the answer")
    return r


def user(text, **extra):
    body = {"messages": [{"role": "user", "content": text}]}
    body.update(extra)
    return body


def directive(behaviour):
    """A user message that steers the mock (see tests/upstream/mockserver.py)."""
    return "MOCK " + json.dumps(behaviour)


def check_error(r, status, code=None, type_=None, param="any", what="error answer"):
    eq(r.status, status, f"{what}: status (body {r.body[:300]!r})")
    ct = r.header("content-type") or ""
    check(ct.startswith("application/json"), f"{what}: content-type {ct!r}")
    j = r.json()
    check(isinstance(j, dict) and list(j) == ["error"], f"{what}: body is not {{'error': ...}}: {j}")
    e = j["error"]
    eq(sorted(e), ["code", "message", "param", "type"], f"{what}: members of error")
    check(isinstance(e["message"], str) and e["message"], f"{what}: message {e['message']!r}")
    if code is not None:
        eq(e["code"], code, f"{what}: error.code")
    if type_ is not None:
        eq(e["type"], type_, f"{what}: error.type")
    if param != "any":
        eq(e["param"], param, f"{what}: error.param")
    return e


def sse_events(body):
    """The data payloads of an SSE body as aigw writes it: 'data: X\\n\\n'
    each. Fails on anything else."""
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    check(text.endswith("\n\n"), f"SSE body does not end with a blank line: {text[-200:]!r}")
    out = []
    for block in text[:-2].split("\n\n"):
        check(block.startswith("data: ") and "\n" not in block, f"unexpected SSE block {block[:200]!r}")
        out.append(block[6:])
    return out


def parse_stream(body):
    """(chunks as dicts, done seen, error object or None). [DONE] or an
    error event must be last."""
    events = sse_events(body)
    chunks, done, error = [], False, None
    for i, ev in enumerate(events):
        check(not done and error is None, f"event after the end of the stream: {ev[:200]!r}")
        if ev == "[DONE]":
            done = True
            continue
        try:
            j = json.loads(ev)
        except ValueError:
            fail(f"SSE event {i} is not JSON: {ev[:200]!r}")
        if "error" in j:
            error = j["error"]
            continue
        chunks.append(j)
    return chunks, done, error


def joined_content(chunks):
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))


def check_stream_shape(chunks, model_name, include_usage, usage=None, backend_name=None, finish="stop"):
    """OpenAI stream conventions: chat.completion.chunk objects, one id,
    the role in the first delta, finish_reason on the last choice chunk
    only, a usage chunk (empty choices) at the end iff include_usage."""
    check(chunks, "no chunks")
    ids = {c.get("id") for c in chunks}
    eq(len(ids), 1, f"distinct ids over the stream {ids}")
    for c in chunks:
        eq(c.get("object"), "chat.completion.chunk", "object of a chunk")
        eq(c.get("model"), model_name, "model of a chunk")
        if backend_name is not None:
            eq(c.get("backend"), backend_name, "backend of a /chat chunk")
        else:
            check("backend" not in c, f"a /v1 chunk has 'backend': {c}")
    choice_chunks = [c for c in chunks if c["choices"]]
    usage_chunks = [c for c in chunks if "usage" in c and c["usage"] is not None]
    for c in choice_chunks:
        eq(len(c["choices"]), 1, "choices per chunk")
        check(isinstance(c["choices"][0].get("delta"), dict), f"chunk without a delta object: {c}")
    eq(choice_chunks[0]["choices"][0]["delta"].get("role"), "assistant", "role in the first delta")
    frs = [c["choices"][0].get("finish_reason") for c in choice_chunks]
    eq(frs[-1], finish, "finish_reason of the last choice chunk")
    check(all(f is None for f in frs[:-1]), f"finish_reason before the last chunk: {frs}")
    if include_usage:
        eq(len(usage_chunks), 1, "usage chunks")
        check(chunks[-1] is usage_chunks[0], "the usage chunk is not the last one")
        eq(chunks[-1]["choices"], [], "choices of the usage chunk")
        if usage is not None:
            eq(chunks[-1]["usage"], usage, "usage")
    else:
        eq(usage_chunks, [], "usage chunks without stream_options.include_usage")


def usage(p, c):
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


class Stream:
    """A streaming chat request read incrementally over HTTP/1.1 (raw
    socket, chunked decoding by hand) so a test can pause, read slowly or
    hang up."""

    def __init__(self, a, body, path="/v1/chat/completions", timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", a.port), timeout=timeout)
        data = json.dumps(body).encode()
        self.sock.sendall(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          b"Content-Type: application/json\r\nContent-Length: " + str(len(data)).encode() +
                          b"\r\n\r\n" + data)
        self.buf = b""
        self.head = None

    def _fill(self, n=65536):
        d = self.sock.recv(n)
        if not d:
            raise EOFError("connection closed")
        self.buf += d

    def read_head(self):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("iso-8859-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
        self.head = head
        return self.status

    def read_chunk(self):
        """Next chunk of the chunked body (b"" at the end)."""
        while b"\r\n" not in self.buf:
            self._fill()
        size_line, rest = self.buf.split(b"\r\n", 1)
        size = int(size_line.split(b";")[0], 16)
        while len(rest) < size + 2:
            self._fill()
            size_line, rest = self.buf.split(b"\r\n", 1)
        self.buf = rest[size + 2:]
        return rest[:size]

    def read_all(self):
        out = []
        while True:
            c = self.read_chunk()
            if not c:
                return b"".join(out)
            out.append(c)

    def read_until(self, needle):
        out = b""
        while needle not in out:
            c = self.read_chunk()
            if not c:
                fail(f"stream ended before {needle!r}: {out[-300:]!r}")
            out += c
        return out

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        m = re.search(r"^VmRSS:\s+(\d+) kB", f.read(), re.M)
    return int(m.group(1))


def sanitized(pid):
    """True when the process runs under AddressSanitizer, whose quarantine
    keeps freed memory: RSS bounds say nothing there."""
    try:
        with open(f"/proc/{pid}/maps") as f:
            return "libasan" in f.read()
    except OSError:
        return False


def log_text(a, start=0):
    return "\n".join(a.logs(start))


def free_port_closed():
    """A loopback port nothing listens on (connections are refused)."""
    return harness.free_port()


def xfail(reason):
    """Mark a test as failing because of a known aigw bug: a failure is
    reported as a note (the test counts as passed); a pass fails, so the
    marker is removed once the bug is fixed."""

    def wrap(fn):
        def run(t):
            try:
                fn(t)
            except harness.Fail as e:
                t.note(f"XFAIL (known aigw bug: {reason}): {str(e).splitlines()[0]}")
                return
            raise harness.Fail(f"XPASS: {fn.__name__} passes now; remove its xfail marker ({reason})")

        run.__name__ = fn.__name__
        run.__doc__ = fn.__doc__
        return run

    return wrap


def metric(t, a, name, labels):
    """Value of one sample of /metrics (0 when absent)."""
    r = curl(t, a.url("/metrics"))
    eq(r.status, 200, "/metrics status")
    want = name + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
    for line in r.body.decode().splitlines():
        if line.startswith(want + " "):
            return float(line.split()[-1])
    return 0.0
