"""`sparkserve bench`: run a benchmark (`bench` or `bench run`) or compare two results (`bench compare`).

Only typer is imported at start-up; the benchmark machinery loads when a command runs.
"""

from __future__ import annotations

from typing import Annotated

import typer

bench_app = typer.Typer(
    help="Measure what a service delivers under load, beside its plan; compare two results.",
    invoke_without_command=True,
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _bench(
    ctx: typer.Context,
    service: Annotated[
        str | None, typer.Option("--service", "-s", help="A service of the stack file (its URL, model and engine).")
    ] = None,
    stack_file: Annotated[
        str | None, typer.Option("--stack", help="Stack file (default: ./sparkserve.toml).")
    ] = None,
    url: Annotated[str | None, typer.Option("--url", help="Server base URL, e.g. http://127.0.0.1:8000.")] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="Model name requests carry (default: the first the server lists)."),
    ] = None,
    api: Annotated[
        str | None,
        typer.Option(
            "--api", help="openai-chat, openai-completions, ollama (/api/generate) or ollama-chat (/api/chat)."
        ),
    ] = None,
    api_key: Annotated[
        str | None, typer.Option("--api-key", help="Bearer token (default: $VLLM_API_KEY or $OPENAI_API_KEY).")
    ] = None,
    workload: Annotated[
        str, typer.Option("--workload", "-w", help="random, prefix (shared prefixes), multiturn, file (ShareGPT JSON).")
    ] = "random",
    prompt_len: Annotated[
        int, typer.Option("--prompt-len", "-p", help="Prompt tokens per request (per turn for multiturn).")
    ] = 256,
    output_len: Annotated[
        int, typer.Option("--output-len", "-o", help="Output tokens per request (file workload: each reply's length).")
    ] = 128,
    prefix_len: Annotated[
        int | None,
        typer.Option("--prefix-len", help="prefix workload: shared tokens at the start (default: half the prompt)."),
    ] = None,
    num_prefixes: Annotated[int, typer.Option("--num-prefixes", help="prefix workload: distinct shared prefixes.")] = 1,
    turns: Annotated[int, typer.Option("--turns", help="multiturn workload: user turns per conversation.")] = 3,
    dataset: Annotated[str | None, typer.Option("--dataset", help="file workload: a ShareGPT JSON file.")] = None,
    tokenizer: Annotated[
        str | None,
        typer.Option(
            "--tokenizer",
            help="Directory or file with tokenizer.json, or an HF id "
            "(default: the server's model root, then the HF cache).",
        ),
    ] = None,
    concurrency: Annotated[
        str | None,
        typer.Option("--concurrency", "-c", help="Requests in flight; a list sweeps (1,4,16). With --rate: a cap."),
    ] = None,
    rate: Annotated[
        str | None,
        typer.Option(
            "--rate",
            "-r",
            help="Arrivals per second (Poisson; see --burstiness); a list sweeps (1,2,4); inf sends all at once.",
        ),
    ] = None,
    burstiness: Annotated[
        float,
        typer.Option("--burstiness", help="Gamma shape of inter-arrival times: 1 Poisson, <1 burstier, >1 more even."),
    ] = 1.0,
    num_prompts: Annotated[
        int | None,
        typer.Option("--num-prompts", "-n", help="Measured requests per load point (default 50 unless --duration)."),
    ] = None,
    duration: Annotated[
        float | None,
        typer.Option("--duration", "-d", help="Seconds to issue requests per load point; in-flight ones finish."),
    ] = None,
    warmup: Annotated[int, typer.Option("--warmup", help="Requests before each load point, not measured.")] = 1,
    slo: Annotated[
        list[str] | None,
        typer.Option("--slo", help="METRIC:STAT<VALUE, e.g. ttft:p95<500ms, tpot:p99<50ms; repeat for several."),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds one request may take, connect to last token.")
    ] = 300.0,
    ignore_eos: Annotated[
        bool, typer.Option("--ignore-eos/--no-ignore-eos", help="vLLM: generate exactly --output-len tokens.")
    ] = True,
    temperature: Annotated[
        float | None,
        typer.Option("--temperature",
                     help="Sampling temperature (default: 0, greedy, as vllm bench serve --temperature 0)."),
    ] = None,
    per_chunk_usage: Annotated[
        bool,
        typer.Option(
            "--per-chunk-usage",
            help="vLLM: ask for a token count in every chunk (continuous_usage_stats; costs the server a little).",
        ),
    ] = False,
    max_failure_rate: Annotated[
        float,
        typer.Option(
            "--max-failure-rate", help="Exit 1 when a load point has more failed requests than this share (0-1)."
        ),
    ] = 0.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed for prompts and arrivals.")] = 0,
    hardware: Annotated[
        str | None,
        typer.Option(
            "--hardware",
            "-H",
            help="Hardware profile to hold the result against (or 'auto'); a stack service uses the stack's.",
        ),
    ] = None,
    sample_interval: Annotated[
        float,
        typer.Option(
            "--sample-interval", help="Seconds between server/host readings; 0 turns the periodic readings off."
        ),
    ] = 1.0,
    json_file: Annotated[str | None, typer.Option("--json", help="Write the versioned JSON result here.")] = None,
    html_file: Annotated[str | None, typer.Option("--html", help="Write a self-contained HTML report here.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No live progress; print the result only.")] = False,
) -> None:
    """Run a benchmark: `sparkserve bench --url URL` or `--service NAME` (same as `bench run`)."""
    if ctx.invoked_subcommand is not None:
        return
    options = {k: v for k, v in locals().items() if k != "ctx"}
    from sparkserve.bench.cli import run_bench

    code = run_bench(**options)
    if code:
        raise typer.Exit(code)


bench_app.callback(invoke_without_command=True)(_bench)
bench_app.command("run")(_bench)


@bench_app.command("compare")
def compare(
    a: Annotated[str, typer.Argument(help="Baseline result (JSON from --json).")],
    b: Annotated[str, typer.Argument(help="Result to hold against it.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print the differences as JSON.")] = False,
) -> None:
    """Show how result B differs from result A, load point by load point."""
    from sparkserve.bench.compare import run_compare

    run_compare(a, b, json_out=json_out)


__all__ = ["bench_app"]
