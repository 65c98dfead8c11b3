"""Environment checks for `sparkserve doctor`: each one passes, fails with the fix, or is n/a.

A check that cannot run here (no NVML, no Docker, no stack file) says so; none raises.
Docker is asked through `docker` on PATH, the same way `up` does, so a stand-in works in tests.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from sparkserve.runtime.docker import COMPOSE_INSTALL, DAEMON_DOWN, DOCKER_INSTALL, NVIDIA_RUNTIME, explain_failure
from sparkserve.units import GIB

if TYPE_CHECKING:
    from sparkserve.hardware.detect import Detection
    from sparkserve.hardware.profile import HardwareProfile
    from sparkserve.plan.planner import ServicePlan, StackPlan
    from sparkserve.stack.load import Stack

PASS, FAIL, NA = "pass", "fail", "n/a"
DOCKER_TIMEOUT_S = 20.0
DRIVER_INSTALL = ("install the NVIDIA driver (Ubuntu: sudo ubuntu-drivers install, or the 580-open branch; DGX OS "
                  "ships it) and reboot; `nvidia-smi` must list the GPU")
DISK_MARGIN_GIB = 5.0  # downloads land beside partial files and the compile cache


@dataclass(frozen=True)
class Check:
    id: str
    status: str  # pass, fail or n/a
    summary: str
    fix: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return asdict(self)


@dataclass
class Docker:
    """`docker` answers, each asked once; None where docker is not on PATH."""

    timeout_s: float = DOCKER_TIMEOUT_S

    @cached_property
    def path(self) -> str | None:
        return shutil.which("docker")

    def run(self, *args: str) -> subprocess.CompletedProcess | None:
        if self.path is None:
            return None
        try:
            return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=self.timeout_s)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return subprocess.CompletedProcess(["docker", *args], 1, "", str(exc))

    @cached_property
    def version(self) -> subprocess.CompletedProcess | None:
        return self.run("version", "--format", "{{.Server.Version}}")

    @cached_property
    def compose_version(self) -> subprocess.CompletedProcess | None:
        return self.run("compose", "version")

    @cached_property
    def runtimes(self) -> subprocess.CompletedProcess | None:
        return self.run("info", "--format", "{{json .Runtimes}}")

    @property
    def daemon_up(self) -> bool:
        return self.version is not None and self.version.returncode == 0

    def image_platform(self, image: str) -> str | None:
        """`os/arch` of a local image; None when it is not pulled (or Docker cannot say)."""
        done = self.run("image", "inspect", "--format", "{{.Os}}/{{.Architecture}}", image)
        if done is None or done.returncode != 0:
            return None
        return done.stdout.strip() or None


@dataclass
class Context:
    """What the checks look at; stack, plan and hardware are None without a stack file."""

    detection: Detection
    meminfo: dict[str, int]
    docker: Docker = field(default_factory=Docker)
    stack: Stack | None = None
    hw: HardwareProfile | None = None
    plan: StackPlan | None = None
    env: dict[str, str] = field(default_factory=dict)  # the project's .env
    answering: set[str] = field(default_factory=set)  # services whose API answers now
    machine: str = field(default_factory=platform.machine)

    def compose_services(self) -> list[str]:
        return [n for n, s in self.stack.services.items() if s.runtime == "compose"] if self.stack else []

    def service_plan(self, name: str) -> ServicePlan | None:
        return next((p for p in self.plan.services if p.name == name), None) if self.plan else None


def host_arch(machine: str) -> str:
    m = machine.lower()
    return {"arm64": "aarch64", "amd64": "x86_64"}.get(m, m)


def _docker_arch(arch: str) -> str:
    return {"aarch64": "arm64", "x86_64": "amd64"}.get(arch, arch)


def check_driver(ctx: Context) -> Check:
    d = ctx.detection
    if not d.gpus:
        reason = d.notes[0] if d.notes else "no GPU"
        if "not installed" in reason:
            return Check("nvidia_driver", NA, f"cannot ask NVML: {reason}",
                         "pip install nvidia-ml-py (a sparkserve dependency), or put nvidia-smi on PATH")
        return Check("nvidia_driver", FAIL, f"no NVIDIA GPU answers ({reason})", DRIVER_INSTALL)
    summary = f"driver {d.driver_version or 'n/a'}, CUDA {d.cuda_driver_version or 'n/a'}, " + \
        ", ".join(f"{g.name}" for g in d.gpus)
    need = _default_image_cuda(ctx)
    have = _version(d.cuda_driver_version)
    if need and have and have < need:
        wanted = ".".join(map(str, need))
        return Check("nvidia_driver", FAIL, f"{summary}: the stack's vLLM image needs CUDA {wanted}",
                     f"upgrade the driver to the 580 branch or newer (CUDA {wanted}), or pin an older image "
                     "with the service's `image` key")
    return Check("nvidia_driver", PASS, summary)


def _default_image_cuda(ctx: Context) -> tuple[int, int] | None:
    if not ctx.stack:
        return None
    from sparkserve.engines import get_engine

    needs = [get_engine(s.engine).image_cuda for s in ctx.stack.services.values()
             if s.runtime == "compose" and not s.image]
    return max((n for n in needs if n), default=None)


def _version(text: str | None) -> tuple[int, int] | None:
    try:
        major, minor = (text or "").split(".")[:2]
        return int(major), int(minor)
    except ValueError:
        return None


def _needs_docker(ctx: Context) -> str | None:
    """Why Docker does not matter here, or None when it does."""
    if ctx.stack is not None and not ctx.compose_services():
        return "every service of the stack runs natively"
    return None


def check_docker(ctx: Context) -> Check:
    if (why := _needs_docker(ctx)) and ctx.docker.path is None:
        return Check("docker", NA, f"Docker not installed; {why}")
    if ctx.docker.path is None:
        return Check("docker", FAIL, "docker is not on PATH", DOCKER_INSTALL)
    v = ctx.docker.version
    if v is None or v.returncode != 0:
        text = (v.stderr if v else "") or ""
        lowered = text.lower()
        fix = (
            DAEMON_DOWN if "daemon" in lowered or "docker.sock" in lowered else explain_failure("docker version", text)
        )
        return Check("docker", FAIL, f"the Docker daemon does not answer ({_last_line(text) or 'no output'})", fix)
    return Check("docker", PASS, f"Docker Engine {v.stdout.strip() or 'n/a'}")


def check_compose(ctx: Context) -> Check:
    if ctx.docker.path is None:
        return Check("compose_plugin", NA, "docker is not on PATH (see the docker check)")
    v = ctx.docker.compose_version
    if v is None or v.returncode != 0:
        return Check(
            "compose_plugin", FAIL, "`docker compose version` failed: the compose plugin is missing", COMPOSE_INSTALL
        )
    return Check("compose_plugin", PASS, v.stdout.strip() or "docker compose answers")


def check_nvidia_runtime(ctx: Context) -> Check:
    if ctx.docker.path is None or not ctx.docker.daemon_up:
        return Check("nvidia_container_runtime", NA, "needs a running Docker daemon (see the docker check)")
    info = ctx.docker.runtimes
    if info is None or info.returncode != 0:
        return Check(
            "nvidia_container_runtime",
            FAIL,
            "`docker info` failed",
            explain_failure("docker info", info.stderr if info else ""),
        )
    try:
        runtimes = json.loads(info.stdout.strip() or "{}")
    except json.JSONDecodeError:
        runtimes = {}
    if "nvidia" not in runtimes:
        names = ", ".join(sorted(runtimes)) or "none"
        return Check(
            "nvidia_container_runtime", FAIL, f"Docker has no nvidia runtime (runtimes: {names})", NVIDIA_RUNTIME
        )
    return Check("nvidia_container_runtime", PASS, "Docker lists the nvidia runtime")


def _existing(path: Path) -> Path:
    path = path.expanduser()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _hf_cached(cache: Path, model: str) -> bool:
    """Whether the HF cache already holds this repo (models--org--name), or it is a local directory."""
    if Path(model).expanduser().is_dir():
        return True
    return (cache / "hub" / f"models--{model.replace('/', '--')}").is_dir() or (
        cache / f"models--{model.replace('/', '--')}"
    ).is_dir()


def check_disk(ctx: Context) -> Check:
    """Free space where weights will be downloaded against the download not yet there: the repo's files
    vLLM loads (from the Hub's file list, else the checkpoint in its own dtype), not the in-memory size."""
    from sparkserve.engines import get_engine
    from sparkserve.runtime import pull

    if ctx.stack is None or ctx.plan is None:
        return Check("disk_space", NA, "no stack file: nothing planned to download")
    cache = Path(ctx.stack.spec.stack.hf_cache).expanduser()
    token = os.environ.get("HF_TOKEN") or ctx.env.get("HF_TOKEN") or None
    need: dict[Path, float] = {}
    how: set[str] = set()
    for name, svc in ctx.stack.services.items():
        plan = ctx.service_plan(name)
        if plan is None:
            continue
        engine = get_engine(svc.engine)
        if engine.hub_download_patterns([]) is not None:
            if _hf_cached(cache, svc.model):
                continue
            where = _existing(cache)
            revision = svc.args.get("revision")
            size = pull.download_size(
                engine, svc.model, str(revision) if revision else None, token, plan.deployment.model
            )
            gib = size.bytes / GIB
            how.add(size.how)
        else:
            where = _existing(Path(engine.weights_host_dir(svc, str(cache))).expanduser())
            gib = plan.memory.weights_gib
        need[where] = need.get(where, 0.0) + gib
    if not need:
        return Check("disk_space", PASS, f"every model is already in {cache} (or local)")
    problems, notes = [], []
    source = f" ({', '.join(sorted(how))})" if how else ""
    for where, gib in need.items():
        try:
            free = shutil.disk_usage(where).free / GIB
        except OSError as exc:
            return Check("disk_space", NA, f"cannot read free space of {where} ({exc.strerror or exc})")
        notes.append(f"{free:.0f} GiB free on {where} for {gib:.1f} GiB of downloads{source}")
        if free < gib + DISK_MARGIN_GIB:
            problems.append((where, free, gib))
    if problems:
        where, free, gib = problems[0]
        return Check(
            "disk_space",
            FAIL,
            "; ".join(notes),
            f"free {gib + DISK_MARGIN_GIB - free:.0f} GiB on {where} (e.g. `huggingface-cli delete-cache`, "
            "`ollama rm`) or point [stack] hf_cache at a larger disk",
        )
    return Check("disk_space", PASS, "; ".join(notes))


def check_ports(ctx: Context) -> Check:
    """Every service port is free, or held by that service itself."""
    from sparkserve.runtime.ports import port_in_use

    if ctx.stack is None:
        return Check("ports", NA, "no stack file: no ports to check")
    bind = ctx.stack.spec.stack.bind
    ports = {name: svc.port for name, svc in ctx.stack.services.items()}
    taken = {n: p for n, p in ports.items() if n not in ctx.answering and port_in_use(bind, p)}
    if taken:
        listed = ", ".join(f"{n}: {p}" for n, p in taken.items())
        first = next(iter(taken.values()))
        return Check(
            "ports",
            FAIL,
            f"in use by another process on {bind}: {listed}",
            f"stop what holds it (`sudo ss -ltnp 'sport = :{first}'` or `docker ps` shows which) or change "
            f"the port in {ctx.stack.path}",
        )
    running = [n for n in ports if n in ctx.answering]
    note = f" ({', '.join(running)} already running there)" if running else ""
    return Check("ports", PASS, f"ports {', '.join(str(p) for p in ports.values())} free on {bind}{note}")


def check_hf_token(ctx: Context) -> Check:
    from sparkserve.engines import get_engine
    from sparkserve.models.gated import is_gated

    if ctx.stack is None:
        return Check("hf_token", NA, "no stack file: no models to check")
    gated = [
        svc.model
        for svc in ctx.stack.services.values()
        if get_engine(svc.engine).needs_hf_token and is_gated(svc.model)
    ]
    if not gated:
        return Check("hf_token", NA, "no gated Hugging Face model in the stack")
    if os.environ.get("HF_TOKEN") or ctx.env.get("HF_TOKEN"):
        return Check("hf_token", PASS, f"HF_TOKEN is set for {', '.join(gated)}")
    return Check(
        "hf_token",
        FAIL,
        f"{', '.join(gated)} {'is' if len(gated) == 1 else 'are'} gated and HF_TOKEN is empty",
        f"accept the licence at https://huggingface.co/{gated[0]}, create a read token at "
        "https://huggingface.co/settings/tokens and put HF_TOKEN=<token> in .env",
    )


def _planned_need_gib(ctx: Context) -> float:
    """Unified memory the services not yet running will take (vLLM: its utilisation budget)."""
    from sparkserve.engines import get_engine

    if ctx.plan is None:
        return 0.0
    return sum(
        get_engine(p.deployment.engine).memory_at_start_gib(p.memory)
        for p in ctx.plan.services
        if p.name not in ctx.answering
    )


def check_memory(ctx: Context) -> Check:
    if ctx.plan is None or ctx.hw is None:
        return Check("memory_available", NA, "no stack file: no plan to compare with")
    if not ctx.hw.unified:
        return Check("memory_available", NA, f"{ctx.hw.name} has its own GPU memory: vLLM sizes itself from it")
    if "MemAvailable" not in ctx.meminfo:
        return Check("memory_available", NA, "/proc/meminfo unreadable")
    need = _planned_need_gib(ctx)
    available = ctx.meminfo["MemAvailable"] / GIB
    summary = f"MemAvailable {available:.1f} GiB for {need:.1f} GiB the services not yet running will take"
    if available < need:
        return Check(
            "memory_available",
            FAIL,
            summary,
            f"free {need - available:.1f} GiB: stop other GPU processes and containers, or lower "
            "gpu_memory_utilization / max_model_len in the stack (see `sparkserve plan`)",
        )
    return Check("memory_available", PASS, summary)


def check_page_cache(ctx: Context) -> Check:
    from sparkserve.readings.meminfo import DROP_CACHES

    if ctx.hw is None or not ctx.hw.unified:
        return Check("page_cache", NA, "only matters on unified memory (DGX Spark)")
    if "Cached" not in ctx.meminfo or "MemFree" not in ctx.meminfo:
        return Check("page_cache", NA, "/proc/meminfo unreadable")
    m = ctx.meminfo
    cache = max(0, m["Cached"] + m.get("Buffers", 0) - m.get("Shmem", 0)) / GIB
    free = m["MemFree"] / GIB
    available = m.get("MemAvailable", 0) / GIB
    need = _planned_need_gib(ctx)
    summary = f"page cache {cache:.1f} GiB, MemFree {free:.1f} GiB for {need:.1f} GiB to load"
    if free < need <= available and cache >= 1.0:
        return Check(
            "page_cache",
            FAIL,
            f"{summary}: only dropping the cache frees enough; vLLM's start-up check "
            "counts page cache as used on unified memory",
            f"drop it before starting: {DROP_CACHES}",
        )
    if need > available:
        return Check("page_cache", PASS, f"{summary}: dropping it would not be enough (see memory_available)")
    return Check("page_cache", PASS, summary)


def check_image_arch(ctx: Context) -> Check:
    if ctx.stack is None or ctx.hw is None:
        return Check("image_architecture", NA, "no stack file: no images to check")
    names = ctx.compose_services()
    if not names:
        return Check("image_architecture", NA, "no container images: every service runs natively")
    from sparkserve.engines import get_engine

    here = host_arch(ctx.machine)
    if ctx.hw.cpu_arch != here:
        return Check(
            "image_architecture",
            FAIL,
            f"the stack targets {ctx.hw.name} ({ctx.hw.cpu_arch} images) but this host is {here}",
            'set [stack] hardware to this machine\'s profile (or "auto"); containers would fail with '
            "'exec format error'",
        )
    wrong, unknown = [], []
    for name in names:
        svc = ctx.stack.services[name]
        image = svc.image or get_engine(svc.engine).image_for(ctx.hw)
        found = ctx.docker.image_platform(image) if ctx.docker.daemon_up else None
        if found is None:
            unknown.append(image)
        elif found.split("/")[-1] != _docker_arch(here):
            wrong.append((name, image, found))
    if wrong:
        name, image, found = wrong[0]
        return Check(
            "image_architecture",
            FAIL,
            f"{name}: {image} is {found}, this host is linux/{_docker_arch(here)}",
            f"docker pull --platform linux/{_docker_arch(here)} {image} (or pick an image built for "
            f"{_docker_arch(here)}: on a DGX Spark nvcr.io/nvidia/vllm)",
        )
    note = f"; not pulled yet: {', '.join(unknown)}" if unknown else ""
    return Check("image_architecture", PASS, f"images match this {here} host{note}")


def check_plan(ctx: Context) -> Check:
    if ctx.plan is None or ctx.hw is None:
        return Check("plan_fits", NA, "no stack file")
    if ctx.plan.fits:
        return Check("plan_fits", PASS, f"the stack fits on {ctx.hw.name} by sparkserve's plan")
    reasons = ctx.plan.warnings() + [w for s in ctx.plan.services if not s.fits for w in s.memory.reasons]
    return Check(
        "plan_fits",
        FAIL,
        reasons[0] if reasons else f"the stack does not fit on {ctx.hw.name}",
        "see `sparkserve plan`: lower max_model_len or gpu_memory_utilization, or pick a smaller quant",
    )


CHECKS: tuple[Callable[[Context], Check], ...] = (
    check_driver,
    check_docker,
    check_compose,
    check_nvidia_runtime,
    check_disk,
    check_ports,
    check_hf_token,
    check_memory,
    check_page_cache,
    check_image_arch,
    check_plan,
)


def run_checks(ctx: Context) -> list[Check]:
    """Every check in order; one that breaks unexpectedly is reported as n/a with the reason."""
    out = []
    for check in CHECKS:
        try:
            out.append(check(ctx))
        except Exception as exc:  # noqa: BLE001 - doctor must finish and report the rest
            name = check.__name__.removeprefix("check_")
            out.append(Check(name, NA, f"could not run: {type(exc).__name__}: {exc}"))
    return out


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""
