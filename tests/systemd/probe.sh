#!/bin/bash
# SPDX-License-Identifier: MIT
# Runs inside the systemd-nspawn container as its boot unit (aigw-probe.service),
# started by run.sh. Drives the installed aigw.socket/aigw.service with
# systemctl, curl and journalctl, and writes one "PASS|FAIL name: detail" line
# per check to /out/results:
#   1 socket activation by the first request, STATUS=   2 journal fields
#   3 watchdog (drop-in WatchdogSec=2s, SIGSTOP)        4 restart under load
#   5 reload: good, repeated, broken (ExecReload), SIGHUP with a broken config
#   6 systemd-analyze security    7 chat via the mock backend    8 stop
#   9 LoadCredential= of API keys from /etc/credstore
# probe.service powers the container off when this script ends. Every wait is
# bounded; a failed check records FAIL and the script goes on, so one broken
# step does not hide the others.

set -u
OUT=/out
T=/aigw-test
PY=/usr/bin/python3
HELPER="$PY $T/helper.py"
URL=http://127.0.0.1:5002
CONF=/etc/aigw/aigw.conf
MID_STARTED=3d5b0c1e9a7f4c2b8e6d1a0f5c4b3a29
MID_STOPPING=7a1c9e3b5d2f4a6c8e0b1d3f5a7c9e12
MID_STOPPED=0b9d7f5e3c1a4b2d6f8e0a2c4e6b8d31
MID_RELOADED=5e2a8c4f6b0d4e1a9c7f3b5d1e8a6c43
MID_RELOAD_FAILED=c4e6a8b0d2f44c1e8a6b0d9f2e4c6a55

date +%s.%N >"$OUT/t_probe_start"
exec >>"$OUT/probe.log" 2>&1
: >"$OUT/results"

pass() { echo "PASS $1: ${2-}" | tee -a "$OUT/results"; }
fail() { echo "FAIL $1: ${2-}" | tee -a "$OUT/results"; }
skip() { echo "SKIP $1: ${2-}" | tee -a "$OUT/results"; }
step() { echo; echo "=== $* ($(date +%T.%N))"; }
now_usec() { date +%s%6N; }
prop() { systemctl show -p "$1" --value aigw.service; }
main_pid() { local p; p=$(prop MainPID); echo "${p:-0}"; }

# wait_until SECONDS CMD...: poll CMD every 0.1 s; 0 as soon as it succeeds
wait_until() {
    local deadline=$(($(date +%s%N) + ${1%.*} * 1000000000)); shift
    until "$@"; do
        [ "$(date +%s%N)" -ge "$deadline" ] && return 1
        sleep 0.1
    done
}
is_state() { [ "$(systemctl is-active aigw.service)" = "$1" ]; }

# curl_req NAME [curl args...] URL: sets HTTP_STATUS, REQ_ID, BODY
curl_req() {
    local name=$1; shift
    local hdr="$OUT/$name.headers" body="$OUT/$name.body"
    HTTP_STATUS=$(curl -sS --max-time 10 -D "$hdr" -o "$body" -w '%{http_code}' "$@" 2>"$OUT/$name.err")
    REQ_ID=$(sed -n 's/^x-request-id: *\([^[:space:]]*\).*/\1/Ip' "$hdr" 2>/dev/null | head -n1)
    BODY=$(cat "$body" 2>/dev/null)
    echo "$name: HTTP ${HTTP_STATUS:-none} x-request-id=${REQ_ID:-none} body=${BODY:0:300} $(cat "$OUT/$name.err")"
}
health_ok() { curl_req "$1" "$URL/health" && [ "$HTTP_STATUS" = 200 ] && [[ "$BODY" == *'"status":"ok"'* ]]; }
chat() { # chat NAME MODEL
    curl_req "$1" -X POST -H 'Content-Type: application/json' \
        --data "{\"model\":\"$2\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}" \
        "$URL/v1/chat/completions"
}
# journal ARGS...: helper.py journal for aigw.service; prints the entry
journal() { $HELPER journal "$@"; }

systemctl --version | head -n1

# ---- 1. socket activation -----------------------------------------------------
step "1. socket activation"
if systemctl start aigw.socket; then
    pass socket-start "aigw.socket $(systemctl is-active aigw.socket): $(systemctl show -p Listen --value aigw.socket)"
else
    fail socket-start "systemctl start aigw.socket failed: $(systemctl status aigw.socket --no-pager 2>&1 | tail -n 5)"
