"""The command line: thin, lazy. Each command imports what it needs when it runs.

No `from __future__ import annotations` here: typer reads every option's annotation, and string annotations
would make it evaluate each one again at start-up.
"""

import copy
import sys
from typing import Annotated

import typer
from typer.models import CommandInfo

from sparkserve.errors import UserError

HELP_OPTIONS = {"help_option_names": ["-h", "--help"]}
app = typer.Typer(
    name="sparkserve",
    help="Plan, run, benchmark and watch local LLM inference services (vLLM, Ollama).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings=HELP_OPTIONS,
)


def _print_version(value: bool) -> None:
    if value:
        from sparkserve import __version__

        print(f"sparkserve {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", "-V", callback=_print_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Plan, run, benchmark and watch local LLM inference services (vLLM, Ollama)."""


@app.command()
def plan(
    hardware: Annotated[
        str | None, typer.Option("--hardware", "-H", help="Hardware profile id, or 'auto' to detect.")
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="HF id, Ollama tag, or a directory holding config.json.")
    ] = None,
    quant: Annotated[
        str | None,
        typer.Option(
            "--quant", "-q", help="bf16, fp8, int8, awq, gptq, nvfp4, mxfp4, q8_0, q6_k, q5_k_m, q4_k_m, q4_0."
        ),
    ] = None,
    engine: Annotated[
        str | None, typer.Option("--engine", "-e", help="vllm, ollama, llama.cpp, sglang, trtllm.")
    ] = None,
    gpus: Annotated[int, typer.Option(help="GPUs per node (tensor parallel).")] = 1,
    nodes: Annotated[int, typer.Option(help="Nodes (e.g. two Sparks over ConnectX-7).")] = 1,
    batch: Annotated[int, typer.Option(help="Concurrent sequences decoding together.")] = 1,
    concurrency: Annotated[
        str | None,
        typer.Option("--concurrency", help="Levels for the latency/throughput curve, e.g. 1,2,4,8,16,32,64."),
    ] = None,
    prompt_len: Annotated[int, typer.Option("--prompt-len", help="Prompt tokens.")] = 512,
    output_len: Annotated[int, typer.Option("--output-len", help="Output tokens.")] = 256,
    context: Annotated[
        int | None, typer.Option(help="Tokens already in each sequence's KV cache while decoding.")
    ] = None,
    max_model_len: Annotated[
        int | None, typer.Option("--max-model-len", help="vLLM --max-model-len / Ollama num_ctx.")
    ] = None,
    gpu_memory_utilization: Annotated[
        float | None, typer.Option("--gpu-memory-utilization", help="vLLM's share of GPU memory.")
    ] = None,
    kv_cache_dtype: Annotated[
        str, typer.Option("--kv-cache-dtype", help="auto or fp8 (Ollama: f16, q8_0, q4_0).")
    ] = "auto",
    max_num_batched_tokens: Annotated[int | None, typer.Option("--max-num-batched-tokens")] = None,
    max_num_seqs: Annotated[int | None, typer.Option("--max-num-seqs")] = None,
    enforce_eager: Annotated[bool, typer.Option("--enforce-eager", help="No CUDA graphs.")] = False,
    num_parallel: Annotated[int | None, typer.Option("--num-parallel", help="Ollama parallel requests.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    stack_file: Annotated[
        str | None, typer.Option("--stack", help="Stack file to plan (default: ./sparkserve.toml if present).")
    ] = None,
    offline: Annotated[
        bool, typer.Option("--offline", help="Never touch the network: bundled, local and cached models only.")
    ] = False,
) -> None:
    """Plan memory and speed before anything is downloaded (no --model: the stack file, else the default stack)."""
    options = dict(locals())
    from sparkserve.commands.plan import run_plan

    run_plan(**options)


@app.command()
def hw(
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Detect this machine's accelerator and print its profile."""
    from sparkserve.hardware.detect import detect, render_detection

    render_detection(detect(), json_out=json_out)


@app.command()
def init(
    hardware: Annotated[
        str | None,
        typer.Option("--hardware", "-H", help="Hardware profile id, or 'auto' to detect (default: dgx-spark)."),
    ] = None,
    variant: Annotated[
        str | None,
        typer.Option("--variant", help="Qwen3-32B weights: bf16, fp8 or int4 (AWQ); default fp8 where it fits."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite an existing stack file; write it even if it does not fit.")
    ] = False,
    stack_file: Annotated[str | None, typer.Option("--stack", help="Where to write it.")] = None,
) -> None:
    """Write the default stack (vLLM Qwen3-32B + Ollama) to sparkserve.toml, sized for the hardware."""
    from sparkserve.commands.init import run_init

    run_init(hardware=hardware, variant=variant, force=force, stack=stack_file)


@app.command()
def render(
    stack_file: Annotated[
        str | None, typer.Option("--stack", help="Stack file (default: ./sparkserve.toml).")
    ] = None,
    out: Annotated[
        str | None,
        typer.Option("--out", help="Directory for docker-compose.yml and .env.example (default: the stack file's)."),
    ] = None,
    write_env: Annotated[
        bool, typer.Option("--write-env", help="Also create .env (mode 600, empty HF_TOKEN) if it is missing.")
    ] = False,
    hardware: Annotated[
        str | None, typer.Option("--hardware", "-H", help="Override the stack's hardware profile.")
    ] = None,
    monitoring: Annotated[
        bool | None,
        typer.Option(
            "--monitoring/--no-monitoring",
            help="Add (or remove) Prometheus and Grafana with a vLLM dashboard; kept by later renders.",
        ),
    ] = None,
) -> None:
    """Write docker-compose.yml and .env.example for the stack; never touches an existing .env."""
    from sparkserve.commands.render import run_render

    run_render(stack=stack_file, out=out, write_env=write_env, hardware=hardware, monitoring=monitoring)


StackOption = Annotated[str | None, typer.Option("--stack", help="Stack file (default: ./sparkserve.toml).")]


@app.command()
def up(
    services: Annotated[list[str] | None, typer.Argument(help="Services to start (default: all).")] = None,
    stack_file: StackOption = None,
    force: Annotated[
        bool, typer.Option("--force", help="Start even if the plan or free memory says it will not fit.")
    ] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for each service to answer.")] = 1800.0,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until each service answers a request.")] = True,
) -> None:
    """Start the stack (docker compose; local processes for runtime = "native") and wait until every model answers."""
    from sparkserve.commands.lifecycle import run_up

    run_up(stack=stack_file, services=services or [], force=force, timeout=timeout, wait=wait)


