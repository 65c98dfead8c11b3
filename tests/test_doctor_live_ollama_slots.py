"""`doctor --live` names OLLAMA_NUM_PARALLEL saturation, through real HTTP on 127.0.0.1.

No Ollama binary can run here, so an aiohttp stand-in speaks Ollama's API shapes (/api/version,
/api/ps, streamed and whole /api/generate) and queues requests beyond its parallel count on a
semaphore, as Ollama does in front of its runner (llm/llama_server.go: a weighted semaphore of
NUM_PARALLEL). Real clients keep it busy; the stand-in records every request sparkserve sends.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx
from aiohttp import web

from sparkserve.doctor.live import diagnose_live
from sparkserve.engines import get_engine
from sparkserve.engines.live import LiveSample, Window
from sparkserve.engines.ollama_doctor import USER_AGENT, diagnose_slots

MODEL = "qwen3:8b"
CTX = 8192
TOKEN_S = 0.025  # the stand-in's decode step
LOAD_TOKENS = 48  # a client request holds a slot for 48 steps


@dataclass
class StandIn:
    parallel: int
    generate: list[dict] = field(default_factory=list)  # every /api/generate: body, from the probe, queued
    probes_in_flight: int = 0
    probes_in_flight_peak: int = 0


STATE = web.AppKey("state", StandIn)
SLOTS = web.AppKey("slots", asyncio.Semaphore)


async def _version(request: web.Request) -> web.Response:
    return web.json_response({"version": "0.20.3"})


async def _ps(request: web.Request) -> web.Response:
    gib = 1024**3
    return web.json_response({"models": [{
        "name": MODEL, "model": MODEL, "size": 6 * gib, "size_vram": 6 * gib, "digest": "0" * 64,
        "expires_at": "2099-01-01T00:30:00Z", "context_length": CTX,
        "details": {"format": "gguf", "family": "qwen3", "quantization_level": "Q4_K_M"}}]})


async def _generate(request: web.Request) -> web.StreamResponse:
    state, slots = request.app[STATE], request.app[SLOTS]
    body = await request.json()
    probe = request.headers.get("User-Agent") == USER_AGENT
    entry = {"body": body, "probe": probe, "queued": slots.locked()}  # every slot taken when it arrived
    state.generate.append(entry)
    if probe:
        state.probes_in_flight += 1
        state.probes_in_flight_peak = max(state.probes_in_flight_peak, state.probes_in_flight)
    start = time.monotonic()
    try:
        async with slots:  # beyond NUM_PARALLEL a request waits here, before its prompt is read
            tokens = int(body.get("options", {}).get("num_predict", 16))
            stream = body.get("stream", True)
            response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
            if stream:
                await response.prepare(request)
            began = time.monotonic()
            for i in range(tokens):
                await asyncio.sleep(TOKEN_S)
                if stream:
                    line = {"model": MODEL, "created_at": "2026-12-04T09:00:00Z", "response": f" t{i}", "done": False}
                    await response.write(json.dumps(line).encode() + b"\n")
            final = {"model": MODEL, "created_at": "2026-12-04T09:00:00Z", "response": "", "done": True,
                     "done_reason": "length", "total_duration": int((time.monotonic() - start) * 1e9),
                     "load_duration": 1_000_000, "prompt_eval_count": 12, "prompt_eval_duration": 3_000_000,
                     "eval_count": tokens, "eval_duration": int((time.monotonic() - began) * 1e9)}
            if not stream:
                return web.json_response(final)
            await response.write(json.dumps(final).encode() + b"\n")
            await response.write_eof()
            return response
    except ConnectionResetError:  # the client hung up: sparkserve cuts a probe still waiting when it is done
        entry["cut"] = True
        return web.Response(status=499)
    finally:
        if probe:
            state.probes_in_flight -= 1


@contextmanager
def _ollama(parallel: int) -> Iterator[tuple[str, StandIn]]:
    state = StandIn(parallel)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, object] = {}

    async def start() -> None:
        app = web.Application()
        app[STATE], app[SLOTS] = state, asyncio.Semaphore(parallel)
        app.router.add_get("/api/version", _version)
        app.router.add_get("/api/ps", _ps)
        app.router.add_post("/api/generate", _generate)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        holder["runner"], holder["port"] = runner, runner.addresses[0][1]
        ready.set()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(start()), loop.run_forever()), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield f"http://127.0.0.1:{holder['port']}", state
    finally:
        asyncio.run_coroutine_threadsafe(holder["runner"].cleanup(), loop).result(10)  # type: ignore[union-attr]
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


@contextmanager
def _clients(url: str, n: int) -> Iterator[None]:
    """`n` users who send the next request as soon as the last is answered."""
    stop = threading.Event()

    def user() -> None:
        with httpx.Client(timeout=60, trust_env=False) as client:
            while not stop.is_set():
                client.post(url + "/api/generate", json={"model": MODEL, "prompt": "Write a story.", "stream": False,
                                                         "options": {"num_predict": LOAD_TOKENS, "num_ctx": CTX}})

    threads = [threading.Thread(target=user, daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    time.sleep(0.3)  # every user has a request running or queued
    try:
        yield
    finally:
        stop.set()
        for t in threads:
            t.join(30)


def _probe_requests(state: StandIn) -> list[dict]:
    return [e for e in state.generate if e["probe"]]


def _no_probe_thread_left() -> bool:
    return not any(t.name == "sparkserve-ollama-slot-probe" and t.is_alive() for t in threading.enumerate())


def test_every_slot_busy_is_named_with_the_wait_and_the_fix():
    with _ollama(parallel=1) as (url, state), _clients(url, 3):
        result = diagnose_live(url, [get_engine("ollama").live_probe()], 5.0, settings={"num_parallel": 1},
                               plan={"kv_slot_gib": 1.125, "headroom_gib": 20.0})
    assert [f.cause_id for f in result.findings] == ["ollama_parallel_saturated"]
    finding = result.findings[0]
    assert "waited for a slot" in finding.evidence[0]
    assert finding.evidence[1].startswith(f"{MODEL} resident in /api/ps in all")
    assert "OLLAMA_NUM_PARALLEL is 1" in finding.evidence
    assert finding.fix.startswith("Raise OLLAMA_NUM_PARALLEL from 1 to 2: each slot holds num_ctx tokens of KV (1.12 GiB")
    probes = _probe_requests(state)
    assert probes and any(p["queued"] for p in probes)  # the stand-in really queued them
    for p in probes:  # the resident model at its own num_ctx (another would force a reload), a short streamed reply
        assert p["body"]["model"] == MODEL and p["body"]["stream"] is True
        assert p["body"]["options"]["num_ctx"] == CTX and p["body"]["options"]["num_predict"] <= 8
    assert state.probes_in_flight_peak == 1  # sparkserve adds at most one request
    assert _no_probe_thread_left()


def test_a_free_slot_is_not_saturation():
    with _ollama(parallel=4) as (url, state), _clients(url, 2):
        result = diagnose_live(url, [get_engine("ollama").live_probe()], 3.0, settings={"num_parallel": 4})
    assert result.findings == []
    probes = _probe_requests(state)
    assert len(probes) >= 2 and not any(p["queued"] for p in probes)
    assert state.probes_in_flight_peak == 1
    assert _no_probe_thread_left()


def _window(waits: str, *, reads: int = 5, load: float = 0.0, resident: bool = True) -> Window:
    samples = []
    for i in range(reads):
        s = LiveSample(at=float(i), values={"probes": 2.0, "probes_waited": 2.0, "probe_step_s": 0.03,
                                            "probe_load_max_s": load},
                       info={"models": MODEL if resident or i == 0 else "", "probe_model": MODEL,
                             "probe_waits_s": waits})
        samples.append(s)
    return Window(tuple(samples), {"num_parallel": "2"}, {"kv_slot_gib": 4.0, "headroom_gib": 3.0})


def test_no_room_for_another_slot_says_replica_and_loads_are_not_a_queue():
    (finding,) = diagnose_slots(_window("3.10,2.90"))
    assert finding.fix.startswith("Memory does not allow another slot at this num_ctx (4.00 GiB each, 3.0 GiB left)")
    assert "median 3.0 s, longest 3.1 s" in finding.evidence[0] and "OLLAMA_NUM_PARALLEL is 2" in finding.evidence
    assert diagnose_slots(_window("3.10,2.90", load=2.5)) == []  # the probes waited for a load
    assert diagnose_slots(_window("3.10,2.90", resident=False)) == []  # the model left: a reload, not a queue
