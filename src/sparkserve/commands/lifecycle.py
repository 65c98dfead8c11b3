"""`up`, `down`, `restart`, `logs`, `status`: run a stack's compose project and wait for it to answer."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sparkserve.errors import UserError, closest

if TYPE_CHECKING:
    from sparkserve.hardware.profile import HardwareProfile
    from sparkserve.plan.planner import StackPlan
    from sparkserve.runtime.docker import Compose, ServiceState
    from sparkserve.stack.load import Stack

STOPPED_STATES = frozenset({"exited", "dead", "restarting"})


@dataclass
class Project:
    """A loaded stack with its plan and compose driver."""

    stack: Stack
    hw: HardwareProfile
    plan: StackPlan
    compose: Compose

    @property
    def directory(self) -> Path:
        return self.compose.compose_file.parent


def _project(stack_file: str | None, *, render_files: bool) -> Project:
    from sparkserve.runtime.compose import COMPOSE_FILE, render
    from sparkserve.runtime.docker import Compose
    from sparkserve.stack.load import STACK_FILE, find_stack, load_stack
    from sparkserve.stack.stackplan import plan_stack, stack_hardware

    path = find_stack(stack_file)
    if path is None:
        raise UserError(f"no {STACK_FILE} here; create one with 'sparkserve init' or pass --stack FILE")
    stack = load_stack(path)
    hw = stack_hardware(stack)
    plan = plan_stack(stack, hw)
    compose_file = path.parent / COMPOSE_FILE
    if render_files:
        render(stack, hw, plan, path.parent)
    elif not compose_file.is_file():
        raise UserError(f"no {compose_file} yet; run 'sparkserve up' (or 'sparkserve render') first")
    return Project(stack=stack, hw=hw, plan=plan, compose=Compose(compose_file))


def split_services(stack: Stack, names: list[str]) -> tuple[list[str], list[str]]:
    """(compose services, native services) to act on: all of them, or the named ones (checked)."""
    for name in names:
        if name not in stack.services:
            guess = closest(name, stack.services, n=1)
            hint = f"; did you mean {guess[0]!r}?" if guess else ""
            raise UserError(f"no service {name!r} in {stack.path}{hint}")
    chosen = list(names) or list(stack.services)
    return ([n for n in chosen if stack.services[n].runtime == "compose"],
            [n for n in chosen if stack.services[n].runtime == "native"])


def _check_fits(plan: StackPlan, hw: HardwareProfile, force: bool) -> None:
    if not plan.fits and not force:
        reasons = plan.warnings() + [w for s in plan.services if not s.fits for w in s.memory.reasons]
        raise UserError(f"the stack does not fit on {hw.name}: {reasons[0] if reasons else 'see sparkserve plan'}; "
                        "pass --force to start it anyway")


def check_architecture(hw, machine: str | None = None) -> None:
    """Images follow the stack's hardware profile; on another CPU they fail with 'exec format error'."""
    machine = (machine or platform.machine()).lower()
    here = {"arm64": "aarch64", "amd64": "x86_64"}.get(machine, machine)
    if here != hw.cpu_arch:
        raise UserError(
            f"the stack targets {hw.name} ({hw.cpu_arch} images) but this machine is {here}: "
            "set [stack] hardware to this machine's profile (or \"auto\") and run again"
        )


def memory_check(hw, need_gib: float, meminfo: dict[str, int]) -> tuple[str | None, str | None]:
    """(error, note) for unified memory: MemAvailable must hold what the services will take;
    page cache counts as available yet competes with CUDA allocations at start."""
    from sparkserve.readings.meminfo import DROP_CACHES, GIB

    if not hw.unified or not meminfo or need_gib <= 0:
        return None, None
    available = meminfo.get("MemAvailable", 0) / GIB
    free = meminfo.get("MemFree", 0) / GIB
    cache = max(0.0, (meminfo.get("Cached", 0) + meminfo.get("Buffers", 0) - meminfo.get("Shmem", 0)) / GIB)
    if available < need_gib:
        return (f"only {available:.1f} GiB of unified memory is available but the services need {need_gib:.1f} GiB; "
                "stop other GPU processes or containers, or pass --force"), None
    note = f"unified memory: {available:.1f} GiB available for {need_gib:.1f} GiB of services"
    if cache >= 1.0:
        note += f"; {cache:.1f} GiB is page cache that could be dropped ({DROP_CACHES})"
        if free < need_gib:
            note += ": vLLM sizes itself from free memory, so drop it before a large model starts"
    return None, note


def _has_token(project: Project) -> bool:
    from sparkserve.runtime.compose import ENV_FILE, read_env_file

    return bool(os.environ.get("HF_TOKEN") or read_env_file(project.directory / ENV_FILE).get("HF_TOKEN"))


