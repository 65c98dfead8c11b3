"""Show plans on the terminal: what fits, where memory goes, how fast, and the ceiling."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from sparkserve.plan.planner import ServicePlan, StackPlan
from sparkserve.plan.quant import GGUF_ENGINES
from sparkserve.plan.settings import GgufSettings, gguf_settings, vllm_settings


def _memory_table(plan: ServicePlan) -> Table:
    mem = plan.memory
    t = Table(title="Memory", show_header=True, header_style="bold", min_width=60)
    t.add_column("")
    t.add_column("GiB", justify="right")
    t.add_column("")
    t.add_row("weights", f"{mem.weights_gib:.1f}", f"{plan.deployment.quant.id}")
    if isinstance(mem.settings, GgufSettings):
        t.add_row("compute buffers", f"{mem.activation_gib:.1f}", "one micro-batch")
        g = gguf_settings(mem.settings)
        t.add_row("KV cache", f"{mem.kv_cache_gib:.1f}",
                  f"{g.num_ctx:,} ctx x {g.num_parallel} parallel ({g.kv_cache_type})")
    else:
        s = vllm_settings(mem.settings)
        t.add_row("activation peak", f"{mem.activation_gib:.1f}", f"{s.max_num_batched_tokens:,} batched tokens")
        t.add_row("non-torch", f"{mem.non_torch_gib:.1f}", "cuBLAS, NCCL")
        t.add_row("CUDA graphs", f"{mem.cuda_graph_gib:.1f}", "none (eager)" if s.enforce_eager else "")
        t.add_row("KV cache", f"{mem.kv_cache_gib:.1f}",
                  f"{mem.kv_tokens:,} tokens, {mem.max_concurrency:.1f}x requests of {mem.max_model_len:,}")
        t.add_row("budget", f"{mem.budget_gib:.1f}",
                  f"{s.gpu_memory_utilization:.2f} x {mem.device_memory_gib:.1f} GiB x {mem.devices}")
    t.add_row(
        "[bold]total[/]", f"[bold]{mem.total_gib:.1f}[/]", "[green]fits[/]" if mem.fits else "[red]does not fit[/]"
    )
    return t


def _speed_table(plan: ServicePlan) -> Table:
    p, w = plan.perf, plan.workload
    t = Table(title="Speed", show_header=True, header_style="bold", min_width=60)
    t.add_column("")
    t.add_column("predicted", justify="right")
    t.add_column("")
    t.add_row(
        "decode, one request",
        f"{p.decode_tps:.1f} tok/s",
        f"batch {w.batch}, ceiling {p.roofline_decode_tps:.1f} tok/s ({p.decode_tps / p.roofline_decode_tps:.0%})",
    )
    t.add_row("aggregate", f"{p.aggregate_tps:.1f} tok/s", f"{w.batch} sequences, {p.bound}-bound")
    t.add_row("prefill", f"{p.prefill_tps:,.0f} tok/s", f"{w.prompt_len:,}-token prompt")
    t.add_row("TTFT", f"{p.ttft_ms:,.0f} ms", "idle server")
    return t


def _curve_table(plan: ServicePlan) -> Table:
    w = plan.workload
    t = Table(
        title=f"Under load ({w.prompt_len:,}-token prompts, {w.output_len:,}-token replies)",
        show_header=True,
        header_style="bold",
        min_width=60,
    )
    for name in ("requests", "tok/s each", "aggregate tok/s", "TTFT", "ITL", "ceiling", ""):
        t.add_column(name, justify="right" if name else "left")
    for p in plan.curve:
        note = f"{p.running} run, rest queue ({p.capped_by.replace('_', '-')})" if p.capped_by else ""
        t.add_row(
            str(p.concurrency),
            f"{p.decode_tps:.1f}",
            f"{p.aggregate_tps:,.0f}",
            f"{p.ttft_ms:,.0f} ms",
            f"{p.itl_ms:.1f} ms",
            f"{p.ceiling_tps:,.0f}",
            note,
        )
    return t


def _headline(plan: ServicePlan) -> str:
    dep, p = plan.deployment, plan.perf
    hw = dep.hardware
    return (
        f"[bold]{plan.name}[/]: {dep.model.id} ({dep.quant.id}) on {dep.engine}, "
        f"{hw.name}{f' x{dep.gpus}' if dep.gpus > 1 else ''}{f' x {dep.nodes} nodes' if dep.nodes > 1 else ''}\n"
        f"One request decodes at about [bold]{p.decode_tps:.1f} tok/s[/]; the physical ceiling is "
        f"{p.roofline_decode_tps:.1f} tok/s ({p.bytes_per_step_gb:.1f} GB per token over "
        f"{hw.bandwidth_gbs * (1 if dep.engine in GGUF_ENGINES else dep.devices):,.0f} GB/s)."
    )


def render_service(plan: ServicePlan, console: Console | None = None) -> None:
    console = console or Console()
    console.print(_headline(plan))
    console.print(_memory_table(plan))
    console.print(_speed_table(plan))
    if plan.curve:
        console.print(_curve_table(plan))
    for w in plan.warnings:
        console.print(f"[yellow]warning:[/] {w}")
    render_recommendation(plan, console)


def render_recommendation(plan: ServicePlan, console: Console) -> None:
    """The setting it was sized for, each change from what was asked, then the command on lines of its own
    (printed with soft wrap so a terminal never breaks it: it must paste as it is)."""
    from sparkserve.engines import get_engine

    rec = plan.recommendation
    if rec is None:
        return
    console.print(f"[bold]recommended[/] ({rec.setting}):", soft_wrap=True)
    for note in rec.notes:
        console.print(f"  changed: {note}", soft_wrap=True, highlight=False, markup=False)
    if rec.planning_only:
        console.print(f"  {rec.planning_only}", soft_wrap=True, highlight=False, markup=False)
    if rec.why_none:
        console.print(f"[red]no configuration fits:[/] {rec.why_none}", soft_wrap=True)
        return
    for line in get_engine(rec.plan.deployment.engine).paste_lines(rec.args):
        console.print(line, soft_wrap=True, highlight=False, markup=False)


def render_stack(stack: StackPlan, console: Console | None = None) -> None:
    console = console or Console()
    hw = stack.hardware
    for plan in stack.services:
        render_service(plan, console)
        console.print()
    pool = f"{stack.pool_gib:.1f} GiB {'unified' if hw.unified else 'GPU'} memory"
    reserve = f" + OS {hw.os_reserve_gib:.0f} GiB" if hw.unified else ""
    colour = "green" if stack.left_gib >= 0 else "red"
    console.print(
        f"[bold]{hw.name}[/]: services hold {stack.used_gib:.1f} GiB{reserve} of {pool}; "
        f"[{colour}]{stack.left_gib:.1f} GiB left[/]"
    )
    for w in stack.warnings():
        console.print(f"[red]warning:[/] {w}")
