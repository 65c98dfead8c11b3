"""Find the DGX Spark Arena tests whose replies ended before `tg` tokens, from the runs' own telemetry.

    git clone https://github.com/djangodevreng/dgx-spark-benchmarks /tmp/arena
    python benchmarks/arena_reply_check.py /tmp/arena [--write]

The Arena runs llama-benchy without --exact-tg, so a reply may end at its end-of-sequence token
before `tg`. llama-benchy's t/s (total) at c > 1 divides every token by the time from the first
request's first token to the last request's end, so replies that end early leave fewer than c
requests decoding for part of that time: it is then not the rate of c requests decoding together.
The per-request rates (t/s (req)) are rates and stay right.

A test is flagged when it ran (by its telemetry, one sample every 10 s, or in the older layout by the
runner log's END line) for less than its counted runs alone need at their measured rates:
runs x (mean e2e TTFT + tg / t/s (req)) at each concurrency. That bound leaves out the warm-up run of each level, so a test whose replies
reached `tg` lasts about (runs + 1) / runs of it; below 1 the replies cannot all have reached `tg`.
The check reads only the source, never a prediction. Its aggregate rows at c > 1 get
`ended_early=true` in the settings column (with --write): kept for the record, not scored.
"""

from __future__ import annotations

import argparse
import csv
import io
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CSVS = (ROOT / "data" / "calibration" / "perf-calibration.csv", ROOT / "data" / "calibration" / "perf-2026-models.csv")
# the run a row was read from: a tree URL, or "commit C results/.../<test>.md" (pages of the older layout)
RUN = (re.compile(r"dgx-spark-benchmarks/tree/([0-9a-f]{40})/(results/[^\s\")]+)"),
       re.compile(r"dgx-spark-benchmarks commit ([0-9a-f]{40}) (results/\S+)/[^/\s]+\.md"))
TEST_FILE = re.compile(r"(\d\d)-[^/]+\.md|([A-Z])_[^/]+\.md")
TEST = re.compile(r"(pp|tg)(\d+)(?: @ d\d+)? \(c(\d+)\)")
MEAN = re.compile(r"([\d.]+) ± [\d.]+")


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


def _table(text: str) -> list[tuple[int, int, float, float, float]]:
    """Each tg line as (concurrency, tg, e2e TTFT s of the pp line before it, t/s (req), t/s (total))."""
    out = []
    ttft = 0.0
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        test = TEST.fullmatch(cells[1]) if len(cells) >= 9 else None
        if not test:
            continue
        kind, n, c = test.group(1), int(test.group(2)), int(test.group(3))
        if kind == "pp":
            e2e = MEAN.match(cells[8])
            ttft = float(e2e.group(1)) / 1000 if e2e else 0.0
        else:
            out.append((c, n, ttft, float(MEAN.match(cells[3]).group(1)), float(MEAN.match(cells[2]).group(1))))
    return out


def _lasted(repo: Path, commit: str, run: str, names: list[str], test: str) -> float | None:
    """How long a test ran: its telemetry's last sample (one every 10 s), or the runner log's END line."""
    if f"{test}-telemetry.csv" in names:
        samples = list(csv.DictReader(io.StringIO(_git(repo, "show", f"{commit}:{run}/{test}-telemetry.csv"))))
        return float(samples[-1]["elapsed_s"]) if samples else None
    if "_runner.log" in names:
        end = re.search(rf"END {test} \((\d+)s\)", _git(repo, "show", f"{commit}:{run}/_runner.log"))
        return float(end.group(1)) if end else None
    return None


def check(repo: Path, commit: str, run: str) -> list[dict]:
    """Each test of one run: how long it ran, the time its counted runs need, its tg lines."""
    out = []
    names = _git(repo, "ls-tree", "--name-only", f"{commit}:{run}").split()
    for name in names:
        test = TEST_FILE.fullmatch(name)
        if not test:
            continue
        text = _git(repo, "show", f"{commit}:{run}/{name}")
        runs = re.search(r"llama-benchy.* --runs (\d+)", text)
        tg = _table(text)
        lasted = _lasted(repo, commit, run, names, test.group(1) or test.group(2))
        if not (lasted and tg and runs):
            continue
        need = sum(int(runs.group(1)) * (ttft + n / req) for _, n, ttft, req, _ in tg)
        out.append({"test": name, "lasted": lasted, "need": need, "tg": tg})
    return out


def ended_early(test: dict) -> bool:
    """Its telemetry lasted less than its counted runs need: not every reply reached `tg`."""
    return test["lasted"] < test["need"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("repo", type=Path, help="a clone of djangodevreng/dgx-spark-benchmarks")
    ap.add_argument("--write", action="store_true", help="mark the flagged rows in the CSVs")
    args = ap.parse_args()
    tests: dict[tuple[str, str], list[dict]] = {}
    flagged_total = 0
    for path in CSVS:
        with path.open() as f:
            reader = csv.DictReader(f)
            fields, rows = reader.fieldnames, list(reader)
        changed = False
        for row in rows:
            where = next(filter(None, (p.search(row["source"]) for p in RUN)), None)
            if not where or row["metric"] != "aggregate_tps" or int(row["batch"]) <= 1:
                continue
            if where.groups() not in tests:
                tests[where.groups()] = check(args.repo, *where.groups())
                for t in tests[where.groups()]:
                    print(f"{where.group(2)[8:]:48} {t['test']:22} lasted {t['lasted']:6.0f} s, counted runs need "
                          f">= {t['need']:6.0f} s ({t['lasted'] / t['need']:.2f})")
            value = float(row["value"])
            test = next(t for t in tests[where.groups()]
                        if any(n == int(row["output_len"]) and c == int(row["batch"]) and abs(total - value) < 0.006
                               for c, n, _, _, total in t["tg"]))
            settings = [s for s in (row.get("settings") or "").split(";") if s and s != "ended_early=true"]
            if ended_early(test):
                settings.append("ended_early=true")
                flagged_total += 1
                print(f"  row {row['id']}: c{row['batch']} tg{row['output_len']} {value} t/s (total): ended early")
            new = ";".join(settings)
            changed |= new != (row.get("settings") or "")
            row["settings"] = new
        if args.write and changed:
            with path.open("w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
                writer.writeheader()
                writer.writerows(rows)
    print(f"{flagged_total} aggregate rows from tests whose replies ended early")
    return 0


if __name__ == "__main__":
    sys.exit(main())
