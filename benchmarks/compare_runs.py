"""Compare two run directories of `specfair experiment` record by record, timings excluded: does
a change keep the numbers? (Issue 10's check, first made on the retired default experiment.)

    python benchmarks/compare_runs.py OLD_RUN_DIR NEW_RUN_DIR

For each JSONL file of the run (evaluations, bench, responses, training logs), prints how many
records are identical; fields only the new run has are listed and ignored (a record format
that grew), fields that differ are shown for the first records that differ.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

TIMING = {"wall_s", "prefill_s", "tokens_per_s", "time", "step_s", "seconds", "settings"}


def records(path: Path) -> dict[tuple, dict] | None:
    if not path.is_file():
        return None
    out = {}
    for line in path.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            key = tuple(r.get(k) for k in ("arm", "budget", "id", "mode", "turn", "step",
                                           "event"))
            out[key] = {k: v for k, v in r.items() if k not in TIMING}
    return out


def compare(old: dict, new: dict) -> str:
    grown = {f for r in new.values() for f in r} - {f for r in old.values() for f in r}
    new = {k: {f: v for f, v in r.items() if f not in grown} for k, r in new.items()}
    same = sum(old[k] == new.get(k) for k in old)
    line = f"{same}/{len(old)} identical (new run: {len(new)} records)"
    if grown:
        line += f"; new fields ignored: {sorted(grown)}"
    diffs = [(k, {f: (old[k].get(f), new[k].get(f)) for f in set(old[k]) | set(new[k])
                  if old[k].get(f) != new[k].get(f)}) for k in old if k in new and old[k] != new[k]]
    if diffs:
        line += f"; first differences: {str(diffs[:2])[:400]}"
    return line


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("old", type=Path)
    ap.add_argument("new", type=Path)
    a = ap.parse_args()
    files = sorted({p.relative_to(a.old) for p in a.old.rglob("*.jsonl")
                    if "checkpoints" not in p.parts and "signals" not in p.parts})
    for f in files:
        old, new = records(a.old / f), records(a.new / f)
        print(f"{f}: " + ("missing in the new run" if new is None else compare(old, new)))


if __name__ == "__main__":
    main()
