"""`sparkserve tune`: flags -> search -> table, JSON, HTML, --apply. The work is in sparkserve.tune."""

from __future__ import annotations

import os
from pathlib import Path

from sparkserve.errors import UserError

EXIT_INTERRUPTED = 130


def run_tune(*, service: str | None, stack_file: str | None, slo: str, workload: str, prompt_len: int, output_len: int,
             prefix_len: int | None, num_prefixes: int, turns: int, dataset: str | None, budget: str | None,
             space: list[str], resume: bool, dry_run: bool, apply: bool, json_file: str | None,
             html_file: str | None, num_prompts: int, start_timeout: float, hardware: str | None) -> int:
    from rich.console import Console

    from sparkserve.commands.native import interrupt_on_terminate
    from sparkserve.tune import report
    from sparkserve.tune.predict import WorkloadShape
    from sparkserve.tune.search import Request, prepare, run
    from sparkserve.tune.trial import Measure

    for path, flag in ((json_file, "--json"), (html_file, "--html")):
        if path and not Path(path).expanduser().resolve().parent.is_dir():
            raise UserError(f"{flag} {path}: its directory does not exist")
    if num_prompts < 1:
        raise UserError(f"--num-prompts must be at least 1, got {num_prompts}")
    if not start_timeout > 0:
        raise UserError(f"--start-timeout must be above zero, got {start_timeout}")
    if dry_run and (apply or resume):
        raise UserError("--dry-run starts nothing: it cannot --apply or --resume; drop one of them")
    from sparkserve.bench.workload import WorkloadSpec, check_spec

    check_spec(WorkloadSpec(kind=workload, prompt_len=prompt_len, output_len=output_len, prefix_len=prefix_len,
                            num_prefixes=num_prefixes, turns=turns, dataset=dataset))
    shape = WorkloadShape(kind=workload, prompt_len=prompt_len, output_len=output_len,
                          turns=turns if workload == "multiturn" else 1)
    measure = Measure(num_prompts=num_prompts, start_timeout_s=start_timeout, workload_kind=workload,
                      prefix_len=prefix_len, num_prefixes=num_prefixes, dataset=dataset,
                      poll_s=float(os.environ.get("SPARKSERVE_POLL_S", "1")))
    request = Request(stack_file=stack_file, service=service, slo=slo, shape=shape, measure=measure, budget=budget,
                      space=tuple(space), resume=resume)
    console = Console(highlight=False)
    search = prepare(request, hardware=hardware)
    if dry_run:
        data = report.dry_run_result(search)
    else:
        try:
            with interrupt_on_terminate():
                data = run(search, lambda line: console.print(line, markup=False, soft_wrap=True))
        except KeyboardInterrupt:
            console.print(f"interrupted: the engine was stopped; finished trials are in {search.journal_path}; "
                          "'sparkserve tune ... --resume' continues", markup=False, soft_wrap=True)
            return EXIT_INTERRUPTED
    report.print_result(data, console)
    if json_file:
        report.write_json(data, json_file)
        console.print(f"result: {json_file}")
    if html_file:
        Path(html_file).expanduser().write_text(report.render_html(data), encoding="utf-8")
        console.print(f"report: {html_file}")
    if apply:
        report.apply(data, search.stack.path, search.engine.name, console)
    return 0