fi
st=$(systemctl is-active aigw.service)
if [ "$st" = inactive ]; then
    pass service-idle-before-request "aigw.service is $st"
else
    fail service-idle-before-request "aigw.service is '$st' before any connection"
fi

T1=$(now_usec)
t0=$(date +%s%N)
if health_ok first-request; then
    pass first-request "GET /health -> 200 in $((($(date +%s%N) - t0) / 1000000)) ms (includes the service start)"
else
    fail first-request "GET /health: HTTP ${HTTP_STATUS:-none} body=${BODY:0:200} $(cat $OUT/first-request.err)"
fi
FIRST_RID=$REQ_ID
if wait_until 5 is_state active; then
    pass activated "aigw.service active, MainPID $(main_pid)"
else
    fail activated "aigw.service is $(systemctl is-active aigw.service): $(systemctl status aigw.service --no-pager 2>&1 | tail -n 15)"
fi
status_serving() { [[ "$(prop StatusText)" == Serving\ * ]]; }
if wait_until 5 status_serving; then
    pass status-text "StatusText=$(prop StatusText)"
else
    fail status-text "StatusText='$(prop StatusText)', expected 'Serving ...'"
fi
if curl -sS --max-time 5 -g -o /dev/null -w '%{http_code}' 'http://[::1]:5002/health' | grep -qx 200; then
    pass ipv6-listener "GET http://[::1]:5002/health -> 200"
else
    fail ipv6-listener "GET http://[::1]:5002/health failed"
fi

# ---- 2. structured journal entries ---------------------------------------------
step "2. journal fields"
if [ -n "$FIRST_RID" ]; then
    if e=$(journal --since "$T1" --match "AIGW_REQUEST_ID=$FIRST_RID" --has AIGW_STATUS); then
        echo "$e"
        missing=$($PY -c '
import json, sys
e = json.loads(sys.argv[1])
want = {"AIGW_ROUTE": None, "AIGW_METHOD": "GET", "AIGW_STATUS": "200",
        "AIGW_DURATION_USEC": None, "AIGW_PEER": None}
bad = [k for k, v in want.items() if k not in e or (v is not None and e[k] != v)]
if "AIGW_DURATION_USEC" in e and not e["AIGW_DURATION_USEC"].isdigit(): bad.append("AIGW_DURATION_USEC not a number")
if "127.0.0.1" not in e.get("AIGW_PEER", ""): bad.append("AIGW_PEER without 127.0.0.1")
if e.get("_SYSTEMD_UNIT") != "aigw.service": bad.append("_SYSTEMD_UNIT=" + e.get("_SYSTEMD_UNIT", ""))
print(" ".join(bad))' "$e")
        if [ -z "$missing" ]; then
            pass journal-request-entry "$($PY -c '
import json, sys
e = json.loads(sys.argv[1])
print(" ".join(f"{k}={e[k]}" for k in sorted(e) if k.startswith("AIGW_")))' "$e")"
        else
            fail journal-request-entry "entry for $FIRST_RID wrong or missing: $missing"
        fi
    else
        fail journal-request-entry "no entry with AIGW_REQUEST_ID=$FIRST_RID and AIGW_STATUS"
    fi
else
    fail journal-request-entry "the first response had no x-request-id header"
fi
if e=$(journal --since "$T1" --match MESSAGE_ID=$MID_STARTED --print MESSAGE --print PRIORITY); then
    pass journal-started "$e"
else
    fail journal-started "no MESSAGE_ID=$MID_STARTED entry"
fi

# ---- 3. watchdog --------------------------------------------------------------
step "3. watchdog"
mkdir -p /etc/systemd/system/aigw.service.d
printf '[Service]\nWatchdogSec=2s\n' >/etc/systemd/system/aigw.service.d/test.conf
systemctl daemon-reload
systemctl restart aigw.service || fail watchdog-setup "systemctl restart with WatchdogSec=2s failed"
wd=$(prop WatchdogUSec)
# an idle gateway must keep petting the watchdog: its workers' loops have to
# turn without traffic
sleep 3.5
pid=$(main_pid)
nr=$(prop NRestarts)
if [ "$wd" = 2s ] && is_state active && [ "$nr" = 0 ]; then
    pass watchdog-idle "WatchdogUSec=$wd, 3.5 s idle: still active, NRestarts=$nr, MainPID=$pid"
else
    fail watchdog-idle "WatchdogUSec=$wd state=$(systemctl is-active aigw.service) NRestarts=$nr after 3.5 s idle"
fi
if [ "$pid" -gt 0 ] 2>/dev/null && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = aigw ]; then
    T3=$(now_usec)
    t0=$(date +%s%N)
    kill -STOP "$pid"
    restarted() {
        local p; p=$(main_pid)
        [ "$(prop NRestarts)" -gt "$nr" ] && [ "$p" -gt 0 ] && [ "$p" != "$pid" ] && is_state active
    }
    if wait_until 20 restarted; then
        pass watchdog-restart "SIGSTOP of $pid -> new MainPID $(main_pid) active after $((($(date +%s%N) - t0) / 1000000)) ms, NRestarts=$(prop NRestarts)"
    else
        fail watchdog-restart "state=$(systemctl is-active aigw.service) MainPID=$(main_pid) NRestarts=$(prop NRestarts) after 20 s"
        kill -CONT "$pid" 2>/dev/null
    fi
    if e=$(journal --since "$T3" --regex 'MESSAGE=[Ww]atchdog timeout' --print MESSAGE); then
        pass watchdog-logged "$e"
    else
        fail watchdog-logged "no 'Watchdog timeout' in the journal of aigw.service"
    fi
    if health_ok after-watchdog; then
        pass watchdog-serves-again "GET /health -> 200 from MainPID $(main_pid)"
    else
        fail watchdog-serves-again "GET /health after the watchdog restart: HTTP ${HTTP_STATUS:-none}"
    fi
