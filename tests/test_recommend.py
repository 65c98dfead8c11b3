"""The one recommendation (plan/recommend.py): it always fits and starts, or says why none exists, and
every command prints the same arguments for the same service in the same setting."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from functools import cache
from pathlib import Path

import pytest

from sparkserve.engines import get_engine
from sparkserve.hardware.catalog import get_profile, list_profiles
from sparkserve.models.catalog import list_models, resolve_model
from sparkserve.plan.recommend import Recommendation, Setting, recommend
from sparkserve.plan.speed import Workload

# The quantisations a BF16 checkpoint supports; MXFP4 exists only as published checkpoints (walked as their own).
VLLM_QUANTS = ("bf16", "fp8", "int8", "awq", "gptq", "nvfp4")
OLLAMA_QUANTS = ("q4_k_m", "q8_0")
GPUS = (1, 2, 4, 8)
NODES = (1, 2)


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "80", "NO_COLOR": "1", "TERM": "dumb"}
    return subprocess.run([sys.executable, "-m", "sparkserve.cli", *args], capture_output=True, text=True,
                          timeout=120, env=env, cwd=cwd)


def rec(model: str, quant: str, hardware: str = "dgx-spark", **kw) -> Recommendation:
    return recommend(get_profile(hardware), resolve_model(model).spec, quant, kw.pop("engine", "vllm"), Workload(),
                     **kw)


# --- the property walk --------------------------------------------------------------------------------------------


@cache
def walk() -> tuple[list[tuple[str, Recommendation]], list[str]]:
    """Every bundled model x hardware profile x quantisation x 1/2/4/8 GPUs x 1/2 nodes (vLLM), and the
    GGUF quantisations on Ollama; returns the recommendations and what is wrong with any of them."""
    vllm = get_engine("vllm")
    out: list[tuple[str, Recommendation]] = []
    wrong: list[str] = []
    for model in list_models():
        spec = resolve_model(model).spec
        for hw in list_profiles():
            for quant in (spec.checkpoint_quant,) if spec.checkpoint_quant else VLLM_QUANTS:
                for gpus in (g for g in GPUS if g <= hw.max_gpus):
                    for nodes in NODES:
                        where = f"{model} {quant} on {hw.id} x{gpus} x{nodes} nodes"
                        r = recommend(hw, spec, quant, "vllm", Workload(), gpus=gpus, nodes=nodes)
                        out.append((where, r))
                        if not r.fits:
                            if not r.why_none:
                                wrong.append(f"{where}: does not fit and says no why")
                            continue
                        plan = r.plan
                        dep = plan.deployment
                        problems = vllm.constraint_problems(dep.model, dep.quant.id, plan.memory.settings)
                        if problems or not plan.memory.fits:
                            why = problems or plan.memory.reasons
                            wrong.append(f"{where}: recommended {plan.recommended_args} but {why}")
                        if any(w.startswith("unified memory") for w in plan.warnings):
                            wrong.append(f"{where}: recommendation contradicts {plan.warnings}")
                        if "--gpu-memory-utilization" not in r.args or r.args[0] != dep.model.id:
                            wrong.append(f"{where}: arguments {r.args}")
            if not spec.checkpoint_quant:
                for quant in OLLAMA_QUANTS:
                    r = recommend(hw, spec, quant, "ollama", Workload())
                    if not (r.fits or r.why_none):
                        wrong.append(f"{model} {quant} on Ollama {hw.id}: does not fit and says no why")
    return out, wrong


def test_every_recommendation_fits_and_passes_the_engine_checks_or_says_why():
    recs, wrong = walk()
    assert len(recs) > 10_000
    assert not wrong, "\n".join(wrong[:20])
    fitting = [r for _, r in recs if r.fits]
    assert len(fitting) > 0.9 * len(recs)
    # the walk reaches the cases the changes exist for: shorter contexts, other GPU counts, pre-quantised repos
    notes = [n for r in fitting for n in r.notes]
    assert any(n.startswith("--gpus ") for n in notes)
    assert any("pre-quantised" in n for n in notes) and any(n.startswith("-q ") for n in notes)


def test_every_recommended_command_is_accepted_by_the_installed_vllm(vllm_venv):
    """One interpreter parses them all with `vllm serve`'s own parser and vLLM's SchedulerConfig."""
    from sparkserve.engines.vllm import check_serve_args_batch

    recs, _ = walk()
    argvs = sorted({tuple(r.args) for _, r in recs if r.fits})
    assert len(argvs) > 1000
    verdicts = check_serve_args_batch(str(vllm_venv / "bin" / "python"), [list(a) for a in argvs])
    refused = [(shlex.join(a), msg) for a, (verdict, msg) in zip(argvs, verdicts, strict=True) if verdict != "ok"]
    assert not refused, refused[:10]


def test_the_batch_check_reports_what_vllm_refuses(vllm_venv):
    """The walk's check could fail: vLLM's parser and scheduler refuse what the engine module refuses."""
    from sparkserve.engines.vllm import check_serve_args_batch

    verdicts = check_serve_args_batch(str(vllm_venv / "bin" / "python"), [
        ["Qwen/Qwen3-32B", "--max-model-len", "4096", "--max-num-batched-tokens", "16", "--max-num-seqs", "1024"],
        ["Qwen/Qwen3-32B", "--swap-space", "4"],
        ["Qwen/Qwen3-32B", "--max-model-len", "4096", "--max-num-batched-tokens", "2048", "--max-num-seqs", "8"],
    ])
    assert [v for v, _ in verdicts] == ["error", "error", "ok"]
    assert "max_num_seqs (1024)" in verdicts[0][1] and "--swap-space" in verdicts[1][1]


# --- what the issue found ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kw", "note"), [
    ({"nodes": 3}, "--nodes 3 -> 2"), ({"gpus": 3, "hardware": "h100-sxm"}, "--gpus 3 -> 2")])
def test_a_parallel_size_vllm_refuses_does_not_fit(kw, note):
    r = rec("Qwen/Qwen3-32B", "fp8", **kw)
    assert r.requested.fits is False
    assert any("does not divide the 64 attention heads" in reason for reason in r.requested.memory.reasons)
    assert r.fits and r.notes[0].startswith(note)
    assert r.args[r.args.index("--tensor-parallel-size") + 1] == "2"


def test_batched_tokens_below_max_num_seqs_does_not_fit():
    r = rec("Qwen/Qwen3-32B", "fp8", max_num_batched_tokens=16, max_num_seqs=1024)
    assert r.requested.fits is False
    assert r.args[r.args.index("--max-num-batched-tokens") + 1] == "1024"
    only_batched = rec("Qwen/Qwen3-32B", "fp8", max_num_batched_tokens=16)
    assert only_batched.requested.fits and int(only_batched.args[only_batched.args.index("--max-num-seqs") + 1]) <= 16


@pytest.mark.parametrize(("quant", "repo"), [("awq", "Qwen/Qwen3-32B-AWQ"), ("gptq", "Qwen/Qwen3-32B-GPTQ-Int4"),
                                             ("int8", "RedHatAI/Qwen3-32B-quantized.w8a8"),
                                             ("nvfp4", "RedHatAI/Qwen3-32B-NVFP4")])
def test_a_format_vllm_cannot_make_on_load_serves_a_pre_quantised_repo(quant, repo):
    r = rec("Qwen/Qwen3-32B", quant)
    assert r.args[0] == repo and "--quantization" not in r.args
    assert r.plan.deployment.model.checkpoint_quant == quant
    assert any(repo in n for n in r.notes)


def test_fp8_is_made_on_load_from_the_bf16_checkpoint():
    r = rec("Qwen/Qwen3-32B", "fp8")
    assert r.args[:3] == ["Qwen/Qwen3-32B", "--quantization", "fp8"] and r.notes == []


def test_utilisation_agrees_with_the_unified_memory_warning():
    """Llama-3.3-70B fp8 on one Spark: at 0.92 the OS starves, so 0.92 does not fit and 0.90 is recommended,
    with the shorter context that fits there, never 'raise to 0.92'."""
    asked = rec("meta-llama/Llama-3.3-70B-Instruct", "fp8", gpu_memory_utilization=0.92)
    assert asked.requested.fits is False
    assert asked.args[asked.args.index("--gpu-memory-utilization") + 1] == "0.90"
    chosen = rec("meta-llama/Llama-3.3-70B-Instruct", "fp8")
    assert chosen.args == asked.args and chosen.requested.fits
    length = int(chosen.args[chosen.args.index("--max-model-len") + 1])
    assert length < 131072
    assert not any("0.92" in w for w in chosen.plan.warnings + chosen.plan.memory.reasons)


def test_a_planning_only_engine_gives_its_own_arguments_and_says_so():
    r = rec("Qwen/Qwen3-32B", "fp8", engine="sglang")
    assert r.planning_only and "planning only" in r.planning_only
    assert r.args[:2] == ["--model-path", "Qwen/Qwen3-32B"]
    assert "--gpu-memory-utilization" not in r.args


def test_the_setting_is_said_and_changes_only_the_utilisation():
    alone = rec("Qwen/Qwen3-32B", "fp8")
    beside = rec("Qwen/Qwen3-32B", "fp8", setting=Setting(6.1, ("ollama",)))
    assert "alone" in alone.setting and "beside ollama (6.1 GiB)" in beside.setting
    util = alone.args.index("--gpu-memory-utilization") + 1
    assert float(beside.args[util]) < float(alone.args[util])


def test_plan_prints_the_command_on_one_line_and_exits_3_when_it_does_not_fit():
    ok = cli("plan", "-m", "Qwen/Qwen3-32B", "-q", "fp8", "-H", "dgx-spark")
    assert ok.returncode == 0, ok.stderr
    lines = [line for line in ok.stdout.splitlines() if line.startswith("vllm serve ")]
    assert len(lines) == 1 and lines[0].endswith("--enable-chunked-prefill")  # COLUMNS=80 does not wrap it
    refused = cli("plan", "-m", "Qwen/Qwen3-32B", "-q", "fp8", "-H", "dgx-spark", "--nodes", "3", "--json")
    assert refused.returncode == 3
    out = json.loads(refused.stdout)
    assert out["memory"]["fits"] is False and out["recommendation"]["fits"] is True
    ollama = cli("plan", "-m", "qwen3:8b", "-H", "dgx-spark")
    assert "OLLAMA_CONTEXT_LENGTH=4096" in ollama.stdout.splitlines()


@pytest.mark.parametrize("hardware", ["rtx-4090", "rtx-5090", "a100-40gb", "dgx-spark", "h100-sxm"])
def test_init_writes_only_a_stack_that_fits(tmp_path, hardware):
    done = cli("init", "-H", hardware, cwd=tmp_path)
    path = tmp_path / "sparkserve.toml"
    if done.returncode == 2:
        assert not path.exists() and "does not fit" in done.stderr and "--force" in done.stderr
        forced = cli("init", "-H", hardware, "--force", cwd=tmp_path)
        assert forced.returncode == 0 and path.exists()
        assert cli("plan", cwd=tmp_path).returncode in (0, 3)  # planned, whether or not it fits
        return
    assert done.returncode == 0, done.stderr
    planned = cli("plan", "--json", cwd=tmp_path)
    assert planned.returncode == 0, planned.stdout[-2000:]
    assert json.loads(planned.stdout)["host"]["fits"] is True


def test_init_refuses_the_rtx_4090_default_stack(tmp_path):
    """Qwen3-32B in 4-bit beside Ollama's 8B does not fit one 24 GB card: exit 2, nothing written, and the
    reason is the recommendation's (it would need two GPUs)."""
    done = cli("init", "-H", "rtx-4090", cwd=tmp_path)
    assert done.returncode == 2 and not (tmp_path / "sparkserve.toml").exists()
    assert "--gpus 1 -> 2" in done.stderr


