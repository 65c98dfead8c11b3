"""KV caches of models whose layers cache different things (ModelSpec.cache_kinds), as vLLM lays them out.

Two layouts, both from vllm/v1/core/kv_cache_utils.py:

- Pages sized by the engine's block size (Gemma 4): `unify_kv_cache_spec_page_size` grows the block of the
  kinds with smaller pages until every page is as large as the largest, then equal-size groups of layers share
  one pool of pages (`_get_kv_cache_groups_uniform_page_size`), as for Gemma 3.
- Pages the model fixes (DeepSeek-V4, `group_and_unify_kv_cache_specs` and `_get_kv_cache_config_packed`):
  kinds are grouped by (page tokens, window); the unwindowed ones form one group; the groups' layer counts are
  padded to a common size d (`_approximate_gcd`: the d with the least padding, the larger on ties) and a
  windowed group of more layers is split into ceil(layers / d) groups; every block id is one slab as wide as the
  widest group (`block_stride`), so a request's blocks of every group cost a full slab each.

A windowed kind holds at most window - 1 + max_num_batched_tokens tokens per request
(SlidingWindowSpec.max_memory_usage_bytes); the fixed-page layout adds the block the window may straddle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sparkserve.models.spec import CacheKind, ModelSpec
from sparkserve.plan.quant import kv_dtype_bytes


def slot_bytes(kind: CacheKind, kv_dtype: str, tp: int) -> float:
    """Bytes of one stored slot on one device: K and V of its heads (split over ranks, replicated when ranks
    outnumber them), or the model's fixed slot layout (replicated on every rank)."""
    if kind.slot_bytes:
        return float(kind.slot_bytes)
    heads = max(1, math.ceil(kind.kv_heads / tp))
    return 2 * heads * kind.head_dim * kv_dtype_bytes(kv_dtype)


def bytes_per_token(kind: CacheKind, kv_dtype: str, tp: int) -> float:
    return slot_bytes(kind, kv_dtype, tp) / kind.tokens_per_slot


def growth_bytes_per_token(model: ModelSpec, kv_dtype: str, tp: int) -> float:
    """Bytes one more token of context adds on one device once every window is full (the unwindowed kinds),
    with the padding of pages the model fixes."""
    return sum(k.layers * (_aligned(k, kv_dtype, tp) / k.page_tokens if k.page_tokens else
                           bytes_per_token(k, kv_dtype, tp))
               for k in model.cache_kinds if k.window is None)


def held_tokens(kind: CacheKind, length: int, max_num_batched_tokens: int) -> int:
    if kind.window is None:
        return length
    return min(length, kind.window - 1 + max_num_batched_tokens)


@dataclass(frozen=True)
class _Group:
    """Layers that share one block table: their pages are taken and given back together."""

    page_tokens: int
    window: int | None
    subgroups: int  # block tables of this kind of group (a split windowed group has several)

    def blocks(self, length: int, max_num_batched_tokens: int, straddle: int) -> int:
        if self.window is None:
            return self.subgroups * math.ceil(length / self.page_tokens)
        held = min(length, self.window - 1 + max_num_batched_tokens)
        return self.subgroups * (math.ceil(held / self.page_tokens) + straddle)


@dataclass(frozen=True)
class KindsLayout:
    block_bytes: float  # bytes one block id takes on one device
    block_tokens: int  # tokens in a block of the unwindowed caches (the block size vLLM reports)
    groups: tuple[_Group, ...]
    straddle: int  # extra block a window may straddle (fixed-page layout)

    def request_blocks(self, length: int, max_num_batched_tokens: int) -> int:
        """Block ids one request of `length` tokens holds at its peak (get_max_concurrency_for_kv_cache_config)."""
        return sum(g.blocks(length, max_num_batched_tokens, self.straddle) for g in self.groups)


def layout(model: ModelSpec, kv_dtype: str, tp: int, block_size: int) -> KindsLayout:
    kinds = [k for k in model.cache_kinds if k.layers]
    if any(k.page_tokens for k in kinds):
        return _packed(kinds, kv_dtype, tp)
    return _uniform_page(kinds, kv_dtype, tp, block_size)


