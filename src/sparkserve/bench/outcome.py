"""What one request left behind: its timings, token counts and, when it failed, why.

Filled on the hot path (`client`), read by `metrics`; plain slots, no validation, no copies.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Error kinds, counted per kind in every result (docs/bench.md defines each).
CONNECTION_REFUSED = "connection_refused"  # TCP connect refused while the server still answers probes
CONNECTION_ERROR = "connection_error"  # reset or other transport failure before a response
HTTP_STATUS = "http_status"  # a non-2xx answer
MALFORMED_STREAM = "malformed_stream"  # a line that is neither SSE/NDJSON nor valid JSON
STREAM_ERROR = "stream_error"  # the server reported an error inside the stream
TRUNCATED_STREAM = "truncated_stream"  # the stream ended before its end marker, server still up
EMPTY_STREAM = "empty_stream"  # a complete stream that carried no output token
TIMEOUT = "timeout"  # no complete answer within --timeout
SERVER_DIED = "server_died"  # the request broke and the server stopped accepting connections
ERROR_KINDS = (CONNECTION_REFUSED, CONNECTION_ERROR, HTTP_STATUS, MALFORMED_STREAM, STREAM_ERROR,
               TRUNCATED_STREAM, EMPTY_STREAM, TIMEOUT, SERVER_DIED)
# Kinds that may mean the server is gone: the runner probes it before believing the kind.
TRANSPORT_KINDS = frozenset({CONNECTION_REFUSED, CONNECTION_ERROR, TRUNCATED_STREAM})


@dataclass(slots=True)
class Outcome:
    """One request. Times are seconds; chunk offsets are from `sent_at` (time.perf_counter)."""

    index: int
    session: int = 0
    turn: int = 0
    prompt_tokens_sent: int | None = None  # our tokenizer's count of what we sent (None: unknown)
    expected_output_tokens: int | None = None
    queued_at: float = 0.0  # when the load pattern released it (rate mode: its arrival)
    sent_at: float = 0.0  # just before the HTTP request was written
    ended_at: float = 0.0  # when its handling finished, success or not
    chunk_times: list[float] = field(default_factory=list)  # arrival of each chunk that carried output tokens
    chunk_tokens: list[int] = field(default_factory=list)  # output tokens each of those chunks carried
    tokens_exact: bool = True  # chunk_tokens came from the server's counts, not a tokenizer's estimate
    output_tokens: int | None = None  # the server's final count (usage / eval_count)
    prompt_tokens: int | None = None  # the server's prompt count (usage / prompt_eval_count)
    ok: bool = False
    error_kind: str | None = None
    error: str | None = None
    http_status: int | None = None
    finish_reason: str | None = None
    short_output: bool = False  # fewer tokens than asked for (Ollama has no ignore_eos)
    server_timing: dict[str, float] | None = None  # Ollama's own nanosecond timings, as ms
    text: str | None = None  # the generated text, kept only when a later turn needs it

    def fail(self, kind: str, message: str, status: int | None = None) -> Outcome:
        self.ok = False
        self.error_kind = kind
        self.error = message[:300]
        if status is not None:
            self.http_status = status
        return self

    @property
    def tokens(self) -> int:
        """Output tokens: the server's count when it gave one, else the sum over chunks."""
        if self.output_tokens is not None:
            return self.output_tokens
        return sum(self.chunk_tokens)