else
    fail watchdog-restart "no usable MainPID ('$pid'); not sending SIGSTOP"
fi

# ---- 4. restart under load ----------------------------------------------------
step "4. restart under load"
pid=$(main_pid)
if res=$($HELPER load --url "$URL/health" --seconds 6 --threads 4 --at 2 -- systemctl restart aigw.service); then
    echo "$res"
    summary=$($PY -c '
import json, sys
r = json.loads(sys.argv[1])
print("{total} requests: {ok} ok, {draining} draining (503 from the old process), {refused} refused, "
      "{reset} reset, {timeout} timeout, "
      "{bad_status} bad status, {other} other; max latency {max_latency_ms} ms; "
      "restart took {cmd_secs} s (rc {cmd_rc})".format(**r))
sys.exit(0 if r["failed"] == 0 and r["cmd_rc"] == 0 and r["ok"] > 0 else 1)' "$res")
    rc=$?
    newpid=$(main_pid)
    if [ $rc = 0 ] && [ "$newpid" != "$pid" ] && [ "$newpid" -gt 0 ]; then
        pass restart-no-refused "$summary; MainPID $pid -> $newpid"
    else
        fail restart-no-refused "$summary; MainPID $pid -> $newpid; $($PY -c 'import json,sys; print(json.loads(sys.argv[1])["errors"])' "$res")"
    fi
else
    fail restart-no-refused "load helper failed: $res"
fi

# ---- 4b. restart behind a reverse proxy speaking h2c -------------------------------
# Traefik's h2c:// in production; HAProxy with "proto h2" here. Chats flow
# through the proxy while systemd restarts aigw: not one 5xx may reach the
# client (the old process drains, the socket queues, the new one answers).
step "4b. restart behind a proxy (HAProxy, h2c)"
if command -v haproxy >/dev/null; then
    cat >/tmp/haproxy.cfg <<'HAP'
global
    maxconn 512
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend fe
    bind 127.0.0.1:8080
    default_backend aigw
backend aigw
    option httpchk GET /health
    server a1 127.0.0.1:5002 proto h2 check inter 1s
HAP
    haproxy -D -f /tmp/haproxy.cfg -p /run/haproxy-test.pid 2>"$OUT/haproxy.err"
    for _ in $(seq 50); do curl -s -o /dev/null http://127.0.0.1:8080/health && break; sleep 0.1; done
    pid=$(main_pid)
    body='{"model":"mock","messages":[{"role":"user","content":"through the proxy"}]}'
    if res=$($HELPER load --url "http://127.0.0.1:8080/v1/chat/completions" --method POST --body "$body" \
            --seconds 6 --threads 4 --at 2 -- systemctl restart aigw.service); then
        summary=$($PY -c '
import json, sys
r = json.loads(sys.argv[1])
print("{total} chats through the proxy: {ok} ok, {bad_status} non-200, {refused} refused, {reset} reset, "
      "{timeout} timeout, {other} other; restart took {cmd_secs} s".format(**r))
sys.exit(0 if r["failed"] == 0 and r["draining"] == 0 and r["cmd_rc"] == 0 and r["ok"] > 0 else 1)' "$res")
        rc=$?
        if [ $rc = 0 ] && [ "$(main_pid)" != "$pid" ]; then
            pass proxy-restart-no-5xx "$summary; MainPID $pid -> $(main_pid)"
        else
            fail proxy-restart-no-5xx "$summary; $($PY -c 'import json,sys; print(json.loads(sys.argv[1])["errors"])' "$res")"
        fi
    else
        fail proxy-restart-no-5xx "load helper failed: $res"
    fi
    kill "$(cat /run/haproxy-test.pid 2>/dev/null)" 2>/dev/null
else
    skip proxy-restart-no-5xx "haproxy not installed"
fi

# ---- 5. reload ------------------------------------------------------------------
step "5. reload"
pid=$(main_pid)
chat before-reload mock-reloaded
before=$HTTP_STATUS
cp "$T/conf/reload-good.conf" "$CONF"
T5=$(now_usec)
systemctl reload aigw.service
rc=$?
t_ret=$(date +%s%N)
# Scripts act as soon as `systemctl reload` returns, so the very next request
# must see the new configuration. systemd 252 waits for the main process's
# READY=1 only if its RELOADING=1 arrived before ExecReload='s last command
# exited. How long the switch took otherwise is reported, to tell a late
# switch from none.
chat after-reload mock-reloaded
first=$HTTP_STATUS
reloaded_model_ok() { chat after-reload mock-reloaded >/dev/null && [ "$HTTP_STATUS" = 200 ]; }
[ "$first" = 200 ] || wait_until 3 reloaded_model_ok
lag_ms=$((($(date +%s%N) - t_ret) / 1000000))
if [ $rc = 0 ] && e=$(journal --since "$T5" --match MESSAGE_ID=$MID_RELOADED --print MESSAGE); then
    pass reload-good "systemctl reload ok; $e"
else
    fail reload-good "systemctl reload rc=$rc; MESSAGE_ID=$MID_RELOADED entry: ${e:-none}"
fi
if [ "$before" != 200 ] && [ "$first" = 200 ] && [ "$(main_pid)" = "$pid" ]; then
    pass reload-applied "model mock-reloaded: HTTP $before before, HTTP 200 on the first request after systemctl reload returned; same MainPID $pid"
else
    fail reload-applied "model mock-reloaded: HTTP $before before; first request after systemctl reload returned: HTTP ${first:-none} (want 200), HTTP ${HTTP_STATUS:-none} ${lag_ms} ms later; MainPID $pid -> $(main_pid)"
fi

# The same, ten times over: a reload whose end systemd does not wait for
# shows up as an old answer now and then, not every time.
stale=""
for i in $(seq 1 10); do
    if [ $((i % 2)) = 1 ]; then conf=aigw.conf want=404; else conf=reload-good.conf want=200; fi
    cp "$T/conf/$conf" "$CONF"
    systemctl reload aigw.service || stale="$stale #$i:reload-failed"
    chat repeat mock-reloaded >/dev/null
    [ "$HTTP_STATUS" = "$want" ] || stale="$stale #$i:$conf:HTTP-${HTTP_STATUS:-none}"
done
if [ -z "$stale" ] && [ "$(main_pid)" = "$pid" ]; then
    pass reload-repeat "10 reloads alternating two configs: each applied to the very next request"
else
    fail reload-repeat "not applied to the next request (want 404 for aigw.conf, 200 for reload-good.conf):$stale"
fi

cp "$T/conf/broken.conf" "$CONF"
T5b=$(now_usec)
if systemctl reload aigw.service; then
    fail reload-broken-refused "systemctl reload succeeded with a broken config"
else
    sleep 0.3
    if is_state active && [ "$(main_pid)" = "$pid" ] && health_ok after-broken-reload; then
        pass reload-broken-refused "systemctl reload failed; still active, same MainPID $pid, /health 200"
    else
        fail reload-broken-refused "after the failed reload: state=$(systemctl is-active aigw.service) MainPID=$(main_pid) (was $pid) HTTP ${HTTP_STATUS:-none}"
    fi
fi
if e=$(journal --since "$T5b" --regex 'MESSAGE=/etc/aigw/aigw\.conf:5: max_body' --print MESSAGE); then
    pass reload-broken-check-logged "ExecReload's check: $e"
else
    fail reload-broken-check-logged "no '/etc/aigw/aigw.conf:5: max_body' error from ExecReload= in the journal"
fi

T5c=$(now_usec)
systemctl kill -s HUP aigw.service
if e=$(journal --since "$T5c" --match MESSAGE_ID=$MID_RELOAD_FAILED --print MESSAGE --print PRIORITY); then
    pass sighup-broken-logged "$e"
else
    fail sighup-broken-logged "no MESSAGE_ID=$MID_RELOAD_FAILED after SIGHUP with a broken config"
fi
if e=$(journal --since "$T5c" --regex 'MESSAGE=/etc/aigw/aigw\.conf:5: ' --has PRIORITY --print MESSAGE --print PRIORITY); then
    pass sighup-broken-error-text "$e"
else
    fail sighup-broken-error-text "no error naming /etc/aigw/aigw.conf:5 after SIGHUP"
fi
sleep 0.3
chat after-sighup mock-reloaded
if is_state active && [ "$(main_pid)" = "$pid" ] && [ "$HTTP_STATUS" = 200 ] && health_ok after-sighup-health; then
    pass sighup-broken-keeps-serving "active, same MainPID $pid, /health 200, model mock-reloaded still 200"
else
    fail sighup-broken-keeps-serving "state=$(systemctl is-active aigw.service) MainPID=$(main_pid) (was $pid) HTTP ${HTTP_STATUS:-none}"
fi
cp "$T/conf/aigw.conf" "$CONF"
systemctl reload aigw.service || fail reload-restore "reload back to aigw.conf failed"

# ---- 6. systemd-analyze security -----------------------------------------------
step "6. systemd-analyze security"
sec=$(systemd-analyze security --offline=yes --no-pager /usr/lib/systemd/system/aigw.service 2>&1)
echo "$sec" >"$OUT/security.txt"
line=$(grep -a 'Overall exposure level' <<<"$sec" | tail -n1)
score=$(sed -n 's/.*: *\([0-9.]*\) \([A-Z]*\).*/\1/p' <<<"$line")
rating=$(sed -n 's/.*: *\([0-9.]*\) \([A-Z]*\).*/\2/p' <<<"$line")
case "$rating" in
    OK | SAFE | PERFECT) pass security "exposure $score $rating" ;;
    *) fail security "exposure '$score' '$rating' (line: $line)" ;;
