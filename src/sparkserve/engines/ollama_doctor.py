"""Ollama's side of `doctor`: how Ollama prints its failures (log rules), and what /api/ps shows over a
serving window (`doctor --live`), in Ollama's own settings.

Ollama has no /metrics (ollama#3144): `/api/ps` is the view of which models it holds, how much of
each is on the GPU (size_vram of size) and when each expires. A model that leaves and comes back,
or whose expiry moves back, was loaded again during the window.

Nor does Ollama say how many requests wait. Beyond OLLAMA_NUM_PARALLEL a request waits for a slot
(a semaphore of NUM_PARALLEL in front of the runner: llm/llama_server.go, runner/*/runner.go) before
its prompt is read, so it waits for a whole running request to finish. `doctor --live` therefore
times its own small request now and then (one at a time, a few tokens, the resident model's num_ctx
so that it never forces a reload): with a free slot its first token follows after a decode step or
two; a wait of whole seconds with the model resident and not reloading means every slot was busy.
"""

from __future__ import annotations

import http.client
import json
import statistics
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from sparkserve.engines.live import LiveFinding, LiveSample, Window
from sparkserve.logrules import advice
from sparkserve.logrules.matcher import Fact, Fields, LogRules, Probe, Rule, probe, sig

if TYPE_CHECKING:
    import httpx

GIB = 1024**3
ON_GPU_FULL = 0.999  # size_vram below size by more than rounding: layers run on the CPU

# The slot probe. Thresholds decide what is named, not how fast anything is; each says why.
PROBE_PROMPT = "Say OK."
PROBE_TOKENS = 4  # enough decode steps to time one; a reply this short holds a slot for a moment only
PROBE_GAP_S = 1.0  # pause between probes: sparkserve adds at most one short request in flight
PROBE_TIMEOUT_S = 300.0  # a probe still waiting after this is abandoned (the window is over long before)
WAIT_FLOOR_S = 1.0  # shorter waits are scheduling and timer noise, not a request finishing ahead
WAIT_STEPS = 10  # a free slot starts the probe within a step or two; ten steps is a queue
SATURATED_SHARE = 0.5  # at least half of the probes waited: a standing queue, not one burst
USER_AGENT = "sparkserve-doctor"


def sample_from_ps(data: object, at: float) -> LiveSample:
    """/api/ps JSON -> per model: size, size_vram, loaded (1), and expiry as info."""
    values: dict[str, float] = {}
    info: dict[str, str] = {}
    models = data.get("models") if isinstance(data, dict) else None
    names = []
    for m in models or []:
        if not isinstance(m, dict):
            continue
        name = str(m.get("name") or m.get("model") or "")
        if not name:
            continue
        names.append(name)
        for key in ("size", "size_vram", "context_length"):
            if isinstance(m.get(key), int):
                values[f"{name}|{key}"] = float(m[key])
        if isinstance(m.get("expires_at"), str):
            info[f"{name}|expires_at"] = m["expires_at"]
    info["models"] = ",".join(sorted(names))
    values["loaded_models"] = float(len(names))
    return LiveSample(at=at, values=values, info=info)


class OllamaLiveProbe:
    """Reads /api/ps and times a small request now and then; judges a window against Ollama's environment."""

    def __init__(self) -> None:
        self._slots: SlotProbe | None = None

    def recognises(self, client: httpx.Client, base_url: str) -> bool:
        import httpx

        try:
            r = client.get(base_url + "/api/version")
            return r.status_code == 200 and "version" in r.json()
        except (httpx.HTTPError, ValueError):
            return False

    def read(self, client: httpx.Client, base_url: str, at: float) -> LiveSample:
        r = client.get(base_url + "/api/ps")
        r.raise_for_status()
        data = r.json()
        sample = sample_from_ps(data, at)
        if self._slots is None:
            resident = _resident(data)
            if resident is not None:
                self._slots = SlotProbe(base_url, *resident)
                self._slots.start()
        if self._slots is not None:
            self._slots.report(sample)
        return sample

    def settings_from_argv(self, argv: list[str]) -> dict[str, object]:
        return {}  # `ollama serve` takes its settings from the environment, not flags

    def diagnose(self, window: Window) -> list[LiveFinding]:
        reloads = _reloads(window)
        return [*_spilled(window), *reloads, *([] if reloads else diagnose_slots(window))]

    def close(self) -> None:
        if self._slots is not None:
            self._slots.stop()


