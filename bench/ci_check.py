"""CI's short benchmarks: each figure's quick run, its ratio against bench/baseline.json.

Usage:
    .venv/bin/python bench/ci_check.py [--only FIGURE ...] [--record]

Every entry of bench/baseline.json names a bench command (run with --quick) and the ratio its
quick run gave on the reference machine. A ratio more than TOLERANCE (30 %) below its baseline
fails, a ratio, never an absolute time: the same-run reference cancels the machine's speed. A
figure that fails is run once more before it counts (a busy neighbour, not a regression, is
the usual reason for one bad run); the better run is kept. `--record` writes the ratios measured
now as the new baseline (after a deliberate change; commit it with the reason).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASELINE = ROOT / "bench" / "baseline.json"
RESULTS = ROOT / "var" / "bench"
TOLERANCE = 0.30


def _value(record: dict, path: str) -> float:
    value: object = record
    for part in path.split("."):
        value = value[part]  # type: ignore[index]
    return float(value)  # type: ignore[arg-type]


def _run(entry: dict) -> dict:
    command = [sys.executable, *entry["command"], "--quick"]
    print("$ " + " ".join(command[1:]), flush=True)
    started = time.monotonic()
    done = subprocess.run(command, cwd=ROOT, text=True, capture_output=True, check=False)
    if done.returncode != 0:
        print(done.stdout[-4000:], done.stderr[-4000:], sep="\n")
        raise SystemExit(f"{entry['figure']}: the bench failed (exit {done.returncode})")
    record = json.loads((RESULTS / f"{entry['figure']}.json").read_text())
    record["_seconds"] = round(time.monotonic() - started, 1)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    baseline = json.loads(BASELINE.read_text())
    failures = []
    for name, entry in baseline.items():
        if args.only and name not in args.only:
            continue
        entry = {**entry, "figure": entry.get("figure", name)}
        key = entry.get("ratio_key", "ratio")
        record = _run(entry)
        ratio = _value(record, key)
        floor = entry["ratio"] * (1 - TOLERANCE)
        if ratio < floor and not args.record:
            print(f"{name}: ratio {ratio} below {floor:.3f}; running it again", flush=True)
            ratio = max(ratio, _value(_run(entry), key))
        verdict = "ok" if ratio >= floor else "REGRESSED"
        print(f"{name}: ratio {ratio} (baseline {entry['ratio']}, floor {floor:.3f}) "
              f"{verdict} in {record['_seconds']} s", flush=True)
        for check in entry.get("must", []):  # invariants, e.g. no unhandled 429
            actual = _value(record, check["key"])
            if actual != check["equals"]:
                failures.append(f"{name}: {check['key']} = {actual}, must be {check['equals']}")
        if args.record:
            baseline[name]["ratio"] = ratio
        elif ratio < floor:
            failures.append(f"{name}: ratio {ratio} < {floor:.3f} (baseline {entry['ratio']})")
    if args.record:
        BASELINE.write_text(json.dumps(baseline, indent=2) + "\n")
    if failures:
        raise SystemExit("benchmark regressions:\n  " + "\n  ".join(failures))


if __name__ == "__main__":
    main()
