"""Tidy settings a person would pick from a plan: shared by `init`, `docs` and `doctor`."""

from __future__ import annotations

import math

from sparkserve.plan.planner import ServicePlan
from sparkserve.plan.settings import vllm_settings

# Requests seldom use the full context, so admitting this many times the full-length capacity
# keeps the batch busy while preemptions stay rare.
SEQS_OVER_FULL_LENGTH = 2


def round_down_len(tokens: int) -> int:
    """A tidy max-model-len not above `tokens`: a power of two when close, else a multiple of 1024/4096."""
    if tokens < 1024:
        return max(tokens, 1)
    power = 1 << (tokens.bit_length() - 1)
    if power >= 0.75 * tokens:
        return power
    step = 4096 if tokens >= 65536 else 1024
    return tokens // step * step


def sized_max_num_seqs(plan: ServicePlan) -> int:
    """Concurrent sequences worth admitting: a power of two near SEQS_OVER_FULL_LENGTH x what
    the KV cache holds at full length, never above the engine default."""
    default = vllm_settings(plan.memory.settings).max_num_seqs
    room = max(1.0, plan.memory.max_concurrency * SEQS_OVER_FULL_LENGTH)
    return max(1, min(default, 2 ** int(math.log2(room))))
