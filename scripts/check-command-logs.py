#!/usr/bin/env python3
"""Invariant 1 across the whole test suite: no emulator ever received a destructive command.

Every emulated terminal started by any test records each command it receives as a JSON line
with a `destructive` flag (both emulators use an allow-list: a command not known to be
read-only or an allowed add/update is destructive). The test harness puts every log under
`target/tmp/<protocol>-command-logs/`, named `<family>--<name>….jsonl` after the test binary
(the family) that ran it; logs a test kept in its own temporary directory are copied there when
the emulator stops. After the suite this scans all of them together, prints how many logs and
commands each family contributed, and fails when a destructive command was received or when a
protocol/family pair named with `--require` (e.g. `aiface/sync`: the AI06 emulators of the
`sync` test binary) contributed no log at all, so a test family whose logs went somewhere
else cannot pass unscanned.

Logs of the emulators' own negative tests (which send a destructive command on purpose, to
prove the flag works) live in directories ending in `-negative` and are skipped.

    check-command-logs.py [ROOT] [--require aiface/sync,zk/device,…]
"""
import argparse
import collections
import json
import pathlib
import sys

parser = argparse.ArgumentParser()
parser.add_argument("root", nargs="?", default="target/tmp")
parser.add_argument("--require", default="", help="comma-separated protocol/family pairs that must contribute")
args = parser.parse_args()

root = pathlib.Path(args.root)
logs = sorted(root.glob("*-command-logs/*.jsonl"))
per_family = collections.defaultdict(lambda: [0, 0])  # family -> [logs, commands]
commands = 0
bad = []
for log in logs:
    protocol = log.parent.name.split("-command-logs", 1)[0]
    family = protocol + "/" + (log.name.split("--", 1)[0] if "--" in log.name else "(unnamed)")
    per_family[family][0] += 1
    lines = log.read_text(errors="replace").splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            # Only the last line may be cut (an emulator killed mid-write); any other
            # unreadable line could hide a command, so it fails the scan.
            if number != len(lines):
                bad.append(f"{log}:{number}: unreadable line")
            continue
        if entry.get("kind", "command") == "command":
            commands += 1
            per_family[family][1] += 1
        if entry.get("destructive"):
            bad.append(f"{log}:{number}: {entry.get('cmd') or entry.get('name') or entry.get('code')}")

for family in sorted(per_family):
    count, cmds = per_family[family]
    print(f"  {family}: {count} emulator command logs, {cmds} commands")
status = 0
if not logs:
    print(f"no emulator command logs under {root}: did the suite run?", file=sys.stderr)
    status = 1
missing = [f for f in args.require.split(",") if f and per_family[f][0] == 0]
if missing:
    print(
        "NO EMULATOR COMMAND LOG from test families: " + ", ".join(missing)
        + " (their emulators ran unscanned, or the family ran no emulator)",
        file=sys.stderr,
    )
    status = 1
if bad:
    print("DESTRUCTIVE COMMANDS RECEIVED BY EMULATED TERMINALS:", file=sys.stderr)
    print("\n".join(bad), file=sys.stderr)
    status = 1
if status == 0:
    print(f"{len(logs)} emulator command logs, {commands} commands, none destructive")
sys.exit(status)
