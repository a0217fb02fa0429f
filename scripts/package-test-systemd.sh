#!/usr/bin/env bash
# The installed unit under a real systemd. Runs as root INSIDE the namespaces
# scripts/package-test.sh prepares (systemd as PID 1 of a private pid, mount and network
# namespace over a throwaway overlay of /; never call it on a real machine). Arguments: the
# .deb, the emulator. Proves what the unit promises: Type=notify readiness and watchdog pings
# reach systemd, the hardened sandbox still lets the agent serve a terminal and write its
# state, the local CLI reaches the running agent over its control socket, reload and stop work, and a crash loop ends in a failed unit (start limit), not in
# endless restarts.
set -euo pipefail
deb=$1 sim=$2
[ "$(readlink /proc/1/exe)" = /usr/lib/systemd/systemd ] || [ "$(readlink /proc/1/exe)" = /lib/systemd/systemd ] \
  || { echo "PID 1 is not systemd: not in the test namespace" >&2; exit 1; }

check() { echo "  ok: $*"; }
fail() {
  echo "  FAILED: $*" >&2
  systemctl --no-pager status edge-agent >&2 || true
  journalctl --no-pager -u edge-agent -n 30 >&2 || true
  exit 1
}
prop() { systemctl show -P "$1" edge-agent; }
wait_for() { # seconds, description, command...
  local seconds=$1 what=$2; shift 2
  local tries=$((seconds * 4))
  until "$@"; do
    tries=$((tries - 1)); [ $tries -gt 0 ] || fail "$what (waited ${seconds} s)"
    sleep 0.25
  done
}

ip link set lo up
dpkg -i "$deb" >/tmp/dpkg.log 2>&1 || { cat /tmp/dpkg.log; fail "dpkg -i"; }
grep -q "systemctl start edge-agent" /tmp/dpkg.log || fail "a first install did not say how to start"
[ "$(systemctl is-enabled edge-agent)" = enabled ] || fail "not enabled after install"
[ "$(prop ActiveState)" = inactive ] || fail "a first install started the agent"
check "installed under systemd: enabled, not started (the shipped config is a reference)"

cat >/etc/edge-agent/edge-agent.toml <<'CONF'
[agent]
id = "gw-systemd"
data_dir = "/var/lib/edge-agent"
[[device]]
id = "ai06-test"
driver = "aiface"
listen = "127.0.0.1:7788"
allowed_sn = ["SIM00000001"]
[log]
file = "/var/log/edge-agent/edge-agent.log"
CONF
systemctl start edge-agent || fail "systemctl start"
# Type=notify: start returns once the agent said READY=1; "running" means systemd got it.
[ "$(prop SubState)" = running ] || fail "state after start: $(prop ActiveState)/$(prop SubState)"
check "Type=notify: systemctl start returned with the unit active (running): READY=1 reached systemd"
"$sim" aiface --url ws://127.0.0.1:7788/pub/chat --users 4 --run-for 60 >/dev/null 2>&1 &
sim_pid=$!
wait_for 60 "complete read inside the sandbox" grep -q "complete read applied" /var/log/edge-agent/edge-agent.log
[ -d /var/lib/edge-agent/store ] || fail "no store written"
check "inside the hardened sandbox the agent served an AI06 and wrote its store and log"
sock=/run/edge-agent/control.sock
[ -S "$sock" ] || fail "no control socket at $sock"
[ "$(stat -c '%a %G' "$sock")" = "660 edge-agent" ] || fail "control socket: $(stat -c '%a %G' "$sock")"
listing=$(edge-agent buffer list --json) || fail "buffer list while the agent runs: $listing"
users=$(python3 -c 'import json, sys; print(len(json.load(sys.stdin)["users"]))' <<<"$listing")
[ "$users" = 4 ] || fail "buffer list through the socket: $users users, not 4"
status_code=0
edge-agent status >/tmp/status.txt || status_code=$?
[ "$status_code" -le 1 ] || { cat /tmp/status.txt >&2; fail "status exit $status_code"; }
grep -q "ai06-test" /tmp/status.txt || fail "status does not show the device"
! journalctl --no-pager -u edge-agent | grep -q "cannot give" || fail "the socket's group could not be set"
check "control socket $sock (0660, group edge-agent): buffer list (4 users) and status answered while the agent runs"
kill "$sim_pid" 2>/dev/null || true
pinged() { [ -n "$(prop WatchdogTimestampMonotonic | grep -v '^0$')" ]; }
wait_for 60 "a watchdog ping" pinged
check "WatchdogSec: systemd recorded a WATCHDOG=1 ping ($(prop WatchdogTimestamp))"
main_pid=$(prop MainPID)
systemctl reload edge-agent || fail "systemctl reload"
[ "$(prop SubState)" = running ] && [ "$(prop MainPID)" = "$main_pid" ] || fail "reload changed the process or state"
check "systemctl reload: same process, still running"
systemctl stop edge-agent || fail "systemctl stop"
[ "$(prop Result)" = success ] || fail "stop result: $(prop Result)"
check "systemctl stop: clean (Result=success)"

echo "-- a crash loop: the store cannot be opened (data_dir on the read-only /usr)"
sed -i 's|^data_dir = .*|data_dir = "/usr/lib/edge-agent-store"|' /etc/edge-agent/edge-agent.toml
systemctl start edge-agent || true
# The loop must end in a failed unit that stays failed (StartLimitBurst=5 in 10 min, 5 s
# apart); Result says why (start-limit-hit when all the restarts happened).
is_failed() { [ "$(prop ActiveState)" = failed ]; }
wait_for 90 "the unit to end failed" is_failed
restarts=$(prop NRestarts)
sleep 7
[ "$(prop ActiveState)" = failed ] && [ "$(prop NRestarts)" = "$restarts" ] || fail "still restarting"
journal=$(journalctl --no-pager -u edge-agent)
grep -q "cannot open the store" <<<"$journal" || fail "the reason is not in the journal"
check "crash loop ended: failed after $restarts restarts (Result=$(prop Result)), stays failed, reason in the journal"

echo "-- a config check-config refuses: the start fails (ExecStartPre), retried until the start limit"
systemctl reset-failed edge-agent
sed -i 's|^data_dir = .*|data_dir = "/var/lib/edge-agent"|' /etc/edge-agent/edge-agent.toml
echo 'unknown_key = 1' >>/etc/edge-agent/edge-agent.toml
systemctl start edge-agent && fail "started with a broken config"
wait_for 90 "the unit to end failed" is_failed
restarts=$(prop NRestarts)
sleep 7
[ "$(prop ActiveState)" = failed ] && [ "$(prop NRestarts)" = "$restarts" ] || fail "broken config: still restarting"
journal=$(journalctl --no-pager -u edge-agent)
grep -q "unknown_key" <<<"$journal" || fail "check-config's reason is not in the journal"
check "broken config: never started, failed after $restarts restarts, check-config's reason in the journal"
echo "systemd test passed"
