"""What an engine is: the one place sparkserve asks about an inference server.

Everything that differs between engines is a member of `Engine`: its server arguments and
environment, image, container port, health and readiness probes, model listing, the API bench
speaks, metric names, memory accounting, compose fragment and native command, secrets and doctor
rules. Code outside `engines/` calls these members (through `get_engine(name)`) and never compares
an engine's name. An engine that sparkserve plans but does not run keeps `runnable = False`; its
running members raise `PlanningOnly` instead of borrowing another engine's behaviour.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sparkserve.errors import UserError

if TYPE_CHECKING:
    import httpx

    from sparkserve.engines.live import LiveProbe
    from sparkserve.hardware.profile import HardwareProfile
    from sparkserve.plan.memory import Deployment, MemoryPlan
    from sparkserve.plan.planner import ServicePlan


def os_left(left_gib: float, pool_gib: float) -> str:
    """What a plan leaves the OS, never a negative amount."""
    if left_gib < 0:
        return f"leaves nothing for the OS ({-left_gib:.1f} GiB more than the {pool_gib:.1f} GiB there is)"
    return f"leaves {left_gib:.1f} GiB for the OS"


class PlanningOnly(UserError):
    """Asked to run, probe or render an engine that sparkserve only plans."""


@dataclass(frozen=True)
class ComposeFragment:
    """The engine's part of one compose service; runtime/compose.py adds ports, env_file, GPUs."""

    image: str
    command: list[str] = field(default_factory=list)
    entrypoint: list[str] | None = None
    environment: dict[str, str] = field(default_factory=dict)
    volumes: list[str] = field(default_factory=list)  # the engine's own, before the service's
    named_volumes: tuple[str, ...] = ()
    shm_size: str | None = None  # compose `shm_size`, when the engine needs more than Docker's 64 MB


@dataclass(frozen=True)
class NativeCommand:
    """What a native service runs: arguments after the executable and environment added to it."""

    args: list[str]
    env: dict[str, str] = field(default_factory=dict)


# poll(method, path, what, **httpx_kwargs) repeats a request until it returns 2xx; runtime/readiness.py
# supplies it (with the deadline, the liveness check and the API key), the engine says what to ask.
Poll = Callable[..., "httpx.Response"]
Say = Callable[[str], None]
PullProgress = Callable[[str, int, int], None]  # status, completed bytes, total bytes


