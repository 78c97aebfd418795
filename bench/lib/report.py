#!/usr/bin/env python3
"""Turn one bench run's outputs (run.sh's $WORK/out) into Markdown."""

import glob
import json
import os
import re
import statistics
import sys

OUT = sys.argv[1]


def load(path, default=None):
    try:
        with open(os.path.join(OUT, path)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


meta = {}
with open(os.path.join(OUT, "meta.txt")) as f:
    for line in f:
        k, _, v = line.rstrip("\n").partition("=")
        meta[k] = v


def fmt_us(us):
    if us is None:
        return "n/a"
    if us >= 10000:
        return f"{us / 1000:.1f} ms"
    if us >= 1000:
        return f"{us / 1000:.2f} ms"
    return f"{us:.0f} µs"


def fmt_ms(ms):
    return "n/a" if ms is None else fmt_us(ms * 1000)


def fmt_rps(r):
    return "n/a" if r is None else f"{r:,.0f}"


def cell_ok(d):
    # h2load -D can count the last response as done but not in a status class
    return bool(d) and d.get("done", 0) > 0 and d.get("failed", 1) == 0 and d.get("errored", 1) == 0 \
        and d.get("s4xx", 1) == 0 and d.get("s5xx", 1) == 0


lines = []
w = lines.append
w(f"# aigw benchmark — {meta.get('date', '?')}")
w("")
w(f"Machine: {meta.get('host_cpus')} CPUs ({meta.get('cpu_model')}), {meta.get('mem')}, "
  f"Linux {meta.get('kernel')}; **shared**: load generator, upstreams and aigw run on the same cores. "
  f"Before the run: load average {meta.get('load_before')}, CPU idle {meta.get('idle_before', '?')}"
  + (f"; already busy: {meta['busy_before']}" if meta.get("busy_before") else "") + ".")
w("")
w(f"Versions: {meta.get('aigw')}, nginx {meta.get('nginx')}, h2o {meta.get('h2o')}, "
  f"h2load {meta.get('h2load')}, curl {meta.get('curl')}. Settings: {meta.get('settings')}.")
w("")

# ---- a ------------------------------------------------------------------------------
st = load("startup.json", {})
idle = st.get("idle", {})
w("## a. Foundation")
w("")
w("| metric | value |")
w("|---|---|")
if st:
    w(f"| exec → READY=1 (median of {st['runs']}) | **{fmt_us(st['ready_us_median'])}** "
      f"(min {fmt_us(st['ready_us_min'])}, max {fmt_us(st['ready_us_max'])}) |")
    w(f"| of which aigw's own start-up (its \"started in\" log line, median) | "
      f"{fmt_us(st.get('self_reported_us_median'))} |")
    w(f"| exec → exit of `aigw --version` (process creation + dynamic loading, median) | "
      f"{fmt_us(st.get('version_exit_us_median'))} |")
    rss = idle.get("VmRSS")
    w(f"| idle RSS after start (VmRSS) | **{rss / 1024:.1f} MiB** (anon {idle.get('RssAnon', 0) / 1024:.1f} MiB, "
      f"file {idle.get('RssFile', 0) / 1024:.1f} MiB), {idle.get('Threads')} threads |" if rss else "| idle RSS | n/a |")
    w(f"| SIGTERM → exit when idle (median) | {fmt_us(st.get('stop_us_median'))} |")
after = {}
try:
    with open(os.path.join(OUT, "aigw-after-load.txt")) as f:
        for line in f:
            k, _, v = line.partition(":")
            after[k.strip()] = v.strip()
except OSError:
    pass
if after.get("VmRSS"):
    w(f"| RSS after the proxy runs below (VmRSS / VmHWM) | {after['VmRSS']} / {after.get('VmHWM')} |")
health_where = "main port" if meta.get("health_port") == "main" else "**metrics listener** (see note)"
for proto, c, args in (("HTTP/1.1", 16, "--h1 -c 16"), ("HTTP/1.1", 64, "--h1 -c 64"),
                       ("h2c", 16, "-c 16 -m 10"), ("h2c", 64, "-c 64 -m 10")):
    d = load(f"raw/health-{'h1' if proto == 'HTTP/1.1' else 'h2c'}-c{c}.json", {})
    bad = "" if cell_ok(d) else " ⚠ failures"
    cpu = f", {fmt_us(d['cpu_us_per_req'])} CPU/req" if d.get("cpu_us_per_req") else ""
    w(f"| GET /health {proto} `{args}` ({health_where}) | **{fmt_rps(d.get('rps'))} req/s**, "
      f"mean {fmt_us(d.get('lat_mean_us'))}{cpu}{bad} |")
w("")
if meta.get("health_main_port_status"):
    w(f"Note: `GET /health` on the main port answered **{meta['health_main_port_status']}** in this build: "
      "it is registered only in the metrics route table (src/routes.c), so without a separate "
      "metrics_listen it is unreachable. It was measured on the metrics listener, which is served by the "
      "same worker loops.")
    w("")

# ---- b ------------------------------------------------------------------------------
w("## b. Proxy overhead (POST /v1/chat/completions, canned nginx upstream)")
w("")
w("Concurrency N = N requests in flight: HTTP/1.1 uses N connections, h2c uses "
  "1×1, 2×8 and 8×8 connections×streams. Median of the repetitions; mean latency per request as h2load "
  "reports it. aigw and h2o talk HTTP/1.1 keep-alive to nginx.")
w("")


def proxy(target, proto, c):
    files = sorted(glob.glob(os.path.join(OUT, f"raw/proxy-{target}-{proto}-c{c}-r*.json")))
    ds = [json.load(open(f)) for f in files]
    ds = [d for d in ds if d]
    if not ds:
        return None
    ok = all(cell_ok(d) for d in ds)
    rps = statistics.median([d.get("rps", 0) for d in ds])
    lat = statistics.median([d.get("lat_mean_us", 0) for d in ds])
    cpus = [d["cpu_us_per_req"] for d in ds if d.get("cpu_us_per_req")]
    cores = [d["cpu_cores"] for d in ds if d.get("cpu_cores") is not None]
    shares = [d["busiest_thread_share"] for d in ds if d.get("busiest_thread_share") is not None]
    return {"rps": rps, "lat": lat, "ok": ok, "n": len(ds),
            "rps_all": [d.get("rps") for d in ds],
            "cpu": statistics.median(cpus) if cpus else None,
            "cores": statistics.median(cores) if cores else None,
            "shares": shares}


rows = [("nginx direct", "direct", "h1", "HTTP/1.1"), ("nginx direct", "direct", "h2c", "h2c"),
        ("aigw → nginx", "aigw", "h1", "HTTP/1.1"), ("aigw → nginx", "aigw", "h2c", "h2c"),
        ("h2o proxy → nginx", "h2o", "h1", "HTTP/1.1"), ("h2o proxy → nginx", "h2o", "h2c", "h2c"),
        ("aigw, mock model (no upstream)", "mock", "h1", "HTTP/1.1")]
R = {}
w("| target | client protocol | c=1 req/s | c=1 mean | c=16 req/s | c=16 mean | c=64 req/s | c=64 mean |")
w("|---|---|---:|---:|---:|---:|---:|---:|")
for label, t, p, plabel in rows:
    cells = []
    for c in (1, 16, 64):
        r = proxy(t, p, c)
        R[(t, p, c)] = r
        if r is None:
            cells += ["n/a", "n/a"]
        else:
            flag = "" if r["ok"] else " ⚠"
            cells += [fmt_rps(r["rps"]) + flag, fmt_us(r["lat"])]
    w(f"| {label} | {plabel} | " + " | ".join(cells) + " |")
w("")
w("⚠ = some requests failed or were not 2xx (see raw/).")
w("")
w("Server CPU time per request (user+system of the process under test — nginx, aigw or h2o — "
  "over the measured window ÷ requests; nginx's share behind the proxies is not included), and the "
  "cores it kept busy. This depends much less than req/s on what else runs on the machine (but "
  "not at all is too much to hope for: caches and hyper-threads are shared too).")
w("")
w("The last column is the share of the process's CPU time taken by its busiest thread in each "
  "repetition of the c=16 and c=64 cells: 50% means both worker threads shared the load, 100% that every "
  "connection was accepted by one worker (nginx has one thread).")
w("")
w("| target | client protocol | c=1 CPU/req | c=16 CPU/req | c=64 CPU/req | c=64 cores busy | busiest thread, c=16 / c=64 |")
w("|---|---|---:|---:|---:|---:|---|")
for label, t, p, plabel in rows:
    cells = []
    for c in (1, 16, 64):
        r = R.get((t, p, c))
        cells.append(fmt_us(r["cpu"]) if r and r.get("cpu") else "n/a")
    r64 = R.get((t, p, 64))
    cells.append(f"{r64['cores']:.2f}" if r64 and r64.get("cores") is not None else "n/a")
    if t == "direct":
        cells.append("–")
    else:
        sh = [" ".join(f"{100 * x:.0f}%" for x in (R.get((t, p, c)) or {}).get("shares", [])) or "n/a"
              for c in (16, 64)]
        cells.append(" / ".join(sh))
    w(f"| {label} | {plabel} | " + " | ".join(cells) + " |")
w("")
lopsided = [f"{lbl} {pl} c={c}" for lbl, t, p, pl in rows if t in ("aigw", "mock") for c in (16, 64)
            if any(x > 0.9 for x in (R.get((t, p, c)) or {}).get("shares", []))]
if lopsided:
    w("One worker did more than 90% of aigw's work in some repetitions of: " + ", ".join(lopsided) + ". "
      "The client's connections all went to one worker, so aigw ran on one core (before 7fc6ca5 the worker "
      "that woke first accepted a whole burst; h2o's own server still does).")
    w("")
a64, m64 = R.get(("aigw", "h1", 64)), R.get(("mock", "h1", 64))
if a64 and m64 and a64.get("cpu") and m64.get("cpu"):
    w(f"Of aigw's {fmt_us(a64['cpu'])} of CPU per proxied request (HTTP/1.1, c=64), {fmt_us(m64['cpu'])} are "
      f"spent answering the same request from the mock model; the remaining {fmt_us(a64['cpu'] - m64['cpu'])} "
      "is the upstream call: curl, the upstream socket, parsing the upstream's JSON.")
    w("")


def ratio(a, b):
    if not a or not b or not b["rps"]:
        return None
    return a["rps"] / b["rps"]


def pct(x):
    return "n/a" if x is None else f"{100 * x:.0f}%"


checks = []
d1, a1, a1h2, o1 = R.get(("direct", "h1", 1)), R.get(("aigw", "h1", 1)), R.get(("aigw", "h2c", 1)), R.get(("h2o", "h1", 1))
over = a1["lat"] - d1["lat"] if a1 and d1 else None
over_h2o = o1["lat"] - d1["lat"] if o1 and d1 else None
w("| ratio (same run) | value | target |")
w("|---|---:|---|")
if over is not None:
    verdict = "met" if over <= 100 else ("**missed** (floor near 1 ms: timer/Nagle?)" if over >= 700 else "**missed**")
    w(f"| aigw HTTP/1.1 mean latency − direct, c=1 | **{fmt_us(over)}** | ≤ 100 µs: {verdict} |")
    checks.append(("c=1 overhead", over <= 100))
if a1h2 and d1:
    w(f"| aigw h2c mean latency − direct HTTP/1.1, c=1 | {fmt_us(a1h2['lat'] - d1['lat'])} | (information) |")
if over_h2o is not None:
    w(f"| h2o proxy HTTP/1.1 mean latency − direct, c=1 | {fmt_us(over_h2o)} | (reference) |")
for p, plabel in (("h1", "HTTP/1.1"), ("h2c", "h2c")):
    a, d, o = R.get(("aigw", p, 64)), R.get(("direct", "h1", 64)), R.get(("h2o", p, 64))
    rd = ratio(a, d)
    if rd is not None:
        verdict = "met" if rd >= 0.20 else "**missed**"
        w(f"| aigw {plabel} req/s at c=64 ÷ direct (HTTP/1.1) | **{pct(rd)}** | ≥ 20%: {verdict} |")
        if p == "h1":
            checks.append(("c=64 share of direct", rd >= 0.20))
    w(f"| aigw {plabel} req/s at c=64 ÷ h2o proxy {plabel} | **{pct(ratio(a, o))}** | (h2o is the reference) |")
    w(f"| h2o proxy {plabel} req/s at c=64 ÷ direct (HTTP/1.1) | {pct(ratio(o, d))} | (≈46% seen before on this machine) |")
    if a and o and a.get("cpu") and o.get("cpu"):
        w(f"| aigw {plabel} CPU per request ÷ h2o proxy's, c=64 | {a['cpu'] / o['cpu']:.1f}× "
          f"({fmt_us(a['cpu'])} vs {fmt_us(o['cpu'])}) | (information) |")
w("")

# ---- c ------------------------------------------------------------------------------
sm = load("storm.json")
ss = load("slow-stats.json", {})
w("## c. The old gateway's failure, replayed")
w("")
if not sm:
    w("storm.json missing: the storm did not complete.")
else:
    s = sm["storm"]
    hs, hi = sm["health_storm_ms"], sm["health_idle_ms"]
    ms, mi = sm["mock_storm_ms"], sm["mock_idle_ms"]
    m = re.search(r"STORM=(\d+) SLOW_DELAY=(\S+)", meta.get("settings", ""))
    n_storm, delay = (m.group(1), m.group(2)) if m else ("?", "?")
    w(f"{n_storm} concurrent chat requests (one HTTP/1.1 connection each) to a model whose upstream holds "
      f"every request {delay} s; aigw `[backend] max_connections = {2 * int(n_storm) if n_storm != '?' else '?'}` "
      "(curl's per-host cap: that ÷ 2 workers), `timeout = 60s`. Meanwhile a separate process opens a fresh "
      "connection every 10 ms for `GET /health` and every 50th time also POSTs a chat to the built-in mock "
      "model.")
    w("")
    w("| measurement | idle (before the storm) | during the storm |")
    w("|---|---:|---:|")

    def trio(x):
        if not x or not x.get("n"):
            return "n/a"
        return f"p50 {fmt_ms(x['p50'])}, p99 {fmt_ms(x['p99'])}, max {fmt_ms(x['max'])} (n={x['n']})"

    w(f"| GET /health latency (fresh connection) | {trio(hi)} | **{trio(hs)}** |")
    w(f"| /health failures | {sm['health_idle_failures']} | {sm['health_storm_failures']} |")
    w(f"| mock chat latency (fresh connection) | {trio(mi)} | **{trio(ms)}** |")
    w(f"| mock chat failures | – | {sm['mock_storm_failures']} (statuses seen: "
      f"{', '.join(str(x) for x in sm['mock_storm_statuses'])}) |")
    w("")
    p99 = hs.get("p99")
    checks.append(("/health p99 < 10 ms under storm", p99 is not None and p99 < 10))
    slow = sm.get("health_slow_over_2ms") or []
    if slow:
        buckets = {}
        for t, _ in slow:
            buckets[int(t // 1)] = buckets.get(int(t // 1), 0) + 1
        top = sorted(buckets.items(), key=lambda kv: -kv[1])[:6]
        w(f"/health probes slower than 2 ms: {len(slow)}; the busiest seconds after the storm began: "
          + ", ".join(f"t={k}s: {v}" for k, v in sorted(top)) + f"; slowest {max(ms for _, ms in slow):.1f} ms "
          f"at t={max(slow, key=lambda x: x[1])[0]:.1f}s.")
        w("")
    w(f"Target /health p99 < 10 ms during the storm: **{'met' if p99 is not None and p99 < 10 else 'missed'}** "
      f"({fmt_ms(p99)}).")
    w("")
    stat = ", ".join(f"{k}: {v}" for k, v in sorted(s["statuses"].items()))
    okd = s.get("ok_duration_s", {})
    w("| storm | value |")
    w("|---|---|")
    w(f"| answers by status | {stat} |")
    if okd.get("n"):
        w(f"| duration of the 200s | p50 {okd['p50']:.1f} s, max {okd['max']:.1f} s |")
    w(f"| storm wall time | {s['wall_s']:.1f} s |")
    if s.get("aigw_rss_kb_max"):
        w(f"| aigw peak RSS during the storm | {s['aigw_rss_kb_max'] / 1024:.1f} MiB |")
    if ss:
        w(f"| upstream: connections accepted / chat requests / reused connections | "
          f"{ss.get('accepted')} / {ss.get('requests')} / {ss.get('reused')} |")
        w(f"| upstream: most requests waiting at once | {ss.get('max_waiting')} |")
        a = ss.get("arrival_spread_s")
        if a:
            w(f"| upstream: arrival of chat requests after the first (p50 / p90 / max) | "
              f"{a['p50']:.2f} s / {a['p90']:.2f} s / {a['max']:.2f} s |")
    w("")
    late = ss.get("arrival_spread_s", {}).get("p50", 0)
    try:
        if late > 0.5 * float(delay):
            w(f"**Requests reached the upstream late**: half of them arrived {late:.1f} s after the first, "
              f"about one upstream answer time ({delay} s). aigw held them back: see README "
              "(\"PIPEWAIT\"). Their client-side time is therefore about twice the upstream's, and with "
              "`timeout = 60s` and a 30 s upstream they end as 504.")
            w("")
    except ValueError:
        pass

w("## Summary")
w("")
for name, ok in checks:
    w(f"- {name}: {'met' if ok else '**missed**'}")
w("")
print("\n".join(lines))
