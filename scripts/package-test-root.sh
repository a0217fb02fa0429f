#!/usr/bin/env bash
# The install/upgrade/remove/purge test of the x86_64 package. Runs as root INSIDE the throwaway
# root scripts/package-test.sh prepares (never call it on a real machine: it installs, purges
# and deletes /var/lib/edge-agent). Arguments: new .deb, previous .deb, emulator, version.
set -euo pipefail
new_deb=$1 prev_deb=$2 sim=$3 version=$4
[ -e /proc/self/exe ] && [ ! -e /run/systemd/system ] || { echo "not in the throwaway root" >&2; exit 1; }

check() { echo "  ok: $*"; }
fail() { echo "  FAILED: $*" >&2; exit 1; }
expect_file() { [ -e "$1" ] || fail "$1 is missing"; }
expect_gone() { [ ! -e "$1" ] || fail "$1 is still there"; }
owner_mode() { stat -c '%U:%G %a' "$1"; }

# What the package ships (docs/OPERATIONS.md "What the package installs").
shipped=(
  /usr/bin/edge-agent
  /lib/systemd/system/edge-agent.service
  /usr/lib/systemd/journald.conf.d/edge-agent.conf
  /etc/edge-agent/edge-agent.toml
  /usr/share/doc/edge-agent/README.md
  /usr/share/doc/edge-agent/OPERATIONS.md
  /usr/share/doc/edge-agent/ARCHITECTURE.md
  /usr/share/doc/edge-agent/mqtt.md
  /usr/share/doc/edge-agent/upstream.md
  /usr/share/doc/edge-agent/upstream-api.yaml
  /usr/share/doc/edge-agent/edge-agent.toml
  /usr/share/doc/edge-agent/copyright
  /usr/share/man/man1/edge-agent.1.gz
  /usr/share/man/man1/edge-agent-run.1.gz
  /usr/share/man/man1/edge-agent-check-config.1.gz
  /usr/share/bash-completion/completions/edge-agent
  /usr/share/zsh/vendor-completions/_edge-agent
  /usr/share/fish/vendor_completions.d/edge-agent.fish
)

echo "-- install the previous build"
getent passwd edge-agent >/dev/null && fail "an edge-agent user exists before the install"
dpkg -i "$prev_deb" >/tmp/dpkg.log 2>&1 || { cat /tmp/dpkg.log; fail "dpkg -i (previous build)"; }
check "dpkg -i $(dpkg-query -W -f='${Package} ${Version}' edge-agent)"
for f in "${shipped[@]}"; do expect_file "$f"; done
listed=$(dpkg -L edge-agent | sort)
for f in "${shipped[@]}"; do grep -qx "$f" <<<"$listed" || fail "dpkg -L does not list $f"; done
check "every documented file installed and listed by dpkg -L"
conffiles=$(dpkg-query -W -f='${Conffiles}\n' edge-agent | awk 'NF {print $1}')
[ "$conffiles" = /etc/edge-agent/edge-agent.toml ] || fail "conffiles are: $conffiles"
check "conffiles: $conffiles"
for script in postinst prerm postrm; do
  [ -x "/var/lib/dpkg/info/edge-agent.$script" ] || fail "no $script maintainer script"
done
check "maintainer scripts: postinst prerm postrm"
getent passwd edge-agent | grep -q ':/var/lib/edge-agent:/usr/sbin/nologin$' || fail "user: $(getent passwd edge-agent)"
id -nG edge-agent | tr ' ' '\n' | grep -qx dialout || fail "edge-agent is not in dialout"
check "system user edge-agent ($(id edge-agent))"
[ "$(owner_mode /var/lib/edge-agent)" = "edge-agent:edge-agent 750" ] || fail "/var/lib/edge-agent: $(owner_mode /var/lib/edge-agent)"
[ "$(owner_mode /var/log/edge-agent)" = "edge-agent:edge-agent 750" ] || fail "/var/log/edge-agent: $(owner_mode /var/log/edge-agent)"
[ "$(owner_mode /etc/edge-agent/secrets)" = "root:edge-agent 750" ] || fail "/etc/edge-agent/secrets: $(owner_mode /etc/edge-agent/secrets)"
check "directories: state and logs edge-agent 0750, secrets root:edge-agent 0750"
[ -L /etc/systemd/system/multi-user.target.wants/edge-agent.service ] || fail "the service is not enabled"
check "service enabled (multi-user.target.wants)"
[ "$(edge-agent --version)" = "edge-agent $version" ] || fail "--version: $(edge-agent --version)"
zcat /usr/share/man/man1/edge-agent.1.gz | grep -q '^\.TH edge-agent' || fail "the man page is not roff"
grep -q 'check-config' /usr/share/bash-completion/completions/edge-agent || fail "bash completion lacks check-config"
check "binary, man page and completions"

echo "-- the unit"
verify=$(systemd-analyze verify /lib/systemd/system/edge-agent.service 2>&1) || { echo "$verify"; fail "systemd-analyze verify"; }
[ -z "$verify" ] || { echo "$verify"; fail "systemd-analyze verify printed warnings"; }
check "systemd-analyze verify: clean"
exposure=$(systemd-analyze security --offline=true /lib/systemd/system/edge-agent.service 2>&1 \
  | sed -n 's/.*Overall exposure level for edge-agent.service: \([0-9.]*\).*/\1/p')
[ -n "$exposure" ] || fail "no exposure level from systemd-analyze security"
awk -v e="$exposure" 'BEGIN { exit !(e <= 1.6) }' || fail "exposure $exposure > 1.6"
check "systemd-analyze security --offline=true: exposure $exposure (<= 1.6)"
for key in Type=notify WatchdogSec= Restart=on-failure StartLimitBurst= StartLimitIntervalSec= RestartPreventExitStatus=2 SupplementaryGroups=dialout; do
  grep -q "^$key" /lib/systemd/system/edge-agent.service || fail "the unit lacks $key"
