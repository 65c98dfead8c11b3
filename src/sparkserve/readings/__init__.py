"""Readings: what the host and the engines say, each read and defined in one place.

- `metrics`: an engine's Prometheus /metrics, by the reading names its engine module aliases.
- `meminfo`: /proc/meminfo.
- `nvml`: NVIDIA's management library, tolerant of every way it can be missing.
- `proc`: processes from /proc (command lines, start times, RSS, process groups, cgroups).

bench/, monitor/, demo/, doctor/ and runtime/memguard.py read through these; none parses a
source itself. Every reading may be unavailable: it is then None, never an exception.
"""
