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
  if ! "$venv/bin/python" -c 'import zk' 2>/dev/null; then
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
rm -rf target/tmp/*-command-logs
mkdir -p target
status=0
if command -v cargo-nextest >/dev/null; then
  cargo nextest run --workspace --no-fail-fast "$@" 2>&1 | tee target/test-output.log || status=$?
else
  cargo test --workspace --no-fail-fast -- "$@" 2>&1 | tee target/test-output.log || status=$?
fi

say "no destructive command reached any emulated terminal in the whole suite"
python3 scripts/check-command-logs.py target/tmp || status=1

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

# A short run of every decoder fuzz target (cargo-fuzz needs nightly features; the stable
# toolchain provides them with RUSTC_BOOTSTRAP=1). FUZZ_SECONDS=0 skips it.
fuzz_seconds=${FUZZ_SECONDS:-10}
if [ "$fuzz_seconds" != 0 ]; then
  say "fuzz smoke run: ${fuzz_seconds} s per target"
  if ! command -v cargo-fuzz >/dev/null; then
    cargo install cargo-fuzz --locked --quiet || { echo "cannot install cargo-fuzz" >&2; status=1; }
  fi
  if command -v cargo-fuzz >/dev/null; then
    for target in $(cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz list); do
      (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -O "$target" -- -max_total_time="$fuzz_seconds" 2>&1 | tail -n 1) || status=1
    done
  fi
fi

# Repeat the test runner's closing summary as the last line, for whoever reads the tail.
grep -E '^ *Summary \[|^test result:' target/test-output.log | tail -n 1 || true
exit "$status"

