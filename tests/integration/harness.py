# SPDX-License-Identifier: MIT
"""Black-box integration harness for aigw (Python 3 standard library only).

Every test is a function test_*(t) in a test_*.py file that ends with
`harness.main()`. The runner calls each test once per start mode:

  direct  aigw --listen 127.0.0.1:PORT (aigw binds its own socket)
  socket  systemd-socket-activate -l 127.0.0.1:PORT --fdname=http aigw ...
          (started on the first connection, like aigw.socket)

t.start() runs aigw with NOTIFY_SOCKET pointing at a datagram socket the
harness reads (messages are kept with their arrival time), captures stderr
line by line, waits for READY=1 and records the exec->READY time. Nothing
may hang: every wait has a timeout, every test has an alarm, and every
process a test started is killed in its teardown.

Run one file:  python3 tests/integration/test_http.py --aigw build/aigw --source-dir .
Options: --mode direct|socket|both, -k SUBSTRING (select tests), -v (echo aigw's stderr).
"""

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback

MODES = ("direct", "socket")
SKIP_EXIT = 77  # meson: the whole file was skipped

REQUEST_ID_RE = re.compile(r"^[0-9a-f]{32}$")

MINIMAL_CONFIG = """\
# minimal aigw configuration written by the integration harness
[server]
workers = 2
drain_timeout = 10s
request_timeout = 10s
idle_timeout = 30s

[log]
level = info
access_log = yes

[backend "mock"]
type = mock
mock_latency = 0

[model "mock"]
backend = mock
"""


class Skip(Exception):
    pass


class TestTimeout(Exception):
    pass


class Fail(AssertionError):
    pass


_tests = []
_ready_times = {m: [] for m in MODES}


def test(fn=None, *, timeout=60):
    """Register a test; timeout (seconds) is enforced with SIGALRM."""

    def register(f):
        f.timeout = timeout
        _tests.append(f)
        return f

    return register(fn) if fn else register


def fail(msg):
    raise Fail(msg)


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def eq(actual, expected, what=""):
    if actual != expected:
        raise Fail(f"{what + ': ' if what else ''}expected {expected!r}, got {actual!r}")


# ---- configuration text ---------------------------------------------------------


def _section_bounds(lines, section):
    """Return (header_index, end_index) of [section], or None."""
    start = None
    for i, line in enumerate(lines):
        s = line.strip()
        if s.startswith("[") and s.endswith("]"):
            if start is not None:
                return start, i
            if s[1:-1].strip() == section:
                start = i
    return (start, len(lines)) if start is not None else None


def config_set(text, section, key, value):
    """Set key = value in [section] of an aigw.conf text (replacing the key
    and its indented continuation lines if present, adding the section at
    the end if it is missing). value None removes the key."""
    lines = text.splitlines()
    b = _section_bounds(lines, section)
    if b is None:
        if value is None:
            return text
        lines += ["", f"[{section}]", f"{key} = {value}"]
        return "\n".join(lines) + "\n"
    start, end = b
    key_re = re.compile(r"^" + re.escape(key) + r"\s*=")
    for i in range(start + 1, end):
        if key_re.match(lines[i]):
            j = i + 1
            while j < end and lines[j][:1] in (" ", "\t") and lines[j].strip():
                j += 1
            new = [] if value is None else [f"{key} = {value}"]
            lines[i:j] = new
            return "\n".join(lines) + "\n"
    if value is None:
        return text
    # after the header, so it cannot land in a following section
    lines.insert(start + 1, f"{key} = {value}")
    return "\n".join(lines) + "\n"


def make_config(base="minimal", source_dir=None, settings=None, append=""):
    """base: "minimal" or "repo" (the repository's documented aigw.conf).
    settings: {(section, key): value}. append: text added at the end."""
    if base == "repo":
        with open(os.path.join(source_dir, "aigw.conf"), encoding="utf-8") as f:
            text = f.read()
    else:
        text = MINIMAL_CONFIG
    for (section, key), value in (settings or {}).items():
        text = config_set(text, section, key, value)
    if append:
        text = text.rstrip("\n") + "\n\n" + append.strip("\n") + "\n"
    return text


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- sd_notify receiver ------------------------------------------------------------


class NotifyEvent:
    def __init__(self, t, raw):
        self.t = t
        self.raw = raw
        self.fields = {}
        for line in raw.split("\n"):
            if "=" in line:
                k, v = line.split("=", 1)
                self.fields[k] = v

    def __repr__(self):
        return f"<{self.t:.3f} {self.raw!r}>"