def _api_key(project: Project, engine: str) -> str | None:
    """The engine's API key (vLLM: VLLM_API_KEY) from this environment or .env; None when it has none."""
    from sparkserve.engines import get_engine
    from sparkserve.runtime.compose import ENV_FILE, read_env_file

    name = get_engine(engine).api_key_env
    if not name:
        return None
    return os.environ.get(name) or read_env_file(project.directory / ENV_FILE).get(name) or None


def _states(project: Project) -> dict[str, ServiceState]:
    return {s.service: s for s in project.compose.ps()}


def _wait(project: Project, names: list[str], timeout: float, console) -> None:
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    from sparkserve.runtime.native import served_name, service_url
    from sparkserve.runtime.readiness import Target, progress_lines, wait_ready

    bind = project.stack.spec.stack.bind
    for name in names:
        svc = project.stack.services[name]
        target = Target(name=name, engine=svc.engine, base_url=service_url(bind, svc.port), model=served_name(svc),
                        api_key=_api_key(project, svc.engine))
        shown: set[str] = set()

        def alive(name=name) -> str | None:
            state = _states(project).get(name)
            if state is None:
                return "its container is gone"
            if state.state in STOPPED_STATES:
                tail = [line for line in project.compose.log_text(name, tail=20).splitlines() if line.strip()]
                last = tail[-1] if tail else "none"
                return f"container {state.state} (exit code {state.exit_code}); last log line: {last}"
            return None

        def tick(name=name, shown=shown, engine=svc.engine) -> None:
            for line in progress_lines(engine, project.compose.log_text(name)):
                if line not in shown:
                    shown.add(line)
                    console.print(f"  {name}: {line}")

        with Progress(
            TextColumn("  {task.description}"), BarColumn(), DownloadColumn(), console=console, transient=True
        ) as bar:
            task = None

            def pulled(status: str, done: int, total: int, name: str = name, model: str = target.model) -> None:
                nonlocal task
                if task is None:
                    task = bar.add_task(f"{name}: pulling {model}", total=total or None)
                bar.update(task, completed=done, total=total or None, description=f"{name}: {status}")

            ready = wait_ready(
                target,
                timeout=timeout,
                alive=alive,
                say=console.print,
                tick=tick,
                pull_progress=pulled,
                poll=float(os.environ.get("SPARKSERVE_POLL_S", "2")),
            )
        console.print(f"[green]ready[/] {name}: {ready.url} ({ready.model}, {ready.seconds:.0f} s)")


def warn_exposure(stack: Stack, names: list[str], console) -> None:
    """Before anything starts: services reachable from the network, and a .env others can read."""
    from sparkserve import secrets
    from sparkserve.runtime import exposure
    from sparkserve.runtime.compose import ENV_FILE, read_env_file

    env_file = stack.path.parent / ENV_FILE
    variables = {**read_env_file(env_file), **{k: v for k, v in os.environ.items() if v}}
    services = {n: stack.services[n].engine for n in names}
    for line in exposure.warnings(stack.spec.stack.bind, services, variables):
        console.print(line, markup=False, soft_wrap=True, style="bold red" if line.startswith("WARNING") else "yellow")
    note = secrets.env_file_warning(env_file)
    if note:
        console.print(note, markup=False, soft_wrap=True, style="yellow")


def endpoint(bind: str, port: int, path: str = "") -> str:
    from sparkserve.runtime.exposure import endpoint as text

    return text(bind, port, path)


def run_up(*, stack: str | None, services: list[str], force: bool, timeout: float, wait: bool) -> None:
    """Compose services through docker compose, native ones as local processes; every check of
    both runs before either starts anything."""
    from rich.console import Console

    from sparkserve.commands import native
    from sparkserve.stack.stackplan import load_planned

    console = Console(highlight=False)
    loaded = load_planned(stack)
    compose_names, native_names = split_services(loaded.stack, services)
    _check_fits(loaded.plan, loaded.hw, force)
    warn_exposure(loaded.stack, compose_names + native_names, console)
    with native.prepared(loaded, native_names, console) as todo:
        if compose_names:
            _compose_up(stack, compose_names, force=force, timeout=timeout, wait=wait, console=console)
        native.start_all(loaded, todo, timeout=timeout, wait=wait, console=console)
    if native_names:
        console.print("endpoints:" if not compose_names else "native endpoints:")
        _print_endpoints(loaded.stack, native_names, console)


