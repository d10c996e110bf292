# The checks of a packaged curbside under a real systemd, shared by tools/systemd-check/run (the
# x86_64 .deb in a systemd-nspawn container) and tools/arm-system (the arm64 .deb in an emulated
# ARM machine, where it runs inside the guest). The caller defines `C` (how to run a command on
# that system: nsenter into the container, or nothing inside the guest) and may set TRUST_NOTE.
# Each check prints "ok: ..." as it passes; the first failure prints "FAIL: ...", the unit's
# status and journal, and exits 1.
#   - READY=1, the user curbside, the packaged directories and modes, STATUS= in systemctl status;
#   - `systemctl reload` applies a changed webhook URL (same PID, no restart) without losing the
#     events queued for the old one (a receiver, receiver.py, at /usr/local/bin in that system);
#   - the journal has the agent's lines, no ANSI escape codes, no mode complaint, no panic;
#   - a stalled agent (SIGSTOP) is killed by the watchdog and restarted;
#   - `systemctl stop` drains and exits cleanly.
fail() {
    echo "FAIL: $*"
    C systemctl status curbside receiver --no-pager -n 30 || true
    echo "--- the unit's journal, last 60 lines (all invocations):"
    C journalctl -u curbside --no-pager -n 60 -o short-monotonic || true
    exit 1
}
show() { C systemctl show -p "$1" --value curbside; }

wait_active() {
    for _ in $(seq 1 "${1:-120}"); do
        [ "$(C systemctl is-active curbside 2>/dev/null)" = active ] && return 0
        sleep 0.5
    done
    return 1
}
wait_active 120 || fail "the service did not become active (systemd $(C systemctl --version | head -n 1))"
echo "ok: $(C systemctl --version | head -n 1) as PID 1; curbside active${TRUST_NOTE:-}"

pid=$(show MainPID)
user=$(C stat -c %U "/proc/$pid")
[ "$user" = curbside ] || fail "runs as $user, not curbside"
echo "ok: runs as user curbside (pid $pid)"
dirs=$(C stat -c '%n %U:%G %a' /var/lib/curbside /etc/curbside /etc/curbside/curbside.toml)
expected="/var/lib/curbside curbside:curbside 700
/etc/curbside root:curbside 750
/etc/curbside/curbside.toml root:curbside 640"
[ "$dirs" = "$expected" ] || fail "directories: $dirs"
echo "ok: state and config as packaged: $(echo "$dirs" | tr '\n' ';')"

st=$(C systemctl status curbside --no-pager)
grep -q 'Status: "' <<<"$st" || fail "no STATUS= line in systemctl status"
echo "ok: $(echo "$st" | grep -m1 'Status:' | sed 's/^ *//')"

# Reload: an endpoint that cannot be reached, three taps queue, then the URL changes.
conf=/etc/curbside/curbside.toml
C sh -c "cat >> $conf" <<'EOF'

[[webhook]]
name = "office"
url = "http://127.0.0.1:9001/hook"
EOF
restarts=$(show NRestarts)
C systemctl reload curbside || fail "first reload failed"
wait_active 60 || fail "not active after the first reload"
for j in R1 R2 R3; do
    C curbside tap arrived --job "$j" --config "$conf" >/dev/null || fail "tap $j"
done
C systemd-run --quiet --unit=receiver python3 /usr/local/bin/receiver.py 9002 /var/tmp/received
C sed -i 's#127.0.0.1:9001/hook#127.0.0.1:9002/hook#' "$conf"
t0=$(date +%s%N)
C timeout 30 systemctl reload curbside || fail "systemctl reload failed or hung"
t1=$(date +%s%N)
wait_active 60 || fail "not active after reload"
[ "$(show MainPID)" = "$pid" ] || fail "reload changed the main PID ($pid -> $(show MainPID))"
[ "$(show NRestarts)" = "$restarts" ] || fail "reload restarted the service"
echo "ok: systemctl reload in $(( (t1 - t0) / 1000000 )) ms, same PID, no restart"
for _ in $(seq 1 60); do
    n=$(C sh -c 'cat /var/tmp/received 2>/dev/null | wc -l')
    [ "$n" -ge 3 ] && break
    sleep 0.5
