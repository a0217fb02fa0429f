#!/usr/bin/env bash
# Proves the packages scripts/package.sh built (target/packages/):
#  1. every ARM package's binary runs `--version`, `check-config` on the shipped config and the
#     whole `demo` under qemu-user-static (Debian's cross C library as the -L prefix);
#  2. the x86_64 package installs, upgrades, is removed and purged inside a throwaway root (an
#     overlay of / in a private mount namespace, so the machine itself is never changed), with
#     the files, conffiles, user, directories and unit docs/OPERATIONS.md describes, the unit
#     passing `systemd-analyze verify` and scoring at most 1.6 in `systemd-analyze security`,
#     and the real agent filling a store from the AI06 emulator that survives the upgrade.
# Installs what it needs when missing (idempotent). Fails loudly; the install part needs root
# and says SKIPPED with the reason when not root.
#
#   bash scripts/package-test.sh                 # all three packages (what CI runs)
#   bash scripts/package-test.sh amd64           # only some: arm64, armhf, amd64
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

say() { printf '\n== %s\n' "$*"; }
fail() { echo "package-test.sh: FAILED: $*" >&2; exit 1; }

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
deb_for() { echo "target/packages/edge-agent_${version}-1_$1.deb"; }
archs=("$@")
((${#archs[@]})) || archs=(amd64 arm64 armhf)
wants() { [[ " ${archs[*]} " == *" $1 "* ]]; }
for arch in "${archs[@]}"; do
  [ -f "$(deb_for "$arch")" ] || fail "no package $(deb_for "$arch"); run scripts/package.sh first"
done

# ---------------------------------------------------------------------------------------------
say "ARM binaries under qemu-user-static"
if ! command -v qemu-aarch64-static >/dev/null || ! command -v qemu-arm-static >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user-static >/dev/null
  else
    fail "qemu-user-static is missing (as root: apt-get install -y qemu-user-static)"
  fi
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/edge-agent-package-test.XXXXXX")
trap 'rm -rf "$work"' EXIT
for spec in arm64:qemu-aarch64-static:/usr/aarch64-linux-gnu armhf:qemu-arm-static:/usr/arm-linux-gnueabihf; do
  IFS=: read -r arch qemu sysroot <<<"$spec"
  wants "$arch" || continue
  [ -d "$sysroot/lib" ] || fail "no $arch C library at $sysroot (scripts/package.sh installs it)"
  dir="$work/$arch"
  dpkg-deb -x "$(deb_for "$arch")" "$dir"
  bin="$dir/usr/bin/edge-agent"
  file -b "$bin" 2>/dev/null | sed "s/^/$arch binary: /" || true
  run() { "$qemu" -L "$sysroot" "$bin" "$@"; }
  out=$(run --version) || fail "$arch: --version"
  echo "$arch --version: $out"
  [ "$out" = "edge-agent $version" ] || fail "$arch: --version printed '$out'"
  run check-config "$dir/etc/edge-agent/edge-agent.toml" >/dev/null \
    || fail "$arch: check-config of the shipped config"
  echo "$arch check-config of the shipped config: ok"
  start=$(date +%s%N)
  if ! run demo >"$work/demo-$arch.log" 2>&1; then
    cat "$work/demo-$arch.log"
    fail "$arch: demo"
  fi
  echo "$arch demo: exit 0 in $((($(date +%s%N) - start) / 1000000)) ms; last lines:"
  tail -n 3 "$work/demo-$arch.log" | sed 's/^/    /'
done

# ---------------------------------------------------------------------------------------------
say "x86_64 package: install, upgrade, remove, purge in a throwaway root"
if ! wants amd64; then
  echo "amd64 not asked for: no install test"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "SKIPPED: the install test needs root (dpkg, useradd and an overlay mount of /)"
  exit 0
fi
cargo build --quiet -p device-protocols --bin device-sim
sim="$root/target/debug/device-sim"
[ -x "$sim" ] || fail "no emulator at $sim"

# The "previous build": the same package one version lower, whose shipped config differs, so
# the upgrade meets a conffile changed on both sides (the hard case).
new_deb="$root/$(deb_for amd64)"
prev_deb="$work/edge-agent_prev.deb"
dpkg-deb -R "$new_deb" "$work/prev"
sed -i "s/^Version: .*/Version: ${version}~prev-1/" "$work/prev/DEBIAN/control"
echo "# shipped by the previous build" >>"$work/prev/etc/edge-agent/edge-agent.toml"
(cd "$work/prev" && find etc usr lib -type f -exec md5sum {} + >DEBIAN/md5sums)
dpkg-deb --build --root-owner-group "$work/prev" "$prev_deb" >/dev/null

mkdir -p "$work/upper" "$work/overlay-work" "$work/root"
unshare --mount --propagation private -- bash -euo pipefail -c '
  work=$1
  mount -t overlay overlay -o "lowerdir=/,upperdir=$work/upper,workdir=$work/overlay-work" "$work/root"
  mount -t proc proc "$work/root/proc"
  mount --rbind /dev "$work/root/dev"
  mount --rbind /sys "$work/root/sys"
  mount -t tmpfs tmpfs "$work/root/run"
  exec chroot "$work/root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    bash "$2/scripts/package-test-root.sh" "$3" "$4" "$5" "$6"
' _ "$work" "$root" "$new_deb" "$prev_deb" "$sim" "$version" || fail "the install test (above)"

# ---------------------------------------------------------------------------------------------
say "x86_64 package: the unit under a real systemd (PID 1 of private namespaces)"
# systemd boots only sysinit.target (journald) in a private pid, mount and network namespace
# over a fresh overlay of /; the test installs the package there and drives the unit.
sd="$work/systemd"
mkdir -p "$sd/upper" "$sd/overlay-work" "$sd/root"
unshare --pid --fork --mount --net --propagation private -- bash -euo pipefail -c '
  sd=$1
  mount -t overlay overlay -o "lowerdir=/,upperdir=$sd/upper,workdir=$sd/overlay-work" "$sd/root"
  mount -t proc proc "$sd/root/proc"
  mount --rbind /sys "$sd/root/sys"
  mount --rbind /dev "$sd/root/dev"
  mount -t tmpfs tmpfs "$sd/root/run"
  exec chroot "$sd/root" env -i container=edge-agent-test /lib/systemd/systemd --system \
    --unit=sysinit.target --log-target=null
' _ "$sd" &
unshare_pid=$!
systemd_pid=
state=
for _ in $(seq 150); do
  systemd_pid=$(pgrep -P "$unshare_pid" || true)
  if [ -n "$systemd_pid" ]; then
    state=$(nsenter -t "$systemd_pid" -m -p -n -r -w systemctl is-system-running 2>/dev/null || true)
    case "$state" in running|degraded) break ;; esac
  fi
  sleep 0.2
done
case "$state" in
  running|degraded) echo "systemd is PID 1 of the test namespace (state: $state)" ;;
  *) kill -KILL "$systemd_pid" 2>/dev/null || true; fail "systemd did not come up in the test namespace (state: ${state:-none})" ;;
esac
systemd_status=0
nsenter -t "$systemd_pid" -m -p -n -r -w env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
  bash "$root/scripts/package-test-systemd.sh" "$new_deb" "$sim" || systemd_status=$?
kill -KILL "$systemd_pid" 2>/dev/null || true
wait "$unshare_pid" 2>/dev/null || true
((systemd_status == 0)) || fail "the systemd test (above)"
echo "package tests passed"
