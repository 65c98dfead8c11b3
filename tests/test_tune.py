"""`sparkserve tune` without an engine: the SLO and space it accepts, what --dry-run plans (and
that it starts nothing), the load search, what measurements decide, the journal and --apply."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from rich.console import Console

from native_kit import cli_env, run_cli
from sparkserve.errors import UserError
from sparkserve.tune.journal import Journal
from sparkserve.tune.report import apply
from sparkserve.tune.space import engine_module, parse_budget, parse_slos, parse_space
from sparkserve.tune.trial import search_levels


@pytest.fixture(scope="module")
def default_stack(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("tune-default")
    done = run_cli(directory, "init", "--hardware", "dgx-spark")
    assert done.returncode == 0, done.stderr
    return directory


def test_slo_in_both_spellings_and_bad_ones():
    slos = parse_slos("ttft_p90_ms=2000, itl:p99<50ms")
    assert [(s.metric, s.statistic, s.bound_ms) for s in slos] == [("ttft", "p90", 2000.0), ("itl", "p99", 50.0)]
    with pytest.raises(UserError, match="METRIC one of"):
        parse_slos("latency_p90_ms=5")
    with pytest.raises(UserError, match="given twice"):
        parse_slos("ttft_p90_ms=5,ttft_p90_ms=6")
    assert parse_budget("30m") == 1800 and parse_budget("90") == 90
    with pytest.raises(UserError, match="--budget"):
        parse_budget("soon")


def test_space_values_are_checked():
    vllm = engine_module("vllm")
    assert parse_space(["max-num-seqs=8,16,8", "enable_prefix_caching=off"], vllm) == {
        "max_num_seqs": [8, 16], "enable_prefix_caching": [False]}
    with pytest.raises(UserError, match="did you mean 'max-num-seqs'"):
        parse_space(["max-num-seq=8"], vllm)
    with pytest.raises(UserError, match="unknown value 'fp9'"):
        parse_space(["kv-cache-dtype=fp9"], vllm)
    ollama = engine_module("ollama")
    assert parse_space(["flash-attention=true", "num-parallel=1,4"], ollama) == {
        "flash_attention": [True], "num_parallel": [1, 4]}


@pytest.mark.parametrize(("space", "message"), [
    ("gpu-memory-utilization=0.95", "above 0.85, the plan's safe value"),
    ("max-model-len=512", "the workload needs 784 tokens"),
    ("max-num-seq=8", "did you mean 'max-num-seqs'"),
])
def test_unsafe_or_wrong_space_is_refused(default_stack, space, message):
    done = run_cli(default_stack, "tune", "vllm-qwen3-32b", "--dry-run", "--space", space)
    assert done.returncode == 2, done.stdout
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(("args", "message"), [
    (["--workload", "shared"], "--workload 'shared': expected one of"),
    (["--workload", "file"], "--workload file needs --dataset"),
    (["--slo", "ttft_p90=5"], "expected METRIC_STAT_ms=VALUE"),
    (["--budget", "0m"], "--budget '0m'"),
])
def test_bad_flags_are_one_line_errors(default_stack, args, message):
    done = run_cli(default_stack, "tune", "vllm-qwen3-32b", *args)
    assert done.returncode == 2, done.stdout
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_dry_run_plans_orders_and_starts_nothing(default_stack):
    out = default_stack / "dry.json"
    done = run_cli(default_stack, "tune", "vllm-qwen3-32b", "--dry-run", "--slo", "ttft_p90_ms=5000,itl_p90_ms=250",
                   "--space", "max-num-seqs=16,64", "--space", "max-num-batched-tokens=32,8192", "--json", str(out),
                   env=cli_env(COLUMNS="250"))
    assert done.returncode == 0, done.stderr
    data = json.loads(out.read_text())
    assert data["dry_run"] is True and data["best"] is None
    trials = data["trials"]
    assert len(trials) == 4
    skipped = [t for t in trials if t["status"] == "skipped"]
    assert {t["args"]["max_num_batched_tokens"] for t in skipped} == {32}
    assert all("below max-num-seqs" in t["reason"] for t in skipped)
    planned = [t for t in trials if t["status"] == "planned"]
    # the most promising (highest predicted goodput) first
    goodputs = [t["predicted"]["at_max_load"]["goodput_rps"] for t in planned]
    assert goodputs == sorted(goodputs, reverse=True)
    assert trials[:len(planned)] == planned
    assert not (default_stack / ".sparkserve").exists()
    assert "dry run: nothing was started" in done.stdout


def test_an_slo_the_plan_cannot_meet_alone_skips_with_the_reason(default_stack):
    out = default_stack / "tight.json"
    done = run_cli(default_stack, "tune", "vllm-qwen3-32b", "--dry-run", "--slo", "itl_p90_ms=20", "--json", str(out))
    assert done.returncode == 0, done.stderr
    trials = json.loads(out.read_text())["trials"]
    assert trials and all(t["status"] == "skipped" for t in trials)
    assert all(t["reason"].startswith("cannot meet the SLO at concurrency 1: predicted itl") for t in trials)


def test_measuring_needs_a_native_service(default_stack):
    done = run_cli(default_stack, "tune", "vllm-qwen3-32b", "--budget", "1m")
    assert done.returncode == 2
    assert 'runtime = "compose"' in done.stderr and "--dry-run" in done.stderr


def _threshold(limit: int, seen: list[int]):
    def measure(load: int) -> dict:
        seen.append(load)
        return {"load": load, "meets_slo": load <= limit, "goodput_rps": float(load), "output_tps": 10.0 * load}
    return measure


@pytest.mark.parametrize(("limit", "start", "cap"), [(5, 8, 16), (5, 2, 16), (16, 4, 16), (1, 16, 16), (11, 11, 32)])
def test_load_search_finds_the_highest_level_meeting_the_slo(limit, start, cap):
    seen: list[int] = []
    found = search_levels(_threshold(limit, seen), start, cap, deadline=None)
    assert found.best["load"] == min(limit, cap)
    assert seen[-1] == found.best["load"], "the chosen load is measured once more"
    assert len(seen[:-1]) == len(set(seen[:-1]))
    assert found.best["repeat"]["meets_slo"] is True
    grid_seen: list[int] = []
    grid = search_levels(_threshold(limit, grid_seen), start, cap, deadline=None, grid=True)
    assert grid.best["load"] == found.best["load"]


def test_a_load_that_met_the_slo_by_luck_is_not_the_answer():
    calls: dict[int, int] = {}

    def measure(load: int) -> dict:
        calls[load] = calls.get(load, 0) + 1
        lucky = load == 6 and calls[load] == 1  # 6 passes once, then misses like 7 and 8
        return {"load": load, "meets_slo": load <= 5 or lucky, "goodput_rps": float(load), "output_tps": 1.0}

    found = search_levels(measure, 8, 8, deadline=None)
    assert calls[6] == 2
    assert found.best["load"] == 5 and found.first_failing == 6


def test_the_best_measured_level_is_kept_when_goodput_falls_with_load():
    """Goodput peaks at load 4 on a saturated server although the SLO holds up to 8: the trial keeps load 4
    (measured on the way up), repeats it, and still reports 8 as the highest load that met the SLO."""
    goodput = {1: 10.0, 2: 30.0, 4: 50.0, 8: 12.0}
    seen: list[int] = []

    def measure(load: int) -> dict:
        seen.append(load)
        return {"load": load, "meets_slo": True, "goodput_rps": goodput[load], "output_tps": 16 * goodput[load]}

    found = search_levels(measure, 2, 8, deadline=None)
    assert seen == [2, 4, 8, 4], "no level beyond the bracketing is measured, the chosen one once more"
    assert found.best["load"] == 4 and found.best["repeat"]["goodput_rps"] == 50.0
    assert found.highest["load"] == 8 and found.first_failing is None

    calls: list[int] = []

    def unlucky(load: int) -> dict:  # load 4 met the SLO once by luck: the next best measured level wins
        calls.append(load)
        return {"load": load, "meets_slo": load != 4 or calls.count(4) == 1, "goodput_rps": goodput[load],
                "output_tps": 1.0}

    found = search_levels(unlucky, 2, 8, deadline=None)
    assert calls == [2, 4, 8, 4] and found.best["load"] == 2 and found.highest["load"] == 8

    from sparkserve.tune.search import correction

    # The plan's guess is corrected by the highest load that met the SLO, not by the load kept.
    trial = {"status": "measured", "load": 4, "max_load": 8, "predicted": {"max_load": 16}}
    assert correction([trial]) == 0.5


def test_load_search_that_never_meets_the_slo():
    seen: list[int] = []
    found = search_levels(_threshold(0, seen), 4, 8, deadline=None)
    assert found.best is None and seen == [4, 2, 1]
    assert found.first_failing == 1


def test_measurements_decide_configurations():
    from sparkserve.tune.predict import Prediction
    from sparkserve.tune.search import decided_by
    from sparkserve.tune.space import Candidate

    vllm = engine_module("vllm")
    base = {"max_num_seqs": 64, "max_num_batched_tokens": 8192, "max_model_len": 4096, "gpu_memory_utilization": 0.8}
    levels = [{"load": 4, "meets_slo": True, "goodput_rps": 1.0, "output_tps": 10.0},
              {"load": 5, "meets_slo": True, "goodput_rps": 3.0, "output_tps": 30.0},
              {"load": 6, "meets_slo": True, "goodput_rps": 2.0, "output_tps": 20.0}]
    # Its best is load 5 (goodput need not grow with load); the SLO held up to 6 and broke at 7.
    measured = {"id": "a", "args": base, "status": "measured", "load": 5, "max_load": 6, "first_failing_load": 7,
                "meets_slo": True, "measured": levels[1], "levels": levels}

    def decide(**change):
        return decided_by(Prediction(Candidate({**base, **change}), cap=1), [measured], vllm, prompt_len=512)

    assert decide(max_num_seqs=32)["status"] == "inferred"  # neither 32 nor 64 limits 7 requests
    assert decide(max_num_seqs=32)["load"] == 5 and decide(max_num_seqs=32)["max_load"] == 6
    assert decide(max_num_seqs=4)["status"] == "dominated"  # load 4 was measured there, below its best
    assert decide(max_num_seqs=5)["status"] == "dominated"  # load 5 is its best: a cap of 5 cannot beat it
    assert decide(max_num_seqs=3) is None  # load 3 was never measured
    old_journal = {**measured, "load": 6, "measured": levels[2]}
    old_journal.pop("max_load")  # a journal from before the best level was kept: load 5 gave more than 6
    assert decided_by(Prediction(Candidate({**base, "max_num_seqs": 5}), cap=1), [old_journal], vllm, 512) is None
    assert decide(max_num_batched_tokens=2048) is None  # 7 prompts of 512 may need more than 2048 per step
    assert decide(max_num_seqs=32, max_model_len=8192) is None  # a different length is a different server
    oom = {"id": "b", "args": {**base, "gpu_memory_utilization": 0.7}, "status": "failed", "cause_id": "weights_oom"}
    ruled = decided_by(Prediction(Candidate(base), cap=1), [oom], vllm, prompt_len=512)
    assert ruled["status"] == "ruled_out" and ruled["by"] == "b"


def test_journal_keeps_finished_trials_and_ignores_a_torn_line(tmp_path):
    path = tmp_path / "tune.jsonl"
    journal = Journal(path)
    header = {"search": {"slo": {"ttft_p90_ms": 100.0}}}
    assert journal.begin(header, resume=True) == {}
    journal.started("x", 123, 123)
    journal.finished({"id": "x", "status": "measured"})
    journal.started("y", 124, 124)
    with path.open("a") as fh:
        fh.write('{"kind": "trial", "id": "y", "sta')  # killed mid-write
    assert set(Journal(path).begin(header, resume=True)) == {"x"}
    assert [e["pid"] for e in journal.unfinished_starts()] == [124]
    with pytest.raises(UserError, match="different search"):
        Journal(path).begin({"search": {"slo": {"ttft_p90_ms": 50.0}}}, resume=True)
    assert Journal(path).begin(header, resume=False) == {}
    assert (tmp_path / "tune.jsonl.1").exists()
    assert [e["kind"] for e in Journal(path).read()] == ["header"]


STACK = """[stack]
hardware = "dgx-spark"

