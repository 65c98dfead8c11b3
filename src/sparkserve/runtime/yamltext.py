"""A tiny deterministic YAML writer for generated files (no PyYAML dependency).

Every string value is double-quoted with JSON escapes (valid YAML), so no value can be read
back as a number, a boolean or a sexagesimal port like 22:22.
"""

from __future__ import annotations

import json
import re

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_YAML_WORDS = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"})


def dump(doc: dict, header: str = "") -> str:
    """YAML text for a document of dicts, lists, strings, numbers, booleans and None."""
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    lines += _mapping(doc, 0)
    return "\n".join(lines) + "\n"


def _mapping(doc: dict, indent: int) -> list[str]:
    pad = " " * indent
    out: list[str] = []
    for key, value in doc.items():
        name = _key(key)
        if isinstance(value, dict) and value:
            out.append(f"{pad}{name}:")
            out += _mapping(value, indent + 2)
        elif isinstance(value, list) and value:
            out.append(f"{pad}{name}:")
            out += _sequence(value, indent + 2)
        else:
            out.append(f"{pad}{name}: {_scalar(value)}")
    return out


def _sequence(items: list, indent: int) -> list[str]:
    pad = " " * indent
    out: list[str] = []
    for item in items:
        if isinstance(item, dict) and item:
            body = _mapping(item, indent + 2)
            out.append(f"{pad}- {body[0].lstrip()}")
            out += body[1:]
        elif isinstance(item, list) and item:
            body = _sequence(item, indent + 2)
            out.append(f"{pad}- {body[0].lstrip()}")
            out += body[1:]
        else:
            out.append(f"{pad}- {_scalar(item)}")
    return out


def _key(key: object) -> str:
    text = str(key)
    return text if _PLAIN_KEY.match(text) and text.lower() not in _YAML_WORDS else json.dumps(text)


def _scalar(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return json.dumps(str(value), ensure_ascii=False)
