#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""sd_notify: READY=1 and its timing, STATUS=, the WATCHDOG=1 cadence,
WATCHDOG_PID, STOPPING=1 and the exit code on SIGTERM/SIGINT.

A wedged worker loop (no pings) cannot be produced from outside without
stopping the main thread too (kill -STOP stops the whole process); the
tests under real systemd cover that."""

import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Skip, check, curl, eq, test  # noqa: E402

READY_BUDGET_MS = 1000  # generous: CI machines are slow and shared


@test
def test_ready(t):
    a = t.start()
    ms = (a.t_ready - a.t_exec) * 1000
    check(ms < READY_BUDGET_MS, f"exec->READY=1 took {ms:.1f} ms (budget {READY_BUDGET_MS} ms)")
    m = a.wait_log(r"aigw \S+ started in (\d+) us: (\d+) workers, (own|systemd) sockets (\S+)", timeout=2)
    eq(m.group(3), "own" if t.mode == "direct" else "systemd", "socket origin in the start message")
    eq(m.group(4).rstrip(","), f"127.0.0.1:{a.port}" if t.mode == "direct" else "http", "listener name")
    eq(m.group(2), "2", "workers")
    check(int(m.group(1)) / 1000 <= ms + 1, "aigw's own start time is longer than exec->READY")
    # the first STATUS= follows READY=1
    st = a.wait_notify("STATUS", timeout=3, since=a.t_ready)
    check(re.match(r"Serving on 2 workers: \d+ requests served, \d+ in flight", st.fields["STATUS"]),
          f"STATUS={st.fields['STATUS']!r}")
    # READY=1 exactly once, and nothing else before it but STATUS
    eq(len(a.notify_events("READY")), 1, "READY=1 messages")
    early = [e for e in a.notify_events(until=a.t_ready) if set(e.fields) - {"STATUS"}]
    eq(early, [], "messages before READY=1")
    # serving right after READY=1
    eq(curl(t, a.url("/health")).status, 200, "status right after READY=1")


@test
def test_status_counts_requests(t):
    a = t.start()
    for _ in range(3):
        eq(curl(t, a.url("/health")).status, 200, "status")
    since = time.monotonic()
    # STATUS= is refreshed every 2 s
    ev = a.wait_notify("STATUS", timeout=4, since=since)
    m = re.match(r"Serving on \d+ workers: (\d+) requests served, (\d+) in flight", ev.fields["STATUS"])
    check(m, f"STATUS={ev.fields['STATUS']!r}")
    # socket mode: the activating request counts too
    check(int(m.group(1)) >= 3, f"STATUS counts {m.group(1)} requests after 3 were served")
    eq(m.group(2), "0", "in flight")


def proc_environ(pid):
    with open(f"/proc/{pid}/environ", "rb") as f:
        items = f.read().split(b"\0")
    return dict(i.decode("utf-8", "replace").split("=", 1) for i in items if b"=" in i)


def count_pings(a, seconds):
    start = time.monotonic()
    time.sleep(seconds)
    return [e.t for e in a.notify_events("WATCHDOG", "1", since=start, until=start + seconds)]


@test
def test_watchdog_cadence(t):
    a = t.start(watchdog_usec=1000000)
    pings = count_pings(a, 3.0)
    gaps = [b - x for x, b in zip(pings, pings[1:])]
    t.note(f"WATCHDOG=1 over 3 s: {len(pings)} pings, gaps {', '.join(f'{g:.3f}' for g in gaps)} s")
    check(4 <= len(pings) <= 8, f"{len(pings)} WATCHDOG=1 in 3 s with WATCHDOG_USEC=1000000 (expected ~6)")
    check(all(0.3 <= g <= 0.8 for g in gaps), f"ping gaps {gaps} (expected ~0.5 s)")
    # still pinging while requests are served
    for _ in range(20):
        curl(t, a.url("/health"))
    check(len(count_pings(a, 1.2)) >= 1, "no ping while serving")
    eq(a.stop(), 0, "exit code")


@test
def test_watchdog_pid_matches(t):
    # WATCHDOG_PID set to aigw's own pid (sh and systemd-socket-activate exec)
    a = t.start(watchdog_usec=1000000, watchdog_pid="self")
    env = proc_environ(a.pid)
    eq(env.get("WATCHDOG_PID"), str(a.pid), "WATCHDOG_PID in aigw's environment")
    eq(env.get("WATCHDOG_USEC"), "1000000", "WATCHDOG_USEC in aigw's environment")
    n = len(count_pings(a, 1.6))
    check(2 <= n <= 5, f"{n} WATCHDOG=1 in 1.6 s with WATCHDOG_PID = aigw's pid")


@test
def test_watchdog_pid_other_process(t):
    # the watchdog is meant for another process: aigw must not ping
    a = t.start(watchdog_usec=1000000, watchdog_pid=1)
    eq(proc_environ(a.pid).get("WATCHDOG_PID"), "1", "WATCHDOG_PID in aigw's environment")
    eq(count_pings(a, 1.6), [], "WATCHDOG=1 although WATCHDOG_PID is another process")


@test
def test_no_watchdog_without_usec(t):
    a = t.start()
    eq(count_pings(a, 1.5), [], "WATCHDOG=1 without WATCHDOG_USEC")


def check_stop(t, a, sig, signame):
    eq(curl(t, a.url("/health")).status, 200, "status")
    t_sig = a.send_signal(sig)
    ev = a.wait_notify("STOPPING", "1", timeout=5, since=t_sig)
    # the /health just answered may not be disposed yet (h2o finishes it
    # after the last write completes): 0 or 1 in flight
    check(re.match(r"Draining [01] in-flight requests", ev.fields.get("STATUS", "")),
          f"STATUS with STOPPING=1: {ev.fields.get('STATUS')!r}")
    rc = a.wait_exit(5)
    took = time.monotonic() - t_sig
    eq(rc, 0, f"exit code after {signame}")
    t.note(f"{signame} -> exit with nothing in flight: {took * 1000:.0f} ms")
    check(took < 2, f"idle stop took {took:.2f} s")
    a.wait_log(r"received " + re.escape(signal.strsignal(sig)) + r": draining 0 in-flight requests", timeout=1)
    a.wait_log(r"aigw stopped after serving \d+ requests", timeout=1)
    eq(len(a.notify_events("STOPPING")), 1, "STOPPING=1 messages")
    check(not a.notify_events("READY", since=t_sig), "READY=1 after STOPPING=1")


@test
def test_sigterm_stops(t):
    a = t.start(watchdog_usec=1000000)
    check_stop(t, a, signal.SIGTERM, "SIGTERM")


@test
def test_sigint_stops(t):
    a = t.start()
    check_stop(t, a, signal.SIGINT, "SIGINT")


@test
def test_second_sigterm_harmless(t):
    a = t.start()
    t_sig = a.send_signal(signal.SIGTERM)
    try:
        os.kill(a.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    eq(a.wait_exit(5), 0, "exit code after two SIGTERMs")
    eq(len(a.notify_events("STOPPING", since=t_sig)), 1, "STOPPING=1 messages")


@test
def test_wedged_worker_gets_no_pings(t):
    # Needs one worker loop stuck while the main thread runs; kill -STOP
    # stops every thread. Covered by the tests under real systemd.
    raise Skip("a wedged worker cannot be produced from outside (kill -STOP stops the main thread too)")


if __name__ == "__main__":
    harness.main()
