"""`sparkserve doctor [SERVICE] [--log FILE | --live [--url URL] [--window S]] [--json]`.

Environment checks and log diagnosis, or (`--live`) what limits a serving service's throughput or
latency, read from its metrics over a window of its real traffic.

Without `--log`, every environment check runs and each service's recent log is read
(compose: `docker compose logs --tail`; native: its log file under `.sparkserve/`). With
`--log FILE` only that log is diagnosed. Where the stack file is known, the plan supplies the
numbers a log may lack (utilisation, GPU memory, KV bytes per token) so a KV-cache fix can say
which `--max-model-len` or `--gpu-memory-utilization` fits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sparkserve.errors import UserError

if TYPE_CHECKING:
    from sparkserve.doctor.checks import Check
    from sparkserve.doctor.diagnose import Finding
    from sparkserve.stack.stackplan import PlannedStack as Loaded



@dataclass(frozen=True)
class ServiceLog:
    service: str
    source: str  # where the text came from, or why none could be read
    text: str | None


def _load(stack_file: str | None) -> Loaded | None:
    """The stack with its plan, or None when there is no stack file here (a broken one still errors)."""
    from sparkserve.stack.load import find_stack
    from sparkserve.stack.stackplan import load_planned

    if find_stack(stack_file) is None:
        return None
    return load_planned(stack_file)


def plan_context(loaded: Loaded | None, service: str | None) -> dict[str, str]:
    """Facts from the plan for the KV-cache and memory fixes: utilisation, GPU memory, KV bytes per token per GPU."""
    from sparkserve.engines import get_engine

    if loaded is None:
        return {}
    # The KV-cache advice is for engines that size a KV pool from a share of memory (vLLM).
    pooled = [n for n, s in loaded.stack.services.items() if get_engine(s.engine).takes_memory_share]
    name = service if service in pooled else (pooled[0] if len(pooled) == 1 and service is None else None)
    plan = next((p for p in loaded.plan.services if p.name == name), None)
    if plan is None:
        return {}
    mem = plan.memory
    context = {"total_gib": f"{mem.device_memory_gib:g}",
               "kv_bytes_per_token": f"{mem.kv_bytes_per_token / max(1, mem.devices):.1f}"}
    util = getattr(mem.settings, "gpu_memory_utilization", None)
    if util is not None:
        context["util"] = f"{util:.2f}"
    if loaded.hw.unified:
        context["uma"] = "yes"
    return context


def service_log(loaded: Loaded, name: str, tail: int) -> ServiceLog:
    """The last `tail` lines a service wrote: its native log file, or `docker compose logs`."""
    from sparkserve.runtime.compose import COMPOSE_FILE
    from sparkserve.runtime.docker import Compose
    from sparkserve.runtime.native import log_file, log_tail

    svc = loaded.stack.services[name]
    if svc.runtime == "native":
        path = log_file(loaded.path, name)
        if not path.is_file():
            return ServiceLog(name, f"no log yet ({path})", None)
        return ServiceLog(name, str(path), "\n".join(log_tail(path, tail)))
    compose_file = loaded.path.parent / COMPOSE_FILE
    if not compose_file.is_file():
        return ServiceLog(name, f"no {COMPOSE_FILE} yet", None)
    try:
        done = Compose(compose_file).run("logs", "--no-color", "--no-log-prefix", f"--tail={tail}", name, check=False)
    except UserError as exc:
        return ServiceLog(name, f"cannot read its logs: {exc}", None)
    if done.returncode != 0:  # docker's own complaint is not the service's log
        lines = [line.strip() for line in (done.stderr or "").splitlines() if line.strip()]
        why = lines[0] if lines else f"exit code {done.returncode}"
        return ServiceLog(name, f"cannot read its logs ({why}); see the docker and compose_plugin checks", None)
    return ServiceLog(name, f"docker compose logs --tail={tail} {name}", (done.stdout or "") + (done.stderr or ""))


def _checks(loaded: Loaded | None) -> list[Check]:
    from sparkserve.doctor.checks import Context, run_checks
    from sparkserve.hardware.detect import detect
    from sparkserve.readings.meminfo import read_meminfo
    from sparkserve.runtime.compose import ENV_FILE, read_env_file
    from sparkserve.runtime.native import service_url
    from sparkserve.runtime.status import answers

    answering: set[str] = set()
    env: dict[str, str] = {}
    if loaded is not None:
        env = read_env_file(loaded.path.parent / ENV_FILE)
        bind = loaded.stack.spec.stack.bind
        answering = {name for name, svc in loaded.stack.services.items()
                     if answers(svc.engine, service_url(bind, svc.port))}
    ctx = Context(detection=detect(), meminfo=read_meminfo(), stack=loaded.stack if loaded else None,
                  hw=loaded.hw if loaded else None, plan=loaded.plan if loaded else None, env=env, answering=answering)
    return run_checks(ctx)


def run_doctor(*, service: str | None, log: str | None, json_out: bool, stack: str | None, tail: int) -> int:
    """Print the checks and findings; the exit code is 1 when a check fails or a log shows a failure."""
    from sparkserve.doctor.diagnose import diagnose, diagnose_file

    if tail < 1:
        raise UserError(f"--tail must be at least 1, got {tail}")
    try:
        loaded = _load(stack)
    except UserError:
        if not log or stack or service:
            raise
        loaded = None  # a broken stack file here must not stop the diagnosis of another log
    if service is not None and (loaded is None or service not in loaded.stack.services):
        where = loaded.stack.path if loaded else "the stack (no sparkserve.toml here)"
        raise UserError(f"no service {service!r} in {where}")
    findings: list[tuple[str | None, Finding]] = []
    sources: list[ServiceLog] = []
    checks: list[Check] = []
    if log:
        path = Path(log).expanduser()
        if not path.is_file():
            raise UserError(f"{path}: no such log file")
        findings = [(None, f) for f in diagnose_file(path, context=plan_context(loaded, service))]
    else:
        checks = _checks(loaded)
        names = [service] if service else (list(loaded.stack.services) if loaded else [])
        for name in names:
            assert loaded is not None  # names come from the stack
            entry = service_log(loaded, name, tail)
            sources.append(entry)
            if entry.text:
                findings += [(name, f) for f in diagnose(entry.text, context=plan_context(loaded, name))]
    findings.sort(key=lambda pair: -pair[1].score)  # stable: each log's own order breaks ties
    if json_out:
        print(json.dumps(_json(findings, checks, sources), indent=2))
    else:
        _print(findings, checks, sources, log)
    return 1 if findings or any(c.status == "fail" for c in checks) else 0


def _json(findings, checks, sources) -> dict:
    out: dict = {"findings": [f.to_dict() | ({"service": s} if s else {}) for s, f in findings]}
    if checks:
        out["checks"] = [c.to_dict() for c in checks]
    if sources:
        out["logs"] = [{"service": s.service, "source": s.source} for s in sources]
    return out


def _print(findings, checks, sources, log: str | None) -> None:
    from rich.console import Console
    from rich.markup import escape

    console = Console(highlight=False, soft_wrap=True)
    if checks:
        console.print("[bold]environment[/]")
        for c in checks:
            mark = {"pass": "[green]pass[/]", "fail": "[red]FAIL[/]"}.get(c.status, "[dim]n/a [/]")
            console.print(f"  {mark} {c.id}: {escape(c.summary)}")
            if c.fix and c.status != "pass":
                console.print(f"       fix: {escape(c.fix)}")
    for s in sources:
        if s.text is None:
            console.print(f"[dim]{s.service}: {escape(s.source)}[/]")
    label = log or ", ".join(s.service for s in sources if s.text) or "no logs"
    if not findings:
        console.print(f"[bold]logs[/] ({escape(label)}): no known failure recognised")
        return
    console.print(f"[bold]logs[/] ({escape(label)}): most likely first")
    for service, f in findings:
        prefix = f"{service}: " if service else ""
        console.print(f"  [red]{prefix}{f.cause_id}[/]: {escape(f.summary)}")
        console.print(f"    fix: {escape(f.fix)}")
        for line in f.evidence:
            console.print(f"    [dim]> {escape(line)}[/]")


def run_live(*, service: str | None, url: str | None, window: float, json_out: bool, stack: str | None) -> int:
    """Sample a serving service for `window` seconds and print what limits it (exit 0: advice, not failure)."""
    from sparkserve.doctor.live import diagnose_live
    from sparkserve.engines import engines, get_engine
    from sparkserve.runtime.native import service_url

    settings: dict[str, object] = {}
    plan: dict[str, float] = {}
    if url is None:
        loaded = _load(stack)
        if loaded is None:
            raise UserError("doctor --live needs a service of the stack here (sparkserve.toml) or --url http://HOST:PORT")
        names = list(loaded.stack.services)
        if service is None:
            if len(names) != 1:
                raise UserError(f"doctor --live: name the service to read, one of {', '.join(names)}")
            service = names[0]
        if service not in loaded.stack.services:
            raise UserError(f"no service {service!r} in {loaded.stack.path}; services: {', '.join(names)}")
        svc = loaded.stack.services[service]
        url = service_url(loaded.stack.spec.stack.bind, svc.port)
        probe = get_engine(svc.engine).live_probe()
        if probe is None:
            raise UserError(f"doctor --live cannot read {svc.engine} services yet")
        probes = [probe]
        settings = {k: v for k, v in dict(svc.args).items()}
        sp = next((p for p in loaded.plan.services if p.name == service), None)
        if sp is not None:
            mem = sp.memory
            plan = {"decode_tps": sp.perf.decode_tps, "batch": float(sp.workload.batch),
                    "kv_slot_gib": mem.kv_cache_gib / max(mem.max_concurrency, 1.0),
                    "headroom_gib": max(0.0, mem.budget_gib - mem.total_gib)}
    else:
        if service is not None:
            raise UserError("give either SERVICE or --url, not both")
        probes = [p for p in (e.live_probe() for e in engines(runnable=True)) if p is not None]
    result = diagnose_live(url, probes, window, settings=settings, plan=plan)
    if json_out:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    from rich.console import Console
    from rich.markup import escape

    console = Console(highlight=False, soft_wrap=True)
    console.print(f"[bold]live[/] ({escape(result.url)}, {result.window.seconds:.0f} s, "
                  f"{len(result.window.samples)} reads)")
    if not result.findings:
        console.print("  nothing limits it in this window")
    for f in result.findings:
        console.print(f"  [yellow]{f.cause_id}[/]: {escape(f.summary)}")
        console.print(f"    fix: {escape(f.fix)}")
        for line in f.evidence:
            console.print(f"    [dim]> {escape(line)}[/]")
    return 0
