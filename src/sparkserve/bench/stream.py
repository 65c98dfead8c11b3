"""Parse response streams as they arrive: the hot path, one call per network read.

OpenAI-compatible servers send SSE (`data: {json}` lines, then `data: [DONE]`); Ollama sends
one JSON object per line, the last with `"done":true` and the server's timings. A token chunk
is timed when its bytes arrive. When the server counts tokens in every chunk (vLLM with
`stream_options.continuous_usage_stats`), a byte scan reads that count and no JSON is parsed;
otherwise the chunk's text is decoded and counted with the tokenizer.

Scans cannot be fooled by text: inside a JSON string every quote is escaped, so `"completion_tokens":`
with bare quotes only appears as a key. The key sits near the end of vLLM's chunks, hence rfind.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from sparkserve.bench.outcome import EMPTY_STREAM, MALFORMED_STREAM, STREAM_ERROR, TRUNCATED_STREAM, Outcome

_COMPLETION_KEY = b'"completion_tokens":'
_NUMBER = re.compile(rb"\s*(\d+)")
_PROMPT_TOKENS = re.compile(rb'"prompt_tokens":\s*(\d+)')
_EMPTY_CHOICES = re.compile(rb'"choices":\s*\[\s*\]')
_SSE_FIELDS = (b":", b"event:", b"id:", b"retry:")

Counter = Callable[[str], int]


def _usage_only(payload: bytes) -> bool:
    """A chunk with `"choices": []`: the final usage report, which carries no token."""
    if b'"choices":[]' in payload:
        return True
    return b'"choices": ' in payload and _EMPTY_CHOICES.search(payload) is not None


def _complete_lines(stream: OpenAIStream | OllamaStream, data: bytes) -> list[bytes]:
    """The lines that `data` completes; a trailing partial line waits in `stream.buf` for the next read."""
    if stream.buf:
        data = stream.buf + data
    lines = data.split(b"\n")
    stream.buf = lines.pop()
    return lines


class StreamFault(Exception):
    """The stream broke its protocol; `kind` is one of the outcome error kinds."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class OpenAIStream:
    """SSE from /v1/completions or /v1/chat/completions."""

    __slots__ = ("o", "chat", "count_text", "keep_text", "buf", "done", "seen", "parts", "first", "texts")

    def __init__(self, outcome: Outcome, *, chat: bool, count_text: Counter, keep_text: bool) -> None:
        self.o = outcome
        self.chat = chat
        self.count_text = count_text
        self.keep_text = keep_text
        self.buf = b""
        self.done = False
        self.seen = 0  # the server's running completion_tokens
        self.parts: list[str] = []
        self.first = True
        self.texts: list[str] = []  # chunks without a server count, counted only if no total arrives

    def feed(self, data: bytes, t: float) -> None:
        """Consume bytes that arrived at `t` (seconds after the request was sent)."""
        for line in _complete_lines(self, data):
            if not line or line == b"\r":
                continue
            if line[:5] != b"data:":
                if line.startswith(_SSE_FIELDS):
                    continue
                raise StreamFault(MALFORMED_STREAM, f"not an SSE line: {line[:80]!r}")
            payload = line[5:].strip()
            if payload[:1] != b"{":
                if payload == b"[DONE]":
                    self.done = True
                    continue
                raise StreamFault(MALFORMED_STREAM, f"SSE data is not JSON: {payload[:80]!r}")
            if payload[-1:] != b"}":
                raise StreamFault(MALFORMED_STREAM, f"SSE data is not complete JSON: {payload[-80:]!r}")
            if not self.keep_text:
                at = payload.rfind(_COMPLETION_KEY)
                if at >= 0:
                    found = _NUMBER.match(payload, at + 20)
                    if found is not None:
                        self._counted(int(found.group(1)), payload, t)
                        continue
            self._parsed(payload, t)

    def _counted(self, total: int, payload: bytes, t: float) -> None:
        if self.first:
            self.first = False
            found = _PROMPT_TOKENS.search(payload)
            if found is not None:
                self.o.prompt_tokens = int(found.group(1))
        new = total - self.seen
        if new > 0 and not _usage_only(payload):
            self.seen = total
            self.o.chunk_times.append(t)
            self.o.chunk_tokens.append(new)
        self.o.output_tokens = total

    def _parsed(self, payload: bytes, t: float) -> None:
        try:
            event = json.loads(payload)
        except ValueError:
            raise StreamFault(MALFORMED_STREAM, f"SSE data is not valid JSON: {payload[:80]!r}") from None
        if not isinstance(event, dict):
            raise StreamFault(MALFORMED_STREAM, f"SSE data is not a JSON object: {payload[:80]!r}")
        if "error" in event or event.get("object") == "error":
            err = event.get("error", event)
            message = err.get("message", str(err)) if isinstance(err, dict) else str(err)
            raise StreamFault(STREAM_ERROR, f"server error in stream: {message}")
        usage = event.get("usage")
        choices = event.get("choices") or []
        text = ""
        if choices and isinstance(choices[0], dict):
            choice = choices[0]
            if self.chat:
                text = (choice.get("delta") or {}).get("content") or ""
            else:
                text = choice.get("text") or ""
            if choice.get("finish_reason"):
                self.o.finish_reason = choice["finish_reason"]
            if text and self.keep_text:
                self.parts.append(text)
        if isinstance(usage, dict) and usage.get("completion_tokens") is not None:
            if usage.get("prompt_tokens") is not None:
                self.o.prompt_tokens = int(usage["prompt_tokens"])
            total = int(usage["completion_tokens"])
            if choices:
                new = total - self.seen
                if new > 0:
                    self.o.chunk_times.append(t)
                    self.o.chunk_tokens.append(new)
                self.seen = max(self.seen, total)
            self.o.output_tokens = total
            return
        if choices and text:
            # No per-chunk count: one token per chunk, as vLLM streams them (and as `vllm bench serve`
            # counts); the final usage chunk then gives the exact total. Without one, count the text.
            self.o.chunk_times.append(t)
            self.o.chunk_tokens.append(1)
            self.texts.append(text)

    def finish(self) -> None:
        """The connection ended: judge whether the stream was complete."""
        if self.buf.strip():
            self.feed(b"\n", self.o.chunk_times[-1] if self.o.chunk_times else 0.0)
        if not self.done:
            raise StreamFault(TRUNCATED_STREAM, "the stream ended before data: [DONE]")
        if not self.o.chunk_times:
            raise StreamFault(EMPTY_STREAM, "the stream carried no output token")
        if self.texts and (self.o.output_tokens is None or sum(self.o.chunk_tokens) != self.o.output_tokens):
            # No total, or chunks that held several tokens: count their text after the stream, off the hot path.
            self.o.tokens_exact = False
            uncounted = len(self.o.chunk_tokens) - len(self.texts)
            self.o.chunk_tokens[uncounted:] = [max(1, self.count_text(text)) for text in self.texts]
        if self.keep_text:
            self.o.text = "".join(self.parts)


