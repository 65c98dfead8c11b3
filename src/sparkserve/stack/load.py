"""Read `sparkserve.toml` into a checked stack, turning every mistake into one clear line.

Each error names the file, the field path (`services.vllm-qwen3-32b.port`), what was expected
and, for a misspelt key, the closest valid one, then exits with code 2 via UserError.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sparkserve.errors import UserError, closest

if TYPE_CHECKING:  # the schema (and pydantic, tomllib) load only when a stack file is read
    import tomllib

    from pydantic import ValidationError

    from sparkserve.stack.schema import ServiceSpec, StackFile

STACK_FILE = "sparkserve.toml"



@dataclass(frozen=True)
class Stack:
    """A validated stack file and where it came from (relative volume paths resolve against it)."""

    path: Path
    spec: StackFile

    @property
    def services(self) -> dict[str, ServiceSpec]:
        return self.spec.services


def find_stack(explicit: str | Path | None, cwd: Path | None = None) -> Path | None:
    """The stack file to use: `--stack FILE` (which must exist), else ./sparkserve.toml if present."""
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise UserError(f"{path}: no such stack file; create one with 'sparkserve init'")
        return path
    candidate = (cwd or Path.cwd()) / STACK_FILE
    return candidate if candidate.is_file() else None


def load_stack(path: str | Path) -> Stack:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"{path}: cannot read stack file ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text at byte {exc.start} (a binary file?); a stack file is TOML, "
                        "see 'sparkserve init'") from None
    return Stack(path=path, spec=parse_stack(text, str(path)))


def parse_stack(text: str, source: str = STACK_FILE) -> StackFile:
    """Parse and check stack text; `source` names the file in errors."""
    import tomllib

    from pydantic import ValidationError

    from sparkserve.stack.schema import StackFile

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{source}: {_toml_message(exc)}") from None
    _check_values(data, source)
    try:
        spec = StackFile.model_validate(data)
    except ValidationError as exc:
        raise UserError(f"{source}: {_first_error(exc)}") from None
    _check_meaning(spec, source)
    return spec


def _check_values(value: object, source: str, path: str = "") -> None:
    """Values no field can use: a NUL (no command line or environment can carry it) and inf/nan."""
    import math

    if isinstance(value, dict):
        for key, item in value.items():
            if "\0" in key:
                raise UserError(f"{source}: {path or 'the top level'}: a key holds a NUL character; remove it")
            _check_values(item, source, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_values(item, source, f"{path}[{i}]")
    elif isinstance(value, str) and "\0" in value:
        raise UserError(f"{source}: {path}: the value holds a NUL character, which no command line or "
                        "environment can carry; remove it")
    elif isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"{source}: {path}: expected a finite number, got {value}")


def _toml_message(exc: tomllib.TOMLDecodeError) -> str:
    found = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
    reason = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc)) or "syntax error"
    if found:
        return f"line {found.group(1)}, column {found.group(2)}: invalid TOML: {reason}"
    return f"invalid TOML: {reason}"


def _first_error(exc: ValidationError) -> str:
    from sparkserve.stack.schema import fields_at

    errors = exc.errors(include_url=False)
    # An unknown key explains the "missing" error it usually comes with (prot = ... for port).
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    raw = [part for part in err["loc"] if not _is_union_tag(part)]
    loc = tuple(str(part) for part in raw if not isinstance(part, int))
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in raw).lstrip(".")
    kind, msg = err["type"], err["msg"]
    if len(loc) == 4 and loc[2] == "args":
        return f"{path}: expected a number, a string, true/false or a list of them, got {_short(err.get('input'))}"
    if kind == "extra_forbidden":
        parent, key = loc[:-1], loc[-1]
        where = ".".join(parent) or "the top level"
        guess = closest(key, fields_at(parent), n=1)
        hint = f"; did you mean {guess[0]!r}?" if guess else ""
        return f"{path}: unknown key {key!r} in {where}{hint} (valid: {', '.join(fields_at(parent))})"
    if kind == "missing":
        return f"{path}: required key missing"
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        got = err.get("input")
        guess = closest(str(got), re.findall(r"'([^']+)'", expected), n=1)
        hint = f"; did you mean {guess[0]!r}?" if guess else ""
        return f"{path}: expected {expected}, got {got!r}{hint}"
    if kind == "value_error":
        msg = msg.removeprefix("Value error, ")
        return f"{path}: {msg}" if path else msg
    return f"{path}: expected {_EXPECTED.get(kind.split('_')[0], msg)}, got {_short(err.get('input'))}"


def _is_union_tag(part: object) -> bool:
    """Pydantic adds the union member it tried ('int', "literal['all']") to an error's location."""
    return isinstance(part, str) and (part in {"int", "float", "str", "bool"} or part.startswith(("literal[", "list[")))


