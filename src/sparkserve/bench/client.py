"""Send one streaming request and time it: payloads per API, transport errors mapped to kinds.

One aiohttp session (with a connector sized to the load) carries every request of a run.
"""

from __future__ import annotations

import errno
import json
import time
from dataclasses import dataclass

import aiohttp

from sparkserve.bench.outcome import (
    CONNECTION_ERROR,
    CONNECTION_REFUSED,
    HTTP_STATUS,
    TIMEOUT,
    TRUNCATED_STREAM,
    Outcome,
)
from sparkserve.bench.stream import OllamaStream, OpenAIStream, StreamFault
from sparkserve.bench.target import Target
from sparkserve.bench.tokens import TokenSource

Message = dict[str, str]


@dataclass(frozen=True)
class RequestOptions:
    ignore_eos: bool = True  # fixed output length on vLLM; Ollama has no such switch
    # None: greedy (0), reproducible; `vllm bench serve` asks the same only with --temperature 0 since
    # vLLM PR #32723 (before it, by default).
    temperature: float | None = None
    # vLLM's `continuous_usage_stats`: a token count in every chunk. Off by default: the server then
    # computes and serialises usage per token, work `vllm bench serve` does not ask of it.
    per_chunk_usage: bool = False
    timeout_s: float = 300.0  # whole request, connect to last byte
    connect_timeout_s: float = 10.0


def payload(target: Target, messages: list[Message], max_tokens: int, opts: RequestOptions) -> bytes:
    """The JSON body for a conversation so far (one user message for single-turn workloads)."""
    if target.api == "openai-chat":
        body: dict = {
            "model": target.model, "messages": messages, "max_tokens": max_tokens, "stream": True,
            "stream_options": _stream_options(opts),
        }
    elif target.api == "openai-completions":
        body = {
            "model": target.model, "prompt": as_prompt(messages), "max_tokens": max_tokens, "stream": True,
            "stream_options": _stream_options(opts),
        }
    else:
        options: dict = {"num_predict": max_tokens, "temperature": _temperature(opts)}
        body = {"model": target.model, "stream": True, "options": options}
        if target.api == "ollama-chat":
            body["messages"] = messages
        else:
            body["prompt"] = as_prompt(messages)
        return json.dumps(body).encode()
    if opts.ignore_eos:
        body["ignore_eos"] = True
    body["temperature"] = _temperature(opts)
    return json.dumps(body).encode()


def _temperature(opts: RequestOptions) -> float:
    return 0.0 if opts.temperature is None else opts.temperature


def _stream_options(opts: RequestOptions) -> dict[str, bool]:
    """The final chunk's usage always (exact output count); per-chunk usage only when asked."""
    return {"include_usage": True, "continuous_usage_stats": True} if opts.per_chunk_usage else {"include_usage": True}


def as_prompt(messages: list[Message]) -> str:
    """A conversation as one completion prompt; a single user message is sent as it is."""
    if len(messages) == 1:
        return messages[0]["content"]
    lines = [f"{'User' if m['role'] == 'user' else 'Assistant'}: {m['content']}" for m in messages]
    return "\n".join(lines) + "\nAssistant:"


def make_session(concurrency_limit: int) -> aiohttp.ClientSession:
    """One session for the run; the connector holds as many connections as requests in flight."""
    connector = aiohttp.TCPConnector(limit=concurrency_limit, limit_per_host=concurrency_limit,
                                     keepalive_timeout=60, enable_cleanup_closed=True)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None),
                                 skip_auto_headers=("User-Agent",), auto_decompress=False)


class Client:
    """Sends requests to one target; `send` never raises for server faults."""

    def __init__(self, target: Target, session: aiohttp.ClientSession, tokens: TokenSource,
                 opts: RequestOptions) -> None:
        self.target = target
        self.session = session
        self.tokens = tokens
        self.opts = opts
        self.url = target.base_url + target.endpoint
        self.headers = target.headers()
        self.timeout = aiohttp.ClientTimeout(total=opts.timeout_s, sock_connect=opts.connect_timeout_s)
        self.chat = target.api in ("openai-chat", "ollama-chat")

    async def send(self, outcome: Outcome, messages: list[Message], max_tokens: int,
                   keep_text: bool = False) -> Outcome:
        body = payload(self.target, messages, max_tokens, self.opts)
        if self.target.is_ollama:
            stream: OpenAIStream | OllamaStream = OllamaStream(outcome, chat=self.chat, keep_text=keep_text)
        else:
            stream = OpenAIStream(outcome, chat=self.chat, count_text=self.tokens.count, keep_text=keep_text)
        clock = time.perf_counter
        started = False
        outcome.sent_at = t0 = clock()
        try:
            async with self.session.post(self.url, data=body, headers=self.headers, timeout=self.timeout) as resp:
                started = True
                if resp.status >= 300:
                    text = (await resp.content.read(2000)).decode("utf-8", "replace")
                    outcome.fail(HTTP_STATUS, f"HTTP {resp.status}: {_brief(text)}", resp.status)
                    return outcome
                feed, read = stream.feed, resp.content.readany
                while data := await read():
                    feed(data, clock() - t0)
                stream.finish()
                outcome.ok = True
        except StreamFault as fault:
            outcome.fail(fault.kind, str(fault))
        except TimeoutError:
            outcome.fail(TIMEOUT, f"no complete answer within {self.opts.timeout_s:g} s")
        except aiohttp.ClientConnectorError as exc:
            refused = getattr(exc.os_error, "errno", None) == errno.ECONNREFUSED
            outcome.fail(CONNECTION_REFUSED if refused else CONNECTION_ERROR, f"{type(exc).__name__}: {exc}")
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, ConnectionResetError) as exc:
            kind = TRUNCATED_STREAM if started else CONNECTION_ERROR
            outcome.fail(kind, f"{type(exc).__name__}: {exc}")
        except aiohttp.ClientError as exc:
            outcome.fail(CONNECTION_ERROR, f"{type(exc).__name__}: {exc}")
        except OSError as exc:
            outcome.fail(CONNECTION_ERROR, f"{type(exc).__name__}: {exc}")
        finally:
            outcome.ended_at = clock()
        return outcome


def _brief(text: str) -> str:
    try:
        data = json.loads(text)
    except ValueError:
        return " ".join(text.split())[:200]
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            return str(err.get("message") or err)[:200]
        return str(err)[:200]
    return str(data)[:200]
