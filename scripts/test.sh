#!/usr/bin/env bash
# Runs every test of edge-agent: installs what the tests need when it is missing (idempotent,
# safe to run again), then the format check, the lint and the whole test suite.
#
#   bash scripts/test.sh            # everything
#   bash scripts/test.sh -E 'test(config)'   # extra arguments go to cargo nextest
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

say() { printf '\n== %s\n' "$*"; }

say "checking test prerequisites"
if ! command -v cargo >/dev/null; then
  echo "cargo is missing: install the Rust toolchain (rustup, Rust >= 1.85) first" >&2
  exit 2
fi
missing=()
command -v mosquitto >/dev/null || missing+=(mosquitto)
command -v socat >/dev/null || missing+=(socat)
command -v strace >/dev/null || missing+=(strace)
command -v python3 >/dev/null || missing+=(python3)
python3 -m venv --help >/dev/null 2>&1 || missing+=(python3-venv)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
command -v cc >/dev/null || missing+=(gcc)
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "missing: ${missing[*]} — install them (as root: apt-get install -y ${missing[*]})" >&2
    exit 2
  fi
fi

# Independent protocol peers run as separate processes (pyzk is GPL: never vendored).
if [ -f tests/peers/requirements.txt ]; then
  venv="$root/target/peers-venv"
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
  fi
  if ! "$venv/bin/python" -c 'import zk, prometheus_client' 2>/dev/null; then
    "$venv/bin/pip" install -q -r tests/peers/requirements.txt
  fi
  export PEER_PYTHON="$venv/bin/python"
fi
if [ -f tests/peers/package.json ] && [ ! -d tests/peers/node_modules ]; then
  (cd tests/peers && npm install --no-audit --no-fund --silent)
fi

say "cargo fmt --check"
cargo fmt --all -- --check

say "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets -- -D warnings

say "dependency policy: TLS through rustls+ring only"
for banned in openssl-sys aws-lc-sys aws-lc-rs; do
  if cargo tree --workspace --edges normal,build -i "$banned" >/dev/null 2>&1; then
    echo "forbidden dependency in the tree: $banned" >&2
    cargo tree --workspace -i "$banned" >&2
    exit 1
  fi
done
echo "no openssl, no aws-lc"

say "tests"
rm -rf target/tmp/*-command-logs target/tmp/skipped-checks target/tmp/jepsen
mkdir -p target
status=0
if command -v cargo-nextest >/dev/null; then
  cargo nextest run --workspace --no-fail-fast "$@" 2>&1 | tee target/test-output.log || status=$?
else
  cargo test --workspace --no-fail-fast -- "$@" 2>&1 | tee target/test-output.log || status=$?
fi

say "no destructive command reached any emulated terminal in the whole suite"
# Every test family (test binary) that runs emulators must have contributed logs of each
# protocol it emulates; a filtered run (extra arguments) checks only what it ran.
require=""
if (($# == 0)); then
  require="--require aiface/agent,aiface/crash,aiface/device,aiface/sync,aiface/aiface"
  require+=",zk/device,zk/sync,zk/zk,zk/jepsen"
fi
python3 scripts/check-command-logs.py target/tmp $require || status=1

# The device-lock proof's summaries (seed, faults, each checker's verdict): docs/locks.md.
for summary in target/tmp/jepsen/*.txt; do
  [ -e "$summary" ] || continue
  say "device-lock proof: $(basename "$summary" .txt)"
  grep -v '^fault schedule' "$summary"
done

# Loud skips: a test that could not run its real check recorded why (test_support::skip). They
# are printed here, on stdout, where the summary is read; on CI a skipped promised check fails
# the run (CI installs everything these need, so a skip there is a broken promise).
promised="pyzk node-zklib strace prometheus_client"
skips=$(cat target/tmp/skipped-checks/*.txt 2>/dev/null || true)
if [ -n "$skips" ]; then
  say "checks that were SKIPPED"
  while IFS=$'\t' read -r check test why; do
    echo "SKIPPED: $check: $test: $why"
    if [ "${CI:-}" = true ] && [[ " $promised " == *" $check "* ]]; then
      echo "  ^ CI promises the $check check: failing the run" >&2
      status=1
    fi
  done <<<"$skips"
fi

# The .deb packages for x86_64, aarch64 and armv7 (scripts/package.sh), the ARM binaries under
# qemu and the install/upgrade/remove/purge test (scripts/package-test.sh). A filtered run
# (extra nextest arguments) or PACKAGES=0 leaves them out and says so; CI runs everything.
skip_packages=
[ "${PACKAGES:-1}" = 0 ] && skip_packages="PACKAGES=0"
(($#)) && skip_packages="a filtered test run"
if [ -n "$skip_packages" ]; then
  say "packages: SKIPPED ($skip_packages); CI builds and tests them"
else
  say "packages: build (three targets), ARM under qemu, install tests"
  package_start=$(date +%s)
  if bash scripts/package.sh && bash scripts/package-test.sh; then
    echo "packages built and tested in $(($(date +%s) - package_start)) s"
  else
    echo "PACKAGES FAILED (see above)" >&2
    status=1
  fi
fi

# A short smoke run of every decoder fuzz target from the seeds kept in fuzz/seeds/ (cargo-fuzz
# needs nightly features; the stable toolchain provides them with RUSTC_BOOTSTRAP=1).
# FUZZ_SECONDS=0 skips it; the long run is scripts/fuzz-long.sh.
fuzz_seconds=${FUZZ_SECONDS:-10}
if [ "$fuzz_seconds" != 0 ]; then
  say "fuzz smoke run: ${fuzz_seconds} s per target"
  if ! command -v cargo-fuzz >/dev/null; then
    cargo install cargo-fuzz --locked --quiet || { echo "cannot install cargo-fuzz" >&2; status=1; }
  fi
  if command -v cargo-fuzz >/dev/null; then
    for target in $(cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz list); do
      mkdir -p "fuzz/corpus/$target" "fuzz/seeds/$target"
      printf '%-18s ' "$target"
      (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -O "$target" "corpus/$target" "seeds/$target" \
        -- -max_total_time="$fuzz_seconds" 2>&1 | tail -n 1) || status=1
    done
  fi
fi

# Repeat the test runner's closing summary as the last line, for whoever reads the tail.
grep -E '^ *Summary \[|^test result:' target/test-output.log | tail -n 1 || true
exit "$status"

