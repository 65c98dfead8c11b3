"""The log matcher's data model: probes gated by literal needles, signatures, rules, facts, templates.

A rule names a cause, the log lines that betray it (signatures), the context it needs or must not
see, and summary/fix templates. Named groups in signatures, in `extract` patterns (searched in the
matched line plus the next two, to survive wrapped lines) and in log-wide facts fill the templates;
`derive` turns raw numbers into concrete advice (sparkserve.logrules.advice). Template segments in
[brackets] are dropped when a field inside them is unknown. Pure data, no I/O: engine modules build
their own rule tables from it (engines/*_doctor.py), host-level rules live in sparkserve.doctor.rules.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

Fields = Mapping[str, str]
Deriver = Callable[[Fields], dict[str, str]]

_CLASS_ESCAPES = set("dDsSwWbBAZ")


def _split_alternatives(pattern: str) -> list[str]:
    """Top-level branches of a regex (split on '|' outside groups and classes)."""
    parts, depth, start, i, in_class = [], 0, 0, 0, False
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            i += 2
            continue
        if in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
            if pattern[i + 1 : i + 2] == "]":
                i += 1
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            parts.append(pattern[start:i])
            start = i + 1
        i += 1
    parts.append(pattern[start:])
    return parts


def _branch_needle(branch: str) -> str | None:
    """Longest literal run outside groups that every match of `branch` must contain."""
    runs: list[str] = []
    run: list[str] = []
    depth = 0
    i = 0

    def close() -> None:
        if run:
            runs.append("".join(run))
            run.clear()

    while i < len(branch):
        ch = branch[i]
        if ch == "\\" and i + 1 < len(branch):
            nxt = branch[i + 1]
            if depth == 0 and nxt not in _CLASS_ESCAPES and not nxt.isalnum():
                run.append(nxt)
            else:
                close()
            i += 2
        elif ch == "[":
            close()
            j = i + 1
            if branch[j : j + 1] == "]":
                j += 1
            while j < len(branch) and branch[j] != "]":
                j += 2 if branch[j] == "\\" else 1
            i = j + 1
        elif ch == "(":
            close()
            depth += 1
            i += 1
        elif ch == ")":
            depth -= 1
            i += 1
        elif ch in "?*{":
            if depth == 0 and run:
                run.pop()
            close()
            close_brace = branch.find("}", i) if ch == "{" else -1
            i = close_brace + 1 if close_brace >= 0 else i + 1
        elif ch in "+.^$":
            close()
            i += 1
        else:
            if depth == 0:
                run.append(ch)
            i += 1
    close()
    best = max(runs, key=len, default="")
    return best.lower() if len(best.strip()) >= 3 else None


def _inline_groups(branch: str) -> str:
    """Replace each unquantified group without alternation by its content: its literals are required too."""
    out: list[str] = []
    i = 0
    while i < len(branch):
        ch = branch[i]
        if ch == "\\":
            out.append(branch[i : i + 2])
            i += 2
            continue
        if ch == "[":
            j = i + 1
            if branch[j : j + 1] == "]":
                j += 1
            while j < len(branch) and branch[j] != "]":
                j += 2 if branch[j] == "\\" else 1
            out.append(branch[i : j + 1])
            i = j + 1
            continue
        if ch == "(":
            end = _group_end(branch, i)
            header = re.match(r"\(\?P<\w+>|\(\?:|\((?!\?)", branch[i:])
            inner = branch[i + len(header.group(0)) : end] if header else ""
            quantified = branch[end + 1 : end + 2] in ("?", "*", "+", "{")
            if header and not quantified and len(_split_alternatives(inner)) == 1:
                out.append(_inline_groups(inner))
            else:
                out.append(branch[i : end + 1])
            i = end + 1
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _group_end(pattern: str, start: int) -> int:
    depth, i = 0, start
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "[":
            i += 1
            if pattern[i : i + 1] == "]":
                i += 1
            while i < len(pattern) and pattern[i] != "]":
                i += 2 if pattern[i] == "\\" else 1
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return len(pattern) - 1


def literal_needles(pattern: str) -> tuple[str, ...]:
    """Literals of which every match contains at least one, lowercased; () when unsure.

    Lines holding none of them are never handed to the regex, which keeps a scan of a
    long log to cheap substring tests.
    """
    needles = [_branch_needle(_inline_groups(b)) for b in _split_alternatives(pattern)]
    if any(n is None for n in needles):
        return ()
    return tuple(dict.fromkeys(n for n in needles if n))


@dataclass(frozen=True)
class Probe:
    """A compiled pattern plus the literal a line must contain before it is tried."""

    regex: re.Pattern[str]
    needles: tuple[str, ...]

    def search(self, line: str, lowered: str) -> re.Match[str] | None:
        if self.needles and not any(n in lowered for n in self.needles):
            return None
        return self.regex.search(line)


def probe(pattern: str, needle: str | None = None, flags: int = re.IGNORECASE) -> Probe:
    """Compile a case-insensitive pattern; its needle is derived unless given."""
    needles = (needle.lower(),) if needle else literal_needles(pattern)
    return Probe(re.compile(pattern, flags), needles)


@dataclass(frozen=True)
class Signature:
    """One log pattern that points at a cause; it may override the rule's texts."""

    probe: Probe
    summary: str | None = None
    fix: str | None = None


def sig(pattern: str, *, summary: str | None = None, fix: str | None = None, needle: str | None = None) -> Signature:
    """A signature line; `summary`/`fix` replace the rule's texts when this is the first line found."""
    return Signature(probe(pattern, needle), summary, fix)


@dataclass(frozen=True)
class Rule:
    """A known cause: how to spot it and what to tell the user.

    `requires`/`excludes` must / must not match somewhere in the log (e.g. weights still
    loading); `when` is a last check on the gathered fields; a cause in `supersedes` is not
    reported next to this one because this one explains it. Higher `priority` means more
    specific: it is ranked first and claims the lines it matched.
    """

    cause_id: str
    priority: int
    signatures: tuple[Signature, ...]
    summary: str
    fix: str
    extract: tuple[re.Pattern[str], ...] = ()
    requires: tuple[Probe, ...] = ()
    excludes: tuple[Probe, ...] = ()
    when: Callable[[Fields], bool] | None = None
    derive: Deriver | None = None
    supersedes: tuple[str, ...] = ()
    uma_note: str | None = None


@dataclass(frozen=True)
class Fact:
    """Context read from anywhere in the log (current settings, hardware hints)."""

    name: str
    probe: Probe
    accumulate: bool = False


def rx(pattern: str) -> re.Pattern[str]:
    """An `extract` pattern: only run on lines a signature already matched."""
    return re.compile(pattern, re.IGNORECASE)



@dataclass(frozen=True)
class LogRules:
    """One table of rules with the facts and harmless lines (noise) they rely on."""

    rules: tuple[Rule, ...] = ()
    facts: tuple[Fact, ...] = ()
    noise: tuple[Probe, ...] = ()

_OPTIONAL = re.compile(r"\[([^\[\]]*\{\w+\}[^\[\]]*)\]")
_FIELD = re.compile(r"\{(\w+)\}")

def render(template: str, fields: Mapping[str, str]) -> str:
    """Fill {name} fields; a [bracketed] part naming an unknown field is dropped, other unknowns stay visible."""

    def optional(m: re.Match[str]) -> str:
        inner = m.group(1)
        return inner if all(name in fields for name in _FIELD.findall(inner)) else ""

    text = _OPTIONAL.sub(optional, template)
    missing = {name: f"{{{name}}}" for name in _FIELD.findall(text) if name not in fields}
    return text.format_map({**missing, **fields})
