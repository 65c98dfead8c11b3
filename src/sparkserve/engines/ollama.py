"""Ollama: defaults and settings that shape its memory and speed."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from sparkserve.engines.base import ComposeFragment, Engine, NativeCommand, Poll, PullProgress, Say
from sparkserve.engines.registry import register
from sparkserve.errors import UserError
from sparkserve.plan.settings import GgufSettings, gguf_settings

if TYPE_CHECKING:
    import httpx

    from sparkserve.engines.live import LiveProbe
    from sparkserve.hardware.profile import HardwareProfile
    from sparkserve.plan.memory import Deployment, MemoryPlan
    from sparkserve.plan.planner import ServicePlan

NAME = "ollama"

# Ollama server defaults (docs/faq.md, envconfig/config.go): context 4096 tokens per request,
# one parallel request per model, KV cache in f16, flash attention off unless set.
DEFAULT_NUM_CTX = 4096
DEFAULT_NUM_PARALLEL = 1
DEFAULT_KV_CACHE_TYPE = "f16"
KV_CACHE_TYPES = ("auto", "f16", "q8_0", "q4_0")  # OLLAMA_KV_CACHE_TYPE values (docs/faq.md); auto = f16
# llama.cpp evaluates prompts in micro-batches of n_ubatch tokens (llama.cpp common default 512);
# the compute buffer is sized for one micro-batch.
DEFAULT_NUM_BATCH = 512


def recommended_env(settings: GgufSettings, keep_alive: str = "30m") -> dict[str, str]:
    """Server environment for a planned Ollama deployment."""
    env = {
        "OLLAMA_KEEP_ALIVE": keep_alive,
        "OLLAMA_CONTEXT_LENGTH": str(settings.num_ctx),
        "OLLAMA_NUM_PARALLEL": str(settings.num_parallel),
        # The plan sizes memory for the service's one model; Ollama's default (3 per GPU, docs/faq.md)
        # would let a second model load beside vLLM and exhaust unified memory.
        "OLLAMA_MAX_LOADED_MODELS": "1",
        "OLLAMA_FLASH_ATTENTION": "1",
    }
    if settings.kv_cache_type != DEFAULT_KV_CACHE_TYPE:
        env["OLLAMA_KV_CACHE_TYPE"] = settings.kv_cache_type
    return env


# Multi-arch (amd64 and arm64) image pinned to a release: `latest` has lagged releases for weeks
# (ollama/ollama#13039). 0.18.2 was current in April 2026 (open-webui/open-webui#23886). A stack's
# `image` key pins another, `name:tag@sha256:<digest>` pins by digest.
IMAGE = "ollama/ollama:0.18.2"
SECRET_ENV_NAMES: tuple[str, ...] = ()  # Ollama reads no token: the registry it pulls from is public
CONTAINER_PORT = 11434
MODELS_DIR = "/root/.ollama"  # OLLAMA_MODELS defaults to <home>/.ollama/models


def image_for(hw: HardwareProfile) -> str:
    """The Ollama image for this hardware: one multi-arch image serves x86_64 and arm64."""
    return IMAGE


def healthcheck_test() -> list[str]:
    """The image ships no curl: `ollama list` asks the local API and fails while it is down."""
    return ["CMD", "ollama", "list"]


# Outside a container Ollama keeps models in ~/.ollama/models unless OLLAMA_MODELS says otherwise.
NATIVE_MODELS_DIR = "~/.ollama/models"


def server_env(listen: str, models_dir: str, settings: GgufSettings) -> dict[str, str]:
    """`ollama serve` environment for a native service: where it listens (OLLAMA_HOST, host:port),
    where it keeps models, and the planned settings (keep-alive, context, parallel requests)."""
    return {"OLLAMA_HOST": listen, "OLLAMA_MODELS": models_dir, **recommended_env(settings)}


# Ollama takes no command-line flags: these stack args become its server environment.
PLANNER_ARGS: dict[str, type] = {"num_ctx": int, "num_parallel": int, "kv_cache_type": str}
MODELS_VOLUME = "ollama-models"  # named volume for the models when the stack mounts none
INSTALL = "install it (curl -fsSL https://ollama.com/install.sh | sh)"
PROGRESS_LINES = r"pulling manifest|llama runner started in [\d.]+ seconds"


# Settings tune searches and their types. num_parallel, num_ctx and kv_cache_type are stack `args`;
# flash attention has no arg and goes into the service's env (OLLAMA_FLASH_ATTENTION).
TUNABLE: dict[str, type] = {"num_parallel": int, "num_ctx": int, "flash_attention": bool, "kv_cache_type": str}
# Four times the largest OLLAMA_NUM_PARALLEL Ollama picks on its own (4, docs/faq.md); each slot
# reserves a full num_ctx of KV cache, so the plan rules out what does not fit.
MAX_TUNE_PARALLEL = 16


class Ollama(Engine):
    name = NAME
    label = "Ollama"
    order = 1
    runnable = True
    gguf = True
    kv_cache_dtypes = KV_CACHE_TYPES
    planner_args = PLANNER_ARGS
    container_port = CONTAINER_PORT
    health_path = "/api/version"
    bench_apis = ("ollama", "ollama-chat")
    own_api = True
    loaded_models_path = "/api/ps"  # Ollama has no /metrics (ollama#3144); /api/ps is its only view
    executable = "ollama"
    executable_env = "SPARKSERVE_OLLAMA"

    def memory(self, dep: Deployment) -> MemoryPlan:
        from sparkserve.plan.memory import ollama_memory

        return ollama_memory(dep)

    def recommended_args(self, plan: ServicePlan) -> list[str]:
        return [f"{k}={v}" for k, v in recommended_env(gguf_settings(plan.memory.settings)).items()]

    def paste_lines(self, args: Sequence[str]) -> list[str]:
        """The server's environment as KEY=value lines (for a systemd override or `export`)."""
        return list(args)

    def unified_memory_warnings(self, dep: Deployment, mem: MemoryPlan) -> list[str]:
        hw = dep.hardware
        left = hw.gpu_memory_gib - mem.total_gib
        if not hw.unified or left >= hw.os_reserve_gib:
            return []
        from sparkserve.engines.base import os_left

        return [(f"unified memory: {dep.engine} needs {mem.total_gib:.1f} GiB and {os_left(left, hw.gpu_memory_gib)} "
                 f"(needs about {hw.os_reserve_gib:.0f} GiB); the host may freeze")]

    def default_quant(self, checkpoint_quant: str | None) -> str:
        """Ollama's library tags default to Q4_K_M (gpt-oss ships MXFP4)."""
        return "mxfp4" if checkpoint_quant == "mxfp4" else "q4_k_m"

    def check_stack_arg(self, key: str) -> str | None:
        if key in PLANNER_ARGS:
            return None
        from sparkserve.errors import closest

        guess = closest(key, PLANNER_ARGS, n=1)
        hint = f"did you mean {guess[0]!r}? " if guess else ""
        return (f"Ollama takes no argument {key!r}; {hint}valid: {', '.join(PLANNER_ARGS)} "
                "(other Ollama settings go in env, e.g. OLLAMA_KEEP_ALIVE)")

    def planner_settings(self, args: Mapping[str, Any]) -> dict[str, Any]:
        settings = {k: v for k, v in args.items() if k in PLANNER_ARGS}
        if "kv_cache_type" in settings:
            settings["kv_cache_dtype"] = settings.pop("kv_cache_type")
        return settings

    def image_for(self, hw: HardwareProfile) -> str:
        return image_for(hw)

    def healthcheck_test(self) -> list[str]:
        return healthcheck_test()

    def weights_host_dir(self, svc: Any, hf_cache: str) -> str:
        """The host folder mounted as the models directory, else Docker's own storage (a named volume)."""
        host = next((v.split(":")[0] for v in svc.volumes if v.split(":")[1].rstrip("/") == MODELS_DIR), None)
        return host if host and host.startswith(("/", "~")) else "/var/lib/docker"

    def compose_fragment(self, svc: Any, plan: ServicePlan, hw: HardwareProfile, hf_cache: str) -> ComposeFragment:
        mounted = any(v.split(":")[1].rstrip("/") == MODELS_DIR for v in svc.volumes)
        return ComposeFragment(
            image=svc.image or image_for(hw),
            environment={**{n: f"${{{n}}}" for n in SECRET_ENV_NAMES},
                         **recommended_env(gguf_settings(plan.memory.settings)), **svc.env},
            volumes=[] if mounted else [f"{MODELS_VOLUME}:{MODELS_DIR}"],
            named_volumes=() if mounted else (MODELS_VOLUME,),
        )

    def native_command(self, svc: Any, plan: ServicePlan, *, bind: str, hf_cache: str | None,
                       stack_dir: str) -> NativeCommand:
        host = f"[{bind}]" if ":" in bind else bind
        return NativeCommand(args=["serve"], env=server_env(f"{host}:{svc.port}", _models_dir(svc, stack_dir),
                                                            gguf_settings(plan.memory.settings)))

    def not_found_message(self, stack_file: str) -> str:
        return f"ollama not found on PATH; {INSTALL}, or set [stack] ollama = \"/path/to/ollama\""

    def progress_lines(self, log_text: str) -> list[str]:
        import re

        return [m.group(0).strip() for m in re.finditer(PROGRESS_LINES, log_text)]

    def wait_ready(self, poll: Poll, *, name: str, model: str, say: Say,
                   pull_progress: PullProgress | None = None, client: httpx.Client | None = None,
                   deadline: float | None = None) -> str:
        """The API, then the model pulled (with progress) and loaded."""
        version = poll("GET", "/api/version", "the Ollama API").json()
        say(f"{name}: Ollama {version.get('version', '?')} up")
        tags = poll("GET", "/api/tags", "the model list").json()
        if not any(same_tag(m.get("name", ""), model) for m in tags.get("models", [])):
            say(f"{name}: pulling {model}")
            if client is None:
                raise UserError(f"{name}: {model} is not pulled; run 'ollama pull {model}'")
            import httpx

            try:
                _pull(client, name, model, pull_progress, deadline)
            except httpx.ConnectError as exc:
                raise UserError(f"{name}: pulling {model} failed: Ollama stopped answering"
                                f" ({type(exc).__name__})") from None
        began = time.monotonic()
        # An empty prompt loads the model and returns at once; the server's keep-alive then holds it.
        poll("POST", "/api/generate", f"loading {model}", json={"model": model, "prompt": "", "stream": False})
        loaded = poll("GET", "/api/ps", "the loaded models").json()
        if not any(same_tag(m.get("name", ""), model) for m in loaded.get("models", [])):
            raise UserError(f"{name}: {model} did not stay loaded (see /api/ps); check OLLAMA_KEEP_ALIVE")
        say(f"{name}: {model} loaded in {time.monotonic() - began:.1f} s")
        return model

    def pull_from_server(self, client: httpx.Client, *, name: str, model: str,
                         progress: PullProgress | None) -> None:
        """POST /api/pull, streamed: Ollama resumes the blobs it already has and reports each layer's bytes."""
        _pull(client, name, model, progress)

    def doctor_rules(self) -> tuple[Any, ...]:
        from sparkserve.engines.ollama_doctor import LOG_RULES

        return (LOG_RULES,)

    def live_probe(self) -> LiveProbe | None:
        from sparkserve.engines.ollama_doctor import OllamaLiveProbe

        return OllamaLiveProbe()

    def list_models(self, http: httpx.Client) -> list[str]:
        response = http.get("/api/tags")
        response.raise_for_status()
        return [str(m.get("name", "")) for m in response.json().get("models", [])]

    tunable = TUNABLE
    tune_choices: Mapping[str, tuple[str, ...]] = MappingProxyType({"kv_cache_type": KV_CACHE_TYPES})
    tune_concurrency_key = "num_parallel"
    tune_length_key = "num_ctx"
    tune_load_caps = ("num_parallel",)

    def tune_max_concurrency(self, hw: HardwareProfile) -> int:
        return MAX_TUNE_PARALLEL

    def tune_defaults(self, settings: Mapping[str, Any], *, max_model_len: int,
                      seqs: list[int]) -> dict[str, list[Any]]:
        """Parallel requests around the predicted load; the planned context, KV type and flash attention."""
        return {"num_parallel": seqs, "num_ctx": [max_model_len], "flash_attention": [True],
                "kv_cache_type": [str(settings.get("kv_cache_type", DEFAULT_KV_CACHE_TYPE))]}

    def tune_overrides(self, args: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        stack_args = {k: v for k, v in args.items() if k != "flash_attention"}
        env = {"OLLAMA_FLASH_ATTENTION": "1" if args["flash_attention"] else "0"} if "flash_attention" in args else {}
        return stack_args, env


def _models_dir(svc: Any, stack_dir: str) -> str:
    """The host folder compose would mount as /root/.ollama holds the models in `models/`; without
    one, Ollama's own default."""
    for volume in svc.volumes:
        source, target = volume.split(":")[:2]
        if target.rstrip("/") == MODELS_DIR and source.startswith((".", "/", "~")):
            base = Path(source).expanduser()
            if not base.is_absolute():
                base = Path(stack_dir) / base
            return str(base / "models")
    return str(Path(NATIVE_MODELS_DIR).expanduser())


def _pull(client: httpx.Client, name: str, model: str, progress: PullProgress | None,
          deadline: float | None = None) -> None:
    """POST /api/pull, streaming its progress, until it is done or the deadline passes."""
    import httpx

    late = UserError(f"{name}: pulling {model} did not finish in time; pass a longer --timeout")
    left = None if deadline is None else max(0.05, deadline - time.monotonic())
    try:
        with client.stream("POST", "/api/pull", json={"model": model, "stream": True},
                           timeout=httpx.Timeout(left)) as response:
            if not response.is_success:
                raise UserError(f"{name}: pulling {model} failed: HTTP {response.status_code}")
            for line in response.iter_lines():
                if deadline is not None and time.monotonic() >= deadline:
                    raise late
                if not line.strip():
                    continue
                event = json.loads(line)
                if "error" in event:
                    raise UserError(f"{name}: pulling {model} failed: {event['error']}")
                if progress:
                    progress(event.get("status", ""), int(event.get("completed") or 0), int(event.get("total") or 0))
    except httpx.TimeoutException:
        raise late from None
    except httpx.ConnectError:
        raise  # the server is not there: the caller knows how it was meant to be started
    except httpx.TransportError as exc:
        raise UserError(f"{name}: pulling {model} failed: {type(exc).__name__}") from None


def same_tag(listed: str, wanted: str) -> bool:
    """Ollama lists "qwen3:latest" for a pull of "qwen3"."""
    def norm(tag: str) -> str:
        return tag if ":" in tag else tag + ":latest"

    return norm(listed.lower()) == norm(wanted.lower())


ENGINE = register(Ollama())

