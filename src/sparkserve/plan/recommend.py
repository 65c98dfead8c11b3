"""The one recommended engine configuration for a service: what `plan`, `init`, `render`, `docs` and `up` print.

`recommend()` takes what was asked (hardware, model, quantisation, engine, workload, the settings the
user fixed) and the setting the service runs in (alone on the machine, or beside the stack's other
services) and returns two plans:

- `requested`: the user's own settings, every unset one chosen as below; `fits` is False when vLLM
  would refuse it (memory, or a constraint the engine module checks);
- `plan`: the nearest configuration that fits and starts, each change from `requested` said in one line.

Unset settings are chosen the same way everywhere: the utilisation leaves room for the other services
and, on unified memory, the OS; max-model-len is the model's positions when the KV cache holds
MIN_FULL_LENGTH_REQUESTS of them, else a tidy length it holds that often; max-num-seqs is a power of
two near SEQS_OVER_FULL_LENGTH x the full-length requests the cache holds.

"Nearest" tries, in order, the fewest changes to what was asked: (1) a valid parallel size nearest the
one asked (fewer GPUs on a tie), a pre-quantised repo for a format vLLM cannot make on load, and the
utilisation capped where the OS keeps its share; (2) a shorter max-model-len; (3) more GPUs in the same
host; (4) fewer weight bytes (FP8 on load, then a 4-bit pre-quantised repo). More hosts are never
added: that is hardware the user did not name.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sparkserve.hardware.profile import HardwareProfile
from sparkserve.models.spec import ModelSpec
from sparkserve.plan.planner import ServicePlan, deployment, plan_service, unified_share_utilization
from sparkserve.plan.quant import WEIGHT_FORMATS
from sparkserve.plan.settings import VllmSettings, vllm_settings
from sparkserve.plan.speed import Workload

if TYPE_CHECKING:
    from sparkserve.engines.base import Engine
    from sparkserve.plan.memory import Deployment

# Requests seldom use the full context, so admitting this many times the full-length capacity
# keeps the batch busy while preemptions stay rare.
SEQS_OVER_FULL_LENGTH = 2
# One request of max-model-len should never hold the whole KV cache: keep room for this many.
MIN_FULL_LENGTH_REQUESTS = 2
MIN_LENGTH = 1024  # shorter than this, a max-model-len serves no real chat
# Weight formats from most to fewest bytes, as the nearest-fit search steps down (4-bit from a repo).
SMALLER_QUANTS = ("fp8", "awq")
# Pre-quantised repos by the publishers' naming (models/aliases.py QUANT_SUFFIXES / REQUANT_SUFFIXES):
# the model's own org with -AWQ / -GPTQ-Int4 (Qwen/Qwen3-32B-AWQ), Red Hat's re-uploads for INT8 and NVFP4.
# A name sparkserve composes; the Hub is not asked whether it exists.
PREQUANTISED_REPO = {
    "awq": "{org}/{name}-AWQ",
    "gptq": "{org}/{name}-GPTQ-Int4",
    "int8": "RedHatAI/{name}-quantized.w8a8",
    "nvfp4": "RedHatAI/{name}-NVFP4",
    "fp8": "{org}/{name}-FP8",
}


@dataclass(frozen=True)
class Setting:
    """Where the service runs: alone on the machine, or beside other services holding `others_gib`."""

    others_gib: float = 0.0
    others: tuple[str, ...] = ()

    def describe(self, hw: HardwareProfile) -> str:
        os_part = f"the OS ({hw.os_reserve_gib:.0f} GiB of unified memory)" if hw.unified else ""
        if not self.others:
            return f"sized alone on {hw.name}" + (f", leaving room for {os_part}" if os_part else "")
        names = ", ".join(self.others)
        return (f"sized beside {names} ({self.others_gib:.1f} GiB) on {hw.name}"
                + (f" and {os_part}" if os_part else "") + "; alone it could take more memory")


ALONE = Setting()


@dataclass
class Recommendation:
    requested: ServicePlan
    plan: ServicePlan
    setting: str
    notes: list[str] = field(default_factory=list)  # one line per change from `requested`
    why_none: str | None = None  # set when no configuration fits
    planning_only: str | None = None  # set when sparkserve gives no command for the engine

    @property
    def fits(self) -> bool:
        return self.why_none is None and self.plan.fits

    @property
    def args(self) -> list[str]:
        """The engine's arguments for `plan`; when nothing fits, for the closest attempt (`fits` says so)."""
        return self.plan.recommended_args

    def to_dict(self) -> dict[str, object]:
        return {"fits": self.fits, "args": self.args, "setting": self.setting, "notes": self.notes,
                "why_none": self.why_none, "planning_only": self.planning_only}