esac

# ---- 7. chat through the mock backend --------------------------------------------
step "7. chat"
T7=$(now_usec)
chat chat mock
if [ "$HTTP_STATUS" = 200 ] && [[ "$BODY" == *'"content":"hi"'* || "$BODY" == *hi* ]]; then
    pass chat "POST /v1/chat/completions model mock -> 200, x-request-id=$REQ_ID"
else
    fail chat "HTTP ${HTTP_STATUS:-none} body=${BODY:0:200}"
fi
if [ -n "$REQ_ID" ] && e=$(journal --since "$T7" --match "AIGW_REQUEST_ID=$REQ_ID" --has AIGW_STATUS \
    --match AIGW_MODEL=mock --match AIGW_BACKEND=mock --match AIGW_STATUS=200 --match AIGW_METHOD=POST \
    --print AIGW_ROUTE --print AIGW_MODEL --print AIGW_BACKEND --print AIGW_STATUS); then
    pass chat-journal "$e"
else
    fail chat-journal "no entry with AIGW_REQUEST_ID=${REQ_ID:-?} AIGW_MODEL=mock AIGW_BACKEND=mock AIGW_STATUS=200: $(journal --since "$T7" --match "AIGW_REQUEST_ID=$REQ_ID" --wait 0 2>&1)"
