#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""--check-config on good and bad files, start-up with a bad configuration,
the shipped aigw.conf, --listen and the command line.

In socket mode aigw runs under systemd-socket-activate (activated by one
connection) even for --check-config: it must behave the same there."""

import os
import re
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, curl, eq, test  # noqa: E402

# Each entry: (line, config line, expected error text after "PATH:LINE: ").
BAD_LINES = [
    (2, "workers = abc", 'workers: "abc" is not a non-negative integer'),
    (3, "drain_timeout = 5 parsecs", 'drain_timeout: "5 parsecs" is not a duration'),
    (4, "bogus = 1", 'unknown key "bogus" in section [server]'),
    (7, "level = loud", 'level: "loud" is not one of err, warning, notice, info, debug'),
    # reported at the section's line
    (12, '[model "m"]', 'model "m": backend "nope" is not defined'),
]

BAD_CONFIG = """\
[server]
workers = abc
drain_timeout = 5 parsecs
bogus = 1

[log]
level = loud

[backend "mock"]
type = mock

[model "m"]
backend = nope

[model "mock"]
backend = mock
"""


def write(t, name, text):
    path = os.path.join(t.tmpdir, name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def check_errors(output, path, what):
    lines = output.splitlines()
    for lineno, src, msg in BAD_LINES:
        want = f"{path}:{lineno}: {msg}"
        check(any(want in ln for ln in lines), f"{what}: missing error {want!r} in:\n{output}")
    with open(path, encoding="utf-8") as f:
        src = f.read().splitlines()
    check(all(src[n - 1] == s for n, s, _ in BAD_LINES), "BAD_LINES out of sync with BAD_CONFIG")
    errors = [ln for ln in lines if re.search(re.escape(path) + r":\d+: ", ln)]
    eq(len(errors), len(BAD_LINES), f"{what}: number of file:line errors")


@test
def test_check_config_repo(t):
    path = os.path.join(t.source_dir, "aigw.conf")
    rc, out, err = t.run_aigw(["--check-config", "--config", path])
    eq(rc, 0, f"exit code (stderr: {err})")
    m = re.search(r"^" + re.escape(path) + r": OK \((\d+) backends, (\d+) models\)$", out, re.M)
    check(m, f"no OK line in {out!r}")
    models = re.findall(r"^  model (\S+) -> (\S+) \((\w+)\)", out, re.M)
    eq(len(models), int(m.group(2)), "models listed")
    check(("mock", "mock", "mock") in models, f"mock model not listed: {models}")
    # the shipped file's models, in order
    with open(path, encoding="utf-8") as f:
        names = re.findall(r'^\[model "([^"]+)"\]', f.read(), re.M)
    eq([n for n, _, _ in models], names, "model names")
    eq(err.strip(), "", "stderr")


@test
def test_check_config_minimal(t):
    path = write(t, "good.conf", t.config())
    rc, out, err = t.run_aigw(["--check-config", "--config", path])
    eq(rc, 0, f"exit code (stderr: {err})")
    check(f"{path}: OK (1 backends, 1 models)" in out, f"stdout: {out!r}")
    check("  model mock -> mock (mock)" in out, f"stdout: {out!r}")


@test
def test_check_config_bad(t):
    path = write(t, "bad.conf", BAD_CONFIG)
    rc, out, err = t.run_aigw(["--check-config", "--config", path])
    eq(rc, 1, "exit code")
    check("OK" not in out, f"stdout says OK: {out!r}")
    check_errors(err, path, "--check-config")
    check(re.search(re.escape(path) + r": 5 error\(s\)", err), f"no error count in {err!r}")


@test
def test_check_config_missing_file(t):
    path = os.path.join(t.tmpdir, "does-not-exist.conf")
    rc, out, err = t.run_aigw(["--check-config", "--config", path])
    eq(rc, 1, "exit code")
    check(f"{path}: cannot read: No such file or directory" in err, f"stderr: {err!r}")


@test
def test_check_config_syntax_error(t):
    text = t.config() + "\nthis line is not ini\n"
    path = write(t, "syntax.conf", text)
    lineno = text.splitlines().index("this line is not ini") + 1
    rc, out, err = t.run_aigw(["--check-config", "--config", path])
    eq(rc, 1, "exit code")
    check(re.search(re.escape(f"{path}:{lineno}: "), err), f"no {path}:{lineno} in {err!r}")


@test
def test_check_config_does_not_listen(t):
    # --check-config must not need (or take) the listen address
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        path = write(t, "good.conf", t.config(settings={("server", "listen"): f"127.0.0.1:{port}"}))
        rc, out, err = t.run_aigw(["--check-config", "--config", path])
    eq(rc, 0, f"exit code (stderr {err!r})")


@test
def test_start_with_bad_config(t):
    a = t.start(BAD_CONFIG, expect_ready=False)
    rc = a.wait_exit(10)
    check(rc != 0, f"aigw started with a bad configuration (exit code {rc})")
    out = "\n".join(a.logs())
    check_errors(out, a.config_path, "start")
    check(re.search(r"cannot start: 5 configuration error\(s\) in " + re.escape(a.config_path), out),
          f"no 'cannot start' line:\n{out}")
    eq(a.notify_events("READY"), [], "READY=1 from a failed start")


@test
def test_start_with_missing_config(t):
    a = t.start(t.config(), expect_ready=False, args=["--config", os.path.join(t.tmpdir, "nope.conf")])
    rc = a.wait_exit(10)
    check(rc != 0, f"exit code {rc}")
    a.wait_log(r"nope\.conf: cannot read: No such file or directory", timeout=1)
    eq(a.notify_events("READY"), [], "READY=1 from a failed start")


@test
def test_repo_config_serves(t):
    a = t.start(t.config(base="repo"))
    m = a.wait_log(r"started in \d+ us: \d+ workers, \S+ sockets \S+, (\d+) models", timeout=2)
    with open(os.path.join(t.source_dir, "aigw.conf"), encoding="utf-8") as f:
        n = len(re.findall(r'^\[model "', f.read(), re.M))
    eq(int(m.group(1)), n, "models loaded from the shipped aigw.conf")
    r = curl(t, a.url("/health"))
    eq(r.status, 200, "status")
    eq(r.json()["status"], "ok", "body")
    eq(a.stop(), 0, "exit code")


@test
def test_listen_address(t):
    # An occupied --listen address: fatal on own sockets, ignored (the
    # systemd socket is used) under socket activation.
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        args = ["--listen", f"127.0.0.1:{port}"]
        if t.mode == "direct":
            a = t.start(t.config(), expect_ready=False, listen=False, args=args)
            rc = a.wait_exit(10)
            eq(rc, 1, "exit code with the port in use")
            a.wait_log(r"cannot listen on 127\.0\.0\.1:%d: Address already in use" % port, timeout=1)
            eq(a.notify_events("READY"), [], "READY=1 without a socket")
        else:
            a = t.start(t.config(), args=args)
            a.wait_log(r"systemd sockets http", timeout=2)
            eq(curl(t, a.url("/health")).status, 200, "status on the systemd socket")


@test
def test_listen_from_config(t):
    # without --listen, [server] listen is used (socket mode: ignored)
    port = harness.free_port()
    a = harness.Aigw(t, t.config(settings={("server", "listen"): f"127.0.0.1:{port}"}), listen=False)
    a.start()
    if t.mode == "direct":
        a.port = port
    eq(curl(t, a.url("/health")).status, 200, "status")


@test
def test_command_line(t):
    rc, out, err = t.run_aigw(["--version"])
    eq((rc, out), (0, "aigw 0.1.0\n"), "--version")
    rc, out, err = t.run_aigw(["--help"])
    eq(rc, 0, "--help exit code")
    check("--check-config" in out and "SIGHUP" in out, f"--help: {out!r}")
    for bad in (["--listen", "localhost:80"], ["--listen", "127.0.0.1"], ["--listen", "1.2.3.4:99999"]):
        rc, out, err = t.run_aigw(bad)
        eq(rc, 2, f"exit code for {bad}")
        check("is not ADDR:PORT" in err, f"{bad}: {err!r}")
    rc, out, err = t.run_aigw(["--no-such-option"])
    eq(rc, 2, "unknown option")
    rc, out, err = t.run_aigw(["stray"])
    eq(rc, 2, "stray argument")
    check("unexpected argument 'stray'" in err, err)


if __name__ == "__main__":
    harness.main()