# --- the same numbers everywhere ----------------------------------------------------------------------------------


def _args_of(out: dict, name: str) -> list[str]:
    return next(s for s in out["services"] if s["name"] == name)["recommended_args"]


def test_plan_plan_on_a_stack_init_and_docs_print_the_same_arguments(tmp_path):
    """Beside Ollama: the default stack's plan, `init` + `plan`, and the docs page; alone: `plan -m` and a stack
    holding only the model, and the page's alone command."""
    builtin = json.loads(cli("plan", "--json", "-H", "dgx-spark", cwd=tmp_path).stdout)
    assert cli("init", "-H", "dgx-spark", cwd=tmp_path).returncode == 0
    written = tomllib.loads((tmp_path / "sparkserve.toml").read_text())
    from_init = json.loads(cli("plan", "--json", cwd=tmp_path).stdout)
    docs = cli("docs", "Qwen/Qwen3-32B", "-H", "dgx-spark", "--out", str(tmp_path / "docs"), cwd=tmp_path)
    assert docs.returncode == 0, docs.stderr
    page = (tmp_path / "docs" / "qwen3-32b.md").read_text()
    blocks = re.findall(r"```bash\nvllm serve (.+?)\n```", page, re.S)
    beside_page, alone_page = (b.replace("\\\n", " ").split() for b in blocks[:2])

    beside = _args_of(builtin, "vllm-qwen3-32b")
    assert _args_of(from_init, "vllm-qwen3-32b") == beside == beside_page
    args = written["services"]["vllm-qwen3-32b"]["args"]
    assert [args["gpu_memory_utilization"], args["max_model_len"], args["max_num_seqs"]] == [
        float(beside[beside.index("--gpu-memory-utilization") + 1]), int(beside[beside.index("--max-model-len") + 1]),
        int(beside[beside.index("--max-num-seqs") + 1])]

    alone = json.loads(cli("plan", "-m", "Qwen/Qwen3-32B", "-q", "fp8", "-H", "dgx-spark", "--json").stdout)
    (tmp_path / "alone.toml").write_text('[stack]\nhardware = "dgx-spark"\n\n[services.qwen]\nengine = "vllm"\n'
                                         'model = "Qwen/Qwen3-32B"\nquant = "fp8"\nport = 8000\n')
    on_stack = json.loads(cli("plan", "--json", "--stack", str(tmp_path / "alone.toml"), cwd=tmp_path).stdout)
    assert alone["recommended_args"] == _args_of(on_stack, "qwen") == alone_page
    assert alone["recommended_args"] != beside  # the setting differs, and the outputs say which
    assert "alone" in alone["recommendation"]["setting"]
    assert "beside ollama" in next(s for s in builtin["services"] if s["name"] == "vllm-qwen3-32b")[
        "recommendation"]["setting"]
