"""What tune searches: the SLO, the workload, the budget and the configurations.

The space's defaults come from the plan (engines/<engine>.tune_defaults); `--space KEY=v1,v2`
replaces one key's values. Two limits are never crossed: a max-model-len (num_ctx) below what the
workload needs, and a gpu-memory-utilization above the plan's safe value for the host.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sparkserve.bench.slo import METRICS, STATISTICS, Slo, parse_slo
from sparkserve.errors import UserError, closest

if TYPE_CHECKING:
    from sparkserve.engines.base import Engine

# `ttft_p90_ms=2000`: the spelling; bench's `ttft:p90<2000ms` is accepted too.
_KEY_SLO = re.compile(r"^\s*([a-z0-9]+)_([a-z0-9]+)_(ms|s|us)\s*=\s*([0-9]*\.?[0-9]+)\s*$", re.IGNORECASE)
_BUDGET = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(s|m|h|)\s*$", re.IGNORECASE)
_SLO_EXAMPLE = "e.g. --slo ttft_p90_ms=2000,itl_p90_ms=100"


def engine_module(engine: str) -> Engine:
    """The engine, which knows what of it can be tuned; planning-only engines cannot be."""
    from sparkserve.engines import get_engine

    found = get_engine(engine)
    if not found.tunable:
        raise found.planning_only("tune it")
    return found


def parse_slos(text: str) -> list[Slo]:
    """`ttft_p90_ms=2000,itl_p90_ms=100` (or bench's `ttft:p90<2000ms,...`) -> SLOs; each metric and
    statistic once."""
    slos: list[Slo] = []
    for part in (p for p in text.split(",") if p.strip()):
        found = _KEY_SLO.match(part)
        if found:
            metric, stat, unit, value = (g.lower() for g in found.groups())
            if metric not in METRICS or stat not in STATISTICS:
                raise UserError(f"--slo {part.strip()!r}: expected METRIC_STAT_ms=VALUE with METRIC one of "
                                f"{', '.join(METRICS)} and STAT one of {', '.join(STATISTICS)} ({_SLO_EXAMPLE})")
            slo = parse_slo(f"{metric}:{stat}<={value}{unit}")
            slos.append(Slo(slo.metric, slo.statistic, slo.bound_ms, slo.inclusive, part.strip()))
        elif ":" in part:
            slos.append(parse_slo(part))
        else:
            raise UserError(f"--slo {part.strip()!r}: expected METRIC_STAT_ms=VALUE ({_SLO_EXAMPLE})")
    if not slos:
        raise UserError(f"--slo: give at least one objective ({_SLO_EXAMPLE})")
    seen: set[tuple[str, str]] = set()
    for slo in slos:
        if (slo.metric, slo.statistic) in seen:
            raise UserError(f"--slo {slo.text!r}: {slo.metric} {slo.statistic} is given twice; give it once")
        seen.add((slo.metric, slo.statistic))
    return slos


def slo_dict(slos: list[Slo]) -> dict[str, float]:
    """The SLO as JSON: {"ttft_p90_ms": 2000.0, ...}."""
    return {f"{s.metric}_{s.statistic}_ms": s.bound_ms for s in slos}


def parse_budget(text: str | None) -> float | None:
    """`30m`, `90s`, `1.5h` or plain seconds -> seconds; None means no budget."""
    if text is None:
        return None
    found = _BUDGET.match(text)
    if not found or float(found.group(1)) <= 0:
        raise UserError(f"--budget {text!r}: expected a duration above zero such as 30m, 90s or 2h")
    return float(found.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[found.group(2).lower()]


def _value(text: str, kind: type, key: str, choices: tuple[str, ...] | None):
    raw = text.strip()
    try:
        if kind is bool:
            lowered = raw.lower()
            if lowered not in ("true", "false", "on", "off", "1", "0"):
                raise ValueError
            return lowered in ("true", "on", "1")
        value = kind(raw)
    except ValueError:
        expected = {bool: "true or false", int: "a whole number", float: "a number", str: "a value"}[kind]
        raise UserError(f"--space {key}: {raw!r} is not {expected}") from None
    if kind is int and value < 1:
        raise UserError(f"--space {key}: {value} must be at least 1")
    if kind is float and not 0 < value <= 1:
        raise UserError(f"--space {key}: {value} must be above 0 and at most 1")
    if choices is not None and value not in choices:
        guess = closest(str(value), choices, n=1)
        hint = f"; did you mean {guess[0]!r}?" if guess else ""
        raise UserError(f"--space {key}: unknown value {value!r}{hint} (valid: {', '.join(choices)})")
    return value


def parse_space(texts: list[str], engine: Engine) -> dict[str, list]:
    """`--space max-num-seqs=8,16` (repeatable; dashes or underscores) -> {"max_num_seqs": [8, 16]}."""
    tunable = engine.tunable
    out: dict[str, list] = {}
    for text in texts:
        key, sep, values = text.partition("=")
        key = key.strip().lstrip("-").replace("-", "_").lower()
        if not sep or not values.strip():
            raise UserError(f"--space {text!r}: expected KEY=v1,v2 (e.g. --space max-num-seqs=8,16,32)")
        if key not in tunable:
            guess = closest(key, tunable, n=1)
            hint = f"did you mean {guess[0].replace('_', '-')!r}? " if guess else ""
            valid = ", ".join(k.replace("_", "-") for k in tunable)
            raise UserError(f"--space {key.replace('_', '-')}: {engine.name} has no such setting to tune; "
                            f"{hint}valid: {valid}")
        if key in out:
            raise UserError(f"--space {key.replace('_', '-')} is given twice; list all its values once")
        parsed = [_value(v, tunable[key], key.replace("_", "-"), engine.tune_choices.get(key))
                  for v in values.split(",") if v.strip()]
        out[key] = list(dict.fromkeys(parsed))
    return out


@dataclass(frozen=True)
class Limits:
    """What the space may never contain, with why."""

    min_len: int  # the workload's longest request: prompt + output (times turns) and the chat template
    safe_util: float | None  # the plan's safe gpu-memory-utilization for this host (None: no such key)


def check_space(space: dict[str, list], engine: Engine, limits: Limits) -> None:
    """A UserError for a value tune must never try."""
    length_key, memory_key = engine.tune_length_key, engine.tune_memory_key
    flag = (length_key or "").replace("_", "-")
    for value in space.get(length_key or "", []):
        if value < limits.min_len:
            raise UserError(f"--space {flag}={value}: the workload needs {limits.min_len} tokens per request "
                            f"(prompt + output + the chat template); use values of at least {limits.min_len}")
    if memory_key and limits.safe_util is not None:
        for value in space.get(memory_key, []):
            if value > limits.safe_util:
                raise UserError(f"--space {memory_key.replace('_', '-')}={value:g}: above {limits.safe_util:.2f}, "
                                "the plan's safe value for this host (the OS and the other services need the rest; "
                                "on unified memory running out freezes the host); use values up to "
                                f"{limits.safe_util:.2f}")


@dataclass(frozen=True)
class Candidate:
    """One configuration: the values of every key in the space."""

    args: dict = field(hash=False)

    @property
    def id(self) -> str:
        return config_id(self.args)

    def label(self) -> str:
        return " ".join(f"{k.replace('_', '-')}={_short(v)}" for k, v in self.args.items())


def _short(value: object) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:g}" if isinstance(value, float) else str(value)


def config_id(args: dict) -> str:
    """A stable short id of a configuration (the journal's key)."""
    text = json.dumps(args, sort_keys=True, separators=(",", ":"))
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def candidates(space: dict[str, list]) -> list[Candidate]:
    """Every combination, in the space's key order; the search reorders them by promise."""
    keys = list(space)
    return [Candidate(dict(zip(keys, combo, strict=True))) for combo in itertools.product(*(space[k] for k in keys))]


def powers_around(load: int, cap: int) -> list[int]:
    """max-num-seqs values worth trying around a predicted load: half, the power of two at or above
    it, and double; never above `cap`."""
    top = 1 << max(0, (max(1, load) - 1).bit_length())
    return sorted({max(1, min(cap, v)) for v in (top // 2, top, top * 2)})