_EXPECTED = {"int": "an integer", "float": "a number", "string": "a string", "bool": "true or false",
             "list": "a list", "dict": "a table", "model": "a table"}


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_meaning(spec: StackFile, source: str) -> None:
    """What the schema cannot know: catalog names, engine/format pairs, engine arguments."""
    from sparkserve.hardware.catalog import get_profile

    hardware = spec.stack.hardware
    hw = None
    if hardware.lower() != "auto":
        hw = _at(source, "stack.hardware", get_profile, hardware)
    for name, svc in spec.services.items():
        where = f"services.{name}"
        _check_args(svc, f"{where}.args", source)
        _check_model(svc, where, source, hw, spec.stack.hf_cache)


def _check_args(svc: ServiceSpec, where: str, source: str) -> None:
    from sparkserve import secrets
    from sparkserve.engines import get_engine

    engine = get_engine(svc.engine)
    for key, value in svc.args.items():
        path = f"{source}: {where}.{key}"
        secret = secrets.arg_problem(key, value, engine.api_key_env if secrets.normalize(key) == "api_key" else None)
        if secret:
            raise UserError(f"{path}: {secret}")
        problem = engine.check_stack_arg(key)
        if problem:
            raise UserError(f"{path}: {problem}")
        wanted = engine.planner_args.get(key)
        if wanted is not None and not _is_type(value, wanted):
            raise UserError(f"{path}: expected {_ARG_EXPECTED[wanted]}, got {_short(value)}")


_ARG_EXPECTED = {int: "an integer >= 1", float: "a number", str: "a string", bool: "true or false"}


def _is_type(value: object, wanted: type) -> bool:
    if wanted is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if wanted is int:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 1
    return isinstance(value, wanted)


def _check_model(svc: ServiceSpec, where: str, source: str, hw, hf_cache: str) -> None:
    from sparkserve.models.catalog import resolve_model
    from sparkserve.plan.quant import check_engine_format, weight_format

    try:
        resolve_model(svc.model, hf_home=hf_cache)
    except UserError as exc:
        hint = "an HF id, an Ollama tag, or a directory holding config.json"
        message = str(exc).replace("point --model at a directory holding config.json", f"expected {hint}")
        raise UserError(f"{source}: {where}.model: {message}") from None
    if svc.quant is not None:
        fmt = _at(source, f"{where}.quant", weight_format, svc.quant)
        _at(source, f"{where}.quant", check_engine_format, svc.engine, fmt)
    if hw is not None and isinstance(svc.gpus, int) and svc.gpus > hw.max_gpus:
        raise UserError(f"{source}: {where}.gpus: {hw.name} hosts hold at most {hw.max_gpus} GPU(s), got {svc.gpus}")


def _at(source: str, path: str, check, *args):
    """Run a catalog check, prefixing its error with the file and field it came from."""
    try:
        return check(*args)
    except UserError as exc:
        raise UserError(f"{source}: {path}: {exc}") from None


def planner_settings(svc: ServiceSpec) -> dict:
    """The stack args the planner understands, in the planner's own names."""
    from sparkserve.engines import get_engine

    return get_engine(svc.engine).planner_settings(svc.args)
