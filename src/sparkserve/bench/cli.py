"""`sparkserve bench` from flags to a written result: parse, check, run, report.

Every mistake in the flags or the target is a UserError (one line, exit 2) raised before any
load is sent.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

from sparkserve.errors import UserError

DEFAULT_NUM_PROMPTS = 50
EXIT_FAILED = 1  # nothing completed, or the server died mid-run
EXIT_INTERRUPTED = 130


def parse_list(text: str | None, flag: str, kind: type) -> list:
    """'1,4,16' -> [1, 4, 16]; each value checked (> 0; rates may be 'inf')."""
    if text is None:
        return []
    values = []
    for part in text.split(","):
        part = part.strip()
        try:
            value = float("inf") if kind is float and part.lower() == "inf" else kind(part)
        except ValueError:
            raise UserError(f"{flag} {text!r}: {part!r} is not a {'whole ' if kind is int else ''}number") from None
        if not value > 0 or (isinstance(value, float) and math.isnan(value)):
            raise UserError(f"{flag} {text!r}: each value must be above zero")
        values.append(value)
    if not values:
        raise UserError(f"{flag}: give one value or a comma-separated list")
    return values


def load_points(concurrency: str | None, rate: str | None, burstiness: float) -> list:
    from sparkserve.bench.load import LoadPoint

    if not burstiness > 0:
        raise UserError(f"--burstiness must be above zero, got {burstiness}")
    caps = parse_list(concurrency, "--concurrency", int)
    rates = parse_list(rate, "--rate", float)
    if len(caps) > 1 and len(rates) > 1:
        raise UserError("sweep one thing at a time: --concurrency and --rate cannot both be lists")
    if not rates:
        return [LoadPoint(concurrency=c) for c in caps or [1]]
    if len(rates) > 1:
        return [LoadPoint(concurrency=caps[0] if caps else None, rate=r, burstiness=burstiness) for r in rates]
    return [LoadPoint(concurrency=c, rate=rates[0], burstiness=burstiness) for c in caps or [None]]


def run_bench(*, service, stack_file, url, model, api, api_key, workload, prompt_len, output_len, prefix_len,
              num_prefixes, turns, dataset, tokenizer, concurrency, rate, burstiness, num_prompts, duration, warmup,
              slo, timeout, ignore_eos, temperature, seed, hardware, sample_interval, json_file, html_file,
              quiet, max_failure_rate: float = 0.0, per_chunk_usage: bool = False) -> int:
    """Run and report; returns the exit code (0; 1 when nothing completed, the server died or more
    requests failed than --max-failure-rate allows; 130 on Ctrl-C)."""
    from rich.console import Console

    from sparkserve.bench.client import RequestOptions
    from sparkserve.bench.load import StopRule
    from sparkserve.bench.planref import plan_basis
    from sparkserve.bench.slo import parse_slos
    from sparkserve.bench.target import probe, target_from_args
    from sparkserve.bench.tokens import resolve_tokenizer
    from sparkserve.bench.workload import Workload, WorkloadSpec, check_spec

    slos = parse_slos(slo)
    points = load_points(concurrency, rate, burstiness)
    if num_prompts is not None and num_prompts < 1:
        raise UserError(f"--num-prompts must be at least 1, got {num_prompts}")
    if duration is not None and not duration > 0:
        raise UserError(f"--duration must be above zero, got {duration}")
    if warmup < 0:
        raise UserError(f"--warmup must be 0 or more, got {warmup}")
    if not timeout > 0:
        raise UserError(f"--timeout must be above zero, got {timeout}")
    if not 0 <= max_failure_rate <= 1:
        raise UserError(f"--max-failure-rate must be a share from 0 to 1 (0.05 = 5 %), got {max_failure_rate}")
    if temperature is not None and not 0 <= temperature < math.inf:
        raise UserError(f"--temperature must be a number >= 0, got {temperature}")
    if sample_interval < 0:
        raise UserError(f"--sample-interval must be 0 or more, got {sample_interval}")
    if num_prompts is None and duration is None:
        num_prompts = DEFAULT_NUM_PROMPTS
    for path, flag in ((json_file, "--json"), (html_file, "--html")):
        if path and not Path(path).expanduser().resolve().parent.is_dir():
            raise UserError(f"{flag} {path}: its directory does not exist")
    spec = WorkloadSpec(kind=workload, prompt_len=prompt_len, output_len=output_len, prefix_len=prefix_len,
                        num_prefixes=num_prefixes, turns=turns, dataset=dataset, seed=seed)
    check_spec(spec)
    if hardware and hardware.lower() != "auto":
        from sparkserve.hardware.catalog import get_profile

        get_profile(hardware)  # an unknown id fails here, naming the closest, not after the run
    target = probe(target_from_args(service=service, stack_file=stack_file, url=url, model=model, api=api,
                                    api_key=api_key))
    tokens = resolve_tokenizer(tokenizer, target.model_root, target.stack_model or target.model)
    work = Workload(spec, tokens, target.max_model_len)
    warnings = []
    if not tokens.exact:
        warnings.append("no tokenizer found (pass --tokenizer): prompt lengths are approximate; "
                        "prompt_tokens in the records are the server's counts")
    if target.is_ollama:
        warnings.append("Ollama has no ignore_eos: num_predict caps the output and requests that stop early are "
                        "flagged short; ITL counts one token per streamed chunk (Ollama sends no per-chunk counts)")
    from sparkserve.bench.runner import BenchPlan, build_result, execute

    bench = BenchPlan(target=target, tokens=tokens, workload=work, points=points,
                      stop=StopRule(num_prompts=num_prompts, duration_s=duration), warmup=warmup, slos=slos,
                      request=RequestOptions(ignore_eos=ignore_eos and not target.is_ollama, temperature=temperature,
                                             timeout_s=timeout, per_chunk_usage=per_chunk_usage),
                      basis=plan_basis(target, hardware), sample_interval_s=sample_interval, warnings=warnings)
    console = Console(highlight=False, stderr=False)
    if not quiet:
        console.print(f"[bold]sparkserve bench[/] {target.base_url}{target.endpoint} model {target.model} "
                      f"({target.engine}{' ' + target.engine_version if target.engine_version else ''})")
        stop = f"{num_prompts} requests" if num_prompts else ""
        stop += (" or " if stop and duration else "") + (f"{duration:g} s" if duration else "")
        console.print(f"  workload {spec.kind}: {spec.prompt_len} prompt + {spec.output_len} output tokens, "
                      f"{stop} per load point, tokenizer {tokens.source}")
    from sparkserve.bench.render import LiveProgress, print_result

    progress = None if quiet else LiveProgress(console, num_prompts, duration)
    execution = asyncio.run(execute(bench, progress))
    from sparkserve.bench.environment import environment

    result = build_result(bench, execution.runs, execution.interrupted,
                          environment=environment(target, execution.server_config),
                          num_prompts=num_prompts, duration_s=duration)
    from sparkserve.secrets import known_values, redact_text

    hidden = sorted({*known_values(), *([api_key] if api_key else [])}, key=len, reverse=True)
    if json_file:
        text = redact_text(result.model_dump_json(indent=1), hidden)
        Path(json_file).expanduser().write_text(text + "\n", encoding="utf-8")
    if html_file:
        from sparkserve.bench.html import render_html

        Path(html_file).expanduser().write_text(redact_text(render_html(result), hidden), encoding="utf-8")
    print_result(result, console)
    for path, what in ((json_file, "result"), (html_file, "report")):
        if path:
            console.print(f"{what}: {path}")
    if execution.interrupted:
        return EXIT_INTERRUPTED
    if not any(r.summary.completed for r in result.runs) or any(r.stopped_reason == "server_died" for r in result.runs):
        return EXIT_FAILED
    worst = max((failure_rate(r.summary) for r in result.runs), default=0.0)
    if worst > max_failure_rate:
        console.print(f"[red]failed[/]: {worst:.1%} of the requests of a load point failed, more than "
                      f"--max-failure-rate {max_failure_rate:g} allows")
        return EXIT_FAILED
    return 0


def failure_rate(summary) -> float:
    """Failed requests over those that ended (completed or failed; cancelled ones do not count)."""
    ended = summary.completed + summary.failed
    return summary.failed / ended if ended else 0.0
