"""Mark the DGX Spark Arena rows whose figure is not what its metric means, from the runs' own records.

    git clone https://github.com/djangodevreng/dgx-spark-benchmarks /tmp/arena
    python benchmarks/arena_checks.py /tmp/arena [--write]

Two checks, each reading only the source, never a prediction; with --write the rows get a key in the
settings column (benchmarks/calibration_rows.py) and stay in the file, listed but not scored:

- ended_early=true (aggregate rows at c > 1). The Arena runs llama-benchy without --exact-tg, so a
  reply may end at its end-of-sequence token before `tg`. llama-benchy's t/s (total) divides every
  token by the time from the first request's first token to the last request's end, so replies that
  end early leave fewer than c requests decoding for part of that time. A test is flagged when it ran
  (by its telemetry, one sample every 10 s, or in the older layout by the runner log's END line) for
  less than its counted runs alone need at their measured rates: runs x (mean e2e TTFT + tg / t/s (req))
  at each concurrency. That bound leaves out the warm-up run of each level, so a test whose replies
  reached `tg` lasts about (runs + 1) / runs of it; below 1 they cannot all have reached `tg`.
- unsteady=true (prefill and TTFT rows, one request at a time). With nothing else on the server the
  runs of one prompt should agree; where the spread the table prints (± over the runs) exceeds
  SPREAD of the mean, the runs did not time one steady state (the suite's first test meets a cold
  server).
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
SPREAD = 0.10
TEST = re.compile(r"(pp|tg)(\d+)(?: @ d\d+)? \(c(\d+)\)")
MEAN = re.compile(r"([\d.]+) ± ([\d.]+)")
COLUMN = {"prefill_tps": 2, "ttft_ms": 8}  # t/s (total) and e2e_ttft (ms) of a pp line


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


def _lines(text: str):
    """Each pp or tg line of a llama-benchy table, as (its test's match, its cells)."""
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        test = TEST.fullmatch(cells[1]) if len(cells) >= 9 else None
        if test:
            yield test, cells


def _table(text: str) -> list[tuple[int, int, float, float, float]]:
    """Each tg line as (concurrency, tg, e2e TTFT s of the pp line before it, t/s (req), t/s (total))."""
    out = []
    ttft = 0.0
    for test, cells in _lines(text):
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


def prompt_lines(repo: Path, commit: str, run: str) -> list[list[str]]:
    """The cells of every pp line at c1 in the run's tables."""
    out = []
    for name in _git(repo, "ls-tree", "--name-only", f"{commit}:{run}").split():
        if TEST_FILE.fullmatch(name):
            out += [cells for test, cells in _lines(_git(repo, "show", f"{commit}:{run}/{name}"))
                    if test.group(1) == "pp" and test.group(3) == "1"]
    return out


def spread(lines: list[list[str]], metric: str, value: float) -> float:
    """The spread over the runs, as a share of the mean, of the one pp line whose figure the row holds."""
    found = [MEAN.match(c[COLUMN[metric]]) for c in lines]
    found = [m for m in found if m and abs(float(m.group(1)) - value) < 0.006]
    if len(found) != 1:
        raise SystemExit(f"{metric} {value}: {len(found)} pp lines at c1 hold it; expected one")
    return float(found[0].group(2)) / float(found[0].group(1))


def ended_early(test: dict) -> bool:
    """Its telemetry lasted less than its counted runs need: not every reply reached `tg`."""
    return test["lasted"] < test["need"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("repo", type=Path, help="a clone of djangodevreng/dgx-spark-benchmarks")
    ap.add_argument("--write", action="store_true", help="mark the flagged rows in the CSVs")
    args = ap.parse_args()
    tests: dict[tuple[str, str], list[dict]] = {}
    prompts: dict[tuple[str, str], list[list[str]]] = {}
    flagged = {"ended_early": 0, "unsteady": 0}
    for path in CSVS:
        with path.open() as f:
            reader = csv.DictReader(f)
            fields, rows = reader.fieldnames, list(reader)
        changed = False
        for row in rows:
            where = next(filter(None, (p.search(row["source"]) for p in RUN)), None)
            if not where:
                continue
            run, value = where.groups(), float(row["value"])
            settings = [s for s in (row.get("settings") or "").split(";")
                        if s and s.partition("=")[0] not in flagged]
            if row["metric"] == "aggregate_tps" and int(row["batch"]) > 1:
                if run not in tests:
                    tests[run] = check(args.repo, *run)
                    for t in tests[run]:
                        print(f"{run[1][8:]:48} {t['test']:24} lasted {t['lasted']:6.0f} s, counted runs need "
                              f">= {t['need']:6.0f} s ({t['lasted'] / t['need']:.2f})")
                test = next(t for t in tests[run]
                            if any(n == int(row["output_len"]) and c == int(row["batch"]) and abs(total - value) < 0.006
                                   for c, n, _, _, total in t["tg"]))
                if ended_early(test):
                    settings.append("ended_early=true")
                    flagged["ended_early"] += 1
                    print(f"  row {row['id']}: c{row['batch']} tg{row['output_len']} {value} t/s (total): ended early")
            elif row["metric"] in COLUMN and int(row["batch"]) == 1:
                if run not in prompts:
                    prompts[run] = prompt_lines(args.repo, *run)
                share = spread(prompts[run], row["metric"], value)
                if share > SPREAD:
                    settings.append("unsteady=true")
                    flagged["unsteady"] += 1
                    print(f"  row {row['id']}: {run[1][8:]} p{row['prompt_len']} {row['metric']} {value}: "
                          f"± {share:.0%} over the runs")
            new = ";".join(settings)
            changed |= new != (row.get("settings") or "")
            row["settings"] = new
        if args.write and changed:
            with path.open("w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
                writer.writeheader()
                writer.writerows(rows)
    print(f"{flagged['ended_early']} aggregate rows from tests whose replies ended early, "
          f"{flagged['unsteady']} prompt rows whose runs spread more than {SPREAD:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