done
check "notify, watchdog, restart with a start limit, dialout"

echo "-- the technician edits the config; the agent fills its store from an AI06"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >/etc/edge-agent/edge-agent.toml <<CONF
# modified by the technician
[agent]
id = "gw-test"
data_dir = "/var/lib/edge-agent"

[[device]]
id = "ai06-test"
driver = "aiface"
listen = "127.0.0.1:$port"
allowed_sn = ["SIM00000001"]

[log]
file = "/var/log/edge-agent/edge-agent.log"
CONF
edge-agent check-config /etc/edge-agent/edge-agent.toml >/dev/null || fail "check-config of the edited config"
as_agent() { setpriv --reuid=edge-agent --regid=edge-agent --init-groups -- "$@"; }
run_agent_and_read() {
  rm -f /var/log/edge-agent/edge-agent.log
  # setpriv itself, not the as_agent function: $! must be the agent's pid, not a subshell's.
  setpriv --reuid=edge-agent --regid=edge-agent --init-groups -- \
    edge-agent run --config /etc/edge-agent/edge-agent.toml >/tmp/agent.out 2>&1 &
  local agent=$!
  "$sim" aiface --url "ws://127.0.0.1:$port/pub/chat" --users 7 --run-for 60 >/dev/null 2>&1 &
  local sim_pid=$!
  local waited=0
  until grep -q "complete read applied" /var/log/edge-agent/edge-agent.log 2>/dev/null; do
    sleep 0.5; waited=$((waited + 1))
    if [ $waited -gt 120 ]; then
      kill "$sim_pid" "$agent" 2>/dev/null || true
      tail -n 30 /var/log/edge-agent/edge-agent.log || true
      fail "the agent never applied a complete read"
    fi
  done
  kill -TERM "$agent"
  local rc=0
  wait "$agent" || rc=$?
  if [ $rc != 0 ]; then
    tail -n 20 /tmp/agent.out
    fail "the agent did not stop cleanly (exit $rc)"
  fi
  kill "$sim_pid" 2>/dev/null || true; wait "$sim_pid" 2>/dev/null || true
}
users_in_store() { as_agent edge-agent buffer list --json --config /etc/edge-agent/edge-agent.toml | python3 -c 'import json,sys; d=json.load(sys.stdin); print(len(d if isinstance(d,list) else d.get("users", d.get("entries", []))))'; }
run_agent_and_read
before=$(users_in_store)
[ "$before" = 7 ] || fail "the store holds $before users, expected 7"
check "the installed agent, as edge-agent, read 7 users into /var/lib/edge-agent"
cp /etc/edge-agent/edge-agent.toml /tmp/conffile.before

echo "-- upgrade to this build (conffile changed on both sides: the technician's copy is kept)"
dpkg -i --force-confdef --force-confold "$new_deb" >/tmp/dpkg.log 2>&1 </dev/null || { cat /tmp/dpkg.log; fail "dpkg -i (upgrade)"; }
[ "$(dpkg-query -W -f='${Version}' edge-agent)" = "${version}-1" ] || fail "the upgrade did not happen"
cmp -s /etc/edge-agent/edge-agent.toml /tmp/conffile.before || fail "the upgrade changed the edited config"
expect_file /etc/edge-agent/edge-agent.toml.dpkg-dist
after=$(users_in_store)
[ "$after" = 7 ] || fail "after the upgrade the store holds $after users"
check "upgraded to ${version}-1: edited config kept (new one beside it as .dpkg-dist), store kept (7 users)"
run_agent_and_read
check "the upgraded agent opens the kept store and reads again"

echo "-- dpkg -r: the binary goes, data and config stay"
dpkg -r edge-agent >/tmp/dpkg.log 2>&1 || { cat /tmp/dpkg.log; fail "dpkg -r"; }
expect_gone /usr/bin/edge-agent
expect_gone /lib/systemd/system/edge-agent.service
expect_file /etc/edge-agent/edge-agent.toml
expect_file /var/lib/edge-agent/store
expect_file /var/log/edge-agent/edge-agent.log
getent passwd edge-agent >/dev/null || fail "the user was removed"
check "removed: store, logs, config and user kept"

echo "-- dpkg --purge: config and logs go, the store stays unless asked"
dpkg --purge edge-agent >/tmp/dpkg.log 2>&1 || { cat /tmp/dpkg.log; fail "dpkg --purge"; }
expect_gone /etc/edge-agent
expect_gone /var/log/edge-agent
expect_gone /etc/systemd/system/multi-user.target.wants/edge-agent.service
expect_file /var/lib/edge-agent/store
grep -q "store in /var/lib/edge-agent was kept" /tmp/dpkg.log || fail "purge did not say the store was kept"
check "purged: config, logs, enablement gone; the store kept and said so"

echo "-- reinstall over the kept store, then purge asking for the data too"
dpkg -i "$new_deb" >/tmp/dpkg.log 2>&1 || { cat /tmp/dpkg.log; fail "dpkg -i (reinstall)"; }
[ "$(owner_mode /var/lib/edge-agent)" = "edge-agent:edge-agent 750" ] || fail "reinstall: /var/lib/edge-agent $(owner_mode /var/lib/edge-agent)"
EDGE_AGENT_PURGE_DATA=yes dpkg --purge edge-agent >/tmp/dpkg.log 2>&1 || { cat /tmp/dpkg.log; fail "dpkg --purge (with data)"; }
expect_gone /var/lib/edge-agent
check "EDGE_AGENT_PURGE_DATA=yes dpkg --purge: the store is gone too"
echo "install test passed"