done
for j in R1 R2 R3; do
    C grep -q "\"job_id\":\"$j\"" /var/tmp/received || fail "queued event for $j not delivered to the new URL"
done
echo "ok: the 3 events queued for the old URL reached the new one after reload"

journal=$(C journalctl -u curbside --no-pager -o cat)
grep -q "curbside" <<<"$journal" || fail "no agent lines in the journal"
if grep -q $'\x1b' <<<"$journal"; then fail "ANSI escape codes in the journal"; fi
if grep -q "already exists but the mode is different" <<<"$journal"; then fail "directory mode complaint"; fi
if grep -qi "panicked" <<<"$journal"; then fail "a panic in the journal"; fi
echo "ok: journal has $(echo "$journal" | wc -l) lines, no ANSI codes, no mode complaint, no panic"

# Watchdog: a stopped process sends no WATCHDOG=1; a short WatchdogSec keeps the check quick.
# The proof is systemd's own Result=watchdog, seen while the stalled process is being killed
# (SIGABRT waits for TimeoutAbortSec on a stopped process, then SIGKILL); the journal line is
# reported too, but PID 1 drops log lines rather than block on a busy journald, so a missing
# line alone is not a failure.
C mkdir -p /run/systemd/system/curbside.service.d
C sh -c 'printf "[Service]\nWatchdogSec=5\n" > /run/systemd/system/curbside.service.d/watchdog.conf'
C systemctl daemon-reload
C systemctl restart curbside
wait_active 60 || fail "not active after restart"
pid=$(show MainPID)
restarts=$(show NRestarts)
C sh -c "kill -STOP $pid" || fail "could not stop pid $pid"
seen=""
for _ in $(seq 1 160); do
    [ "$(show Result)" = watchdog ] && seen=yes
    [ "$(show NRestarts)" -gt "$restarts" ] && [ "$(show MainPID)" != "$pid" ] && [ "$(show MainPID)" != 0 ] && break
    sleep 0.25
done
[ "$(show NRestarts)" -gt "$restarts" ] || fail "the watchdog did not restart a stalled agent"
wait_active 60 || fail "not active after the watchdog restart"
grep_watchdog() { C journalctl --no-pager | grep "curbside.service: Watchdog timeout" >/dev/null; }
for _ in $(seq 1 40); do grep_watchdog && break; sleep 0.25; done
if grep_watchdog; then line="the journal has its Watchdog timeout line"; else line="its journal line was dropped"; fi
[ -n "$seen" ] || grep_watchdog || fail "restarted, but neither Result=watchdog nor a watchdog timeout in the journal"
echo "ok: stalled agent (pid $pid) killed by the watchdog (Result=watchdog: ${seen:-not seen}; $line) and restarted (pid $(show MainPID))"
C rm /run/systemd/system/curbside.service.d/watchdog.conf
C systemctl daemon-reload

t0=$(date +%s%N)
C systemctl stop curbside
t1=$(date +%s%N)
result=$(show Result)
[ "$result" = success ] || fail "stop ended with result $result"
# journald may take a moment to store the last lines after the process is gone. (Never
# `journalctl | grep -q` under pipefail: grep leaving at the first match kills journalctl with
# SIGPIPE, and the pipeline fails although the line is there.)
in_journal() {
    for _ in $(seq 1 40); do
        C journalctl -u curbside --no-pager | grep -- "$1" >/dev/null && return 0
        sleep 0.25
    done
    return 1
}
in_journal "curbside stopped" || fail "no clean stop in the journal"
echo "ok: systemctl stop in $(( (t1 - t0) / 1000000 )) ms, result success, outbox flushed"