def _compose_up(stack: str | None, names: list[str], *, force: bool, timeout: float, wait: bool, console) -> None:
    from sparkserve.engines import get_engine
    from sparkserve.models.gated import is_gated
    from sparkserve.readings.meminfo import read_meminfo
    from sparkserve.runtime.docker import preflight
    from sparkserve.runtime.ports import check_ports_free

    project = _project(stack, render_files=True)
    check_architecture(project.hw)
    for name in names:
        svc = project.stack.services[name]
        if get_engine(svc.engine).needs_hf_token and is_gated(svc.model) and not _has_token(project):
            raise UserError(
                f"{name}: {svc.model} is gated on Hugging Face and HF_TOKEN is empty; accept its licence "
                "on huggingface.co, then put HF_TOKEN=<token> in .env"
            )
    preflight()
    running = {n for n, s in _states(project).items() if s.state == "running"}
    check_ports_free(
        project.stack.spec.stack.bind,
        {n: project.stack.services[n].port for n in names if n not in running},
        project.stack.path,
    )
    need = sum(
        get_engine(p.deployment.engine).memory_at_start_gib(p.memory)
        for p in project.plan.services
        if p.name in names and p.name not in running
    )
    error, note = memory_check(project.hw, need, read_meminfo())
    if error and not force:
        raise UserError(error)
    if note:
        console.print(note)
    console.print(f"starting {', '.join(names)} ({project.compose.compose_file})")
    project.compose.up(names)
    if wait:
        _wait(project, names, timeout, console)
    _print_urls(project, names, console)


def _print_urls(project: Project, names: list[str], console) -> None:
    console.print("endpoints:")
    _print_endpoints(project.stack, names, console)


def _print_endpoints(stack: Stack, names: list[str], console) -> None:
    """Each service's URL as clients use it (the engine's API suffix: /v1 for OpenAI-compatible ones)."""
    from sparkserve.engines import get_engine

    for name in names:
        svc = stack.services[name]
        console.print(
            f"  {name}: {endpoint(stack.spec.stack.bind, svc.port, get_engine(svc.engine).api_suffix)}", markup=False
        )


def run_down(*, stack: str | None) -> None:
    from rich.console import Console

    from sparkserve.commands import native
    from sparkserve.stack.stackplan import load_planned

    loaded = load_planned(stack)
    compose_names, native_names = split_services(loaded.stack, [])
    native.down(loaded, native_names, Console(highlight=False))
    if compose_names:
        from sparkserve.runtime.docker import require_compose

        require_compose()
        project = _project(stack, render_files=False)
        project.compose.down()
        print(f"stopped {project.compose.compose_file.parent.name}")


def run_restart(*, stack: str | None, service: str | None, timeout: float, wait: bool) -> None:
    from rich.console import Console

    from sparkserve.commands import native
    from sparkserve.stack.stackplan import load_planned

    console = Console(highlight=False)
    loaded = load_planned(stack)
    compose_names, native_names = split_services(loaded.stack, [service] if service else [])
    if native_names:
        native.down(loaded, native_names, console)
        native.up(loaded, native_names, timeout=timeout, wait=wait, console=console)
    if compose_names:
        from sparkserve.runtime.docker import require_compose

        require_compose()
        project = _project(stack, render_files=False)
        project.compose.restart(compose_names if service else [])
        if wait:
            _wait(project, compose_names, timeout, console)
        _print_urls(project, compose_names, console)


def run_logs(*, stack: str | None, service: str | None, follow: bool, tail: int | None) -> None:
    from sparkserve.commands import native
    from sparkserve.runtime.native import log_file
    from sparkserve.stack.stackplan import load_planned

    loaded = load_planned(stack)
    compose_names, native_names = split_services(loaded.stack, [service] if service else [])
    if service and native_names:
        native.logs(loaded, service, follow=follow, tail=tail)
        return
    if not service:
        for name in native_names:
            print(f"==> {name} ({log_file(loaded.path, name)}) <==")
            native.logs(loaded, name, follow=False, tail=tail)
    if not compose_names:
        return
    from sparkserve.runtime.docker import require_compose

    require_compose()
    project = _project(stack, render_files=False)
    code = project.compose.logs(compose_names if service else [], follow=follow, tail=tail)
    if code not in (0, 130):
        raise UserError(f"docker compose logs exited with {code}")


def run_status(*, stack: str | None, json_out: bool, interval: float = 1.0) -> None:
    """The runtime's rows plus what each service, the GPUs and memory say now (commands/monitor.py)."""
    from sparkserve.commands import native
    from sparkserve.commands.monitor import show_status
    from sparkserve.runtime.status import service_rows
    from sparkserve.stack.stackplan import load_planned

    loaded = load_planned(stack)
    rows = service_rows(loaded)
    show_status(loaded.stack, rows, json_out=json_out, interval_s=interval)
    if not json_out:
        from rich.console import Console

        native.print_problems([r for r in rows if r["runtime"] == "native"], Console(highlight=False))
