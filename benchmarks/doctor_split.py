"""Draw the held-back set of the doctor's log corpus and record it in tests/data/logs/MANIFEST.csv.

Logs already in the manifest keep their split. Logs that rules were written from before the
manifest existed (committed before the corpus grew) are `work`. Each newly collected log is a
thread no rule has seen; per cause, about a third of all that cause's threads are drawn from
the new ones at random (seed below) and marked `heldout`. Rules are never tuned on those.

Run: python benchmarks/doctor_split.py [--seed N]
"""

from __future__ import annotations

import argparse
import csv
import random
import re
import subprocess
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOGS = ROOT / "tests" / "data" / "logs"
MANIFEST = LOGS / "MANIFEST.csv"
SEED = 13
"""Issue #13; fixed so that the draw can be repeated."""
FIELDS = ("file", "cause", "source", "split")


def _source(path: Path) -> str:
    first = path.read_text(encoding="utf-8", errors="replace").splitlines()[0]
    m = re.match(r"# source: (\S+)", first)
    if not m:
        raise SystemExit(f"{path.name}: first line must be '# source: <url>'")
    return m.group(1)


def _committed_before(ref: str) -> set[str]:
    out = subprocess.run(["git", "ls-tree", "--name-only", ref, "tests/data/logs/"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    return {Path(line).name for line in out.split()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--seen-at", default="b50ea6e", help="commit whose logs the rules were written from")
    args = parser.parse_args()
    rows: dict[str, dict[str, str]] = {}
    if MANIFEST.exists():
        with MANIFEST.open(newline="") as fh:
            rows = {r["file"]: r for r in csv.DictReader(fh)}
    seen = _committed_before(args.seen_at)
    fresh: dict[str, list[str]] = defaultdict(list)
    total: dict[str, int] = defaultdict(int)
    for path in sorted(LOGS.glob("*.log")):
        cause = path.name.split("__")[0]
        total[cause] += 1
        if path.name in rows:
            continue
        rows[path.name] = {"file": path.name, "cause": cause, "source": _source(path), "split": "work"}
        if path.name not in seen:
            fresh[cause].append(path.name)
    for cause, names in sorted(fresh.items()):
        held = sum(1 for r in rows.values() if r["cause"] == cause and r["split"] == "heldout")
        want = max(0, min(len(names), round(total[cause] / 3) - held))
        for name in random.Random(f"{args.seed}:{cause}").sample(sorted(names), want):
            rows[name]["split"] = "heldout"
    with MANIFEST.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(sorted(rows.values(), key=lambda r: (r["cause"], int(r["file"].split("__")[1][:-4]))))
    counts: dict[str, int] = defaultdict(int)
    for r in rows.values():
        counts[r["split"]] += 1
    print(f"{MANIFEST.relative_to(ROOT)}: {dict(counts)}")


if __name__ == "__main__":
    main()