def round_down_len(tokens: int) -> int:
    """A tidy max-model-len not above `tokens`: a power of two when close, else a multiple of 1024/4096."""
    if tokens < 1024:
        return max(tokens, 1)
    power = 1 << (tokens.bit_length() - 1)
    if power >= 0.75 * tokens:
        return power
    step = 4096 if tokens >= 65536 else 1024
    return tokens // step * step


def sized_max_num_seqs(plan: ServicePlan) -> int:
    """Concurrent sequences worth admitting: a power of two near SEQS_OVER_FULL_LENGTH x what
    the KV cache holds at full length, never above the engine default."""
    default = vllm_settings(plan.memory.settings).max_num_seqs
    room = max(1.0, plan.memory.max_concurrency * SEQS_OVER_FULL_LENGTH)
    return max(1, min(default, 1 << int(math.log2(room))))


def prequantised(model: ModelSpec, quant: str) -> ModelSpec | None:
    """The publisher-named repo shipping `model` in `quant`, priced as that checkpoint; None when no name is known."""
    from sparkserve.models.config import with_checkpoint_quant

    pattern = PREQUANTISED_REPO.get(quant)
    if pattern is None or "/" not in model.id or model.checkpoint_quant:
        return None
    org, name = model.id.split("/", 1)
    return with_checkpoint_quant(dataclasses.replace(model, id=pattern.format(org=org, name=name)), quant)


def recommend(hw: HardwareProfile, model: ModelSpec, quant: str, engine: str, work: Workload,
              setting: Setting = ALONE, *, gpus: int = 1, nodes: int = 1, name: str = "",
              **settings: object) -> Recommendation:
    """The recommended configuration for one service; `settings` are the ones the user fixed (None: unset)."""
    from sparkserve.engines import get_engine

    given = {k: v for k, v in settings.items() if v is not None}
    dep = deployment(hw, model, quant, engine, gpus=gpus, nodes=nodes, **given)  # validates the request
    eng = get_engine(dep.engine)
    if eng.gguf:
        rec = _recommend_gguf(dep, work, name)
    elif eng.sizing_defaults(hw) is None:
        plan = plan_service(dep, work, name=name)
        rec = Recommendation(plan, plan, setting.describe(hw),
                             why_none=None if plan.fits else "; ".join(plan.memory.reasons))
    else:
        rec = _Vllm(hw, work, setting, name, given, eng).recommend(dep.model, dep.quant.id, gpus, nodes)
    if not eng.runnable:
        rec.planning_only = (f"{eng.label or eng.name} is planning only: sparkserve sizes it and prints its arguments, "
                             "but does not check, render or start them")
    rec.requested.recommended_args = rec.args
    rec.requested.recommendation = rec
    rec.plan.recommendation = rec
    return rec


# --- vLLM-style engines ---------------------------------------------------------------------------


