"""`sparkserve init`: write the default stack file, sized for the chosen hardware."""

from __future__ import annotations

from pathlib import Path


def run_init(*, hardware: str | None, variant: str | None, force: bool, stack: str | None) -> None:
    from rich.console import Console

    from sparkserve.hardware.catalog import resolve_profile as resolve_hardware
    from sparkserve.stack.init import write_default_stack
    from sparkserve.stack.load import STACK_FILE

    path = Path(stack or STACK_FILE)
    hw = resolve_hardware(hardware)
    plan = write_default_stack(path, hw, variant, force=force)
    console = Console(highlight=False)
    console.print(f"wrote {path} for {hw.name}:")
    for svc in plan.services:
        dep = svc.deployment
        console.print(f"  {svc.name}: {dep.model.id} ({dep.quant.id}) on {dep.engine}, {svc.memory.total_gib:.1f} GiB")
    host = plan.to_dict()
    console.print(f"  memory: {host['used_gib']:.1f} GiB of {host['pool_gib']:.1f} GiB"
                  f"{' (plus ' + format(host['os_reserve_gib'], '.0f') + ' GiB for the OS)' if hw.unified else ''}")
    for warning in host["warnings"] + [w for s in plan.services for w in s.warnings]:
        console.print(f"[yellow]warning:[/] {warning}")
    console.print("next: 'sparkserve plan' to review it, 'sparkserve render' to write docker-compose.yml")
