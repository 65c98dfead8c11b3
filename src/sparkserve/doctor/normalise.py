"""Turn a raw service log into the plain message lines rules are written against.

The same failure reaches `doctor` wrapped in many ways: Docker Compose's `svc-1  | ` column, ISO and
CI timestamps, ANSI colour (escaped, or as `#033[` / `^[[` after a log shipper), Ray's
`(RayWorkerWrapper pid=1, ip=...)` and vLLM's `(EngineCore_DP0 pid=1)` process tags, vLLM's
`ERROR 01-12 01:09:14 [core.py:708]` header, journald's `Dec 24 23:48:35 host ollama[1]:`, torch's
`[rank0]:`, Ollama's logfmt `time=... level=... msg="..." error="..."`, JSON lines and issue quotes
(`> `). Each line is normalised once, before any rule looks at it, so a rule names only the message.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator

MAX_LINE = 64 * 1024
"""Longest line matched whole; of longer ones (data dumps, a log without newlines) the start and end are kept."""

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|#033\[[0-9;]*m|\^\[\[[0-9;]*m|\[[0-9;]{1,12}m(?=\S)")
_PREFIXES = re.compile(
    r"^(?:"
    r">\s?"  # quoted in an issue
    r"|\|\s"  # Buildkite's column
    r"|[\w][\w.-]*(?:-\d+)?\s+\|(?:\s|$)"  # docker compose service column
    r"|\[\d{4}-\d\d-\d\dT[\d:.]+Z?\]\s*"  # [2025-03-10T15:07:20Z]
    r"|\d{4}-\d\d-\d\d[T ][\d:.,]+(?:Z|[+-]\d\d:?\d\d)?\s+(?:\|\s*\w+\s*\|\s*\w+\s*\|\s*)?"  # ISO / loguru
    r"|[A-Z][a-z]{2}\s+\d+ [\d:]+ [\w.-]+ [\w./-]+(?:\[\d+\])?:\s"  # journald: Dec 24 23:48:35 host ollama[3974]:
    r"|\d{4}/\d\d/\d\d [\d:.]+ (?:[\w.]+:\d+: )?"  # Go log: 2023/12/24 23:48:35 llama.go:459:
    r"|\[rank\d+\]:\s?"  # torch distributed
    r"|\((?:[\w:.-]+(?: rank=\d+)?\s+)?pid=\d+(?:, ip=[\d.]+)?\)\s*"  # (EngineCore_DP0 pid=1) / (pid=1, ip=..)
    r"|\(raylet\)\s*(?:\[[^\]]+\]\s*\(raylet\)\s*)?"  # (raylet) [2025-04-02 ...] (raylet)
    r"|(?:ERROR|WARNING|WARN|INFO|DEBUG|CRITICAL)\s+\d\d-\d\d [\d:.]+\s+(?:\[[\w./-]+:\d+\]|[\w./-]+:\d+\])\s?"
    r"|(?:ERROR|WARNING|INFO|DEBUG|CRITICAL):\s+"  # uvicorn: "ERROR:    [Errno 98] ..."
    r")"
)
_GLUED = re.compile(r"(?<=\S)(?=\((?:[\w:.-]+\s+)?pid=\d+(?:, ip=[\d.]+)?\))")
"""A terminal copy that lost its newlines: `...status(APIServer pid=2960)   File ...`."""
_LOGFMT = re.compile(r'(?:^|\s)(msg|error|err)=("(?:[^"\\]|\\.)*"|\S+)')
_JSON_KEYS = ("error", "message", "msg", "detail", "err")


def strip_ansi(line: str) -> str:
    return _ANSI.sub("", line) if ("\x1b" in line or "[" in line) else line


def _unwrap(line: str) -> str:
    """Drop every wrapper prefix, however many are stacked."""
    for _ in range(8):
        stripped = _PREFIXES.sub("", line, count=1).lstrip()
        if stripped == line:
            break
        line = stripped
    return line


def _logfmt(line: str) -> str | None:
    if "msg=" not in line and "error=" not in line:
        return None
    parts = {k: (v[1:-1].replace('\\"', '"') if v.startswith('"') else v) for k, v in _LOGFMT.findall(line)}
    if not parts or not line.lstrip().startswith(("time=", "level=", "msg=", "source=")):
        return None
    text = parts.get("msg", "")
    why = parts.get("error") or parts.get("err")
    return f"{text}: {why}" if text and why else (text or why)


def _json(line: str) -> str | None:
    start = line.find("{")
    if start < 0 or not line.rstrip().endswith("}"):
        return None
    try:
        data = json.loads(line[start:])
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    values = [str(data[k]) for k in _JSON_KEYS if isinstance(data.get(k), (str, int, float)) and str(data[k])]
    if not values:
        return None
    head = line[:start].strip()
    return " ".join(([head] if head else []) + values)


def normalise_line(raw: str) -> list[str]:
    """The message lines inside one raw line (usually one; several when a copy glued lines together)."""
    line = raw.rstrip("\r\n")
    if len(line) > MAX_LINE:
        line = f"{line[: MAX_LINE // 2]} … {line[-MAX_LINE // 2 :]}"
    line = strip_ansi(line)
    pieces = _GLUED.split(line) if "pid=" in line else [line]
    out: list[str] = []
    for piece in pieces:
        text = _unwrap(piece.strip()) if piece.strip() else ""
        text = _logfmt(text) or _json(text) or text
        out.append(text.rstrip())
    return out


def normalise(lines: Iterable[str]) -> Iterator[str]:
    """Every message line of a log, in order."""
    for raw in lines:
        yield from normalise_line(raw)