class Engine:
    """Base of every engine. The defaults describe an engine that sparkserve only plans."""

    name: str = ""
    label: str = ""  # how people write it: "vLLM"
    aliases: tuple[str, ...] = ()  # other spellings `-e` accepts
    runnable: bool = False  # sparkserve can render, start, probe and bench it
    order: int = 100  # where it appears in lists and help (lower first)
    gguf: bool = False  # loads GGUF files (llama.cpp family) rather than Hugging Face checkpoints
    kv_cache_dtypes: tuple[str, ...] = ("auto",)  # what its KV-cache setting accepts
    # Stack `args` the planner reads, with the type each must have.
    planner_args: Mapping[str, type] = {}
    # Speed calibration for an engine plan/calibration.py has not fitted (a plan/calibration.Efficiency).
    efficiency: Any = None
    # True: the engine takes a fixed share of GPU memory at start (vLLM's gpu-memory-utilization), so a
    # stack sizes it after the engines that take only what they need.
    takes_memory_share: bool = False

    # --- running ----------------------------------------------------------------------------------
    container_port: int = 0
    health_path: str = ""  # answers 2xx once the engine is alive
    api_suffix: str = ""  # what clients append to the base URL ("/v1" for OpenAI-compatible servers)
    bench_apis: tuple[str, ...] = ()  # API shapes bench may use, the default first
    own_api: bool = False  # its API is its own (Ollama's), so the API alone names the engine
    metrics_path: str | None = None
    loaded_models_path: str | None = None  # where an engine without /metrics lists what it holds in memory
    metric_aliases: Mapping[str, Sequence[str]] = {}  # reading -> Prometheus sample names, newest first
    api_key_env: str | None = None  # the engine's own API-key variable (read from .env, never written)
    needs_hf_token: bool = False  # downloads gated Hugging Face repos, which need HF_TOKEN
    image_cuda: tuple[int, int] | None = None  # CUDA version its default image needs from the host driver
    start_period: str = "1m"  # compose healthcheck grace while weights load
    executable: str = ""  # the command on PATH for `runtime = "native"`
    executable_env: str = ""  # environment variable naming that executable

    def __repr__(self) -> str:
        return f"<engine {self.name}{'' if self.runnable else ' (planning only)'}>"

    def planning_only(self, what: str) -> PlanningOnly:
        return PlanningOnly(f"{self.label or self.name} is planning only: sparkserve sizes it but cannot {what}; "
                            "use engine = \"vllm\" or \"ollama\" to run the service")

    # --- planning ---------------------------------------------------------------------------------
    def memory(self, dep: Deployment) -> MemoryPlan:
        """Where memory goes when this engine serves `dep`."""
        raise NotImplementedError(f"{self.name}: no memory model")

    def recommended_args(self, plan: ServicePlan) -> list[str]:
        """The engine's configuration for a plan: command-line arguments, or KEY=value lines."""
        return []

    def unified_memory_warnings(self, dep: Deployment, mem: MemoryPlan) -> list[str]:
        """What would starve the OS on unified memory (DGX Spark), with the engine's own fix."""
        left = dep.hardware.gpu_memory_gib - mem.total_gib / max(1, mem.devices)
        if not dep.hardware.unified or left >= dep.hardware.os_reserve_gib:
            return []
        return [(f"unified memory: {self.label or self.name} needs {mem.total_gib:.1f} GiB and "
                 f"{os_left(left, dep.hardware.gpu_memory_gib)} (needs about {dep.hardware.os_reserve_gib:.0f} GiB); "
                 "the host may freeze")]

    def memory_at_start_gib(self, mem: MemoryPlan) -> float:
        """What the engine takes from free memory while it starts."""
        return mem.total_gib

    def share_settings(self, hw: HardwareProfile, others_gib: float, settings: Mapping[str, Any]) -> dict[str, Any]:
        """Settings that leave room for the stack's other services (`others_gib`) on the same memory."""
        return {}

    paste_prefix: tuple[str, ...] = ()  # what precedes the arguments in a command a user pastes

    def paste_lines(self, args: Sequence[str]) -> list[str]:
        """The recommended configuration as lines a user can paste into a shell."""
        import shlex

        return [shlex.join([*self.paste_prefix, *args])] if args else []

    # --- what the recommendation (plan/recommend.py) asks --------------------------------------------
    def sizing_defaults(self, hw: HardwareProfile) -> Any:
        """Defaults the recommendation sizes from (utilisation, batched tokens, sequences), or None
        when the engine's settings are taken as given."""
        return None

    def quantises_on_load(self, quant: str) -> bool:
        """Whether the engine makes `quant` weights from a 16-bit checkpoint while loading it."""
        return True

    def valid_tensor_parallel(self, model: Any, tensor_parallel_size: int) -> bool:
        return True

    def constraint_problems(self, model: Any, quant: str, settings: Any) -> list[str]:
        """What the engine refuses at start for these settings, memory aside (one line each)."""
        return []

    def default_kv_cache_dtype(self, model: Any) -> str:
        """The KV-cache type a service of this model gets when it names none."""
        return "auto"

    def fallback_attention(self, model: Any, hw: HardwareProfile, backend: str | None = None) -> bool:
        """Whether the engine runs this model's attention on its slower portable kernel (a Triton one)
        rather than FlashAttention-class kernels on this hardware, or on the `backend` the service names:
        the planner prices the two apart."""
        return False

    def expert_padding(self, model: Any, quant: str, hw: HardwareProfile | None) -> float:
        """How much larger the routed experts are once loaded than in the checkpoint, where the engine's MoE
        kernel for this format needs its matrices padded (`hw` None: the engine's usual GPU). The memory plan
        multiplies the experts' bytes by it; 1.0: loaded as stored."""
        return 1.0

    def default_prefill_chunk(self, hw: HardwareProfile) -> int | None:
        """Prompt tokens one forward pass takes on this hardware when the service sets no budget (None: the
        planner's per-engine constant, calibration.json prefill_chunk)."""
        return None

    def admission_gate(self, version: str | None) -> str | None:
        """What must fit in the KV cache before a waiting request is admitted, when more arrive than it holds
        (plan/paged_queue.py GATES; None: not modelled, the planner prices the batch as if all fit)."""
        return None

    # the widest head its portable attention kernel keeps in registers: a wider one there takes head_dim / this
    # of its FLOPs' time (plan/kv_kinds.py wide_head_cost); 0: no such limit
    portable_register_head: int = 0

    def default_quant(self, checkpoint_quant: str | None) -> str:
        """The weight format a service gets when it names none."""
        return checkpoint_quant or "bf16"

    def check_stack_arg(self, key: str) -> str | None:
        """Why a stack `args` key cannot be used, or None when it can."""
        return None

    def planner_settings(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """The stack args the planner understands, in the planner's names (`Deployment` fields)."""
        return {k: v for k, v in args.items() if k in self.planner_args}

    def served_name(self, model: str, args: Mapping[str, Any]) -> str:
        """The model name clients send."""
        return model

    # --- running ----------------------------------------------------------------------------------
    def image_for(self, hw: HardwareProfile) -> str:
        raise self.planning_only("run it in a container")

    def healthcheck_test(self) -> list[str]:
        raise self.planning_only("run it in a container")

    def weights_host_dir(self, svc: Any, hf_cache: str) -> str:
        """The host folder a compose service downloads its weights into."""
        return hf_cache

    def compose_fragment(self, svc: Any, plan: ServicePlan, hw: HardwareProfile, hf_cache: str) -> ComposeFragment:
        """The engine's part of a compose service for `svc` (a stack ServiceSpec)."""
        raise self.planning_only("render it for docker compose")

    def native_command(self, svc: Any, plan: ServicePlan, *, bind: str, hf_cache: str | None,
                       stack_dir: str) -> NativeCommand:
        """Arguments and environment for `runtime = "native"`."""
        raise self.planning_only("start it natively")

    def named_executable(self, configured: str, stack_path: Any) -> tuple[str, str] | None:
        """(path, where it came from) for a `[stack] <engine>` value that names a build rather than a
        path (vLLM's "cpu"); None for a path."""
        return None

    def not_found_message(self, stack_file: str) -> str:
        """One line for a native start that finds no executable."""
        exe = self.executable or self.name
        return f"{exe} not found on PATH; install {self.label or self.name}, or set ${self.executable_env} to its path"

    arg_check: str | None = None  # what `check_args` does, said before it runs; None: it does nothing

    def check_args(self, executable: str, args: list[str], env: Mapping[str, str]) -> tuple[str, str]:
        """("ok" | "error" | "skip", message): the installed engine's verdict on the arguments."""
        return "skip", f"{self.label or self.name} has no argument check"

    def startup_error(self, log_text: str) -> str | None:
        """The log line that says why a start failed, or None."""
        return None

    def progress_lines(self, log_text: str) -> list[str]:
        """Start-up milestones worth showing, in order."""
        return []

    def wait_ready(self, poll: Poll, *, name: str, model: str, say: Say,
                   pull_progress: PullProgress | None = None, client: httpx.Client | None = None,
                   deadline: float | None = None) -> str:
        """Ask the server until it answers for the model; returns the model name it serves."""
        raise self.planning_only("wait for it to answer")

    # --- fetching the model ahead of start (`sparkserve pull`) ---------------------------------------
    def hub_download_patterns(self, files: Sequence[str]) -> list[str] | None:
        """`allow_patterns` for the files of a Hugging Face repo this engine loads (given the repo's file
        list), or None when the engine does not load Hub checkpoints."""
        return None

    def pull_from_server(self, client: httpx.Client, *, name: str, model: str, progress: PullProgress | None) -> None:
        """Have the running server fetch `model` itself (Ollama's /api/pull)."""
        raise self.planning_only("pull a model through its server")

    def list_models(self, http: httpx.Client) -> list[str]:
        """The model names the server lists."""
        raise self.planning_only("list its models")

    def owns_server(self, http: httpx.Client, entry: Mapping[str, Any]) -> bool:
        """Whether an OpenAI-compatible server (its /v1/models `entry`, its routes) is this engine."""
        return False

    def server_version(self, http: httpx.Client) -> str | None:
        """The running server's version, when it says."""
        return None

    def secret_env_names(self) -> tuple[str, ...]:
        """Variables a rendered .env.example lists for this engine (values come from .env only)."""
        return (self.api_key_env,) if self.api_key_env else ()

    def doctor_rules(self) -> tuple[Any, ...]:
        """This engine's log rules for `doctor`."""
        return ()

    # --- tuning (`sparkserve tune`) ---------------------------------------------------------------
    tunable: Mapping[str, type] = {}  # settings tune may vary (stack `args` names) and their types
    tune_choices: Mapping[str, tuple[str, ...]] = {}  # the values a text setting accepts
    tune_concurrency_key: str | None = None  # the setting that caps requests in flight
    tune_memory_key: str | None = None  # the share of GPU memory the engine takes at start
    tune_length_key: str | None = None  # the context each request may use
    # Settings that only matter once the load reaches them (two configurations that differ only in
    # these behave alike below the smaller values).
    tune_load_caps: tuple[str, ...] = ()

    def tune_max_concurrency(self, hw: HardwareProfile) -> int:
        """The highest concurrency setting tune proposes by itself."""
        raise self.planning_only("tune it")

    def tune_defaults(self, settings: Mapping[str, Any], *, max_model_len: int,
                      seqs: list[int]) -> dict[str, list[Any]]:
        """The space tune searches when the user names none, from the plan's settings."""
        raise self.planning_only("tune it")

    def tune_cap_need(self, key: str, load: int, prompt_len: int) -> int:
        """The smallest value of a `tune_load_caps` setting that cannot limit `load` requests in flight."""
        return load

    def tune_overrides(self, args: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        """A tuned configuration as the stack service's (args, env)."""
        return dict(args), {}

    def args_conflict(self, args: Mapping[str, Any]) -> str | None:
        """Why the engine would refuse this combination of settings before loading anything, or None."""
        return None

    def live_probe(self) -> LiveProbe | None:
        """How `doctor --live` reads this engine while it serves; None when it cannot."""
        return None
