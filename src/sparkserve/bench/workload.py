"""What the requests say: random prompts, shared prefixes, conversations, or a ShareGPT file.

Every request is part of a session (single-turn workloads: a session of one turn). Session i
is the same for a given seed whatever order it is drawn in, and each load point of a sweep
draws fresh indices, so one point's prompts never sit in the prefix cache for the next.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from sparkserve.bench.tokens import PromptSynth, TokenSource
from sparkserve.errors import UserError, read_json

KINDS = ("random", "prefix", "multiturn", "file")
WARMUP_BASE = 10_000_000  # warm-up sessions draw indices from here: never the measured prompts


@dataclass(frozen=True)
class WorkloadSpec:
    kind: str = "random"
    prompt_len: int = 256
    output_len: int = 128
    prefix_len: int | None = None  # prefix workload: shared tokens at the start (default: half the prompt)
    num_prefixes: int = 1  # prefix workload: distinct shared prefixes, used round robin
    turns: int = 3  # multiturn workload: user turns per conversation
    dataset: str | None = None  # file workload: ShareGPT JSON
    seed: int = 0


@dataclass(frozen=True)
class Turn:
    user: str
    prompt_tokens: int | None  # tokens of `user` by our tokenizer (None: approximate)
    output_tokens: int


@dataclass
class Session:
    index: int
    turns: list[Turn] = field(default_factory=list)


class Workload:
    """Draws sessions for a spec; prompts are exact token counts when the tokenizer is known."""

    def __init__(self, spec: WorkloadSpec, tokens: TokenSource, max_model_len: int | None = None) -> None:
        _check(spec, max_model_len)
        self.spec = spec
        self.tokens = tokens
        self.synth = PromptSynth(tokens, seed=spec.seed)
        self.prefixes: list[str] = []
        self.dataset: list[tuple[str, int | None, int]] = []
        if spec.kind == "prefix":
            self.prefixes = [self._text(self.prefix_len, random.Random(f"{spec.seed}:prefix:{j}"))
                             for j in range(spec.num_prefixes)]
        if spec.kind == "file":
            self.dataset = load_sharegpt(spec.dataset, tokens, spec.output_len, max_model_len, spec.seed)

    @property
    def prefix_len(self) -> int:
        """Shared prefix tokens of the prefix workload: --prefix-len, else half the prompt."""
        spec = self.spec
        return spec.prefix_len if spec.prefix_len is not None else spec.prompt_len // 2

    @property
    def turns_per_session(self) -> int:
        return self.spec.turns if self.spec.kind == "multiturn" else 1

    def _text(self, n: int, rng: random.Random, prefix: str = "") -> str:
        self.synth.rng = rng
        return self.synth.text(n, prefix)

    def _count(self, n: int) -> int | None:
        return n if self.tokens.exact else None

    def session(self, index: int) -> Session:
        spec = self.spec
        rng = random.Random(f"{spec.seed}:session:{index}")
        if spec.kind == "file":
            prompt, count, out = self.dataset[index % len(self.dataset)]
            return Session(index, [Turn(prompt, count, out)])
        if spec.kind == "prefix":
            prefix = self.prefixes[index % len(self.prefixes)]
            return Session(index, [Turn(self._text(spec.prompt_len, rng, prefix), self._count(spec.prompt_len),
                                        spec.output_len)])
        turns = self.turns_per_session
        return Session(index, [Turn(self._text(spec.prompt_len, rng), self._count(spec.prompt_len), spec.output_len)
                               for _ in range(turns)])

    def warmup_session(self, index: int) -> Session:
        return self.session(WARMUP_BASE + index)


def context_needed(spec: WorkloadSpec) -> int:
    """Tokens of context the longest request of a synthetic workload needs: every turn's prompt and
    reply, plus room for the chat template's own tokens (a few per message)."""
    turns = spec.turns if spec.kind == "multiturn" else 1
    return turns * (spec.prompt_len + spec.output_len) + 16 * turns


def check_spec(spec: WorkloadSpec) -> None:
    """Every mistake the flags alone show, before the server is asked anything."""
    _check(spec, None)
    if spec.kind == "file":
        file = Path(spec.dataset or "").expanduser()
        if not file.is_file():
            raise UserError(f"--dataset {file}: no such file (a ShareGPT JSON file)")


def _check(spec: WorkloadSpec, max_model_len: int | None) -> None:
    if spec.kind not in KINDS:
        raise UserError(f"--workload {spec.kind!r}: expected one of {', '.join(KINDS)}")
    if spec.prompt_len < 1 or spec.output_len < 1:
        raise UserError("--prompt-len and --output-len must be at least 1")
    if spec.kind == "file" and not spec.dataset:
        raise UserError("--workload file needs --dataset PATH (a ShareGPT JSON file)")
    if spec.kind != "file" and spec.dataset:
        raise UserError("--dataset is read only with --workload file")
    if spec.kind == "prefix":
        size = spec.prefix_len if spec.prefix_len is not None else spec.prompt_len // 2
        if not 1 <= size < spec.prompt_len:
            raise UserError(f"--prefix-len must be between 1 and --prompt-len - 1 ({spec.prompt_len - 1}), got {size}")
        if spec.num_prefixes < 1:
            raise UserError("--num-prefixes must be at least 1")
    if spec.kind == "multiturn" and spec.turns < 1:
        raise UserError("--turns must be at least 1")
    if max_model_len and spec.kind != "file":
        turns = spec.turns if spec.kind == "multiturn" else 1
        need = context_needed(spec)
        if need > max_model_len:
            raise UserError(f"the workload needs about {need} tokens of context ({turns} turn(s) of "
                            f"{spec.prompt_len} + {spec.output_len}) but the server's max_model_len is {max_model_len}")


def load_sharegpt(path: str | None, tokens: TokenSource, output_len: int, max_model_len: int | None,
                  seed: int) -> list[tuple[str, int | None, int]]:
    """(prompt, prompt tokens, output tokens) from a ShareGPT file: each entry's first human turn
    and, for the output length, its first reply's token count (as `vllm bench serve` does)."""
    file = Path(path or "").expanduser()
    data = read_json(file, f"--dataset {file}")
    if not isinstance(data, list):
        raise UserError(f"--dataset {file}: expected a JSON list of {{\"conversations\": [...]}} entries (ShareGPT)")
    out: list[tuple[str, int | None, int]] = []
    for entry in data:
        turns = entry.get("conversations") if isinstance(entry, dict) else None
        if not isinstance(turns, list) or len(turns) < 2:
            continue
        first, reply = turns[0], turns[1]
        if not (isinstance(first, dict) and isinstance(reply, dict)):
            continue
        if first.get("from") not in ("human", "user") or not isinstance(first.get("value"), str):
            continue
        prompt = first["value"]
        prompt_tokens = tokens.count(prompt)
        reply_tokens = tokens.count(str(reply.get("value", ""))) if tokens.exact else output_len
        if prompt_tokens < 4 or reply_tokens < 4:
            continue
        if max_model_len and prompt_tokens + reply_tokens > max_model_len:
            continue
        out.append((prompt, prompt_tokens if tokens.exact else None, reply_tokens))
    if not out:
        raise UserError(f"--dataset {file}: no usable conversation (each needs a human turn and a reply of 4+ tokens)")
    random.Random(seed).shuffle(out)
    return out