def _uniform_page(kinds: list[CacheKind], kv_dtype: str, tp: int, block: int) -> KindsLayout:
    pages = [block * bytes_per_token(k, kv_dtype, tp) for k in kinds]
    largest = max(pages)
    size = min(k.layers for k in kinds)
    groups = []
    for kind, page in zip(kinds, pages, strict=True):
        # a smaller page takes proportionally more tokens; one that does not divide the largest keeps its block
        # and is padded to the largest page
        tokens = block * round(largest / page) if largest % page == 0 else block
        groups.append(_Group(tokens, kind.window, math.ceil(kind.layers / size)))
    return KindsLayout(block_bytes=largest * size, block_tokens=block, groups=tuple(groups), straddle=0)


def _aligned(kind: CacheKind, kv_dtype: str, tp: int) -> float:
    page = kind.page_tokens // kind.tokens_per_slot * slot_bytes(kind, kv_dtype, tp)
    return math.ceil(page / kind.page_align) * kind.page_align if kind.page_align else page


def approximate_gcd(counts: list[int], lower_bound: int) -> int:
    """vLLM `_approximate_gcd`: the common group size from lower_bound to the largest count that pads the
    groups' layer counts least (the larger size on ties)."""
    best, best_pad = lower_bound, None
    for d in range(max(1, lower_bound), max(counts) + 1):
        pad = sum(math.ceil(c / d) * d - c for c in counts)
        if best_pad is None or pad <= best_pad:
            best, best_pad = d, pad
    return best


def _packed(kinds: list[CacheKind], kv_dtype: str, tp: int) -> KindsLayout:
    keyed: dict[tuple[int, int | None], list[CacheKind]] = {}
    for kind in sorted(kinds, key=lambda k: k.window is not None):  # the unwindowed group first
        keyed.setdefault((kind.page_tokens, kind.window), []).append(kind)
    members = list(keyed.values())
    counts = [max(k.layers for k in group) for group in members]  # layer tuples: one layer of each page size
    d = approximate_gcd(counts, counts[0])
    groups, widest = [], 0.0
    for (tokens, window), group, count in zip(keyed, members, counts, strict=True):
        groups.append(_Group(tokens, window, math.ceil(count / d)))
        widest = max(widest, sum(min(d, k.layers) * _aligned(k, kv_dtype, tp) for k in group))
    full = next((k.page_tokens for k in kinds if k.window is None), kinds[0].page_tokens)
    return KindsLayout(block_bytes=widest, block_tokens=full, groups=tuple(groups), straddle=1)


def largest_len_that_fits(lay: KindsLayout, blocks: int, max_num_batched_tokens: int, ceiling: int) -> int:
    """The largest max-model-len one request of which fits, rounded down to a multiple of 1024."""
    lo, hi = 0, ceiling
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if lay.request_blocks(mid, max_num_batched_tokens) <= blocks:
            lo = mid
        else:
            hi = mid - 1
    return (lo // 1024) * 1024 if lo >= 1024 else lo


def context_bytes(model: ModelSpec, kv_dtype: str, tp: int, context: float) -> float:
    """Cache bytes one decode step of one sequence reads on one device: each kind's held slots, at most
    its read limit (DeepSeek-V4's top-k compressed latents; its compressor states are read once a block fills)."""
    return sum(kind.layers * _read_slots(kind, context) * slot_bytes(kind, kv_dtype, tp) for kind in model.cache_kinds)


def attended_keys(model: ModelSpec, context: float, causal: bool, register_head: int = 0) -> float:
    """Sum over kinds of (query width x keys each query attends x layers attending): Gemma 4's shared-KV layers
    attend the cache of an earlier layer, DeepSeek-V4's compressed layers attend compressed slots. With
    `register_head`, a kind whose heads are wider counts head_dim / register_head times (`wide_head_cost`)."""
    keys = context / 2 if causal else context
    return sum(kind.query_width * kind.attending_layers * _read_slots(kind, keys)
               * wide_head_cost(kind.head_dim, register_head) for kind in model.cache_kinds)


def wide_head_cost(head_dim: int, register_head: int) -> float:
    """Times its FLOPs' time a head takes on a kernel that keeps heads up to `register_head` wide in registers
    (0: any width): a wider head's fp32 accumulator spills, and the kernel runs at register_head / head_dim."""
    return max(1.0, head_dim / register_head) if register_head else 1.0


def _read_slots(kind: CacheKind, context: float) -> float:
    """Slots of `kind` a query over `context` tokens reads: those its window holds, at most its read limit."""
    held = min(context, kind.window) if kind.window is not None else context
    slots = held / kind.tokens_per_slot
    return min(slots, kind.read_slots) if kind.read_slots is not None else slots
