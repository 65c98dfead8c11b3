"""The command line: thin, lazy. Each command imports what it needs when it runs."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from sparkserve.errors import UserError

app = typer.Typer(
    name="sparkserve",
    help="Plan, run, benchmark and watch local LLM inference services (vLLM, Ollama).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command()
def plan(
    hardware: Annotated[Optional[str], typer.Option("--hardware", "-H", help="Hardware profile id, or 'auto' to detect.")] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="HF id, Ollama tag, or a directory holding config.json.")] = None,
    quant: Annotated[Optional[str], typer.Option("--quant", "-q", help="bf16, fp8, int8, awq, gptq, nvfp4, mxfp4, q8_0, q6_k, q5_k_m, q4_k_m, q4_0.")] = None,
    engine: Annotated[Optional[str], typer.Option("--engine", "-e", help="vllm, ollama, llama.cpp, sglang, trtllm.")] = None,
    gpus: Annotated[int, typer.Option(help="GPUs per node (tensor parallel).")] = 1,
    nodes: Annotated[int, typer.Option(help="Nodes (e.g. two Sparks over ConnectX-7).")] = 1,
    batch: Annotated[int, typer.Option(help="Concurrent sequences decoding together.")] = 1,
    prompt_len: Annotated[int, typer.Option("--prompt-len", help="Prompt tokens.")] = 512,
    output_len: Annotated[int, typer.Option("--output-len", help="Output tokens.")] = 256,
    context: Annotated[Optional[int], typer.Option(help="Tokens already in each sequence's KV cache while decoding.")] = None,
    max_model_len: Annotated[Optional[int], typer.Option("--max-model-len", help="vLLM --max-model-len / Ollama num_ctx.")] = None,
    gpu_memory_utilization: Annotated[Optional[float], typer.Option("--gpu-memory-utilization", help="vLLM's share of GPU memory.")] = None,
    kv_cache_dtype: Annotated[str, typer.Option("--kv-cache-dtype", help="auto or fp8 (Ollama: f16, q8_0, q4_0).")] = "auto",
    max_num_batched_tokens: Annotated[Optional[int], typer.Option("--max-num-batched-tokens")] = None,
    max_num_seqs: Annotated[Optional[int], typer.Option("--max-num-seqs")] = None,
    enforce_eager: Annotated[bool, typer.Option("--enforce-eager", help="No CUDA graphs.")] = False,
    num_parallel: Annotated[Optional[int], typer.Option("--num-parallel", help="Ollama parallel requests.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Plan memory and speed before anything is downloaded (no --model: the default stack)."""
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


def main() -> None:
    try:
        app()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