def _resident(data: object) -> tuple[str, int | None] | None:
    """The model to probe: the first /api/ps lists, with the num_ctx it was loaded with."""
    models = data.get("models") if isinstance(data, dict) else None
    for m in models or []:
        if isinstance(m, dict) and (m.get("name") or m.get("model")):
            ctx = m.get("context_length")
            return str(m.get("name") or m.get("model")), ctx if isinstance(ctx, int) and ctx > 0 else None
    return None


@dataclass(frozen=True)
class ProbeResult:
    """One timed probe: seconds to its first token, of which loading, and its decode step."""

    first_token_s: float
    load_s: float
    prompt_tokens: int
    step_s: float

    @property
    def wait_s(self) -> float:
        """Time before a slot took it: first token less loading and a generous bound on its prefill
        (each prompt token at a whole decode step's cost; prefill is cheaper per token)."""
        return max(0.0, self.first_token_s - self.load_s - self.prompt_tokens * self.step_s)

    @property
    def waited(self) -> bool:
        return self.wait_s >= max(WAIT_FLOOR_S, WAIT_STEPS * self.step_s)


class SlotProbe(threading.Thread):
    """Sends one small streamed /api/generate at a time to a resident model and times it."""

    def __init__(self, base_url: str, model: str, num_ctx: int | None) -> None:
        super().__init__(name="sparkserve-ollama-slot-probe", daemon=True)
        parts = urlsplit(base_url)
        self.host, self.port, self.https = parts.hostname or "127.0.0.1", parts.port, parts.scheme == "https"
        self.model, self.num_ctx = model, num_ctx
        self.results: list[ProbeResult] = []
        self.error: str | None = None
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._conn: http.client.HTTPConnection | None = None
        self._sent_at: float | None = None  # an unanswered probe: when it was sent

    def body(self) -> dict[str, object]:
        options: dict[str, object] = {"num_predict": PROBE_TOKENS, "temperature": 0}
        if self.num_ctx:
            options["num_ctx"] = self.num_ctx  # another num_ctx would make Ollama load the model again
        return {"model": self.model, "prompt": PROBE_PROMPT, "stream": True, "options": options}

    def run(self) -> None:
        while not self._stopped.is_set():
            try:
                result = self._one()
            except (OSError, http.client.HTTPException, ValueError) as exc:
                if not self._stopped.is_set():
                    self.error = f"{type(exc).__name__}: {exc}"
                return
            with self._lock:
                self.results.append(result)
            self._stopped.wait(PROBE_GAP_S)

    def _one(self) -> ProbeResult:
        cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        conn = cls(self.host, self.port, timeout=PROBE_TIMEOUT_S)
        self._conn = conn
        try:
            sent = time.monotonic()
            with self._lock:
                self._sent_at = sent
            conn.request("POST", "/api/generate", json.dumps(self.body()),
                         {"Content-Type": "application/json", "User-Agent": USER_AGENT})
            resp = conn.getresponse()
            if resp.status != 200:
                said = resp.read(300).decode(errors="replace")
                raise ValueError(f"/api/generate answered HTTP {resp.status}: {said}")
            first: float | None = None
            final: dict[str, object] = {}
            while True:
                line = resp.readline()
                if not line:
                    break
                if not line.strip():
                    continue
                chunk = json.loads(line)
                if not isinstance(chunk, dict):
                    raise ValueError(f"/api/generate sent {line[:100]!r}")
                if "error" in chunk:
                    raise ValueError(f"/api/generate: {chunk['error']}")
                if first is None and (chunk.get("response") or chunk.get("done")):
                    first = time.monotonic() - sent
                    with self._lock:
                        self._sent_at = None
                if chunk.get("done"):
                    final = chunk
                    break
        finally:
            with self._lock:
                self._sent_at = None
            conn.close()
        if first is None or not final:
            raise ValueError("/api/generate ended without a final chunk")
        count = _int(final.get("eval_count"))
        step = _int(final.get("eval_duration")) / 1e9 / count if count else 0.0
        return ProbeResult(first, _int(final.get("load_duration")) / 1e9, _int(final.get("prompt_eval_count")), step)

    def report(self, sample: LiveSample) -> None:
        """Adds the probes so far to a read: counts, the waits, and how long an unanswered one has waited."""
        with self._lock:
            done = list(self.results)
            pending = time.monotonic() - self._sent_at if self._sent_at is not None else None
        sample.values["probes"] = float(len(done))
        sample.values["probes_waited"] = float(sum(r.waited for r in done))
        if done:
            sample.values["probe_load_max_s"] = max(r.load_s for r in done)
            sample.values["probe_step_s"] = statistics.median(r.step_s for r in done)
            sample.info["probe_waits_s"] = ",".join(f"{r.wait_s:.2f}" for r in done if r.waited)
        if pending is not None:
            sample.values["probe_pending_s"] = pending
        sample.info["probe_model"] = self.model
        if self.error:
            sample.info["probe_error"] = self.error

    def stop(self) -> None:
        """Ends probing; an unanswered probe is cut off (its socket shut) so nothing is left running."""
        self._stopped.set()
        conn = self._conn
        if conn is not None and conn.sock is not None:
            try:
                conn.sock.shutdown(2)  # socket.SHUT_RDWR: wakes the blocked read at once
            except OSError:
                pass
        self.join(timeout=5)