@app.command()
def pull(
    services: Annotated[
        list[str] | None, typer.Argument(help="Services whose models to fetch (default: all).")
    ] = None,
    stack_file: StackOption = None,
) -> None:
    """Fetch the services' models before `up`: Hub weights into the stack's HF cache, Ollama tags via Ollama;
    resumable."""
    from sparkserve.commands.pull import run_pull

    run_pull(stack=stack_file, services=services or [])


@app.command()
def down(stack_file: StackOption = None) -> None:
    """Stop the stack: remove its containers (volumes and caches stay) and stop its native processes."""
    from sparkserve.commands.lifecycle import run_down

    run_down(stack=stack_file)


@app.command()
def restart(
    service: Annotated[str | None, typer.Argument(help="Service to restart (default: all).")] = None,
    stack_file: StackOption = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for each service to answer.")] = 1800.0,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until each service answers a request.")] = True,
) -> None:
    """Restart services and wait until they answer again."""
    from sparkserve.commands.lifecycle import run_restart

    run_restart(stack=stack_file, service=service, timeout=timeout, wait=wait)


@app.command()
def logs(
    service: Annotated[str | None, typer.Argument(help="Service (default: all).")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines.")] = False,
    tail: Annotated[int | None, typer.Option("--tail", help="Only the last N lines.")] = None,
    stack_file: StackOption = None,
) -> None:
    """Show the services' logs (docker compose logs; .sparkserve/<name>.log for native services)."""
    from sparkserve.commands.lifecycle import run_logs

    run_logs(stack=stack_file, service=service, follow=follow, tail=tail)


@app.command()
def status(
    stack_file: StackOption = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    interval: Annotated[
        float, typer.Option("--interval", help="Seconds between the two readings that give tokens/s.")
    ] = 1.0,
) -> None:
    """Each service's runtime state, health, model, load, KV cache and tokens/s; Ollama's models; GPUs; memory."""
    from sparkserve.commands.lifecycle import run_status

    run_status(stack=stack_file, json_out=json_out, interval=interval)


@app.command()
def docs(
    model: Annotated[str, typer.Argument(help="HF id, Ollama tag, or a directory holding config.json.")],
    hardware: Annotated[
        str | None,
        typer.Option("--hardware", "-H", help="Hardware profile id, or 'auto' to detect (default: dgx-spark)."),
    ] = None,
    out: Annotated[str | None, typer.Option("--out", help="Directory for the page (default: docs/models).")] = None,
) -> None:
    """Write docs/models/<model>.md from the planner: the model, memory by precision, arguments, speed, fixes."""
    from sparkserve.commands.docs import run_docs

    run_docs(model=model, hardware=hardware, out=out)


@app.command()
def monitor(
    stack_file: StackOption = None,
    once: Annotated[bool, typer.Option("--once", help="Print one frame and exit (no live view).")] = False,
    interval: Annotated[float, typer.Option("--interval", help="Seconds between readings.")] = 2.0,
) -> None:
    """Live view of services, GPUs and memory with short history; q or Ctrl-C quits."""
    from sparkserve.commands.monitor import run_monitor

    run_monitor(stack=stack_file, once=once, interval_s=interval)


@app.command()
def exporter(
    port: Annotated[int, typer.Option("--port", help="Port to serve /metrics on.")] = 9400,
    bind: Annotated[str, typer.Option("--bind", help="Address to listen on.")] = "127.0.0.1",
    stack_file: StackOption = None,
    ollama: Annotated[
        list[str] | None,
        typer.Option(
            "--ollama",
            help="Ollama base URL (repeatable; default: the stack's, else OLLAMA_HOST or http://127.0.0.1:11434).",
        ),
    ] = None,
    meminfo: Annotated[
        str, typer.Option("--meminfo", hidden=True, help="meminfo file to read (tests).")
    ] = "/proc/meminfo",
) -> None:
    """Prometheus metrics for what has none: Ollama's models, unified memory, NVML readings; SIGTERM stops."""
    from sparkserve.commands.monitor import run_exporter

    run_exporter(stack=stack_file, port=port, bind=bind, ollama=ollama or [], meminfo=meminfo)


@app.command()
def doctor(
    service: Annotated[
        str | None, typer.Argument(help="Service whose recent logs to diagnose (default: all).")
    ] = None,
    log: Annotated[
        str | None, typer.Option("--log", help="Diagnose this log file instead (skips the environment checks).")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help='Print {"findings": [...], "checks": [...]}.')] = False,
    stack_file: StackOption = None,
    tail: Annotated[int, typer.Option("--tail", help="Log lines to read per service.")] = 500,
    live: Annotated[
        bool,
        typer.Option(
            "--live",
            help="Read the serving service's metrics over a window of its real traffic and name what limits it.",
        ),
    ] = False,
    url: Annotated[
        str | None,
        typer.Option("--url", help="With --live: the server to read (http://HOST:PORT) instead of a stack service."),
    ] = None,
    window: Annotated[float, typer.Option("--window", help="With --live: seconds to sample.")] = 30.0,
) -> None:
    """Check the environment (driver, Docker, disk, ports, memory, token) and explain failures in the logs.

    With --live: what limits a serving service's throughput or latency, with the fix in the engine's flags.
    Exit code 1 when a check fails or a log shows a failure."""
    from sparkserve.commands.doctor import run_doctor, run_live

    if live or url:
        if log:
            raise UserError("--log and --live read different things: give one of them")
        code = run_live(service=service, url=url, window=window, json_out=json_out, stack=stack_file)
    else:
        code = run_doctor(service=service, log=log, json_out=json_out, stack=stack_file, tail=tail)
    if code:
        raise typer.Exit(code)


