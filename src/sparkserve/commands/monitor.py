"""`status` readings, `monitor` and `exporter`: glue between a stack's runtime rows and `sparkserve.monitor`.

`runtime.status.service_rows` says what each runtime knows (container state, native pid); this
module adds what the services and the host say now, and never fails because one of them
does not answer.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from sparkserve.errors import UserError

if TYPE_CHECKING:
    from sparkserve.monitor.sampler import Sampler, Snapshot
    from sparkserve.monitor.targets import Target
    from sparkserve.stack.load import Stack

DEFAULT_INTERVAL_S = 1.0
# A one-shot status may wait on a busy server (vLLM answers /metrics slowly under heavy load);
# the live view keeps polling, so a shorter wait keeps it current.
STATUS_TIMEOUT_S = 5.0  # per poll, all services at once: a hung service costs this, then is skipped
MONITOR_TIMEOUT_S = 5.0
DEFAULT_OLLAMA = "http://127.0.0.1:11434"


def _api_key(directory: Path) -> str | None:
    """VLLM_API_KEY from the environment or the project's .env: only /v1/models needs it."""
    from sparkserve.runtime.compose import ENV_FILE, read_env_file

    return os.environ.get("VLLM_API_KEY") or read_env_file(directory / ENV_FILE).get("VLLM_API_KEY") or None


def targets_for(stack: Stack, rows: list[dict]) -> list[Target]:
    """Status rows -> targets with native pids and compose container ids where the host shows them."""
    from sparkserve.monitor.targets import compose_containers, target_from_row, with_container, with_native_pid
    from sparkserve.runtime.compose import COMPOSE_FILE

    directory = stack.path.parent
    compose_file = directory / COMPOSE_FILE
    containers = {}
    if any(r.get("runtime") == "compose" for r in rows) and compose_file.is_file():
        containers = compose_containers(compose_file)
    api_key = _api_key(directory)
    return [with_container(with_native_pid(target_from_row(r, api_key)), containers) for r in rows]


def take_snapshot(sampler: Sampler, interval_s: float) -> Snapshot:
    """Two polls `interval_s` apart: rates (tokens/s) need a counter delta."""
    sampler.poll()
    time.sleep(max(0.0, interval_s))
    return sampler.poll()


def show_status(stack: Stack, rows: list[dict], *, json_out: bool, interval_s: float = DEFAULT_INTERVAL_S) -> None:
    """Print the runtime rows with each service's readings, Ollama's models, GPUs and memory."""
    from sparkserve.monitor.sampler import Sampler
    from sparkserve.monitor.view import snapshot_dict, status_view

    targets = targets_for(stack, rows)
    with Sampler(lambda: targets, timeout_s=STATUS_TIMEOUT_S) as sampler:
        snapshot = take_snapshot(sampler, interval_s)
    if json_out:
        print(json.dumps(snapshot_dict(snapshot), indent=2))
        return
    from rich.console import Console

    Console(highlight=False).print(status_view(snapshot))


def run_monitor(*, stack: str | None, once: bool, interval_s: float) -> None:
    """A live view until q / Ctrl-C; `once` prints a single frame (two polls for rates) and returns."""
    from sparkserve.monitor.sampler import Sampler
    from sparkserve.runtime.status import service_rows
    from sparkserve.stack.stackplan import load_planned

    if interval_s <= 0:
        raise UserError(f"--interval must be above 0 seconds, got {interval_s:g}")
    loaded = load_planned(stack)

    def targets() -> list[Target]:
        return targets_for(loaded.stack, service_rows(loaded))

    with Sampler(targets, timeout_s=MONITOR_TIMEOUT_S) as sampler:
        if once:
            _print_frame(sampler, interval_s)
            return
        from sparkserve.monitor.app import MonitorApp

        try:
            MonitorApp(sampler, interval_s).run()
        except KeyboardInterrupt:  # a SIGINT from outside the terminal: the app has already stopped
            pass


def _print_frame(sampler: Sampler, interval_s: float) -> None:
    from rich.console import Console

    from sparkserve.monitor.view import history_view, status_view

    snapshot = take_snapshot(sampler, interval_s)
    console = Console(highlight=False)
    console.print(status_view(snapshot))
    console.print(history_view([r.name for r in snapshot.services], sampler.history, sampler.memory_history))


def _ollama_sources(stack_file: str | None, urls: list[str]):
    """Ollama servers to export: --ollama URLs, else the stack's Ollama services, else OLLAMA_HOST / the default."""
    from sparkserve.engines import get_engine
    from sparkserve.monitor.exporter import OllamaSource
    from sparkserve.runtime.native import service_url
    from sparkserve.stack.load import find_stack, load_stack

    if urls:
        return [OllamaSource(service=f"ollama-{i}" if len(urls) > 1 else "ollama", url=u.rstrip("/"))
                for i, u in enumerate(urls)], None
    path = find_stack(stack_file)
    if path is None:
        host = os.environ.get("OLLAMA_HOST", "").strip()
        url = host if host.startswith("http") else (f"http://{host}" if host else DEFAULT_OLLAMA)
        return [OllamaSource(service="ollama", url=url.rstrip("/"))], None
    loaded = load_stack(path)
    bind = loaded.spec.stack.bind
    sources = [OllamaSource(service=name, url=service_url(bind, svc.port))
               for name, svc in loaded.services.items() if get_engine(svc.engine).loaded_models_path]
    return sources, loaded


def _native_targets(loaded) -> Callable[[], list[Target]]:
    """Native services of the stack at each scrape: the pid the runtime recorded, else the process on the port."""
    from sparkserve.monitor.targets import Target, with_native_pid
    from sparkserve.runtime import native

    if loaded is None:
        return lambda: []
    bind = loaded.spec.stack.bind
    names = [name for name, svc in loaded.services.items() if svc.runtime == "native"]

    def targets() -> list[Target]:
        out = []
        for name in names:
            seen = native.observe(loaded.path, name)
            pid = seen.record.pid if seen.state == native.RUNNING and seen.record else None
            svc = loaded.services[name]
            out.append(with_native_pid(Target(name=name, engine=svc.engine, runtime="native",
                                              url=native.service_url(bind, svc.port), pid=pid)))
        return out

    return targets


def run_exporter(*, stack: str | None, port: int, bind: str, ollama: list[str], meminfo: str) -> None:
    """Serve the exporter until SIGTERM or SIGINT."""
    import ipaddress

    from sparkserve.monitor.exporter import SparkserveCollector, serve

    try:
        address = ipaddress.ip_address(bind)
    except ValueError:
        raise UserError(f"--bind expects an IP address, got {bind!r}") from None
    if not 0 <= port <= 65535:
        raise UserError(f"--port must be 0-65535, got {port}")
    sources, loaded = _ollama_sources(stack, ollama)
    collector = SparkserveCollector(sources, _native_targets(loaded), meminfo_path=meminfo)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    def ready(url: str) -> None:
        note = "" if address.is_loopback else " (reachable from the network: anyone can read these metrics)"
        print(f"serving Prometheus metrics on {url}{note}; Ollama: "
              f"{', '.join(s.url for s in sources) or 'none'}; SIGTERM or Ctrl-C stops", flush=True)

    try:
        serve(collector, bind, port, stop, ready)
    except OSError as exc:
        raise UserError(f"cannot listen on {bind}:{port} ({exc.strerror or exc}); pick another --port "
                        f"or stop what holds it (`sudo ss -ltnp 'sport = :{port}'`)") from None
    print("exporter stopped", flush=True)