fi

# ---- 7b. metrics under the hardened unit ------------------------------------------
# ProcSubset=pid hides /proc/stat: process_* metrics must still be there
# (no awk: /usr/bin/awk is a symlink into /etc/alternatives, empty in the container)
step "7b. metrics"
metrics=$(curl -sS --max-time 5 "$URL/metrics")
printf "%s\n" "$metrics" >"$OUT/metrics.txt"
rss=$(printf '%s\n' "$metrics" | sed -n 's/^process_resident_memory_bytes //p')
start=$(printf '%s\n' "$metrics" | sed -n 's/^process_start_time_seconds //p')
now=$(date +%s)
if [ -n "$rss" ] && [ "${rss%.*}" -gt 1000000 ] && [ -n "$start" ] && [ "${start%.*}" -gt $((now - 3600)) ] &&
    [ "${start%.*}" -le "$now" ] && printf '%s\n' "$metrics" | grep -q '^aigw_http_requests_total{'; then
    pass metrics-hardened "process_resident_memory_bytes=$rss process_start_time_seconds=$start, aigw_http_requests_total present"
else
    fail metrics-hardened "rss='$rss' start='$start' (now $now); $(printf '%s\n' "$metrics" | grep -c '^aigw_') aigw_ lines"
fi

# ---- 8. stop --------------------------------------------------------------------
step "8. stop"
T8=$(now_usec)
t0=$(date +%s%N)
systemctl stop aigw.service
ms=$((($(date +%s%N) - t0) / 1000000))
st=$(systemctl is-active aigw.service)
res=$(prop Result)
code=$(prop ExecMainStatus)
if [ "$st" = inactive ] && [ "$res" = success ] && [ "$code" = 0 ]; then
    pass stop "stopped in $ms ms: $st, Result=$res, ExecMainStatus=$code"
