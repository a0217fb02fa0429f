#!/usr/bin/env bash
# Builds the edge-agent .deb packages without Docker: rustup targets plus Debian's cross gcc as
# linker, cargo-deb for the package. Installs what it needs when missing (idempotent; root with
# apt-get, otherwise it names what to install and fails). A target that cannot be built is an
# error that names the target, never a silent skip.
#
#   bash scripts/package.sh                      # x86_64, aarch64 and armv7
#   bash scripts/package.sh aarch64-unknown-linux-gnu
#
# Packages land in target/packages/edge-agent_<version>_<arch>.deb; the binaries are built with
# the `release` cargo profile (Cargo.toml), the one the footprint bench measures.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n== %s\n' "$*"; }
fail() { echo "package.sh: $*" >&2; exit 1; }

all_targets=(x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf)
targets=("$@")
((${#targets[@]})) || targets=("${all_targets[@]}")
host=$(rustc -vV | sed -n 's/^host: //p')
profile=release

# The Debian cross toolchain per target: gcc package, linker, strip.
cross_gcc() {
  case "$1" in
    aarch64-unknown-linux-gnu) echo aarch64-linux-gnu ;;
    armv7-unknown-linux-gnueabihf) echo arm-linux-gnueabihf ;;
    x86_64-unknown-linux-gnu) echo x86_64-linux-gnu ;;
    *) return 1 ;;
  esac
}

apt_install() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing: $*"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    fail "missing: $* — install them (as root: apt-get install -y $*)"
  fi
}

say "prerequisites"
for target in "${targets[@]}"; do
  cross_gcc "$target" >/dev/null || fail "unsupported target: $target (supported: ${all_targets[*]})"
done
missing=()
command -v gzip >/dev/null || missing+=(gzip)
command -v dpkg-deb >/dev/null || missing+=(dpkg)
for target in "${targets[@]}"; do
  [ "$target" = "$host" ] && continue
  prefix=$(cross_gcc "$target")
  command -v "$prefix-gcc" >/dev/null || missing+=("gcc-$prefix")
done
((${#missing[@]} == 0)) || apt_install "${missing[@]}"
installed=$(rustup target list --installed)
for target in "${targets[@]}"; do
  grep -qx "$target" <<<"$installed" || rustup target add "$target" \
    || fail "cannot add the rust target $target"
done
if ! command -v cargo-deb >/dev/null; then
  echo "installing cargo-deb"
  cargo install cargo-deb --locked --quiet || fail "cannot install cargo-deb"
fi

say "man page and shell completions (from the clap definitions)"
rm -rf target/package-assets
cargo run --quiet --example package_assets -- target/package-assets

say "dependency policy per target: TLS through rustls+ring only"
for target in "${targets[@]}"; do
  for banned in openssl-sys aws-lc-sys aws-lc-rs; do
    if cargo tree -p edge-agent --target "$target" --edges normal,build -i "$banned" >/dev/null 2>&1; then
      fail "forbidden dependency for $target: $banned"
    fi
  done
done
echo "no openssl, no aws-lc for: ${targets[*]}"

mkdir -p target/packages
for target in "${targets[@]}"; do
  say "build $target (profile $profile)"
  if [ "$target" != "$host" ]; then
    prefix=$(cross_gcc "$target")
    var=$(tr 'a-z-' 'A-Z_' <<<"$target")
    export "CARGO_TARGET_${var}_LINKER=$prefix-gcc"
    export "CC_${target//-/_}=$prefix-gcc"
    export "AR_${target//-/_}=$prefix-ar"
  fi
  start=$(date +%s)
  cargo build --locked --profile "$profile" --target "$target" -p edge-agent --bin edge-agent \
    || fail "the build for $target failed"
  bin="target/$target/$profile/edge-agent"
  [ -x "$bin" ] || fail "no binary at $bin after the build for $target"
  echo "built $bin in $(($(date +%s) - start)) s, $(stat -c %s "$bin") bytes"
  # cargo-deb's asset paths name target/release/; it maps them to the target and profile given.
  deb=$(cargo deb --no-build --no-strip --target "$target" --profile "$profile" \
    --output target/packages/ 2>&1 | tail -n 1) || fail "cargo deb failed for $target: $deb"
  [ -f "$deb" ] || fail "cargo deb for $target did not produce a package ($deb)"
  echo "package $deb, $(stat -c %s "$deb") bytes"
done
say "packages"
ls -l target/packages/