class OllamaStream:
    """NDJSON from Ollama's /api/generate or /api/chat."""

    __slots__ = ("o", "chat", "keep_text", "buf", "done", "parts", "empty")

    def __init__(self, outcome: Outcome, *, chat: bool, keep_text: bool) -> None:
        self.o = outcome
        self.chat = chat
        self.keep_text = keep_text
        self.buf = b""
        self.done = False
        self.parts: list[str] = []
        self.empty = b'"content":""' if chat else b'"response":""'

    def feed(self, data: bytes, t: float) -> None:
        for line in _complete_lines(self, data):
            line = line.strip()
            if not line:
                continue
            if line[:1] != b"{" or line[-1:] != b"}":
                raise StreamFault(MALFORMED_STREAM, f"not a JSON line: {line[:80]!r}")
            if b'"done":false' in line and not self.keep_text and b'"error"' not in line:
                if self.empty not in line:
                    # Ollama's runner streams one token per chunk; it gives no per-chunk count.
                    self.o.chunk_times.append(t)
                    self.o.chunk_tokens.append(1)
                continue
            self._parsed(line, t)

    def _parsed(self, line: bytes, t: float) -> None:
        try:
            event = json.loads(line)
        except ValueError:
            raise StreamFault(MALFORMED_STREAM, f"not valid JSON: {line[:80]!r}") from None
        if not isinstance(event, dict):
            raise StreamFault(MALFORMED_STREAM, f"not a JSON object: {line[:80]!r}")
        if "error" in event:
            raise StreamFault(STREAM_ERROR, f"server error in stream: {event['error']}")
        text = (event.get("message") or {}).get("content", "") if self.chat else event.get("response", "")
        if text:
            self.o.chunk_times.append(t)
            self.o.chunk_tokens.append(1)
            if self.keep_text:
                self.parts.append(text)
        if event.get("done"):
            self.done = True
            self._final(event)

    def _final(self, event: dict) -> None:
        o = self.o
        o.finish_reason = event.get("done_reason")
        if event.get("eval_count") is not None:
            o.output_tokens = int(event["eval_count"])
        if event.get("prompt_eval_count") is not None:
            o.prompt_tokens = int(event["prompt_eval_count"])
        timing = {key: event[key] / 1e6 for key in
                  ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration")
                  if isinstance(event.get(key), (int, float))}
        for key in ("eval_count", "prompt_eval_count"):
            if isinstance(event.get(key), int):
                timing[key] = event[key]
        o.server_timing = {k.replace("_duration", "_ms"): v for k, v in timing.items()} or None

    def finish(self) -> None:
        if self.buf.strip():
            self.feed(b"\n", self.o.chunk_times[-1] if self.o.chunk_times else 0.0)
        if not self.done:
            raise StreamFault(TRUNCATED_STREAM, 'the stream ended before "done": true')
        o = self.o
        o.tokens_exact = False
        if not o.chunk_times:
            raise StreamFault(EMPTY_STREAM, "the stream carried no output token")
        if o.expected_output_tokens and o.output_tokens is not None and o.output_tokens < o.expected_output_tokens:
            o.short_output = True
        if self.keep_text:
            o.text = "".join(self.parts)
