"""Drive load: fixed concurrency or a request rate (Poisson or gamma arrivals), bounded always.

A point stops issuing after `num_prompts` requests (rounded up to whole conversations) or
`duration_s` seconds, whichever comes first, when the server dies, or on interrupt. Requests
in flight then finish (each is bounded by the client's timeout); with `duration_s` they get as
long again at most, then are cancelled (counted as cancelled, not failed); on interrupt they are
cancelled at once. Warm-up requests run before the clock starts, are not recorded, and are
cancelled at once on interrupt too.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from sparkserve.bench.client import Client, Message
from sparkserve.bench.outcome import SERVER_DIED, TRANSPORT_KINDS, Outcome
from sparkserve.bench.workload import Session, Workload

PROBE_TTL_S = 0.2
PROBE_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class LoadPoint:
    """One load level: `concurrency` requests in flight, or `rate` arrivals/s (capped by concurrency)."""

    concurrency: int | None = None
    rate: float | None = None
    burstiness: float = 1.0  # gamma shape of inter-arrival times; 1 is Poisson

    @property
    def mode(self) -> str:
        return "rate" if self.rate is not None else "concurrency"

    @property
    def label(self) -> str:
        if self.rate is None:
            return f"concurrency {self.concurrency}"
        cap = f", max {self.concurrency} in flight" if self.concurrency else ""
        shape = "" if self.burstiness == 1.0 else f", burstiness {self.burstiness:g}"
        return f"rate {self.rate:g}/s{shape}{cap}"


@dataclass(frozen=True)
class StopRule:
    num_prompts: int | None = None
    duration_s: float | None = None


@dataclass
class PointRun:
    """What one load point produced, for `metrics.summarize` and the result."""

    point: LoadPoint
    outcomes: list[Outcome] = field(default_factory=list)
    started_at: float = 0.0  # perf_counter at the first measured send
    wall_started: float = 0.0  # time.time() at the same moment
    duration_s: float = 0.0
    stopped_reason: str = "num_prompts"
    cancelled: int = 0  # in flight when interrupted; not counted as failures
    issued: int = 0
    in_flight: int = 0
    warmup_failed: int = 0


class Liveness:
    """Is the server still there? An HTTP probe, so a broken request can be told from a dead server.

    A dying process may keep its listening socket a moment longer than its connections, so a
    bare TCP connect can still succeed; the probe waits for an HTTP answer instead. Once the
    server is seen dead it stays dead for the run; "alive" is trusted for PROBE_TTL_S.
    """

    def __init__(self, session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> None:
        self.session = session
        self.url = url  # a cheap endpoint: /v1/models, /api/version
        self.headers = headers
        self._checked = -math.inf
        self._alive = True
        self._lock = asyncio.Lock()

    async def alive(self) -> bool:
        async with self._lock:
            if not self._alive or time.perf_counter() - self._checked < PROBE_TTL_S:
                return self._alive
            try:
                timeout = aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S)
                async with self.session.get(self.url, headers=self.headers, timeout=timeout) as resp:
                    await resp.read()
                    self._alive = resp.status < 500
            except TimeoutError:
                self._alive = True  # slow is not dead: an overloaded server must not end the run
            except (aiohttp.ClientError, OSError):
                self._alive = False
            self._checked = time.perf_counter()
            return self._alive


class PointDriver:
    """Runs one load point; `interrupt` (an Event) stops it early and keeps what finished."""

    def __init__(self, client: Client, workload: Workload, point: LoadPoint, stop: StopRule, *,
                 first_session: int, warmup: int, liveness: Liveness, interrupt: asyncio.Event,
                 seed: int = 0, on_outcome: Callable[[PointRun, Outcome], None] | None = None,
                 on_start: Callable[[], Awaitable[None]] | None = None) -> None:
        self.client = client
        self.workload = workload
        self.point = point
        self.stop = stop
        self.next_session = first_session
        self._first = first_session
        self.warmup = warmup
        self.liveness = liveness
        self.interrupt = interrupt
        self.rng = random.Random(f"{seed}:arrivals:{first_session}")
        self.on_outcome = on_outcome
        self.on_start = on_start
        self.run = PointRun(point=point)
        self.deadline = math.inf
        self.halt = False  # stop issuing: deadline passed, server died or interrupted
        self.tasks: set[asyncio.Task] = set()
        # Rate mode caps requests in flight here; concurrency mode has exactly that many workers.
        self.gate = asyncio.Semaphore(point.concurrency) if point.rate is not None and point.concurrency else None
        self.keep_text = workload.turns_per_session > 1
        self.ready: deque[Session] = deque()  # sessions built before the clock starts

    # -- issuing ---------------------------------------------------------------------------
    def _may_continue(self) -> bool:
        """May a request still be sent: not stopped, not interrupted, not past the deadline."""
        if self.halt or self.interrupt.is_set():
            return False
        if time.perf_counter() >= self.deadline:
            self.run.stopped_reason = "duration"
            self.halt = True
            return False
        return True

    def _may_start_session(self) -> bool:
        """May a new session begin: num_prompts counts requests, rounded up to whole conversations."""
        if not self._may_continue():
            return False
        return self.stop.num_prompts is None or self.next_session - self._first < self._sessions_needed()

    def _draw(self) -> Session:
        session = self.ready.popleft() if self.ready else self.workload.session(self.next_session)
        self.next_session += 1
        return session

    async def _request(self, session: Session, turn: int, history: list[Message], queued_at: float) -> Outcome:
        spec = session.turns[turn]
        outcome = Outcome(index=self.run.issued, session=session.index, turn=turn,
                          prompt_tokens_sent=spec.prompt_tokens if turn == 0 else None,
                          expected_output_tokens=spec.output_tokens, queued_at=queued_at)
        self.run.issued += 1
        self.run.in_flight += 1
        try:
            await self.client.send(outcome, history, spec.output_tokens, keep_text=self.keep_text)
        finally:
            self.run.in_flight -= 1
        if not outcome.ok and outcome.error_kind in TRANSPORT_KINDS and not await self.liveness.alive():
            outcome.error_kind = SERVER_DIED
            if not self.halt:
                self.run.stopped_reason = "server_died"
            self.halt = True
        return outcome

    async def _session(self, session: Session, queued_at: float) -> None:
        history: list[Message] = []
        for turn, spec in enumerate(session.turns):
            if turn > 0 and not self._may_continue():
                return
            history.append({"role": "user", "content": spec.user})
            if self.gate is not None:
                async with self.gate:
                    outcome = await self._request(session, turn, history, queued_at)
            else:
                outcome = await self._request(session, turn, history, queued_at)
            self.run.outcomes.append(outcome)
            if self.on_outcome is not None:
                self.on_outcome(self.run, outcome)
            if not outcome.ok:
                return
            history.append({"role": "assistant", "content": outcome.text or ""})
            queued_at = time.perf_counter()

    async def _worker(self) -> None:
        while self._may_start_session():
            await self._session(self._draw(), time.perf_counter())

    async def _arrivals(self) -> None:
        rate, shape = self.point.rate, self.point.burstiness
        assert rate is not None
        due = time.perf_counter()
        while True:
            if not math.isinf(rate):
                due += self.rng.gammavariate(shape, 1.0 / (rate * shape))
                wait = due - time.perf_counter()
                if wait > 0:
                    await asyncio.sleep(wait)
            if not self._may_start_session():
                return
            task = asyncio.create_task(self._session(self._draw(), due))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def _sessions_needed(self) -> int:
        assert self.stop.num_prompts is not None
        return math.ceil(self.stop.num_prompts / self.workload.turns_per_session)

    # -- warm-up and the measured run --------------------------------------------------------
    async def _warm(self) -> None:
        width = max(1, min(self.warmup, self.point.concurrency or 1))
        queue = list(range(self.warmup))

        async def one() -> None:
            while queue and not self.interrupt.is_set():
                session = self.workload.warmup_session(queue.pop())
                spec = session.turns[0]
                outcome = Outcome(index=-1, expected_output_tokens=spec.output_tokens)
                await self.client.send(outcome, [{"role": "user", "content": spec.user}], spec.output_tokens)
                self.run.warmup_failed += not outcome.ok

        warm = asyncio.gather(*(one() for _ in range(width)))
        stopper = asyncio.create_task(self.interrupt.wait())
        try:
            waiting: set[asyncio.Future[Any]] = {warm, stopper}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if not warm.done():  # Ctrl-C: a warm-up request may take up to the request timeout
                warm.cancel()
                await asyncio.gather(warm, return_exceptions=True)
            else:
                warm.result()
        finally:
            stopper.cancel()

    async def _drive(self) -> None:
        if self.point.rate is None:
            width = self.point.concurrency or 1
            if self.stop.num_prompts is not None:
                width = min(width, self._sessions_needed())
            workers = [asyncio.create_task(self._worker()) for _ in range(width)]
            self.tasks.update(workers)
            await asyncio.gather(*workers)
        else:
            await self._arrivals()
            while self.tasks:
                await asyncio.gather(*list(self.tasks))

    async def execute(self) -> PointRun:
        if self.warmup:
            await self._warm()
        self._first = self.next_session
        if self.stop.num_prompts is not None:
            # Build every prompt now: tokenizing inside the measured window would cost the client CPU.
            self.ready.extend(self.workload.session(self._first + i) for i in range(self._sessions_needed()))
        if self.on_start is not None and not self.interrupt.is_set():
            await self.on_start()
        run = self.run
        run.started_at = time.perf_counter()
        run.wall_started = time.time()
        if self.stop.duration_s is not None:
            self.deadline = run.started_at + self.stop.duration_s
        drive = asyncio.create_task(self._drive())
        stopper = asyncio.create_task(self.interrupt.wait())
        # Requests in flight at the deadline get as long again as the point issued, then are cancelled.
        cut = None if self.stop.duration_s is None else max(0.0, run.started_at + 2 * self.stop.duration_s
                                                              - time.perf_counter())
        try:
            await asyncio.wait({drive, stopper}, timeout=cut, return_when=asyncio.FIRST_COMPLETED)
            if not drive.done():
                self.halt = True
                run.stopped_reason = "interrupted" if self.interrupt.is_set() else "duration"
                run.cancelled = run.in_flight
                drive.cancel()
                for task in list(self.tasks):
                    task.cancel()
                await asyncio.gather(drive, *self.tasks, return_exceptions=True)
            else:
                drive.result()
        finally:
            stopper.cancel()
        ends = [o.ended_at for o in run.outcomes]
        end = time.perf_counter() if run.cancelled or run.stopped_reason == "interrupted" or not ends else max(ends)
        run.duration_s = max(0.0, end - run.started_at)
        run.outcomes.sort(key=lambda o: o.sent_at)
        for i, outcome in enumerate(run.outcomes):
            outcome.index = i
        return run