@dataclass
class _Vllm:
    hw: HardwareProfile
    work: Workload
    setting: Setting
    name: str
    given: dict[str, object]
    engine: Engine  # defaults, constraint checks, flags

    def recommend(self, model: ModelSpec, quant: str, gpus: int, nodes: int) -> Recommendation:
        served, served_quant, source_note = self._source(model, quant)
        requested = self._size(served, served_quant, gpus, nodes, fix=False)[0]
        self._mark_problems(requested, served, served_quant)
        describe = self.setting.describe(self.hw)
        if requested.fits:
            return Recommendation(requested, requested, describe, notes=[source_note] if source_note else [])
        for spec, q, g, n, step_notes in self._candidates(served, served_quant, gpus, nodes):
            plan, size_notes = self._size(spec, q, g, n, fix=True)
            if plan.fits and not self._problems(plan, spec, q):
                notes = ([source_note] if source_note else []) + step_notes + size_notes
                return Recommendation(requested, plan, describe, notes=notes)
        reasons = requested.memory.reasons or ["no configuration fits"]
        why = (f"nothing fits on {self.hw.name} x{gpus * nodes}: {reasons[-1]}; even shorter contexts, "
               f"{self.hw.max_gpus} GPU(s) per host and 4-bit weights do not fit: pick a smaller model or more hosts")
        return Recommendation(requested, requested, describe, notes=[source_note] if source_note else [], why_none=why)

    # A pre-quantised repo for a format vLLM cannot make on load; a pre-quantised checkpoint keeps its own.
    def _source(self, model: ModelSpec, quant: str) -> tuple[ModelSpec, str, str | None]:
        eng = self.engine
        if model.checkpoint_quant and model.checkpoint_quant != quant:
            return model, model.checkpoint_quant, (f"{model.id} ships {model.checkpoint_quant} weights: "
                                                   f"planned as {model.checkpoint_quant}, not {quant}")
        if model.checkpoint_quant or eng.quantises_on_load(quant):
            return model, quant, None
        repo = prequantised(model, quant)
        if repo is not None:
            return repo, quant, (f"vLLM cannot make {quant} weights from {model.id} on load: "
                                 f"serving the pre-quantised {repo.id}")
        return model, quant, None

    def _candidates(self, model: ModelSpec, quant: str, gpus: int,
                    nodes: int) -> Iterator[tuple[ModelSpec, str, int, int, list[str]]]:
        """(model, quant, gpus, nodes, notes) from the nearest change to the furthest."""
        hw = self.hw
        counts = [(g, nodes) for g in range(1, hw.max_gpus + 1) if self._tp_ok(model, g * nodes)]
        if not counts:  # no GPU count works on this many hosts: fewer hosts, never more
            counts = [(g, n) for n in range(nodes - 1, 0, -1) for g in range(1, hw.max_gpus + 1)
                      if self._tp_ok(model, g * n)][:1]
        if not counts:
            return
        first = min(counts, key=lambda c: (abs(c[0] * c[1] - gpus * nodes), c[0] * c[1]))
        more = sorted(c for c in counts if c[1] == first[1] and c[0] > first[0])

        def moved(to: tuple[int, int], why: str) -> list[str]:
            if to == (gpus, nodes):
                return []
            what = f"--gpus {gpus} -> {to[0]}" if to[1] == nodes else f"--nodes {nodes} -> {to[1]}"
            return [f"{what}: {why}"]

        tp_why = (f"vLLM needs a tensor-parallel size that divides the {model.num_attention_heads} attention heads "
                  f"and the {model.num_kv_heads} KV heads")
        smaller: list[tuple[ModelSpec, str, str]] = []
        if not model.checkpoint_quant:
            for q in (q for q in SMALLER_QUANTS if WEIGHT_FORMATS[q].bits < WEIGHT_FORMATS[quant].bits):
                on_load = self.engine.quantises_on_load(q)
                spec = model if on_load else prequantised(model, q)
                if spec is not None:
                    smaller.append((spec, q, f"-q {quant} -> {q}" + ("" if on_load else f" from {spec.id}")
                                    + ": fewer weight bytes"))
        first_moved = moved(first, tp_why) if first != (gpus, nodes) else []
        yield model, quant, first[0], first[1], first_moved
        for spec, q, why in smaller:
            yield spec, q, first[0], first[1], first_moved + [why]
        for count in more:
            yield model, quant, count[0], count[1], moved(count, "the weights and KV cache need more GPUs")
            for spec, q, why in smaller:
                yield spec, q, count[0], count[1], moved(count, "more GPUs") + [why]

    def _tp_ok(self, model: ModelSpec, tp: int) -> bool:
        return self.engine.valid_tensor_parallel(model, tp)

    def _size(self, model: ModelSpec, quant: str, gpus: int, nodes: int, *, fix: bool) -> tuple[ServicePlan, list[str]]:
        """Plan with every unset setting chosen; with `fix`, explicit settings that cannot start are changed."""
        hw, given, notes = self.hw, self.given, []
        defaults = self.engine.sizing_defaults(hw)
        safe = unified_share_utilization(hw, self.setting.others_gib)
        chosen_util = min(defaults.gpu_memory_utilization, safe)
        util = float(given.get("gpu_memory_utilization", chosen_util))  # type: ignore[arg-type]
        if fix and util > safe and (hw.unified or self.setting.others):
            notes.append(f"--gpu-memory-utilization {util:.2f} -> {chosen_util:.2f}: "
                         f"{util:.2f} leaves too little for {'the OS' if hw.unified else 'the other services'}")
            util = chosen_util
        mnbt = int(given.get("max_num_batched_tokens", defaults.max_num_batched_tokens))  # type: ignore[call-overload]
        seqs_given = "max_num_seqs" in given
        mns = int(given.get("max_num_seqs", defaults.max_num_seqs))  # type: ignore[call-overload]
        if not seqs_given:
            mns = min(mns, mnbt)
        elif fix and mns > mnbt:
            notes.append(f"--max-num-batched-tokens {mnbt} -> {mns}: vLLM needs it at least max-num-seqs")
            mnbt = mns
        native = model.max_position_embeddings
        length = int(given.get("max_model_len", native))  # type: ignore[call-overload]
        if fix and length > native:
            notes.append(f"--max-model-len {length} -> {native}: the model has {native} positions and no RoPE scaling")
            length = native
        base = {k: v for k, v in given.items() if k in ("kv_cache_dtype", "enforce_eager", "engine_version", "marlin",
                                                         "attention_backend")}

        def at(length: int, seqs: int) -> ServicePlan:
            dep = deployment(hw, model, quant, self.engine.name, gpus=gpus, nodes=nodes,
                             gpu_memory_utilization=util, max_model_len=length, max_num_batched_tokens=mnbt,
                             max_num_seqs=seqs, **base)
            return plan_service(dep, self.work, name=self.name)

        probe = at(length, mns)
        if "max_model_len" not in given:
            capacity = probe.memory.kv_tokens
            if capacity >= MIN_FULL_LENGTH_REQUESTS * native:
                length = native
            elif capacity // MIN_FULL_LENGTH_REQUESTS >= MIN_LENGTH:
                length = round_down_len(capacity // MIN_FULL_LENGTH_REQUESTS)
            else:
                length = round_down_len(max(1, min(native, capacity)))
            probe = at(length, mns)
        if not seqs_given:
            mns = min(sized_max_num_seqs(probe), mnbt)
            probe = at(length, mns)
        if fix and not probe.fits and probe.memory.kv_tokens > 0:
            asked = length
            while not probe.fits and length > 1:
                length = round_down_len(min(length - 1, max(1, probe.memory.kv_tokens)))
                probe = at(length, mns)
            if probe.fits and "max_model_len" in given:
                notes.append(f"--max-model-len {asked} -> {length}: the KV cache holds {probe.memory.kv_tokens:,} "
                             f"tokens at --gpu-memory-utilization {util:.2f}")
        return probe, notes

    def _problems(self, plan: ServicePlan, model: ModelSpec, quant: str) -> list[str]:
        settings: VllmSettings = vllm_settings(plan.memory.settings)
        return self.engine.constraint_problems(model, quant, settings)

    def _mark_problems(self, plan: ServicePlan, model: ModelSpec, quant: str) -> None:
        """A plan vLLM refuses, or one that starves the OS of unified memory, does not fit."""
        problems = [f"vLLM refuses to start: {p}" for p in self._problems(plan, model, quant)]
        util = vllm_settings(plan.memory.settings).gpu_memory_utilization
        safe = unified_share_utilization(self.hw, self.setting.others_gib)
        if self.hw.unified and util > safe:
            problems.append(f"--gpu-memory-utilization {util:.2f} leaves the OS less than its "
                            f"{self.hw.os_reserve_gib:.0f} GiB of unified memory; at most {safe:.2f} does not")
        for problem in problems:
            plan.memory.fits = False
            plan.memory.reasons.append(problem)
            plan.warnings.append(problem)


# --- GGUF engines (Ollama) -------------------------------------------------------------------------


def _recommend_gguf(dep: Deployment, work: Workload, name: str) -> Recommendation:
    """Ollama takes what it needs: a context that does not fit is halved (to a tidy length) until it does."""
    requested = plan_service(dep, work, name=name)
    describe = (f"{dep.engine} takes only what the model, {requested.memory.max_model_len:,} tokens of context "
                "and its parallel requests need, alone or beside others")
    if requested.fits:
        return Recommendation(requested, requested, describe)
    length = requested.memory.max_model_len
    while length > MIN_LENGTH:
        length = round_down_len(length // 2)
        plan = plan_service(dataclasses.replace(dep, num_ctx=length), work, name=name)
        if plan.fits:
            note = f"num_ctx {requested.memory.max_model_len} -> {length}: the longer context does not fit"
            return Recommendation(requested, plan, describe, notes=[note])
    return Recommendation(requested, requested, describe, why_none="; ".join(requested.memory.reasons))


__all__ = ["ALONE", "Recommendation", "Setting", "prequantised", "recommend", "round_down_len", "sized_max_num_seqs"]
