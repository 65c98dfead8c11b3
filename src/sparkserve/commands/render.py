"""`sparkserve render`: write the compose project for a stack file."""

from __future__ import annotations

from pathlib import Path

from sparkserve.errors import UserError


def run_render(*, stack: str | None, out: str | None, write_env: bool, hardware: str | None,
               monitoring: bool | None = None) -> None:
    from rich.console import Console

    from sparkserve.runtime.compose import ENV_EXAMPLE, ENV_FILE, render
    from sparkserve.stack.load import STACK_FILE, find_stack, load_stack
    from sparkserve.stack.stackplan import plan_stack, stack_hardware

    path = find_stack(stack)
    if path is None:
        raise UserError(f"no {STACK_FILE} here; create one with 'sparkserve init' or pass --stack FILE")
    loaded = load_stack(path)
    hw = stack_hardware(loaded, hardware)
    plan = plan_stack(loaded, hw)
    out_dir = Path(out) if out else path.parent
    result = render(loaded, hw, plan, out_dir, write_env=write_env, monitoring=monitoring)
    console = Console(highlight=False)
    for written in result.written:
        console.print(f"wrote {written}")
    if result.env_created:
        console.print(f"wrote {result.env_created} (mode 600): put your HF_TOKEN there")
    elif not (out_dir / ENV_FILE).exists():
        console.print(
            f"no {ENV_FILE} yet: copy {ENV_EXAMPLE} to {ENV_FILE} (or pass --write-env) before 'docker compose up'"
        )
    for name in result.project.skipped:
        console.print(f'{name}: runtime = "native", not in the compose file')
    host = _url_host(loaded.spec.stack.bind)
    for name, svc in loaded.services.items():
        if name not in result.project.skipped:
            console.print(f"  {name}: http://{host}:{svc.port}")
    if "prometheus" in result.project.document["services"]:
        from sparkserve.runtime.monitoring import EXPORTER_SERVICE, EXPORTER_UNIT

        ports = loaded.spec.monitoring
        console.print(
            f"  prometheus: http://localhost:{ports.prometheus_port}  grafana: http://localhost:{ports.grafana_port}"
            f"  exporter: http://localhost:{ports.exporter_port}/metrics (127.0.0.1 only): 'docker compose up -d "
            f"prometheus grafana {EXPORTER_SERVICE}' starts them; without Docker, run the exporter natively "
            f"with {out_dir / EXPORTER_UNIT}"
        )
    for warning in plan.warnings() + [w for s in plan.services for w in s.warnings]:
        console.print(f"[yellow]warning:[/] {warning}")


def _url_host(bind: str) -> str:
    import ipaddress

    addr = ipaddress.ip_address(bind)
    if addr.is_loopback or addr.is_unspecified:
        return "localhost"
    return f"[{bind}]" if addr.version == 6 else bind