else
    fail stop "after stop: $st, Result=$res, ExecMainStatus=$code"
fi
if e=$(journal --since "$T8" --match MESSAGE_ID=$MID_STOPPING --print MESSAGE); then
    pass journal-stopping "$e"
else
    fail journal-stopping "no MESSAGE_ID=$MID_STOPPING entry"
fi
if e=$(journal --since "$T8" --match MESSAGE_ID=$MID_STOPPED --print MESSAGE); then
    pass journal-stopped "$e"
else
    fail journal-stopped "no MESSAGE_ID=$MID_STOPPED entry"
fi

# ---- 9. credentials -------------------------------------------------------------
step "9. LoadCredential= (API keys from /etc/credstore)"
keygen=$(/usr/bin/aigw keygen probe)
key=$(sed -n 's/^ *\(aigw-[^[:space:]]*\)$/\1/p' <<<"$keygen" | head -n1)
mkdir -p /etc/credstore
sed -n 's/^ *\(probe sha256:[0-9a-f]*\)$/\1/p' <<<"$keygen" >/etc/credstore/aigw-keys
chmod 600 /etc/credstore/aigw-keys
cp "$T/conf/credentials.conf" "$CONF"
T9=$(now_usec)
if [ -n "$key" ] && [ -s /etc/credstore/aigw-keys ] && systemctl start aigw.service; then
    chat cred-nokey mock
    nokey=$HTTP_STATUS
    curl_req cred-key -X POST -H 'Content-Type: application/json' -H "Authorization: Bearer $key" \
        --data '{"model":"mock","messages":[{"role":"user","content":"hi"}]}' "$URL/v1/chat/completions"
    if [ "$nokey" = 401 ] && [ "$HTTP_STATUS" = 200 ] &&
        e=$(journal --since "$T9" --match "AIGW_REQUEST_ID=$REQ_ID" --match AIGW_KEY=probe --print AIGW_KEY --print AIGW_STATUS); then
        pass credentials "without key HTTP $nokey, with the key from the credential HTTP $HTTP_STATUS; $e"
    else
        fail credentials "without key HTTP $nokey (want 401), with key HTTP ${HTTP_STATUS:-none} (want 200, journal AIGW_KEY=probe)"
    fi
else
    fail credentials "could not set up: key='${key:0:8}...' credstore=$(wc -c </etc/credstore/aigw-keys 2>/dev/null) start: $(systemctl status aigw.service --no-pager 2>&1 | tail -n 5)"
fi
systemctl stop aigw.service
cp "$T/conf/aigw.conf" "$CONF"

# ---- whole run ---------------------------------------------------------------------
n=$(journal --regex 'MESSAGE=[Ww]atchdog timeout' --count --wait 0)
if [ "$n" = 1 ]; then
    pass watchdog-only-once "one watchdog timeout in the whole run (the SIGSTOP one)"
else
    fail watchdog-only-once "$n watchdog timeouts in the run, expected 1"
fi

# journald drops a unit's messages above RateLimitBurst=; then the journal
# checks above prove nothing
supp=$(journalctl -b --no-pager -q -o cat -u systemd-journald.service | grep 'Suppressed .* aigw')
if [ -z "$supp" ]; then
    pass journal-complete "journald suppressed no message of aigw.service"
else
    fail journal-complete "$supp"
fi

journalctl -b --no-pager -o short-monotonic >"$OUT/journal.txt" 2>&1
journalctl -u aigw.service --no-pager -o json >"$OUT/aigw-journal.json" 2>&1
date +%s.%N >"$OUT/done"
echo "probe done"