def _int(value: object) -> int:
    return int(value) if isinstance(value, (int, float)) else 0


def _models(w: Window) -> list[str]:
    seen: dict[str, None] = {}
    for s in w.samples:
        for name in filter(None, s.info.get("models", "").split(",")):
            seen[name] = None
    return list(seen)


def _spilled(w: Window) -> list[LiveFinding]:
    out = []
    for name in _models(w):
        size, vram = w.peak(f"{name}|size"), w.series(f"{name}|size_vram")
        if not size or not vram or min(vram) / size >= ON_GPU_FULL:
            continue
        share = min(vram) / size
        ctx = w.peak(f"{name}|context_length")
        out.append(LiveFinding(
            "ollama_model_on_cpu",
            f"{name} does not fit on the GPU: {100 * share:.0f} % of it is there, the rest runs on the CPU.",
            "Make it fit: a smaller num_ctx (the KV cache grows with num_ctx × OLLAMA_NUM_PARALLEL), a lower "
            "OLLAMA_NUM_PARALLEL, a smaller quantisation (q4_K_M), OLLAMA_FLASH_ATTENTION=1 with "
            "OLLAMA_KV_CACHE_TYPE=q8_0, or stop other models (`ollama ps`, OLLAMA_MAX_LOADED_MODELS=1).",
            (f"/api/ps: size_vram {min(vram) / GIB:.1f} GiB of size {size / GIB:.1f} GiB",
             *( [f"context_length {ctx:.0f}"] if ctx else []), f"window {w.seconds:.0f} s, {len(w.samples)} reads"),
        ))
    return out


def _reloads(w: Window) -> list[LiveFinding]:
    loads: dict[str, int] = {}
    previous: set[str] = set()
    expiries: dict[str, str] = {}
    for i, s in enumerate(w.samples):
        now = set(filter(None, s.info.get("models", "").split(",")))
        for name in now:
            stamp = s.info.get(f"{name}|expires_at")
            came_back = i > 0 and name not in previous
            # a model loaded again keeps its name; its expiry restarts from the load, earlier than a kept one's
            moved_back = name in expiries and stamp is not None and stamp < expiries[name]
            if came_back or moved_back:
                loads[name] = loads.get(name, 0) + 1
            if stamp:
                expiries[name] = stamp
        previous = now
    if not loads:
        return []
    names = ", ".join(f"{n} ({k}×)" for n, k in loads.items())
    return [LiveFinding(
        "ollama_model_reloads",
        f"Ollama loaded models again during the window: {names}; every load stalls requests for seconds.",
        "Keep models resident: OLLAMA_KEEP_ALIVE=-1 (or a long duration), OLLAMA_MAX_LOADED_MODELS high enough for "
        "the models in use, and the same num_ctx in every client (a different num_ctx forces a reload).",
        (f"/api/ps over {w.seconds:.0f} s: models present {', '.join(_models(w))}",
         f"{sum(loads.values())} loads seen in {len(w.samples)} reads"),
    )]


