"""`sparkserve docs MODEL`: the page it writes, checked against `sparkserve plan --json` run as a user would."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from functools import cache
from pathlib import Path

import pytest

from sparkserve.commands.docs import generate, model_slug
from sparkserve.hardware.catalog import get_profile
from sparkserve.models.catalog import resolve_model
from sparkserve.plan.model_report import build_report

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "docs" / "models" / "qwen3-32b.md"
SECTIONS = (
    "## What the model is",
    "## Memory by precision on NVIDIA DGX Spark (GB10)",
    "## Recommended vLLM arguments",
    "## Expected speed",
    "## Troubleshooting",
)
CAUSES = (
    "kv_cache_too_small_for_max_model_len",
    "page_cache_pressure",
    "free_memory_below_utilization",
    "weights_oom",
    "gated_model_access",
)


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
    return subprocess.run(
        [sys.executable, "-m", "sparkserve.cli", *args], capture_output=True, text=True, timeout=120, env=env, cwd=cwd
    )


@cache
def plan_json(command: str) -> dict:
    """Run a `sparkserve plan ...` line the page prints, with --json: exit 0 when it fits, 3 when not."""
    args = command.split()
    assert args[:2] == ["sparkserve", "plan"], command
    result = cli("plan", *[a for a in args[2:] if a != "--json"], "--json")
    assert result.returncode in (0, 3), result.stderr
    assert (result.returncode == 0) == json.loads(result.stdout)["memory"]["fits"]
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("models")
    return cli("docs", "Qwen/Qwen3-32B", "--hardware", "dgx-spark", "--out", str(out)), out


@pytest.fixture(scope="module")
def page(written) -> str:
    return (written[1] / "qwen3-32b.md").read_text(encoding="utf-8")


def section(page: str, heading: str) -> str:
    start = page.index(heading)
    end = page.find("\n## ", start + len(heading))
    return page[start:] if end < 0 else page[start:end]


def table_rows(text: str) -> list[list[str]]:
    """Body rows of the first markdown table in `text`."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines[2:]]


def gib(value: float) -> str:
    return f"{value:.1f}"


# --- the command ----------------------------------------------------------------------------------------


def test_command_writes_the_page_with_every_section(written, page):
    result, out = written
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"wrote {out / 'qwen3-32b.md'}\n"
    assert page.startswith("# Qwen3-32B on NVIDIA DGX Spark (GB10)\n")
    positions = [page.index(s) for s in SECTIONS]
    assert positions == sorted(positions)
    for cause in CAUSES:
        assert f"### `{cause}`" in page
    assert "sync; echo 3 | sudo tee /proc/sys/vm/drop_caches" in section(page, "### `page_cache_pressure`")


def test_default_output_directory_is_docs_models(tmp_path):
    result = cli("docs", "qwen3:8b", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "docs" / "models" / "qwen3-8b.md").is_file()


def test_shipped_page_is_a_fresh_generation(page):
    assert SHIPPED.read_bytes() == page.encode("utf-8"), (
        "docs/models/qwen3-32b.md is stale: run `sparkserve docs Qwen/Qwen3-32B --hardware dgx-spark`"
    )


