"""Ollama's side of `doctor`: how Ollama prints its failures (log rules), and what /api/ps shows over a
serving window (`doctor --live`), in Ollama's own settings.

Ollama has no /metrics (ollama#3144): `/api/ps` is the view of which models it holds, how much of
each is on the GPU (size_vram of size) and when each expires. A model that leaves and comes back,
or whose expiry moves back, was loaded again during the window.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sparkserve.engines.live import LiveFinding, LiveSample, Window
from sparkserve.logrules import advice
from sparkserve.logrules.matcher import Fact, Fields, LogRules, Probe, Rule, probe, sig

if TYPE_CHECKING:
    import httpx

GIB = 1024**3
ON_GPU_FULL = 0.999  # size_vram below size by more than rounding: layers run on the CPU


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
    """Reads /api/ps; judges a window against Ollama's environment (OLLAMA_* settings)."""

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
        return sample_from_ps(r.json(), at)

    def settings_from_argv(self, argv: list[str]) -> dict[str, object]:
        return {}  # `ollama serve` takes its settings from the environment, not flags

    def diagnose(self, window: Window) -> list[LiveFinding]:
        return [*_spilled(window), *_reloads(window)]


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