def diagnose_slots(w: Window) -> list[LiveFinding]:
    """OLLAMA_NUM_PARALLEL saturation from the slot probe's waits, when the model stayed resident."""
    last = w.samples[-1] if w.samples else None
    if last is None or "probes" not in last.values:
        return []
    done, waited = int(last.values["probes"]), int(last.values["probes_waited"])
    step = last.values.get("probe_step_s", 0.0)
    pending = last.values.get("probe_pending_s")
    waits = [float(x) for x in last.info.get("probe_waits_s", "").split(",") if x]
    if pending is not None and pending >= max(WAIT_FLOOR_S, WAIT_STEPS * step):
        done, waited = done + 1, waited + 1  # still waiting at the end of the window: a wait of at least this
        waits.append(pending)
    if not waited or waited / done < SATURATED_SHARE:
        return []
    model = last.info.get("probe_model", "the model")
    absent = [s for s in w.samples if model not in s.info.get("models", "").split(",")]
    load = last.values.get("probe_load_max_s", 0.0)
    if absent or load >= WAIT_FLOOR_S:
        return []  # the waits were loads, not a queue for a slot
    raw = w.settings.get("num_parallel")
    parallel = int(raw) if isinstance(raw, (int, str)) and str(raw).isdigit() else None
    slot, headroom = w.plan.get("kv_slot_gib"), w.plan.get("headroom_gib")
    now = (f"OLLAMA_NUM_PARALLEL is {parallel}" if parallel is not None
           else "OLLAMA_NUM_PARALLEL is not known here (Ollama's default is 1)")
    evidence = [
        f"{waited} of {done} probe requests waited for a slot: median {statistics.median(waits):.1f} s, longest "
        f"{max(waits):.1f} s before the first token (a {PROBE_TOKENS}-token reply, "
        f"{step * 1000:.0f} ms per token once running)",
        f"{model} resident in /api/ps in all {len(w.samples)} reads, no reload (load_duration {load:.2f} s)",
        now,
    ]
    if slot:
        evidence.append(f"plan: KV cache {slot:.2f} GiB per slot (num_ctx tokens)"
                        + (f", {headroom:.1f} GiB unplanned memory left" if headroom is not None else ""))
    if parallel is not None and slot and headroom is not None:
        more = int(headroom // slot)
        if more >= 1:
            target = parallel + min(parallel, more)
            fix = (f"Raise OLLAMA_NUM_PARALLEL from {parallel} to {target}: each slot holds num_ctx tokens of KV "
                   f"({slot:.2f} GiB by the plan), {target - parallel} more need {(target - parallel) * slot:.1f} GiB "
                   f"of the {headroom:.1f} GiB left. Beyond that add a replica (a second Ollama behind a load "
                   "balancer).")
        else:
            fix = (f"Memory does not allow another slot at this num_ctx ({slot:.2f} GiB each, {headroom:.1f} GiB "
                   "left): add a replica (a second Ollama behind a load balancer) or lower num_ctx so that "
                   "more slots fit.")
    else:
        fix = ("Raise OLLAMA_NUM_PARALLEL if memory allows (each slot holds num_ctx tokens of KV cache: "
               "`sparkserve plan` shows it), else add a replica (a second Ollama behind a load balancer) or lower "
               "num_ctx so that more slots fit.")
    fix += (" Some model families run with one slot whatever OLLAMA_NUM_PARALLEL says (Ollama's scheduler "
            "forces 1 for e.g. mllama and qwen3vl: server/sched.go).")
    return [LiveFinding(
        "ollama_parallel_saturated",
        f"Every Ollama slot for {model} was busy: requests wait for a whole running request to finish before "
        "their prompt is read.",
        fix,
        tuple(evidence),
    )]


# --- log rules: how Ollama and its llama.cpp runner print their failures -------------------------------


def _flag(f: Fields) -> dict[str, str]:
    return advice.flag_verdict(f, {}, "`ollama serve --help`")


NOISE: tuple[Probe, ...] = (
    probe(r"\[GIN-debug\] \[WARNING\]"),
)

FACTS: tuple[Fact, ...] = (
    Fact("required", probe(r'memory\.required\.full="(?P<v>[\d.]+ [KMG]iB)"')),
    Fact("available", probe(r'memory\.available="(?P<v>[\d.]+ [KMG]iB)"')),
)

RULES: tuple[Rule, ...] = (
    Rule(
        "entrypoint_args_mismatch",
        priority=92,
        signatures=(sig(r'unknown command "(?P<arg>[^"]+)" for "ollama'),),
        summary="The container command does not fit the ollama image's entrypoint (it got '{arg}' as a command).",
        fix=(
            "The ollama/ollama image's entrypoint is already `ollama` and its command `serve`: leave `command` unset "
            "(or give only `serve`), and pull models with `docker exec <container> ollama pull <model>` or the API; "
            "to run a shell, override `--entrypoint`."
        ),
    ),
    Rule(
        "unknown_cli_flag",
        priority=90,
        signatures=(
            sig(r"flag provided but not defined: (?P<flag>-+[\w-]+)"),
            sig(r"unknown (?:shorthand )?flag: '?(?P<flag>-*[\w-]+)'?", needle="flag: "),
        ),
        summary="The engine rejected the command-line flag {flag}.",
        fix="{flag} {verdict}.",
        derive=_flag,
    ),
    Rule(
        "model_format_unsupported_by_engine",
        priority=92,
        signatures=(
            sig(
                r"unknown model architecture: '(?P<arch>[^']+)'",
                fix=(
                    "This Ollama/llama.cpp build does not know '{arch}': upgrade it (`ollama -v`) "
                    "or pick a model it supports."
                ),
            ),
            sig(
                r"(?:unable to load model|error loading model):? (?P<blob>\S*blobs[/\\]sha256[-:][0-9a-f]+)",
                summary="Ollama could not load the model file {blob}.",
                fix=(
                    "Most often the model needs a newer Ollama than this one (`ollama -v`; new model families need "
                    "the release that added them): upgrade Ollama. If it is already current, the blob is damaged or "
                    "came from elsewhere: `ollama rm <model>` and `ollama pull <model>` again."
                ),
            ),
            sig(
                r"error loading model: (?P<why>check_tensor_dims: tensor '[^']+' not found|done_getting_tensors: "
                r"wrong number of tensors[^\n]*|missing tensor '[^']+')",
                summary="The model file has tensors this Ollama/llama.cpp build does not expect ({why}).",
                fix=(
                    "The GGUF was made for a newer llama.cpp: upgrade Ollama (`ollama -v`), or pick a GGUF of the "
                    "same model converted for this version."
                ),
            ),
            sig(r"(?:requires|needs) (?:a )?newer version of Ollama|requires Ollama (?:version )?[\d.]+",
                fix="Upgrade Ollama to the version the model needs (`ollama -v` shows this one), then pull again."),
        ),
        summary="The engine cannot load this model format/architecture[ ('{arch}')].",
        fix=(
            "Use a checkpoint format this engine supports for '{arch}' (safetensors for vLLM, GGUF for Ollama), "
            "or upgrade the engine."
        ),
        supersedes=("ollama_runner_terminated",),
    ),
    Rule(
        "ollama_insufficient_system_memory",
        priority=95,
        signatures=(
            sig(
                r"model requires more system memory \((?P<need>[\d.]+ \w+)\) than is available \((?P<have>[\d.]+ \w+)\)"
            ),
        ),
        summary="Ollama refused to load the model: it needs {need} of RAM but {have} is available.",
        fix=(
            "Free {short} or more: stop other loaded models (`ollama ps`, `ollama stop <model>`, "
            "OLLAMA_MAX_LOADED_MODELS=1), choose a smaller quantization or model, lower num_ctx and "
            "OLLAMA_NUM_PARALLEL (the KV cache is num_ctx × NUM_PARALLEL), or add swap."
        ),
        derive=advice.ollama_memory,
    ),
    Rule(
        "ollama_runner_terminated",
        priority=50,
        signatures=(
            sig(r"llama runner process has terminated:? ?(?P<status>[^\"\n]*)"),
            sig(r"llama-server process has terminated:? ?(?P<status>[^\"\n]*)"),
            sig(r"llama runner process no longer running: ?(?P<status>\S*)"),
            sig(r"llama runner terminated:? ?(?P<status>[^\"\n]*)"),
        ),
        summary="Ollama's model runner crashed while loading or running the model[ ({status})].",
        fix=(
            "Read the server log lines just before this one (`journalctl -u ollama` or `docker logs <container>`) for "
            "the real error[ — {mem_hint}]; common causes are GPU memory (lower num_ctx or num_gpu), an architecture "
            "this Ollama does not support (upgrade Ollama), or a broken GPU library install."
        ),
        derive=advice.runner,
    ),
)

LOG_RULES = LogRules(RULES, FACTS, NOISE)
