#!/usr/bin/env python3
"""Invariant 1 across the whole test suite: no emulator ever received a destructive command.

Every emulated terminal started by any test records each command it receives as a JSON line
with a `destructive` flag. After the suite this scans all of those logs together. Logs of the
emulator's own negative tests (which send a destructive command on purpose, to prove the flag
works) live in directories ending in `-negative` and are skipped.
"""
import json
import pathlib
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/tmp")
logs = [p for p in root.glob("*-command-logs/*.jsonl")]
commands = 0
bad = []
for log in logs:
    for number, line in enumerate(log.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        entry = json.loads(line)
        if entry.get("kind", "command") == "command":
            commands += 1
        if entry.get("destructive"):
            bad.append(f"{log}:{number}: {entry.get('cmd')}")
if not logs:
    print(f"no emulator command logs under {root}: did the suite run?", file=sys.stderr)
    sys.exit(1)
if bad:
    print("DESTRUCTIVE COMMANDS RECEIVED BY EMULATED TERMINALS:", file=sys.stderr)
    print("\n".join(bad), file=sys.stderr)
    sys.exit(1)
print(f"{len(logs)} emulator command logs, {commands} commands, none destructive")