class NotifyListener:
    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.05)
        self.events = []
        self.cond = threading.Condition()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            ev = NotifyEvent(time.monotonic(), data.decode("utf-8", "replace"))
            with self.cond:
                self.events.append(ev)
                self.cond.notify_all()

    def close(self):
        self._stop.set()
        self.thread.join(2)
        self.sock.close()


# ---- aigw process -------------------------------------------------------------------------


class Aigw:
    """One aigw process. Use t.start(...) to create, start and wait for it."""

    def __init__(self, t, config_text, *, mode=None, listen=True, watchdog_usec=None, watchdog_pid=None,
                 tls=False, args=(), env=None, config_name="aigw.conf"):
        self.t = t
        self.mode = mode or t.mode
        self.config_path = os.path.join(t.tmpdir, config_name)
        self.write_config(config_text)
        self.listen = listen
        self.watchdog_usec = watchdog_usec
        self.watchdog_pid = watchdog_pid  # None: unset, "self": aigw's pid, int: that pid
        self.tls = tls
        self.extra_args = list(args)
        self.extra_env = dict(env or {})
        self.proc = None
        self.port = None
        self.notify = None
        self.lines = []  # (monotonic time, line)
        self.lines_cond = threading.Condition()
        self.t_spawn = None
        self.t_exec = None
        self.t_ready = None
        self.returncode = None
        self._reader = None
        self.trigger_result = None

    # -- configuration
    def write_config(self, text):
        tmp = self.config_path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, self.config_path)

    # -- start
    def command(self):
        aigw = [self.t.aigw, "--config", self.config_path] + self.extra_args
        env = {"NOTIFY_SOCKET": self.notify.path}
        if self.watchdog_usec is not None:
            env["WATCHDOG_USEC"] = str(self.watchdog_usec)
        if isinstance(self.watchdog_pid, int):
            env["WATCHDOG_PID"] = str(self.watchdog_pid)
        env.update(self.extra_env)
        if self.mode == "direct":
            if self.listen:
                aigw += ["--listen", f"127.0.0.1:{self.port}"]
            argv = aigw
            if self.watchdog_pid == "self":
                argv = ["/bin/sh", "-c", 'WATCHDOG_PID=$$; export WATCHDOG_PID; exec "$@"', "sh"] + argv
            return argv, env
        sa = [self.t.tool("systemd-socket-activate"), "-l", f"127.0.0.1:{self.port}", "--fdname=http"]
        # systemd-socket-activate passes only LISTEN_* and -E variables on
        for k, v in env.items():
            sa += ["-E", f"{k}={v}"]
        argv = sa + aigw
        if self.watchdog_pid == "self":
            # sh execs systemd-socket-activate, which execs aigw: one pid
            argv = ["/bin/sh", "-c", 'exec "$0" -E WATCHDOG_PID=$$ "$@"'] + argv
        return argv, {}

    def spawn(self):
        self.port = free_port()
        if self.notify is None:
            self.notify = NotifyListener(os.path.join(self.t.tmpdir, f"notify-{id(self)}.sock"))
        argv, extra_env = self.command()
        env = dict(os.environ)
        for k in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES",
                  "JOURNAL_STREAM", "CREDENTIALS_DIRECTORY"):
            env.pop(k, None)
        env.update(extra_env)
        self.t.debug(f"spawn: {' '.join(argv)}  env: {extra_env}")
        self.t_spawn = time.monotonic()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, env=env, start_new_session=True)
        if self.mode == "direct":
            self.t_exec = self.t_spawn  # Popen returns once execve succeeded
        self.t.processes.append(self)
        self._reader = threading.Thread(target=self._read_output, daemon=True)
        self._reader.start()

    def _read_output(self):
        for raw in iter(self.proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            now = time.monotonic()
            with self.lines_cond:
                if self.t_exec is None and line.startswith("Execing "):
                    self.t_exec = now
                self.lines.append((now, line))
                self.lines_cond.notify_all()
            if self.t.verbose:
                print(f"    | {line}", flush=True)
        with self.lines_cond:
            self.lines_cond.notify_all()

    def start(self, timeout=10, expect_ready=True, attempts=3):
        """Spawn and (if expect_ready) wait for READY=1. Retries with a new
        port when the chosen one was taken meanwhile."""
        for attempt in range(attempts):
            self.spawn()
            if not expect_ready:
                if self.mode == "socket":
                    self.trigger(expect_response=False, timeout=timeout)
                return self
            try:
                self.wait_ready(timeout)
                return self
            except Fail:
                if attempt + 1 < attempts and self._port_was_taken():
                    self.t.debug("port was taken, retrying")
                    self.kill()
                    self.lines.clear()
                    self.t_exec = None
                    continue
                raise
        return self

    def _port_was_taken(self):
        return any("Address already in use" in line for _, line in self.lines)

    def trigger(self, expect_response=True, timeout=10):
        """Socket mode: systemd-socket-activate execs aigw on the first
        connection. That connection sends GET /health and must be served by
        the new process (it waited in the listen queue)."""
        self.wait_log(r"^Listening on ", timeout=5, what="systemd-socket-activate listening")
        result = {}

        def run():
            try:
                s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
                if self.tls:
                    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                    ctx.check_hostname = False
                    ctx.verify_mode = ssl.CERT_NONE
                    ctx.set_alpn_protocols(["http/1.1"])
                    s = ctx.wrap_socket(s, server_hostname="localhost")
                with s:
                    s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                    data = b""
                    while True:
                        chunk = s.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                result["response"] = data
            except Exception as e:  # reported by the caller
                result["error"] = e

        th = threading.Thread(target=run, daemon=True)
        th.start()
        self.trigger_result = (th, result, expect_response)
        return th

    def finish_trigger(self, timeout=10):
        if not self.trigger_result:
            return
        th, result, expect = self.trigger_result
        self.trigger_result = None
        th.join(timeout)
        if not expect:
            return
        check(not th.is_alive(), "the activating connection got no response")
        check("error" not in result, f"the activating connection failed: {result.get('error')!r}")
        resp = result.get("response", b"")
        check(resp.startswith(b"HTTP/1.1 200 "), f"the activating connection got {resp[:200]!r}")

    def wait_ready(self, timeout=10):
        if self.mode == "socket":
            self.trigger(timeout=timeout)
        ev = self.wait_notify("READY", "1", timeout=timeout, since=self.t_spawn)
        self.t_ready = ev.t
        self.finish_trigger(timeout)
        # the stderr reader thread may not have seen the Execing line yet
        deadline = time.monotonic() + 2
        while self.t_exec is None and time.monotonic() < deadline:
            time.sleep(0.01)
        check(self.t_exec is not None, "exec time unknown (no 'Execing' line from systemd-socket-activate)")
        ms = (self.t_ready - self.t_exec) * 1000
        try:  # logged just after READY=1
            m = self.wait_log(r"started in (\d+) us", timeout=2)
        except Fail:
            m = None
        own = f", aigw reports {int(m.group(1)) / 1000:.2f} ms" if m else ""
        _ready_times[self.mode].append(ms)
        self.t.note(f"exec->READY=1: {ms:.2f} ms ({self.mode} mode{own})")
        return ms

    # -- notify
    def wait_notify(self, key, value=None, timeout=10, since=0.0, what=None):
        """Wait for a notify message with key (=value) that arrived at or
        after monotonic time `since`; fail if aigw exits first."""
        deadline = time.monotonic() + timeout
        with self.notify.cond:
            while True:
                for ev in self.notify.events:
                    if ev.t >= since and key in ev.fields and (value is None or ev.fields[key] == value):
                        return ev
                if self.proc.poll() is not None:
                    # the last datagrams may still be in the socket
                    self.notify.cond.wait(0.2)
                    for ev in self.notify.events:
                        if ev.t >= since and key in ev.fields and (value is None or ev.fields[key] == value):
                            return ev
                    fail(f"aigw exited ({self.proc.returncode}) without sending "
                         f"{key}={value if value is not None else '*'}{self.tail()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    fail(f"no {what or key + '=' + (value or '*')} within {timeout} s; "
                         f"notify messages: {self.notify.events}{self.tail()}")
                self.notify.cond.wait(min(left, 0.1))

    def notify_events(self, key=None, value=None, since=0.0, until=float("inf")):
        with self.notify.cond:
            return [ev for ev in self.notify.events if since <= ev.t < until and
                    (key is None or (key in ev.fields and (value is None or ev.fields[key] == value)))]

    # -- log lines
    def log_index(self):
        with self.lines_cond:
            return len(self.lines)

    def find_log(self, pattern, start=0):
        rx = re.compile(pattern)
        with self.lines_cond:
            for _, line in self.lines[start:]:
                m = rx.search(line)
                if m:
                    return m
        return None

    def logs(self, start=0):
        with self.lines_cond:
            return [line for _, line in self.lines[start:]]

    def wait_log(self, pattern, timeout=10, start=0, what=None):
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.lines_cond:
            while True:
                for _, line in self.lines[start:]:
                    m = rx.search(line)
                    if m:
                        return m
                if self.proc.poll() is not None and not self._reader.is_alive():
                    fail(f"aigw exited ({self.proc.returncode}) without logging {what or pattern!r}{self.tail()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    fail(f"no log line {what or pattern!r} within {timeout} s{self.tail()}")
                self.lines_cond.wait(min(left, 0.1))

    def tail(self, n=40):
        with self.lines_cond:
            lines = [line for _, line in self.lines[-n:]]
        return "\n  aigw output (last lines):\n" + "\n".join("    " + ln for ln in lines) if lines else ""

    # -- control
    @property
    def pid(self):
        return self.proc.pid

    def url(self, path="/"):
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}{path}"

    def send_signal(self, sig):
        check(self.proc.poll() is None, f"aigw already exited ({self.proc.returncode}){self.tail()}")
        os.kill(self.proc.pid, sig)
        return time.monotonic()

    def wait_exit(self, timeout=15):
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            fail(f"aigw did not exit within {timeout} s{self.tail()}")
        if self._reader:
            self._reader.join(2)
        return self.returncode

    def stop(self, timeout=15):
        """SIGTERM and wait; return the exit code."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        return self.wait_exit(timeout)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        if self._reader:
            self._reader.join(2)
        self.proc.stdout.close()

    def close(self):
        self.kill()
        if self.notify:
            self.notify.close()
            self.notify = None


# ---- HTTP clients -----------------------------------------------------------------------


class CurlResult:
    def __init__(self, rc, status, http_version, header_blocks, body, stderr, argv):
        self.rc = rc
        self.status = status
        self.http_version = http_version
        self.header_blocks = header_blocks  # [(status line, [(name, value)])], final last
        self.body = body
        self.stderr = stderr
        self.argv = argv

    @property
    def status_line(self):
        return self.header_blocks[-1][0] if self.header_blocks else ""

    @property
    def headers(self):
        return self.header_blocks[-1][1] if self.header_blocks else []

    def header(self, name):
        vals = self.header_all(name)
        return vals[0] if vals else None

    def header_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError as e:
            fail(f"body is not JSON ({e}): {self.body[:300]!r}")

    def __repr__(self):
        return f"<curl rc={self.rc} {self.status} HTTP/{self.http_version} body={self.body[:200]!r}>"


def curl(t, url, *args, timeout=10, expect_rc=0):
    """Run curl; return the final response (all header blocks are kept,
    e.g. 101 Switching Protocols before HTTP/2 200)."""
    hfile = os.path.join(t.tmpdir, "curl-headers")
    bfile = os.path.join(t.tmpdir, "curl-body")
    for f in (hfile, bfile):
        if os.path.exists(f):
            os.unlink(f)
    argv = [t.tool("curl"), "-sS", "--max-time", str(timeout), "-D", hfile, "-o", bfile,
            "-w", "%{http_code} %{http_version}"] + list(args) + [url]
    t.debug("run: " + " ".join(argv))
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout + 5)
    except subprocess.TimeoutExpired:
        fail(f"curl hung: {argv}")
    out = p.stdout.decode("utf-8", "replace").split()
    status = int(out[0]) if out and out[0].isdigit() else 0
    version = out[1] if len(out) > 1 else ""
    blocks = []
    if os.path.exists(hfile):
        with open(hfile, "rb") as f:
            text = f.read().decode("iso-8859-1")
        for line in text.split("\r\n"):
            if line.startswith("HTTP/"):
                blocks.append((line, []))
            elif ":" in line and blocks:
                k, v = line.split(":", 1)
                blocks[-1][1].append((k.strip(), v.strip()))
    body = b""
    if os.path.exists(bfile):
        with open(bfile, "rb") as f:
            body = f.read()
    r = CurlResult(p.returncode, status, version, blocks, body, p.stderr.decode("utf-8", "replace"), argv)
    if expect_rc is not None and p.returncode != expect_rc:
        fail(f"curl exited {p.returncode} (expected {expect_rc}): {r.stderr.strip()} argv={argv}")
    return r


class NghttpResult:
    def __init__(self, rc, out, err):
        self.rc = rc
        self.out = out
        self.err = err

    def statuses(self):
        return [(int(sid), int(st)) for sid, st in re.findall(r"recv \(stream_id=(\d+)\) :status: (\d+)", self.out)]

    def headers(self, stream_id=None):
        h = []
        for sid, k, v in re.findall(r"recv \(stream_id=(\d+)\) ([^:\s][^:]*|:[a-z]+): (.*)", self.out):
            if stream_id is None or int(sid) == stream_id:
                h.append((k, v))
        return h

    def header(self, name, stream_id=None):
        for k, v in self.headers(stream_id):
            if k == name:
                return v
        return None


def nghttp(t, url, *args, timeout=10, expect_rc=0):
    argv = [t.tool("nghttp"), "-v", "--timeout", str(timeout)] + list(args) + [url]
    t.debug("run: " + " ".join(argv))
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout + 5)
    except subprocess.TimeoutExpired:
        fail(f"nghttp hung: {argv}")
    r = NghttpResult(p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace"))
    if expect_rc is not None and p.returncode != expect_rc:
        fail(f"nghttp exited {p.returncode} (expected {expect_rc}): {r.err.strip()}\n{r.out[-2000:]}")
    return r


def http_conn(a, timeout=10):
    """A keep-alive HTTP/1.1 connection (http.client) to aigw."""
    if a.tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["http/1.1"])
        return http.client.HTTPSConnection("127.0.0.1", a.port, timeout=timeout, context=ctx)
    return http.client.HTTPConnection("127.0.0.1", a.port, timeout=timeout)


def http_request(conn, method, path, body=None, headers=None):
    """Return (status, headers dict (lower-case names), body bytes)."""
    hdrs = dict(headers or {})
    if body is not None and not isinstance(body, (bytes, str)):
        body = json.dumps(body)
        hdrs.setdefault("Content-Type", "application/json")
    conn.request(method, path, body=body, headers=hdrs)
    resp = conn.getresponse()
    data = resp.read()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data


def make_tls_cert(t):
    """Self-signed certificate and key (openssl CLI) in the test's tmpdir."""
    cert = os.path.join(t.tmpdir, "cert.pem")
    key = os.path.join(t.tmpdir, "key.pem")
    argv = [t.tool("openssl"), "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"]
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    check(p.returncode == 0, f"openssl req failed: {p.stderr.decode()}")
    return cert, key


# ---- test context and runner ---------------------------------------------------------


class TestContext:
    def __init__(self, opts, mode, name):
        self.opts = opts
        self.mode = mode
        self.name = name
        self.aigw = opts.aigw
        self.source_dir = opts.source_dir
        self.verbose = opts.verbose
        self.tmpdir = tempfile.mkdtemp(prefix="aigw-it-")
        self.processes = []
        self.notes = []

    def debug(self, msg):
        if self.verbose:
            print(f"    # {msg}", flush=True)

    def note(self, msg):
        """A line printed with the test result (measurements)."""
        self.notes.append(msg)

    def tool(self, name):
        path = shutil.which(name)
        if not path:
            pkg = {"nghttp": "nghttp2-client", "systemd-socket-activate": "systemd"}.get(name, name)
            fail(f"{name} is not installed (Debian package {pkg})")
        return path

    def config(self, base="minimal", settings=None, append=""):
        return make_config(base, self.source_dir, settings, append)

    def start(self, config_text=None, expect_ready=True, timeout=10, **kw):
        if config_text is None:
            config_text = self.config()
        a = Aigw(self, config_text, **kw)
        return a.start(timeout=timeout, expect_ready=expect_ready)

    def run_aigw(self, args, timeout=15, expect_activation=False):
        """Run aigw to completion (e.g. --check-config) in this test's mode:
        in socket mode under systemd-socket-activate, activated by one
        connection. Returns (exit code, stdout, stderr)."""
        argv = [self.aigw] + list(args)
        env = dict(os.environ)
        for k in ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "JOURNAL_STREAM"):
            env.pop(k, None)
        if self.mode == "direct":
            try:
                p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, env=env)
            except subprocess.TimeoutExpired:
                fail(f"aigw hung: {argv}")
            return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
        port = free_port()
        sa = [self.tool("systemd-socket-activate"), "-l", f"127.0.0.1:{port}", "--fdname=http"] + argv
        proc = subprocess.Popen(sa, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=env, start_new_session=True)
        holder = type("P", (), {})()
        holder.proc = proc
        self.processes.append(holder)
        err_lines = []

        def read_err():
            for raw in iter(proc.stderr.readline, b""):
                err_lines.append(raw.decode("utf-8", "replace"))

        th = threading.Thread(target=read_err, daemon=True)
        th.start()
        deadline = time.monotonic() + 5
        while not any(ln.startswith("Listening on") for ln in err_lines):
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                fail(f"systemd-socket-activate did not listen: {''.join(err_lines)}")
            time.sleep(0.01)
        conn = socket.create_connection(("127.0.0.1", port), timeout=5)
        try:
            out = proc.stdout.read()  # until aigw exits
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            fail(f"aigw hung: {sa}")
        finally:
            conn.close()
        th.join(2)
        err = "".join(ln for ln in err_lines
                      if not ln.startswith(("Listening on ", "Communication attempt on fd", "Execing ")))
        return rc, out.decode("utf-8", "replace"), err

    def teardown(self):
        for p in self.processes:
            if isinstance(p, Aigw):
                p.close()
            elif p.proc.poll() is None:
                p.proc.kill()
                try:
                    p.proc.wait(5)
                except subprocess.TimeoutExpired:
                    pass
        shutil.rmtree(self.tmpdir, ignore_errors=True)