from sparkserve.commands.bench import bench_app  # noqa: E402 - typer only; the benchmark loads when it runs

app.add_typer(bench_app, name="bench")


@app.command()
def tune(
    service: Annotated[str | None, typer.Argument(help="The stack service to tune (default: the only one).")] = None,
    slo: Annotated[
        str,
        typer.Option(
            "--slo",
            help="Objectives each load must meet (METRIC_STAT_ms=VALUE; metrics ttft, tpot, itl, e2e). "
            "Default: a chat a person reads (about 5 words/s).",
        ),
    ] = "ttft_p90_ms=2000,itl_p90_ms=200",
    workload: Annotated[
        str, typer.Option("--workload", "-w", help="random, prefix, multiturn or file (as sparkserve bench).")
    ] = "random",
    prompt_len: Annotated[int, typer.Option("--prompt-len", "-p", help="Prompt tokens per request.")] = 512,
    output_len: Annotated[int, typer.Option("--output-len", "-o", help="Output tokens per request.")] = 256,
    prefix_len: Annotated[int | None, typer.Option("--prefix-len", help="prefix workload: shared tokens.")] = None,
    num_prefixes: Annotated[int, typer.Option("--num-prefixes", help="prefix workload: distinct prefixes.")] = 1,
    turns: Annotated[int, typer.Option("--turns", help="multiturn workload: turns per conversation.")] = 3,
    dataset: Annotated[str | None, typer.Option("--dataset", help="file workload: a ShareGPT JSON file.")] = None,
    budget: Annotated[
        str | None, typer.Option("--budget", help="Wall-clock limit for the whole search: 30m, 2h, 900s.")
    ] = None,
    space: Annotated[
        list[str] | None,
        typer.Option("--space", help="KEY=v1,v2 values to try (repeatable), e.g. max-num-seqs=8,16,32."),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the search in the journal; finished trials are not repeated.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the trials with the plan's predictions; start nothing.")
    ] = False,
    apply: Annotated[
        bool, typer.Option("--apply", help="Write the best arguments into the stack file (backup kept, diff shown).")
    ] = False,
    json_file: Annotated[str | None, typer.Option("--json", help="Write the result as JSON.")] = None,
    html_file: Annotated[
        str | None, typer.Option("--html", help="Write an offline HTML report with the Pareto plot.")
    ] = None,
    num_prompts: Annotated[
        int, typer.Option("--num-prompts", "-n", help="Requests per measured load level (at least twice the load).")
    ] = 32,
    start_timeout: Annotated[
        float, typer.Option("--start-timeout", help="Seconds each configuration may take to start.")
    ] = 900.0,
    hardware: Annotated[
        str | None, typer.Option("--hardware", "-H", help="Plan for this hardware profile instead of the stack's.")
    ] = None,
    stack_file: StackOption = None,
) -> None:
    """Find the server arguments that serve the most under a latency SLO: planned first, then measured."""
    from sparkserve.commands.tune import run_tune

    code = run_tune(
        service=service,
        stack_file=stack_file,
        slo=slo,
        workload=workload,
        prompt_len=prompt_len,
        output_len=output_len,
        prefix_len=prefix_len,
        num_prefixes=num_prefixes,
        turns=turns,
        dataset=dataset,
        budget=budget,
        space=space or [],
        resume=resume,
        dry_run=dry_run,
        apply=apply,
        json_file=json_file,
        html_file=html_file,
        num_prompts=num_prompts,
        start_timeout=start_timeout,
        hardware=hardware,
    )
    if code:
        raise typer.Exit(code)


