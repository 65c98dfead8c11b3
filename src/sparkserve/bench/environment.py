"""Where a result was measured: versions, the client's hardware, and the engine's arguments.

A local server's arguments are read from its command line (/proc) when it listens on this
machine; a stack service's come from the stack file. Nothing here may fail a run.
"""

from __future__ import annotations

import os
import platform
import socket
import sys
from pathlib import Path

from sparkserve import __version__
from sparkserve.bench.target import Target

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}


def cpu_name() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def hardware() -> dict:
    from sparkserve.hardware.detect import detect

    found = detect()
    return {
        "cpu": cpu_name(),
        "cpu_cores": os.cpu_count(),
        "mem_total_gib": found.memtotal_gib,
        "gpus": [g.name for g in found.gpus],
        "profile": found.profile_id,
    }


def local_server_command(port: int) -> list[str] | None:
    """The command line of the local process listening on `port`, when /proc shows it."""
    from sparkserve.readings.proc import listening_pid, proc_info

    pid = listening_pid(port)
    info = proc_info(pid) if pid is not None else None
    return list(info.cmdline) if info is not None and info.cmdline else None


def server_args(target: Target) -> dict[str, object]:
    """The server's arguments as a result may record them: secret values (`--api-key`) redacted."""
    from sparkserve.secrets import redact_mapping

    return redact_mapping(_server_args(target))


def _server_args(target: Target) -> dict[str, object]:
    if target.server_args:
        return dict(target.server_args)
    host, port = target.host_port
    if host not in LOCAL_HOSTS:
        return {}
    try:
        command = local_server_command(port)
    except (OSError, ValueError):
        return {}
    from sparkserve.engines.vllm import args_from_argv

    return args_from_argv(command) if command else {}


def environment(target: Target, server_config: dict[str, str]) -> dict:
    return {
        "sparkserve_version": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "engine": target.engine,
        "engine_version": target.engine_version,
        "model": target.model,
        "model_root": target.model_root,
        "max_model_len": target.max_model_len,
        "server_args": server_args(target),
        "server_config": server_config,
        "hardware": hardware(),
    }