def _alarm(signum, frame):
    raise TestTimeout("test timed out")


def main():
    ap = argparse.ArgumentParser(description="aigw integration tests")
    ap.add_argument("--aigw", required=True, help="path of the aigw binary")
    ap.add_argument("--source-dir", required=True, help="source tree (for aigw.conf)")
    ap.add_argument("--mode", choices=("direct", "socket", "both"), default="both")
    ap.add_argument("-k", dest="select", action="append", default=[], help="run tests whose name contains this")
    ap.add_argument("-v", "--verbose", action="store_true")
    opts = ap.parse_args()
    opts.aigw = os.path.abspath(opts.aigw)
    opts.source_dir = os.path.abspath(opts.source_dir)
    if not os.access(opts.aigw, os.X_OK):
        print(f"{opts.aigw}: not an executable", file=sys.stderr)
        sys.exit(2)

    modes = MODES if opts.mode == "both" else (opts.mode,)
    signal.signal(signal.SIGALRM, _alarm)
    passed = failed = skipped = 0
    failures = []
    script = os.path.basename(sys.argv[0])
    t_all = time.monotonic()
    for fn in _tests:
        for mode in modes:
            name = f"{fn.__name__}[{mode}]"
            if opts.select and not any(s in name for s in opts.select):
                continue
            t = TestContext(opts, mode, name)
            t0 = time.monotonic()
            status, detail = "ok", ""
            signal.alarm(fn.timeout)
            try:
                fn(t)
            except Skip as e:
                status, detail = "SKIP", str(e)
            except (Fail, TestTimeout) as e:
                status, detail = "FAIL", f"{e}"
                if isinstance(e, TestTimeout):
                    detail += "".join(p.tail() for p in t.processes if isinstance(p, Aigw))
                detail += "\n" + "".join(traceback.format_tb(e.__traceback__)[-3:])
            except Exception:
                status, detail = "FAIL", traceback.format_exc()
            finally:
                signal.alarm(0)
                try:
                    t.teardown()
                except Exception:
                    status, detail = "FAIL", detail + "\nteardown: " + traceback.format_exc()
            dt = time.monotonic() - t0
            print(f"{status:4} {name} ({dt:.2f} s){': ' + detail.splitlines()[0] if status == 'SKIP' else ''}",
                  flush=True)
            for n in t.notes:
                print(f"     {n}", flush=True)
            if status == "FAIL":
                print("     " + detail.rstrip().replace("\n", "\n     "), flush=True)
                failed += 1
                failures.append(name)
            elif status == "SKIP":
                skipped += 1
            else:
                passed += 1

    for mode in modes:
        v = _ready_times[mode]
        if v:
            print(f"exec->READY=1 ({mode}, {len(v)} starts): min {min(v):.2f} ms, "
                  f"median {statistics.median(v):.2f} ms, max {max(v):.2f} ms")
    if failures:
        print("failed: " + " ".join(failures))
    if skipped:
        print(f"{skipped} skipped")
    print(f"{script}: {time.monotonic() - t_all:.1f} s")
    print(f"{passed} passed, {failed} failed")
    if failed:
        sys.exit(1)
    if passed == 0 and skipped:
        sys.exit(SKIP_EXIT)
    sys.exit(0)
