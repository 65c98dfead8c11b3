"""`sparkserve plan` and `sparkserve hw` as a user runs them: real subprocesses, stdout/stderr/exit code."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

GIB = 1024**3
CONSOLE_SCRIPT = Path(sys.executable).parent / "sparkserve"


def run(*args: str, script: bool = False) -> subprocess.CompletedProcess:
    cmd = [str(CONSOLE_SCRIPT)] if script else [sys.executable, "-m", "sparkserve.cli"]
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=60, env=env)


def plan_json(*args: str, code: int = 0) -> dict:
    r = run("plan", *args, "--json")
    assert r.returncode == code, r.stderr
    return json.loads(r.stdout)  # the whole stdout is one JSON document


def squash(text: str) -> str:
    return " ".join(text.split())


# ---------------------------------------------------------------------------------------------
# --json contract


MEMORY_KEYS = {"weights_gib", "kv_cache_gib", "kv_tokens", "max_concurrency", "total_gib", "fits", "warnings"}
PERF_KEYS = {"decode_tps", "aggregate_tps", "prefill_tps", "ttft_ms", "roofline_decode_tps"}


@pytest.mark.parametrize("args", [
    ("--model", "Qwen/Qwen3-8B", "--hardware", "h100-sxm"),
    ("--model", "qwen3:8b", "--engine", "ollama"),
    ("--model", "openai/gpt-oss-20b", "--hardware", "h100-sxm", "--gpus", "2", "--batch", "8"),
])
def test_json_is_one_object_with_the_contract_keys(args: tuple[str, ...]) -> None:
    out = plan_json(*args)
    assert isinstance(out, dict)
    assert MEMORY_KEYS <= set(out["memory"])
    assert PERF_KEYS <= set(out["perf"])
    assert isinstance(out["memory"]["fits"], bool)
    assert isinstance(out["memory"]["kv_tokens"], int)
    assert isinstance(out["memory"]["warnings"], list)
    assert isinstance(out["recommended_args"], list) and out["recommended_args"]
    assert all(isinstance(a, str) for a in out["recommended_args"])
    perf = out["perf"]
    assert 0 < perf["decode_tps"] <= perf["roofline_decode_tps"]
    assert perf["aggregate_tps"] == pytest.approx(perf["decode_tps"] * out["workload"]["batch"], rel=0.01)


def test_gpus_2_doubles_the_budget() -> None:
    one = plan_json("--model", "Qwen/Qwen3-8B", "--hardware", "h100-sxm")
    two = plan_json("--model", "Qwen/Qwen3-8B", "--hardware", "h100-sxm", "--gpus", "2")
    # vLLM's default 0.92 of 79.18 GiB per H100 = 72.85 GiB; two GPUs 145.69 GiB
    assert one["memory"]["budget_gib"] == pytest.approx(0.92 * 79.18, abs=0.01)
    assert two["memory"]["budget_gib"] == pytest.approx(2 * 0.92 * 79.18, abs=0.01)
    assert two["memory"]["budget_gib"] == pytest.approx(2 * one["memory"]["budget_gib"], abs=0.02)
    assert "--tensor-parallel-size" in two["recommended_args"]
    assert two["recommended_args"][two["recommended_args"].index("--tensor-parallel-size") + 1] == "2"


def test_two_spark_nodes_use_ray() -> None:
    out = plan_json("--model", "Qwen/Qwen3-32B", "--quant", "fp8", "--nodes", "2")
    args = out["recommended_args"]
    assert args[args.index("--tensor-parallel-size") + 1] == "2"
    assert args[args.index("--distributed-executor-backend") + 1] == "ray"


def test_default_stack_json() -> None:
    out = plan_json()
    names = [s["name"] for s in out["services"]]
    assert "vllm-qwen3-32b" in names and "ollama" in names
    assert out["hardware"] == "dgx-spark"
    assert all(s["hardware"] == "dgx-spark" for s in out["services"])
    assert out["host"]["fits"] is True
    assert out["host"]["left_gib"] >= 0
    for service in out["services"]:
        assert "--swap-space" not in service["recommended_args"]


def test_default_stack_human_output_mentions_the_ceiling() -> None:
    r = run("plan")
    assert r.returncode == 0, r.stderr
    text = squash(r.stdout)
    assert "vllm-qwen3-32b" in text and "ollama" in text
    # Qwen3-32B FP8 on 273 GB/s: ~32.8 GB per token -> ceiling ~8.3 tok/s (field notes)
    assert re.search(r"ceiling is 8\.3 tok/s", text), text[:2000]


@pytest.mark.parametrize("args", [
    ("--model", "Qwen/Qwen3-32B"),
    ("--model", "Qwen/Qwen3-32B", "--quant", "fp8", "--kv-cache-dtype", "fp8", "--enforce-eager"),
    ("--model", "meta-llama/Llama-3.3-70B-Instruct", "--hardware", "h100-sxm", "--gpus", "4", "--quant", "fp8"),
])
def test_recommended_args_never_contain_removed_flags(args: tuple[str, ...]) -> None:
    out = plan_json(*args)
    assert out["recommended_args"][0] == out["model"]
    for flag in ("--swap-space", "--disable-log-requests", "--use-v2-block-manager"):
        assert flag not in out["recommended_args"]


def test_non_fitting_combination_exits_3_with_a_reason() -> None:
    out = plan_json("--model", "Qwen/Qwen3-235B-A22B", "--quant", "bf16", code=3)
    assert out["memory"]["fits"] is False
    assert out["memory"]["reasons"]
    assert any("weights" in r for r in out["memory"]["reasons"])
    r = run("plan", "--model", "Qwen/Qwen3-235B-A22B", "--quant", "bf16")
    assert r.returncode == 3
    assert "does not fit" in squash(r.stdout)


def test_too_long_context_exits_3_with_the_numbers_and_a_shorter_recommendation() -> None:
    out = plan_json("--model", "Qwen/Qwen3-32B", "--hardware", "h100-sxm", "--max-model-len", "40960", code=3)
    mem = out["memory"]
    assert mem["fits"] is False
    assert mem["kv_tokens"] < mem["max_model_len"] == 40960
    assert any(f"{mem['kv_tokens']:,}" in r and "40,960" in r for r in mem["reasons"])
    rec = out["recommendation"]
    assert rec["fits"] is True and rec["args"] == out["recommended_args"]
    shorter = int(rec["args"][rec["args"].index("--max-model-len") + 1])
    assert shorter < 40960
    assert any(note.startswith(f"--max-model-len 40960 -> {shorter}") for note in rec["notes"])


# ---------------------------------------------------------------------------------------------
# Bad input: exit 2, one "error:" line on stderr naming the value


def assert_user_error(r: subprocess.CompletedProcess, *needles: str) -> str:
    assert r.returncode == 2, (r.returncode, r.stdout[:500], r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error:"), r.stderr
    assert "Traceback" not in r.stderr
    assert r.stdout.strip() == ""
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.mark.parametrize(("args", "needles"), [
    (("--model", "Qwen/Qwen3-32X"), ("Qwen/Qwen3-32X", "closest", "Qwen/Qwen3-32B")),
    (("--model", "Qwen/Qwen3-8B", "--hardware", "h100-sxn"), ("h100-sxn", "closest", "h100-sxm")),
    (("--hardware", "h100-sxn"), ("h100-sxn", "h100-sxm")),
    (("--model", "Qwen/Qwen3-8B", "--engine", "vlm"), ("vlm", "closest", "vllm")),
    (("--model", "Qwen/Qwen3-8B", "--quant", "fp9"), ("fp9", "closest", "fp8")),
    (("--model", "Qwen/Qwen3-8B", "--engine", "vllm", "--quant", "q4_k_m"), ("q4_k_m",)),
    (("--model", "Qwen/Qwen3-8B", "--gpu-memory-utilization", "1.5"), ("--gpu-memory-utilization", "1.5")),
])
def test_bad_input_exits_2_with_one_line(args: tuple[str, ...], needles: tuple[str, ...]) -> None:
    assert_user_error(run("plan", *args), *needles)
    assert_user_error(run("plan", *args, "--json"), *needles)


@pytest.mark.parametrize("flag", ["--gpus", "--nodes"])
def test_zero_devices_exits_2_naming_flag_and_value(flag: str) -> None:
    line = assert_user_error(run("plan", "--model", "Qwen/Qwen3-8B", "--hardware", "h100-sxm", flag, "0"), flag)
    assert re.search(r"\b0\b", line.replace(flag, "")), f"the bad value 0 is not named: {line}"


@pytest.mark.parametrize("args", [("--gpus", "0"), ("--gpu-memory-utilization", "1.5")])
def test_bad_settings_are_rejected_for_the_default_stack_too(args: tuple[str, ...]) -> None:
    # Without --model, `plan` plans the default stack; a bad setting must not be silently dropped.
    assert_user_error(run("plan", *args), args[0])


@pytest.mark.parametrize(("engine", "kv"), [("vllm", "q8_0"), ("ollama", "fp8")])
def test_kv_cache_dtype_of_the_other_engine_is_rejected(engine: str, kv: str) -> None:
    # vLLM's --kv-cache-dtype takes auto/bfloat16/fp8*; Ollama's OLLAMA_KV_CACHE_TYPE takes f16/q8_0/q4_0.
    # Planning one with the other's type would emit a flag or env value the engine refuses or ignores.
    quant = "bf16" if engine == "vllm" else "q4_k_m"
    assert_user_error(
        run("plan", "--model", "Qwen/Qwen3-8B", "--engine", engine, "--quant", quant, "--kv-cache-dtype", kv), kv
    )


# ---------------------------------------------------------------------------------------------
# --model pointing at a local checkpoint directory


def test_model_from_a_local_config_directory(tmp_path: Path) -> None:
    # A Qwen3-0.6B-shaped config with 20 layers instead of 28, so the numbers can only come from this file.
    config = {
        "architectures": ["Qwen3ForCausalLM"],
        "model_type": "qwen3",
        "hidden_size": 1024,
        "intermediate_size": 3072,
        "num_hidden_layers": 20,
        "num_attention_heads": 16,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "vocab_size": 151936,
        "max_position_embeddings": 40960,
        "tie_word_embeddings": True,
        "torch_dtype": "bfloat16",
        "rms_norm_eps": 1e-06,
        "rope_theta": 1000000,
        "attention_bias": False,
        "hidden_act": "silu",
    }
    model_dir = tmp_path / "my-qwen3"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps(config))
    out = plan_json("--model", str(model_dir), "--hardware", "h100-sxm", "--max-model-len", "8192")
    # params: embedding 151,936 x 1,024 = 155,582,464 (tied, no lm_head)
    #   attention/layer: q 1024x2048 + k,v 2 x 1024x1024 + o 2048x1024 + q/k norms 2 x 128 = 6,291,712; x20
    #   MLP/layer: 3 x 1024 x 3072 = 9,437,184; x20;  norms 20 x 2 x 1024 + 1024
    params = 155_582_464 + 20 * 6_291_712 + 20 * 9_437_184 + (20 * 2 * 1024 + 1024)
    assert params == 470_202_368
    assert out["quant"] == "bf16"
    assert out["memory"]["weights_gib"] == pytest.approx(params * 2 / GIB, abs=0.01)  # 0.88 GiB
    # K and V x 8 heads x 128 x 20 layers x 2 B
    assert out["memory"]["kv_bytes_per_token"] == 2 * 8 * 128 * 20 * 2
    assert out["memory"]["max_model_len"] == 8192
    assert out["memory"]["fits"] is True
    assert out["model"].endswith("my-qwen3")


# ---------------------------------------------------------------------------------------------
# The CLI itself


def test_help_lists_plan_and_hw() -> None:
    r = run("--help")
    assert r.returncode == 0
    assert re.search(r"^\W*plan\b", r.stdout, re.M)
    assert re.search(r"^\W*hw\b", r.stdout, re.M)


def test_console_script_runs() -> None:
    assert CONSOLE_SCRIPT.is_file(), f"{CONSOLE_SCRIPT} missing: is the package installed in this venv?"
    r = run("plan", "--model", "qwen3:8b", "--json", script=True)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["engine"] == "ollama" and out["model"] == "Qwen/Qwen3-8B"
    r = run("plan", "--model", "nope/nope", script=True)
    assert r.returncode == 2 and r.stderr.startswith("error:")


def test_importing_the_cli_stays_light() -> None:
    code = (
        "import sys, sparkserve.cli\n"
        "heavy = ('rich.table', 'pydantic', 'httpx', 'pynvml')\n"
        "print(sorted(m for m in sys.modules if any(m == h or m.startswith(h + '.') for h in heavy)))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------------
# sparkserve hw on this machine (no NVIDIA GPU here)


def test_hw_json_parses() -> None:
    r = run("hw", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert isinstance(info["gpus"], list)
    assert "profile_id" in info


def test_hw_without_a_gpu_says_so() -> None:
    info = json.loads(run("hw", "--json").stdout)
    r = run("hw")
    assert r.returncode == 0, r.stderr
    if not info["gpus"]:  # this machine: no NVIDIA driver
        assert info["profile_id"] is None
        assert "No NVIDIA GPU detected" in r.stdout
        assert "dgx-spark" in r.stdout  # points at the profiles to pick from


# ---------------------------------------------------------------------------------------------
# The latency/throughput curve


CURVE_KEYS = {"concurrency", "running", "decode_tps", "aggregate_tps", "output_tps", "ttft_ms", "itl_ms",
              "ceiling_tps", "capped_by"}


def _check_curve(curve: list[dict], levels: list[int]) -> None:
    assert [p["concurrency"] for p in curve] == levels
    prev = 0.0
    for p in curve:
        assert CURVE_KEYS <= set(p)
        assert p["aggregate_tps"] <= p["ceiling_tps"] * 1.001, p
        assert p["aggregate_tps"] >= prev * 0.999, (p, prev)  # never falls as concurrency rises
        assert p["aggregate_tps"] == pytest.approx(p["decode_tps"] * p["running"], rel=0.01)
        assert p["ttft_ms"] > 0 and p["itl_ms"] > 0
        prev = p["aggregate_tps"]


def test_concurrency_curve_in_json() -> None:
    levels = [1, 2, 4, 8, 16, 32, 64]
    out = plan_json("--model", "Qwen/Qwen3-32B", "--hardware", "dgx-spark", "--quant", "fp8", "--max-num-seqs", "64",
                    "--concurrency", ",".join(map(str, levels)))
    curve = out["perf"]["curve"]
    _check_curve(curve, levels)
    assert all(p["running"] == p["concurrency"] and p["capped_by"] is None for p in curve)
    each = [p["decode_tps"] for p in curve]
    assert each == sorted(each, reverse=True)  # each request slows as the batch grows
    assert curve[-1]["aggregate_tps"] > 5 * curve[0]["aggregate_tps"]  # the batch shares the weight reads


def test_curve_marks_where_max_num_seqs_caps_and_queues_the_rest() -> None:
    out = plan_json("--model", "Qwen/Qwen3-8B", "--hardware", "h100-sxm", "--max-num-seqs", "4",
                    "--concurrency", "1,4,8,16")
    curve = out["perf"]["curve"]
    _check_curve(curve, [1, 4, 8, 16])
    at_cap = curve[1]
    for p in curve[2:]:
        assert p["capped_by"] == "max_num_seqs" and p["running"] == 4
        assert p["aggregate_tps"] == pytest.approx(at_cap["aggregate_tps"])  # flat after the stated cap
        assert p["ttft_ms"] > at_cap["ttft_ms"]  # the extra requests wait in the queue
    assert curve[3]["ttft_ms"] > curve[2]["ttft_ms"]


def test_curve_marks_where_the_kv_cache_caps() -> None:
    # 8,192-token prompts and replies on a small budget: the KV cache holds fewer requests than max-num-seqs.
    out = plan_json("--model", "Qwen/Qwen3-8B", "--hardware", "h100-sxm", "--gpu-memory-utilization", "0.3",
                    "--max-model-len", "16384", "--max-num-seqs", "256", "--prompt-len", "8192", "--output-len", "8192",
                    "--concurrency", "1,8,64,256")
    kv_requests = out["memory"]["kv_tokens"] // (8192 + 8192)
    assert 1 <= kv_requests < 64
    curve = out["perf"]["curve"]
    assert curve[-1]["capped_by"] == "kv_cache" and curve[-1]["running"] == kv_requests


def test_default_stack_has_a_curve_per_service() -> None:
    out = plan_json("--hardware", "dgx-spark", "--concurrency", "1,2,4")
    for service in out["services"]:
        _check_curve(service["perf"]["curve"], [1, 2, 4])


def test_curve_shows_in_the_table() -> None:
    r = run("plan", "--model", "Qwen/Qwen3-8B", "--hardware", "h100-sxm", "--concurrency", "1,8")
    assert r.returncode == 0, r.stderr
    assert "Under load" in r.stdout and "aggregate" in r.stdout


@pytest.mark.parametrize("levels", ["0,1", "1,x", "1,,2", "-4", "2.5"])
def test_bad_concurrency_exits_2_with_one_line(levels: str) -> None:
    assert_user_error(run("plan", "--model", "Qwen/Qwen3-8B", "--concurrency", levels), "--concurrency")


def test_batch_above_max_num_seqs_is_capped_with_a_warning() -> None:
    out = plan_json("--model", "Qwen/Qwen3-8B", "--hardware", "h100-sxm", "--max-num-seqs", "8", "--batch", "32")
    assert out["workload"]["batch"] == 8
    assert any("--batch 32" in w and "max-num-seqs is 8" in w for w in out["memory"]["warnings"]), out["memory"]["warnings"]


# ---------------------------------------------------------------------------------------------
# More bad input


def test_config_with_a_negative_size_exits_2_naming_the_field(tmp_path: Path) -> None:
    config = {
        "architectures": ["Qwen3ForCausalLM"],
        "model_type": "qwen3",
        "hidden_size": 1024,
        "intermediate_size": 3072,
        "num_hidden_layers": -32,
        "num_attention_heads": 16,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "vocab_size": 151936,
        "max_position_embeddings": 40960,
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert_user_error(run("plan", "--model", str(tmp_path), "--hardware", "h100-sxm"), "num_hidden_layers", "-32")
    config.update(num_hidden_layers=32, num_key_value_heads=0)
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert_user_error(run("plan", "--model", str(tmp_path), "--hardware", "h100-sxm"), "num_key_value_heads")


def test_mxfp4_without_an_mxfp4_checkpoint_says_so() -> None:
    assert_user_error(
        run("plan", "--model", "Qwen/Qwen3-8B", "--quant", "mxfp4"), "Qwen/Qwen3-8B", "no MXFP4 checkpoint"
    )
    out = plan_json("--model", "openai/gpt-oss-20b", "--hardware", "h100-sxm", "--quant", "mxfp4")
    assert out["quant"] == "mxfp4"


def test_fp4_is_not_silently_nvfp4() -> None:
    assert_user_error(run("plan", "--model", "Qwen/Qwen3-8B", "--quant", "fp4"), "fp4", "nvfp4", "mxfp4")


def test_no_negative_room_for_the_os() -> None:
    out = plan_json(
        "--model",
        "Qwen/Qwen2.5-72B-Instruct",
        "--engine",
        "ollama",
        "--quant",
        "bf16",
        "--hardware",
        "dgx-spark",
        code=3,
    )
    text = " ".join(out["memory"]["warnings"])
    assert "leaves nothing for the OS" in text
    assert not re.search(r"leaves -\d", text)
