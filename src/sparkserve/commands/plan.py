"""`sparkserve plan`: resolve the user's words into a deployment and show its plan."""

from __future__ import annotations

import json
import os
import sys

from sparkserve.errors import UserError


def resolve_hardware(hardware: str | None):
    from sparkserve.hardware.catalog import resolve_profile

    return resolve_profile(hardware)


def run_plan(*, hardware, model, quant, engine, gpus, nodes, batch, prompt_len, output_len, context,
             max_model_len, gpu_memory_utilization, kv_cache_dtype, max_num_batched_tokens, max_num_seqs,
             enforce_eager, num_parallel, json_out, stack_file=None, offline=False, concurrency=None) -> None:
    from sparkserve.plan.speed import Workload
    from sparkserve.stack import planning

    if offline:
        os.environ["HF_HUB_OFFLINE"] = "1"  # huggingface_hub's own switch; sparkserve's Hub reader honours it too
    _check_counts(at_least_one={"--batch": batch, "--gpus": gpus, "--nodes": nodes, "--max-model-len": max_model_len,
                                "--max-num-batched-tokens": max_num_batched_tokens, "--max-num-seqs": max_num_seqs,
                                "--num-parallel": num_parallel},
                  at_least_zero={"--prompt-len": prompt_len, "--output-len": output_len, "--context": context})
    levels = _levels(concurrency)
    work = Workload(batch=batch, prompt_len=prompt_len, output_len=output_len, context=context)
    if model is None:
        per_model = {"--quant": quant, "--engine": engine, "--gpus": gpus if gpus != 1 else None,
                     "--nodes": nodes if nodes != 1 else None, "--max-model-len": max_model_len,
                     "--gpu-memory-utilization": gpu_memory_utilization,
                     "--kv-cache-dtype": kv_cache_dtype if kv_cache_dtype != "auto" else None,
                     "--max-num-batched-tokens": max_num_batched_tokens, "--max-num-seqs": max_num_seqs,
                     "--enforce-eager": enforce_eager or None, "--num-parallel": num_parallel}
        given = [flag for flag, value in per_model.items() if value is not None]
        if given:
            raise UserError(
                f"{', '.join(given)} describe one model: add --model, or set them in the stack file's services"
            )
        stack = _plan_stack_file(stack_file, hardware, work) or planning.plan_default_stack(
            resolve_hardware(hardware), work
        )
        for service in stack.services:
            _add_curve(service, levels)
        if json_out:
            primary = stack.services[0].to_dict()
            out = {**primary, "services": [s.to_dict() for s in stack.services], "host": stack.to_dict()}
            print(json.dumps(out, indent=2))
        else:
            from sparkserve.ui.plan_view import render_stack

            render_stack(stack)
        _exit_unless(stack.fits)
        return
    if stack_file is not None:
        raise UserError("--stack plans every service of the stack file; drop --model (or --stack)")
    hw = resolve_hardware(hardware)
    settings = dict(
        gpus=gpus,
        nodes=nodes,
        kv_cache_dtype=kv_cache_dtype,
        max_model_len=max_model_len,
        gpu_memory_utilization=gpu_memory_utilization,
        max_num_batched_tokens=max_num_batched_tokens,
        max_num_seqs=max_num_seqs,
        enforce_eager=enforce_eager,
        num_parallel=num_parallel,
    )
    plan = planning.plan_one(hw, model, engine=engine, quant=quant, work=work, **settings)
    _add_curve(plan, levels)
    if json_out:
        json.dump(plan.to_dict(), sys.stdout, indent=2)
        print()
    else:
        from sparkserve.ui.plan_view import render_service

        render_service(plan)
    _exit_unless(plan.fits)


def _levels(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    from sparkserve.plan.curve import parse_levels

    try:
        return parse_levels(text)
    except ValueError as exc:
        raise UserError(
            f"--concurrency: {str(exc)!r} is not a whole number of requests >= 1; "
            "give comma-separated levels, e.g. --concurrency 1,2,4,8,16,32,64"
        ) from None


def _add_curve(plan, levels: tuple[int, ...] | None) -> None:
    """The latency/throughput curve at `levels`, at the workload's prompt and output lengths."""
    if levels is None or not plan.memory.fits:
        return
    from sparkserve.plan.curve import concurrency_curve

    plan.curve = concurrency_curve(plan.deployment, plan.memory, plan.workload, levels)


def _exit_unless(fits: bool) -> None:
    """Exit 3 when what was planned does not fit (or would not start); the plan is printed first."""
    if not fits:
        from sparkserve.errors import EXIT_DOES_NOT_FIT

        sys.stdout.flush()
        raise SystemExit(EXIT_DOES_NOT_FIT)


def _check_counts(*, at_least_one: dict, at_least_zero: dict) -> None:
    for bound, flags in ((1, at_least_one), (0, at_least_zero)):
        for flag, value in flags.items():
            if value is not None and value < bound:
                raise UserError(f"{flag} must be at least {bound}, got {value}")


def _plan_stack_file(explicit, hardware, work):
    """The plan of `--stack FILE` or ./sparkserve.toml; None when neither is there."""
    from sparkserve.stack.load import find_stack, load_stack

    path = find_stack(explicit)
    if path is None:
        return None
    from sparkserve.stack.stackplan import plan_stack, stack_hardware

    loaded = load_stack(path)
    return plan_stack(loaded, stack_hardware(loaded, hardware), work)
