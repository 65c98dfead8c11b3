"""`sparkserve plan`: resolve the user's words into a deployment and show its plan."""

from __future__ import annotations

import json
import sys

from sparkserve.errors import UserError


def resolve_hardware(hardware: str | None):
    from sparkserve.hardware.catalog import get_profile
    from sparkserve.stack.defaults import DEFAULT_HARDWARE

    if hardware in (None, ""):
        return get_profile(DEFAULT_HARDWARE)
    if hardware.lower() == "auto":
        from sparkserve.hardware.detect import detect

        found = detect()
        if not found.profile_id:
            raise UserError("no known GPU detected on this machine; pick a profile with --hardware (see 'sparkserve hw')")
        return get_profile(found.profile_id)
    return get_profile(hardware)


def run_plan(*, hardware, model, quant, engine, gpus, nodes, batch, prompt_len, output_len, context,
             max_model_len, gpu_memory_utilization, kv_cache_dtype, max_num_batched_tokens, max_num_seqs,
             enforce_eager, num_parallel, json_out) -> None:
    from sparkserve.plan.speed import Workload
    from sparkserve.stack import planning

    for flag, value in (("--batch", batch), ("--prompt-len", prompt_len), ("--max-model-len", max_model_len)):
        if value is not None and value < (0 if flag == "--prompt-len" else 1):
            raise UserError(f"{flag} must be positive, got {value}")
    hw = resolve_hardware(hardware)
    work = Workload(batch=batch, prompt_len=prompt_len, output_len=output_len, context=context)
    if model is None:
        if any(v is not None for v in (quant, engine)):
            raise UserError("--quant and --engine need --model; without --model sparkserve plans the default stack")
        stack = planning.plan_default_stack(hw, work)
        if json_out:
            primary = stack.services[0].to_dict()
            out = {**primary, "services": [s.to_dict() for s in stack.services], "host": stack.to_dict()}
            print(json.dumps(out, indent=2))
        else:
            from sparkserve.ui.plan_view import render_stack

            render_stack(stack)
        return
    settings = dict(
        gpus=gpus, nodes=nodes, kv_cache_dtype=kv_cache_dtype, max_model_len=max_model_len,
        gpu_memory_utilization=gpu_memory_utilization, max_num_batched_tokens=max_num_batched_tokens,
        max_num_seqs=max_num_seqs, enforce_eager=enforce_eager, num_parallel=num_parallel,
    )
    plan = planning.plan_one(hw, model, engine=engine, quant=quant, work=work, **settings)
    if json_out:
        json.dump(plan.to_dict(), sys.stdout, indent=2)
        print()
    else:
        from sparkserve.ui.plan_view import render_service

        render_service(plan)