[services.tiny]
engine = "vllm"
model = "Qwen/Qwen3-32B"
port = 8000

[services.tiny.args]
max_model_len = 4096  # what the workload needs
max_num_seqs = 16

[services.other]
engine = "ollama"
model = "qwen3:8b"
port = 11434
"""


def test_apply_writes_the_best_args_keeping_comments_and_a_backup(tmp_path):
    stack = tmp_path / "sparkserve.toml"
    stack.write_text(STACK)
    best = {"args": {"max_num_seqs": 64, "max_num_batched_tokens": 4096, "enable_prefix_caching": True}}
    console = Console(record=True, width=200)
    assert apply({"service": "tiny", "best": best}, stack, "vllm", console) is True
    text = stack.read_text()
    args = tomllib.loads(text)["services"]["tiny"]["args"]
    assert args == {"max_model_len": 4096, "max_num_seqs": 64, "max_num_batched_tokens": 4096,
                    "enable_prefix_caching": True}
    assert "# what the workload needs" in text
    assert (tmp_path / "sparkserve.toml.bak").read_text() == STACK
    shown = console.export_text()
    assert "-max_num_seqs = 16" in shown and "+max_num_seqs = 64" in shown
    assert apply({"service": "tiny", "best": best}, stack, "vllm", console) is False


def test_apply_refuses_an_inline_args_table_and_a_search_without_a_best(tmp_path):
    stack = tmp_path / "sparkserve.toml"
    inline = STACK.replace("[services.tiny.args]\nmax_model_len = 4096  # what the workload needs\nmax_num_seqs = 16\n",
                           "args = { max_num_seqs = 16 }\n")
    stack.write_text(inline)
    with pytest.raises(UserError, match="inline"):
        apply({"service": "tiny", "best": {"args": {"max_num_seqs": 8}}}, stack, "vllm", Console())
    with pytest.raises(UserError, match="no configuration met the SLO"):
        apply({"service": "tiny", "best": None}, stack, "vllm", Console())
    assert stack.read_text() == inline and not (tmp_path / "sparkserve.toml.bak").exists()


def test_model_page_example_is_what_the_command_plans(default_stack):
    """docs/models/qwen3-32b.md shows `sparkserve tune --dry-run` on the default stack: run it as printed."""
    import re

    page = (Path(__file__).resolve().parents[1] / "docs" / "models" / "qwen3-32b.md").read_text()
    section = page.split("## What `sparkserve tune` would try", 1)[1].split("\n## ", 1)[0]
    command = re.search(r"```\n(.+?)\n```", section).group(1)
    init, tune = command.split(" && ")
    assert init == "sparkserve init --hardware dgx-spark"
    out = default_stack / "example.json"
    done = run_cli(default_stack, *tune.split()[1:], "--json", str(out))
    assert done.returncode == 0, done.stderr
    trials = json.loads(out.read_text())["trials"]
    rows = [line.split("|")[1:-1] for line in section.splitlines() if re.match(r"\| \d+ \|", line)]
    assert len(rows) == len(trials)
    for row, trial in zip(rows, trials, strict=True):
        cells = [c.strip() for c in row]
        assert int(cells[1]) == trial["args"]["max_num_seqs"]
        assert int(cells[2]) == trial["args"]["max_num_batched_tokens"]
        assert cells[3] == str(trial["predicted"]["max_load"] or "–")


def test_ollama_space_and_apply_into_args_and_env(default_stack, tmp_path):
    out = default_stack / "ollama.json"
    done = run_cli(default_stack, "tune", "ollama", "--dry-run", "--space", "flash-attention=on,off",
                   "--space", "num-parallel=2,4", "--json", str(out))
    assert done.returncode == 0, done.stderr
    data = json.loads(out.read_text())
    assert data["engine"] == "ollama"
    assert {(t["args"]["num_parallel"], t["args"]["flash_attention"]) for t in data["trials"]} == {
        (2, True), (2, False), (4, True), (4, False)}
    assert all(t["args"]["num_ctx"] >= 784 for t in data["trials"])
    stack = tmp_path / "sparkserve.toml"
    stack.write_text((default_stack / "sparkserve.toml").read_text())
    best = {"args": {"num_parallel": 4, "num_ctx": 8192, "flash_attention": False, "kv_cache_type": "q8_0"}}
    assert apply({"service": "ollama", "best": best}, stack, "ollama", Console(width=200)) is True
    svc = tomllib.loads(stack.read_text())["services"]["ollama"]
    assert svc["args"] == {"num_ctx": 8192, "num_parallel": 4, "kv_cache_type": "q8_0"}
    assert svc["env"]["OLLAMA_FLASH_ATTENTION"] == "0" and svc["env"]["OLLAMA_KEEP_ALIVE"] == "30m"
