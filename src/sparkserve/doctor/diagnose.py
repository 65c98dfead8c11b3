"""Turn a service log into known causes with concrete fixes, most likely first.

The scan reads each line once: cheap substring tests gate every regex, so a long log
costs little more than reading it. Nothing is reported unless a rule in
`sparkserve.doctor.rules` recognises it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from sparkserve.doctor.normalise import normalise
from sparkserve.doctor.rules import all_rules
from sparkserve.logrules.advice import on_unified_memory
from sparkserve.logrules.matcher import Fact, LogRules, Probe, Rule, Signature, render

__all__ = ["MAX_BYTES", "Finding", "diagnose", "diagnose_file", "diagnose_lines", "render"]

MAX_BYTES = 8 * 1024 * 1024
"""Only the tail of bigger logs is read: the failure is at the end."""

MAX_EVIDENCE = 5
_MAX_HITS = 200
"""Lines kept per cause: enough for fields and evidence when one error repeats on every rank."""
_EVIDENCE_CHARS = 300
_WINDOW = 3

_WRAPPED = re.compile(r"[a-z]")
"""A continuation of a message the terminal or issue tracker wrapped."""


@dataclass(frozen=True)
class Finding:
    """One recognised cause: what went wrong, how to fix it, and the lines that show it."""

    cause_id: str
    summary: str
    fix: str
    evidence: tuple[str, ...] = field(default_factory=tuple)
    score: int = 0

    def to_dict(self) -> dict[str, object]:
        return {"cause_id": self.cause_id, "summary": self.summary, "fix": self.fix, "evidence": list(self.evidence)}


@dataclass
class _Hit:
    index: int
    groups: dict[str, str]
    summary: str | None
    fix: str | None




def _evidence(line: str, following: str = "") -> str:
    text = line.strip()
    if _WRAPPED.match(following) and text[-1:].isalnum():
        text = f"{text} {following.strip()}"
    return text if len(text) <= _EVIDENCE_CHARS else text[: _EVIDENCE_CHARS - 1] + "…"


def _tail(text: str, max_bytes: int) -> str:
    if len(text) <= max_bytes:
        return text
    cut = text[-max_bytes:]
    newline = cut.find("\n")
    return cut[newline + 1 :] if 0 <= newline < len(cut) - 1 else cut


@dataclass(frozen=True)
class _Entry:
    kind: str  # "fact", "context", "noise" or "signature"
    probe: Probe
    owner: object = None


@dataclass(frozen=True)
class _Table:
    """The rules compiled for one scan: every probe in the order a line must be read (facts and context
    before noise, signatures last) and the needle index that gates them."""

    rules: tuple[Rule, ...]
    entries: tuple[_Entry, ...]
    index: dict[str, list[int]]
    needles: tuple[str, ...]
    ungated: tuple[int, ...]


_COMPILED: dict[tuple[int, ...], _Table] = {}


def _table(table: LogRules) -> _Table:
    key = tuple(id(r) for r in table.rules)
    if key not in _COMPILED:
        entries = [_Entry("fact", f.probe, f) for f in table.facts]
        entries += [_Entry("context", p) for r in table.rules for p in (*r.requires, *r.excludes)]
        entries += [_Entry("noise", p) for p in table.noise]
        entries += [_Entry("signature", s.probe, (r, s)) for r in table.rules for s in r.signatures]
        index: dict[str, list[int]] = {}
        for i, entry in enumerate(entries):
            for needle in entry.probe.needles:
                index.setdefault(needle, []).append(i)
        _COMPILED[key] = _Table(table.rules, tuple(entries), index, tuple(index),
                                tuple(i for i, e in enumerate(entries) if not e.probe.needles))
    return _COMPILED[key]


class _Scan:
    """One pass over the lines, collecting signature hits, facts and context probes."""

    def __init__(self, table: _Table) -> None:
        self.table = table
        self.lines: list[str] = []
        self.facts: dict[str, str] = {}
        self.flags: dict[str, None] = {}
        self.seen: set[int] = set()
        self.hits: dict[int, list[_Hit]] = {}  # by id() of the rule

    def feed(self, lines: Iterable[str]) -> None:
        for line in normalise(lines):
            self.lines.append(line)
            lowered = line.lower()
            present = [n for n in self.table.needles if n in lowered]
            if not present and not self.table.ungated:
                continue
            candidates = sorted({i for n in present for i in self.table.index[n]}.union(self.table.ungated))
            self._read(len(self.lines) - 1, line, candidates)

    def _read(self, index: int, line: str, candidates: list[int]) -> None:
        matched_rules: set[int] = set()
        for i in candidates:
            entry = self.table.entries[i]
            if entry.kind == "fact":
                self._read_fact(entry.owner, line)  # type: ignore[arg-type]
            elif entry.kind == "context":
                if id(entry.probe) not in self.seen and entry.probe.regex.search(line):
                    self.seen.add(id(entry.probe))
            elif entry.kind == "noise":
                if entry.probe.regex.search(line):
                    return
            else:
                rule, sig = cast(tuple[Rule, Signature], entry.owner)
                if id(rule) in matched_rules:
                    continue
                found = sig.probe.regex.search(line)
                if found:
                    m = found
                    matched_rules.add(id(rule))
                    hits = self.hits.setdefault(id(rule), [])
                    if len(hits) < _MAX_HITS:
                        groups = {k: v.strip() for k, v in m.groupdict().items() if v is not None}
                        hits.append(_Hit(index, groups, sig.summary, sig.fix))

    def _read_fact(self, fact: Fact, line: str) -> None:
        if fact.accumulate:
            for m in fact.probe.regex.finditer(line):
                self.flags[m.group("v")] = None
            return
        found = fact.probe.regex.search(line)
        if found:
            self.facts[fact.name] = found.groupdict().get("v") or found.group(0)

    def window(self, index: int) -> tuple[str, str]:
        part = [s.strip() for s in self.lines[max(index - 1, 0) : index + _WINDOW]]
        return " ".join(part), "".join(part)

    def context_fields(self) -> dict[str, str]:
        fields = dict(self.facts)
        if self.flags:
            fields["valid_flags"] = " ".join(self.flags)
        return fields


def _fields_for(rule: Rule, hits: list[_Hit], scan: _Scan, context: Mapping[str, str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for hit in hits:
        for key, value in hit.groups.items():
            found.setdefault(key, value)
        spaced, glued = scan.window(hit.index)
        for pattern in rule.extract:
            for text in (spaced, glued):
                m = pattern.search(text)
                if m:
                    for key, value in m.groupdict().items():
                        if value is not None:
                            found.setdefault(key, value.strip())
                    break
    return {**context, **found}


def _finding(rule: Rule, hits: list[_Hit], scan: _Scan, context: Mapping[str, str]) -> Finding | None:
    if any(id(p) not in scan.seen for p in rule.requires) or any(id(p) in scan.seen for p in rule.excludes):
        return None
    fields = _fields_for(rule, hits, scan, context)
    if rule.when is not None and not rule.when(fields):
        return None
    if rule.derive is not None:
        fields.update({k: v for k, v in rule.derive(fields).items() if v is not None})
    first = hits[0]
    summary = render(first.summary or rule.summary, fields)
    fix = render(first.fix or rule.fix, fields)
    if rule.uma_note and on_unified_memory(fields):
        fix = f"{fix} {rule.uma_note}"
    evidence: list[str] = []
    for hit in hits:
        following = scan.lines[hit.index + 1] if hit.index + 1 < len(scan.lines) else ""
        text = _evidence(scan.lines[hit.index], following)
        if text not in evidence:
            evidence.append(text)
        if len(evidence) == MAX_EVIDENCE:
            break
    return Finding(rule.cause_id, summary, fix, tuple(evidence), rule.priority)


def diagnose_lines(lines: Iterable[str], context: Mapping[str, str] | None = None) -> list[Finding]:
    """Known causes found in `lines`, most likely first; [] when nothing is recognised.

    `context` supplies facts the log may lack (the plan's utilisation, GPU memory, KV bytes per
    token); what the log itself says wins.
    """
    scan = _Scan(_table(all_rules()))
    scan.feed(lines)
    context = {**(context or {}), **scan.context_fields()}
    ranked = sorted(
        (rule for rule in scan.table.rules if id(rule) in scan.hits),
        key=lambda r: (-r.priority, scan.hits[id(r)][0].index),
    )
    findings: list[Finding] = []
    claimed: set[int] = set()
    superseded: set[str] = set()
    for rule in ranked:
        if rule.cause_id in superseded or any(f.cause_id == rule.cause_id for f in findings):
            continue
        hits = scan.hits[id(rule)]
        indices = {h.index for h in hits}
        if indices <= claimed:
            continue
        finding = _finding(rule, hits, scan, context)
        if finding is None:
            continue
        findings.append(finding)
        claimed |= indices
        superseded.update(rule.supersedes)
    return findings


def diagnose(text: str, *, max_bytes: int = MAX_BYTES, context: Mapping[str, str] | None = None) -> list[Finding]:
    """Known causes in a log (vLLM, Ollama, Docker, NCCL/Ray), most likely first.

    Only the last `max_bytes` characters are read; the failure is at the end of a log.
    """
    return diagnose_lines(_tail(text, max_bytes).splitlines(), context)


def diagnose_file(path: str | os.PathLike[str], *, max_bytes: int = MAX_BYTES,
                  context: Mapping[str, str] | None = None) -> list[Finding]:
    """Like `diagnose`, reading only the last `max_bytes` of a big file."""
    p = Path(path)
    size = p.stat().st_size
    with p.open("rb") as fh:
        if size > max_bytes:
            fh.seek(size - max_bytes)
            data = fh.read()
            newline = data.find(b"\n")
            if 0 <= newline < len(data) - 1:  # drop the partial first line, unless it is all there is
                data = data[newline + 1 :]
        else:
            data = fh.read()
    return diagnose(data.decode("utf-8", errors="replace"), max_bytes=max_bytes, context=context)
