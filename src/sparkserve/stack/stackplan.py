"""Plan a stack file: every service on one machine, sharing its memory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sparkserve.hardware.profile import HardwareProfile
from sparkserve.plan.planner import StackPlan
from sparkserve.plan.speed import Workload
from sparkserve.stack.defaults import ServiceDefaults
from sparkserve.stack.load import Stack, planner_settings


def service_defaults(stack: Stack) -> list[ServiceDefaults]:
    """The stack's services in the form the planner takes (native ones share the memory too)."""
    return [
        ServiceDefaults(name=name, engine=svc.engine, model=svc.model, quant=svc.quant, port=svc.port,
                        settings=planner_settings(svc))
        for name, svc in stack.services.items()
    ]


def stack_hardware(stack: Stack, override: str | None = None) -> HardwareProfile:
    """The profile to plan for: `--hardware` wins over the file; 'auto' detects this machine."""
    from sparkserve.errors import UserError
    from sparkserve.hardware.catalog import resolve_profile as resolve_hardware

    wanted = override or stack.spec.stack.hardware
    try:
        return resolve_hardware(wanted)
    except UserError as exc:
        if override:
            raise
        raise UserError(f"{stack.path}: stack.hardware: {exc}") from None


def plan_stack(stack: Stack, hw: HardwareProfile, work: Workload | None = None) -> StackPlan:
    from sparkserve.errors import UserError
    from sparkserve.stack.planning import plan_services

    try:
        return plan_services(hw, service_defaults(stack), work or Workload(), hf_home=stack.spec.stack.hf_cache)
    except UserError as exc:
        raise UserError(f"{stack.path}: {exc}") from None


@dataclass(frozen=True)
class PlannedStack:
    """A stack file with its hardware and plan: what every runtime command starts from."""

    stack: Stack
    hw: HardwareProfile
    plan: StackPlan

    @property
    def path(self) -> Path:
        return self.stack.path


def load_planned(stack_file: str | Path | None) -> PlannedStack:
    """`--stack FILE` or ./sparkserve.toml, loaded, checked and planned; no stack file is a UserError."""
    from sparkserve.errors import UserError
    from sparkserve.stack.load import STACK_FILE, find_stack, load_stack

    path = find_stack(stack_file)
    if path is None:
        raise UserError(f"no {STACK_FILE} here; create one with 'sparkserve init' or pass --stack FILE")
    stack = load_stack(path)
    hw = stack_hardware(stack)
    return PlannedStack(stack=stack, hw=hw, plan=plan_stack(stack, hw))
