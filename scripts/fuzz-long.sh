#!/usr/bin/env bash
# The long fuzz run: every cargo-fuzz target in fuzz/, one after another, each for at least
# RUNS executions (default 10 million), at the lowest CPU priority (NICE=… to change) so it can
# run beside other work. Prints one line per target (executions, seconds, executions per
# second) and a table at the end; exits non-zero if any target found a crash (the input is in fuzz/artifacts/<target>/;
# reproduce it with `cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -O <target> <file>` and turn
# it into a regression test before fixing).
#
#   bash scripts/fuzz-long.sh                      # every target, 10 M executions each
#   RUNS=1000000 bash scripts/fuzz-long.sh zk_records aiface_paging   # some targets, fewer runs
#   MAX_SECONDS=3600 bash scripts/fuzz-long.sh     # also stop each target after an hour
#   SANITIZER=address bash scripts/fuzz-long.sh    # with AddressSanitizer (2-3 times slower)
#
# By default the long run is built without a sanitizer but with debug assertions (`-s none -a`):
# every decoder is safe Rust, so what the fuzzer can find is a panic, an arithmetic overflow
# (debug assertions turn it into a panic), unbounded allocation or a hang, all of which this
# build catches; AddressSanitizer would only add checks on the unsafe code inside dependencies,
# at two to three times the cost per execution. The CI smoke run (scripts/test.sh) keeps ASan.
#
# Inputs that found new coverage go to fuzz/corpus/<target>/ (not committed). The committed
# seeds in fuzz/seeds/<target>/ are kept small: refresh them after a long run with
# `SEEDS=refresh bash scripts/fuzz-long.sh`, which merges the corpus into the fewest inputs that
# keep its coverage (`-merge=1`) and keeps at most 64 of them per target.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-10000000}
max_seconds=${MAX_SECONDS:-0}
sanitizer=${SANITIZER:-none}
niceness=${NICE:-19}
build_flags=(-O -s "$sanitizer" -a)
export RUSTC_BOOTSTRAP=1

if ! command -v cargo-fuzz >/dev/null; then
  cargo install cargo-fuzz --locked --quiet
fi
cd fuzz
targets=("$@")
if ((${#targets[@]} == 0)); then
  mapfile -t targets < <(cargo fuzz list)
fi
mkdir -p ../target/fuzz-long
nice -n "$niceness" cargo fuzz build "${build_flags[@]}"
summary=()
failed=0
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target" "seeds/$target"
  log="../target/fuzz-long/$target.log"
  started=$(date +%s)
  if nice -n "$niceness" cargo fuzz run "${build_flags[@]}" "$target" "corpus/$target" "seeds/$target" -- \
      -runs="$runs" -max_total_time="$max_seconds" -print_final_stats=1 >"$log" 2>&1; then
    outcome=ok
  else
    outcome=CRASH
    failed=1
  fi
  seconds=$(( $(date +%s) - started ))
  executed=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -n 1)
  executed=${executed:-0}
  # libFuzzer's own rate: the wall time above also counts a rebuild, if sources changed.
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -n 1)
  rate=${rate:-0}
  line=$(printf '%-18s %-5s %12s executions %7s s %9s exec/s' "$target" "$outcome" "$executed" "$seconds" "$rate")
  echo "$line"
  summary+=("$line")
  if [ "$outcome" = CRASH ]; then
    grep -E 'ERROR|panicked|Test unit written' "$log" | head -n 5 || true
  fi
  if [ "${SEEDS:-}" = refresh ] && [ "$outcome" = ok ]; then
    merged=$(mktemp -d)
    nice -n "$niceness" cargo fuzz run "${build_flags[@]}" "$target" "$merged" "seeds/$target" "corpus/$target" -- -merge=1 >/dev/null 2>&1
    rm -f "seeds/$target"/*
    find "$merged" -type f -size -16k | head -n 64 | xargs -r cp -t "seeds/$target"
    rm -rf "$merged"
  fi
done
echo
echo "== long fuzz run: at most $runs executions per target (sanitizer: $sanitizer, debug assertions on)"
printf '%s\n' "${summary[@]}"
exit "$failed"