@pytest.mark.parametrize(
    "args,message",
    [
        (("docs", "nonsense/model"), "error: unknown model 'nonsense/model'"),
        (
            ("docs", "Qwen/Qwen3-32B", "--hardware", "dgx-sprak"),
            "error: unknown hardware 'dgx-sprak'; closest: dgx-spark",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, args, message):
    result = cli(*args, "--out", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.startswith(message), result.stderr
    assert result.stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_slug_is_the_repo_name():
    assert model_slug("Qwen/Qwen3-32B") == "qwen3-32b"
    assert model_slug("meta-llama/Llama-3.1-8B-Instruct") == "llama-3.1-8b-instruct"
    assert model_slug("/models/My Model/") == "my-model"


# --- numbers against `sparkserve plan --json` -------------------------------------------------------------


def test_model_facts_match_the_plan(page):
    facts = dict(row[:2] for row in table_rows(section(page, "## What the model is")))
    recommended = re.search(r"Reproduce: `(sparkserve plan [^`]+)`", page).group(1)
    out = plan_json(recommended)
    assert facts["KV cache per token"].startswith(f"{out['memory']['kv_bytes_per_token']:,} bytes = 256 KiB in BF16")
    assert facts["attention"] == "GQA: 64 query heads share 8 KV heads (8 per KV head), head_dim 128"
    assert facts["native context"].startswith("40,960 positions")
    assert facts["sliding-window layers"].startswith("none")


def test_recommended_arguments_are_the_plans(page):
    text = section(page, "## Recommended vLLM arguments")
    command = re.search(r"```bash\nvllm serve (.+?)\n```", text, re.S).group(1)
    args = command.replace("\\\n", " ").split()
    recommended = re.search(r"Reproduce: `(sparkserve plan [^`]+)`", text).group(1)
    out = plan_json(recommended)
    assert args == out["recommended_args"]
    assert "--swap-space" not in args
    mem = out["memory"]
    assert f"= {gib(mem['budget_gib'])} GiB" in text
    assert (
        f"The KV cache holds {mem['kv_tokens']:,} tokens = {mem['max_concurrency']:.1f} requests of {mem['max_model_len']:,}"
        in text
    )


def test_recommended_settings_are_the_default_stacks():
    """On a Spark the page and `sparkserve init` size Qwen3-32B the same way."""
    from sparkserve.stack.init import default_stack_text

    spark = get_profile("dgx-spark")
    stack_args = tomllib.loads(default_stack_text(spark, "fp8"))["services"]["vllm-qwen3-32b"]["args"]
    rec = build_report(spark, resolve_model("Qwen/Qwen3-32B").spec, _neighbour(spark)).recommended
    settings = rec.memory.settings
    assert (settings.gpu_memory_utilization, rec.memory.max_model_len, settings.max_num_seqs) == (
        stack_args["gpu_memory_utilization"],
        stack_args["max_model_len"],
        stack_args["max_num_seqs"],
    )


def test_memory_table_rows_match_the_plan(page):
    text = section(page, "## Memory by precision")
    vllm_template, ollama_template = re.findall(r"`(sparkserve plan [^`]+<precision>[^`]*)`", text)
    rows = table_rows(text)
    assert [(r[0], r[1]) for r in rows] == [
        ("vLLM", "bf16"),
        ("vLLM", "**fp8** (recommended)"),
        ("vLLM", "awq / gptq (int4)"),
        ("vLLM", "nvfp4"),
        ("Ollama", "q4_k_m"),
        ("Ollama", "q8_0"),
    ]
    for engine, label, weights, kv_gib, kv_tokens, requests, total, decode, fits in rows:
        quant = re.sub(r"\*\*|\(recommended\)| / gptq \(int4\)", "", label).strip()
        template = vllm_template if engine == "vLLM" else ollama_template
        out = plan_json(template.replace("<precision>", quant))
        mem, perf = out["memory"], out["perf"]
        assert (weights, kv_gib, kv_tokens, requests, total) == (
            gib(mem["weights_gib"]),
            gib(mem["kv_cache_gib"]),
            f"{mem['kv_tokens']:,}",
            f"{mem['max_concurrency']:.1f}",
            gib(mem["total_gib"]),
        ), label
        assert decode == f"{perf['decode_tps']:,.1f} tok/s"
        assert fits == ("yes" if mem["fits"] else "no: " + "; ".join(mem["reasons"]))


def test_speed_rows_match_the_plan_and_its_ceiling(page):
    rows = table_rows(section(page, "## Expected speed"))
    labels = [r[0] for r in rows]
    assert labels == [
        "decode, 1 request",
        "decode, 4 requests together",
        "prefill, 512-token prompt",
        "TTFT, 512-token prompt",
        "prefill, 4,096-token prompt",
        "TTFT, 4,096-token prompt",
    ]
    for label, predicted, reproduce in rows:
        out = plan_json(reproduce.strip("`"))
        perf, batch = out["perf"], out["workload"]["batch"]
        if label == "decode, 1 request":
            share = round(100 * perf["decode_tps"] / perf["roofline_decode_tps"])
            assert predicted == (
                f"{perf['decode_tps']:.1f} tok/s = {share} % of the {perf['roofline_decode_tps']:.1f} tok/s ceiling"
            )
        elif label.startswith("decode"):
            ceiling = perf["roofline_decode_tps"] * batch
            assert predicted.startswith(f"{perf['aggregate_tps']:,.1f} tok/s in all ({perf['decode_tps']:.1f} each) = ")
            assert predicted.endswith(f" of the {ceiling:,.1f} tok/s ceiling")
        elif label.startswith("prefill"):
            assert out["workload"]["prompt_len"] == int(label.split()[1].split("-")[0].replace(",", ""))
            assert predicted.startswith(f"{perf['prefill_tps']:,.0f} tok/s = ")
        else:
            assert predicted.startswith(f"{perf['ttft_ms']:,.0f} ms (ceiling ")


def test_kv_troubleshooting_example_is_the_planners(page):
    text = section(page, "### `kv_cache_too_small_for_max_model_len`")
    command = re.search(r"`(sparkserve plan [^`]+)` predicts it", text).group(1)
    out = plan_json(command)
    assert out["memory"]["fits"] is False
    assert (
        f"KV cache holds {out['memory']['kv_tokens']:,} tokens, max-model-len is {out['memory']['max_model_len']:,}"
        in text
    )
    raised = re.search(r"raise --gpu-memory-utilization to ([\d.]+) \(now", text).group(1)
    assert (
        plan_json(
            command.replace(
                f"--gpu-memory-utilization {out['memory']['settings']['gpu_memory_utilization']:.2f}",
                f"--gpu-memory-utilization {raised}",
            )
        )["memory"]["fits"]
        is True
    )


# --- other models and machines ----------------------------------------------------------------------------


def _neighbour(hw):
    from sparkserve.plan.speed import Workload
    from sparkserve.stack.defaults import OLLAMA_SERVICE
    from sparkserve.stack.planning import plan_one

    return plan_one(hw, OLLAMA_SERVICE.model, engine="ollama", quant=None, work=Workload(), **OLLAMA_SERVICE.settings)


def test_gated_model_on_a_discrete_gpu():
    slug, text = generate("meta-llama/Llama-3.1-8B-Instruct", "h100-sxm")
    assert slug == "llama-3.1-8b-instruct"
    assert "`meta-llama/Llama-3.1-8B-Instruct` is gated" in text
    assert "### `page_cache_pressure`" not in text  # unified memory only
    assert "### `free_memory_below_utilization`" in text
    assert "## Memory by precision on NVIDIA H100 SXM5 80GB" in text
    assert "| vLLM | nvfp4 |" not in text  # Hopper has no native NVFP4


def test_a_model_that_cannot_fit_says_so():
    _, text = generate("Qwen/Qwen3-235B-A22B", "dgx-spark")
    assert "**Does not fit NVIDIA DGX Spark (GB10):** weights need" in text
    assert "| vLLM | **awq / gptq (int4)** (recommended) |" in text


@pytest.mark.parametrize(
    "model,hardware",
    [
        ("Qwen/Qwen3-32B", "dgx-spark"),
        ("openai/gpt-oss-120b", "dgx-spark"),
        ("google/gemma-3-27b-it", "h100-sxm"),
        ("Qwen/Qwen3-30B-A3B", "a100-80gb"),
    ],
)
def test_predictions_never_beat_their_ceilings(model, hardware):
    hw = get_profile(hardware)
    report = build_report(hw, resolve_model(model).spec, _neighbour(hw))
    for plan in report.decode:
        assert plan.perf.decode_tps <= plan.perf.roofline_decode_tps
    for point in report.prefill:
        assert point.plan.perf.prefill_tps <= point.ceiling_tps
        assert point.plan.perf.ttft_ms >= point.ceiling_ttft_ms


def test_page_leaves_no_template_field_unfilled(page):
    """A doctor rule's `{field}` reaches the page only filled in (the engine's own rule, not a host rule)."""
    assert re.findall(r"\{[a-z_]+\}", page) == []
