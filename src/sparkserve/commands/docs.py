"""`sparkserve docs MODEL`: write docs/models/<model>.md from the planner, offline."""

from __future__ import annotations

import re
from pathlib import Path

from sparkserve.errors import UserError

DEFAULT_OUT = Path("docs") / "models"


def model_slug(model_id: str) -> str:
    """`Qwen/Qwen3-32B` -> `qwen3-32b`: the repo name, lower case, safe as a file name."""
    name = model_id.rstrip("/").rsplit("/", 1)[-1].lower()
    return re.sub(r"[^a-z0-9._-]+", "-", name).strip("-.") or "model"


def generate(model: str, hardware: str | None) -> tuple[str, str]:
    """(slug, markdown) for a model on a hardware profile."""
    from sparkserve.commands.plan import resolve_hardware
    from sparkserve.models.catalog import resolve_model
    from sparkserve.models.gated import is_gated
    from sparkserve.plan.model_report import build_report
    from sparkserve.plan.speed import Workload
    from sparkserve.stack.defaults import OLLAMA_SERVICE
    from sparkserve.stack.planning import plan_one
    from sparkserve.ui.model_doc import DocContext, model_doc

    try:
        spec = resolve_model(model).spec
    except UserError as exc:
        raise UserError(str(exc).replace("point --model at", "expected an HF id, an Ollama tag or")) from None
    hw = resolve_hardware(hardware)
    neighbour = plan_one(hw, OLLAMA_SERVICE.model, engine=OLLAMA_SERVICE.engine, quant=OLLAMA_SERVICE.quant,
                         work=Workload(), name=OLLAMA_SERVICE.name, **OLLAMA_SERVICE.settings)
    report = build_report(hw, spec, neighbour)
    context = DocContext(command=f"sparkserve docs {spec.id} --hardware {hw.id}",
                         gated=is_gated(report.recommended.deployment.model.id),
                         tune=tune_example(spec.id, hw))
    return model_slug(spec.id), model_doc(report, context)


# The model page's `sparkserve tune --dry-run` example: an interactive chat (a person reads about
# 5 tokens/s, so 200 ms between tokens still streams faster than reading) with 512-token prompts.
TUNE_EXAMPLE_SLO = "ttft_p90_ms=2000,itl_p90_ms=200"
TUNE_EXAMPLE_PROMPT, TUNE_EXAMPLE_OUTPUT = 512, 256


def tune_example(model_id: str, hw) -> dict | None:
    """What `sparkserve tune --dry-run` plans for the default stack's vLLM service, when this page's
    model is the one that stack serves; None otherwise."""
    from sparkserve.stack.defaults import VLLM_SERVICE
    from sparkserve.stack.init import default_stack_text
    from sparkserve.stack.load import STACK_FILE, Stack, parse_stack
    from sparkserve.tune.predict import WorkloadShape
    from sparkserve.tune.report import dry_run_result
    from sparkserve.tune.search import Request, plan_search

    if model_id != VLLM_SERVICE.model:
        return None
    spec = parse_stack(default_stack_text(hw), STACK_FILE)
    request = Request(stack_file=None, service=VLLM_SERVICE.name, slo=TUNE_EXAMPLE_SLO,
                      shape=WorkloadShape(prompt_len=TUNE_EXAMPLE_PROMPT, output_len=TUNE_EXAMPLE_OUTPUT))
    data = dry_run_result(plan_search(request, Stack(path=Path(STACK_FILE), spec=spec), hw))
    data["command"] = (f"sparkserve init --hardware {hw.id} && sparkserve tune {VLLM_SERVICE.name} "
                       f"--slo {TUNE_EXAMPLE_SLO} -p {TUNE_EXAMPLE_PROMPT} -o {TUNE_EXAMPLE_OUTPUT} --dry-run")
    return data


def run_docs(*, model: str, hardware: str | None, out: str | None) -> None:
    slug, text = generate(model, hardware)
    directory = Path(out) if out else DEFAULT_OUT
    path = directory / f"{slug}.md"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"{path}: cannot write the model page ({exc.strerror or exc})") from None
    print(f"wrote {path}")
