"""The replay of an engine's admission when more prompts arrive at once than its KV cache holds."""

from __future__ import annotations

import dataclasses
import math

import pytest

from sparkserve.engines import get_engine
from sparkserve.engines.vllm import admission_gate
from sparkserve.hardware.catalog import get_profile
from sparkserve.models.catalog import resolve_model
from sparkserve.plan.paged_queue import run_queue
from sparkserve.plan.planner import deployment
from sparkserve.plan.speed import Workload, speed

PROMPT, OUTPUT, CHUNK, BLOCK = 1920, 64, 512, 128  # the shape of benchmarks/kv_pressure.py's runs


def blocks_for(slots: int) -> int:
    return math.ceil(slots * (PROMPT + OUTPUT) / BLOCK)


def test_serial_by_hand() -> None:
    """Two requests of 4 prompt tokens and 2 out, blocks of 2 tokens, a cache of 3 blocks that holds one."""
    run = run_queue(2, 4, 2, 4, 2, 3, "prompt", prefix_cache=False)
    assert run is not None
    # each: its prompt in one step (which gives the first token), then one decode step (the second)
    assert run.step_count == 4 and run.output_steps == 4
    assert run.preemptions == 0
    assert run.computed_tokens == 2 * (4 + 1)


def test_a_cache_that_holds_every_request_computes_each_token_once() -> None:
    run = run_queue(24, PROMPT, OUTPUT, CHUNK, BLOCK, blocks_for(32), "chunk", prefix_cache=False)
    assert run is not None and run.preemptions == 0
    assert run.computed_tokens == 24 * (PROMPT + OUTPUT - 1)  # the last token out is sampled, never computed


def test_first_chunk_admission_without_prefix_cache_computes_prompts_again() -> None:
    small = blocks_for(4)
    thrash = run_queue(24, PROMPT, OUTPUT, CHUNK, BLOCK, small, "chunk", prefix_cache=False)
    kept = run_queue(24, PROMPT, OUTPUT, CHUNK, BLOCK, small, "chunk", prefix_cache=True)
    gated = run_queue(24, PROMPT, OUTPUT, CHUNK, BLOCK, small, "prompt", prefix_cache=False)
    once = 24 * (PROMPT + OUTPUT - 1)
    assert thrash and kept and gated
    assert thrash.preemptions > kept.preemptions > 0
    assert thrash.computed_tokens > kept.computed_tokens > once
    assert thrash.computed_tokens > gated.computed_tokens


def test_reserving_the_output_never_preempts() -> None:
    for slots in (1, 2, 3, 4, 8):
        run = run_queue(24, PROMPT, OUTPUT, CHUNK, BLOCK, blocks_for(slots), "request", prefix_cache=False)
        assert run is not None and run.preemptions == 0
        assert run.computed_tokens == 24 * (PROMPT + OUTPUT - 1)


def test_a_cache_smaller_than_one_request_is_refused_and_a_bad_gate_named() -> None:
    assert run_queue(2, PROMPT, OUTPUT, CHUNK, BLOCK, blocks_for(1) - 1, "prompt", prefix_cache=True) is None
    with pytest.raises(ValueError, match="chunk, prompt, request"):
        run_queue(2, PROMPT, OUTPUT, CHUNK, BLOCK, blocks_for(1), "whole", prefix_cache=True)


def test_vllm_admission_by_release() -> None:
    assert admission_gate("0.8.2") == "chunk" and admission_gate("0.11.0") == "chunk"
    assert admission_gate(None) == "prompt" and admission_gate("0.32.0") == "prompt"
    assert get_engine("sglang").admission_gate(None) == "request"
    assert get_engine("ollama").admission_gate(None) is None


def _burst(version: str | None, prefix_caching: bool, kv_tokens: int | None) -> float:
    hw = get_profile("h100-sxm")
    dep = deployment(hw, resolve_model("Qwen/Qwen3-14B").spec, "bf16", "vllm")
    dep = dataclasses.replace(dep, engine_version=version, prefix_caching=prefix_caching)
    work = Workload(batch=40, prompt_len=16000, output_len=100, context=0, kv_tokens=kv_tokens)
    return speed(dep, work).prefill_tps


def test_a_burst_beyond_the_cache_prefills_slower_and_old_vllm_slowest() -> None:
    roomy = _burst(None, True, None)
    assert _burst(None, True, 40 * 16100) == pytest.approx(roomy)  # all fit: priced as before
    tight = 3 * 16100
    gated, old_kept, old_thrash = _burst(None, False, tight), _burst("0.11.0", True, tight), _burst("0.11.0", False, tight)
    assert roomy > gated
    assert gated > old_thrash and old_kept > old_thrash