@app.command()
def demo(
    directory: Annotated[
        str | None,
        typer.Option("--dir", help="Folder for the demo's model, stack and state (default: ~/.cache/sparkserve/demo)."),
    ] = None,
    port: Annotated[int, typer.Option("--port", help="Port for vLLM (0: a free one).")] = 0,
    model_dir: Annotated[
        str | None,
        typer.Option("--model-dir", help="Where the tiny model is (written if missing; default: DIR/tiny-qwen3)."),
    ] = None,
    requests: Annotated[int, typer.Option("--requests", help="Requests in the short benchmark.")] = 5,
) -> None:
    """Run the main job on this machine: tiny local model, CPU vLLM, plan, start, chat, /metrics, benchmark, stop."""
    from sparkserve.commands.demo import run_demo

    run_demo(directory=directory, port=port, model_dir=model_dir, requests=requests)


def _command_name(info: CommandInfo) -> str:
    """The name typer gives a command: its own, else the function's with dashes."""
    name = info.name if info.name else getattr(info.callback, "__name__", "")
    return str(name).lower().replace("_", "-")


def _only_the_invoked(argv: list[str]) -> typer.Typer:
    """The app with only the command the command line names: typer builds the options of every registered
    command before it parses anything, and a run uses one. Root help, an unknown or no name: the whole app."""
    for arg in argv:
        if arg in HELP_OPTIONS["help_option_names"]:
            return app
        if not arg.startswith("-"):
            break
    else:
        return app
    lean = copy.copy(app)
    lean.registered_commands = [c for c in app.registered_commands if _command_name(c) == arg]
    lean.registered_groups = [g for g in app.registered_groups if g.name == arg]
    return lean if lean.registered_commands or lean.registered_groups else app


def main() -> None:
    try:
        _only_the_invoked(sys.argv[1:])()
    except UserError as exc:
        from sparkserve.secrets import redact_text

        print(
            f"error: {redact_text(str(exc))}", file=sys.stderr
        )  # a secret value in a message never reaches the terminal
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
