"""Many requests sent at once to an engine whose paged KV cache holds only some of them.

A benchmark that sends 100 prompts of 32,000 tokens together to one 80 GB GPU finds a KV cache that
holds one to nine of them. What the engine does then decides the prompt rate more than the GPU does:
- vLLM before its whole-prompt admission gate (PR #37307, 2026-03) admits a waiting prompt when its
  first chunk fits. The prompt grows chunk by chunk until the cache is full; a request that then needs
  a block preempts the last one admitted, whose prompt is computed again later (from the start, unless
  its blocks survive in the prefix cache).
- vLLM since then, SGLang and TensorRT-LLM admit a prompt only when all of it fits (TensorRT-LLM and
  SGLang also reserve its output), so a prompt waits for a slot instead of thrashing.

`run_queue` replays that policy block by block (the scheduler's own order: running requests first,
each step at most `chunk` tokens, preemption of the most recently admitted, freed blocks kept for the
prefix cache tail first) and returns the steps it ran, each as the shape the speed model prices.
benchmarks/kv_pressure.py checks it against a real vLLM's preemption and step counts.
"""

from __future__ import annotations

import math
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass
from functools import lru_cache

GATES = ("chunk", "prompt", "request")  # what must fit before a waiting request is admitted


@dataclass(frozen=True)
class StepShape:
    decode_rows: int
    decode_context: int  # mean tokens in the decoding sequences' cache (rounded)
    # each prompt piece of the step: (tokens of its own prompt already in the cache (rounded), tokens computed)
    pieces: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class QueueRun:
    steps: tuple[tuple[StepShape, int], ...]  # each shape and how many steps had it
    preemptions: int
    computed_tokens: int  # prompt and output tokens computed, recomputation included
    output_steps: int  # steps that gave some request a token (vLLM's iteration_tokens counts these)

    @property
    def step_count(self) -> int:
        return sum(n for _, n in self.steps)


class _Request:
    __slots__ = ("id", "prompt", "output", "generated", "computed", "blocks")

    def __init__(self, rid: int, prompt: int, output: int) -> None:
        self.id, self.prompt, self.output = rid, prompt, output
        self.generated = 0
        self.computed = 0
        self.blocks: list[int] = []

    @property
    def tokens(self) -> int:
        return self.prompt + self.generated


class _Pool:
    """Free blocks in eviction order; a freed block of a full prompt block stays findable until reused."""

    def __init__(self, blocks: int) -> None:
        self.free: OrderedDict[int, tuple[int, int] | None] = OrderedDict((b, None) for b in range(blocks))
        self.cached: dict[tuple[int, int], int] = {}

    def take(self, count: int) -> list[int]:
        got = []
        for _ in range(count):
            block, key = self.free.popitem(last=False)
            if key is not None:
                del self.cached[key]
            got.append(block)
        return got

    def release(self, req: _Request, block: int, keep: bool) -> None:
        full = req.computed // block if keep else 0
        for index in reversed(range(len(req.blocks))):  # the tail goes first, as vLLM frees it
            key = (req.id, index) if index < full else None
            self.free[req.blocks[index]] = key
            if key is not None:
                self.cached[key] = req.blocks[index]
        req.blocks = []

    def hit(self, req: _Request, block: int) -> list[int]:
        """The request's leading blocks still cached; at least one prompt token is always computed."""
        found: list[int] = []
        while (len(found) + 1) * block <= req.tokens - 1 and (req.id, len(found)) in self.cached:
            found.append(self.cached[(req.id, len(found))])
        return found

    def claim(self, req: _Request, found: list[int]) -> None:
        for index, b in enumerate(found):
            del self.free[b]
            del self.cached[(req.id, index)]


@lru_cache(maxsize=256)
def run_queue(requests: int, prompt: int, output: int, chunk: int, block: int, blocks: int, gate: str,
              prefix_cache: bool, max_seqs: int = 1024, bucket: int = 512) -> QueueRun | None:
    """`requests` requests of `prompt` tokens in and `output` out, all waiting at the start, through a
    cache of `blocks` blocks of `block` tokens. None when one request alone does not fit."""
    if gate not in GATES:
        raise ValueError(f"gate {gate!r}: expected one of {', '.join(GATES)}")
    if blocks < math.ceil((prompt + output) / block) or chunk < 1:
        return None
    pool = _Pool(blocks)
    waiting = deque(_Request(i, prompt, output) for i in range(requests))
    running: list[_Request] = []
    shapes: Counter[StepShape] = Counter()
    preemptions = computed = output_steps = 0

    def preempt() -> _Request:
        nonlocal preemptions
        victim = running.pop()
        pool.release(victim, block, prefix_cache)
        victim.computed = 0
        waiting.appendleft(victim)
        preemptions += 1
        return victim

    while waiting or running:
        budget, preempted = chunk, False
        scheduled: list[tuple[_Request, int]] = []
        index = 0
        while index < len(running) and budget > 0:
            req = running[index]
            new = min(req.tokens - req.computed, budget)
            victim = None
            while True:
                need = math.ceil((req.computed + new) / block) - len(req.blocks)
                if need <= len(pool.free):
                    req.blocks += pool.take(max(0, need))
                    break
                victim = preempt()
                preempted = True
                scheduled = [(r, n) for r, n in scheduled if r is not victim]
                if victim is req:
                    break
            if victim is req:
                break
            scheduled.append((req, new))
            budget -= new
            index += 1
        while not preempted and waiting and budget > 0 and len(running) < max_seqs:
            req = waiting[0]
            found = pool.hit(req, block) if prefix_cache else []
            start = len(found) * block
            new = min(req.tokens - start, budget)
            must_fit = {"chunk": start + new, "prompt": req.tokens, "request": req.prompt + req.output}[gate]
            # reserving the output also keeps back what the running requests will still grow into
            promised = sum(math.ceil((r.prompt + r.output) / block) - len(r.blocks) for r in running) \
                if gate == "request" else 0
            if math.ceil(must_fit / block) - len(found) > len(pool.free) - len(found) - promised:
                break
            pool.claim(req, found)
            req.blocks, req.computed = found, start
            req.blocks += pool.take(math.ceil((start + new) / block) - len(found))
            waiting.popleft()
            running.append(req)
            scheduled.append((req, new))
            budget -= new
        if not scheduled:  # cannot happen while one request fits; guards the loop
            return None
        decoding = [r for r, n in scheduled if n == 1 and r.computed == r.tokens - 1 and r.generated]
        pieces = [(r, n) for r, n in scheduled if not (n == 1 and r.computed == r.tokens - 1 and r.generated)]
        context = sum(r.computed for r in decoding) / len(decoding) if decoding else 0
        shapes[StepShape(len(decoding), round(context / bucket) * bucket,
                         tuple(sorted((round(r.computed / bucket) * bucket, n) for r, n in pieces)))] += 1
        gave = False
        for req, new in scheduled:
            req.computed += new
            computed += new
            if req.computed >= req.tokens:
                gave = True
                req.generated += 1
                if req.generated >= req.output:
                    running.remove(req)
                    pool.release(req, block, prefix_cache)
        output_steps += gave
    return QueueRun(tuple(shapes.items()), preemptions, computed, output_steps)
