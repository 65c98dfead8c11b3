"""`up`, `down`, `status` and `logs` for `runtime = "native"` services (the lifecycle commands
hand their native services to these functions; compose services stay with docker compose).

`up` checks everything before it starts anything: a running copy, a stale pid file, the ports,
MemAvailable, and vLLM's arguments against the installed vLLM's own parser. Then it starts one
service at a time and waits until it answers, with the memory guard watching, and stops the
service again if the wait fails, times out or is interrupted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shlex
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from sparkserve.errors import UserError
from sparkserve.runtime import native, procs

if TYPE_CHECKING:
    from rich.console import Console

    from sparkserve.stack.load import Stack
    from sparkserve.stack.stackplan import PlannedStack as Loaded


def native_names(stack: Stack) -> list[str]:
    return [n for n, s in stack.services.items() if s.runtime == "native"]


@contextlib.contextmanager
def _handling(signals: tuple[signal.Signals, ...], handler) -> Iterator[None]:
    """Install `handler` for `signals` for the block, then restore the previous handlers.

    Outside the main thread signals cannot be set: they are left alone."""
    previous = {}
    for sig in signals:
        try:
            previous[sig] = signal.signal(sig, handler)
        except ValueError:
            pass
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def interrupt_on_terminate():
    """SIGTERM and SIGHUP raise KeyboardInterrupt while starting, so the cleanup that Ctrl-C
    gets (stop the engine, remove its state) runs for them too."""

    def interrupt(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt(signal.Signals(signum).name)

    return _handling((signal.SIGTERM, signal.SIGHUP), interrupt)


def uninterruptible():
    """Ignore Ctrl-C, SIGTERM and SIGHUP while stopping an engine: a second Ctrl-C must not leave
    it half stopped with its pid file gone."""
    return _handling((signal.SIGINT, signal.SIGTERM, signal.SIGHUP), signal.SIG_IGN)


def fmt_duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


# --- up -------------------------------------------------------------------------------------------

def up(loaded: Loaded, names: list[str], *, timeout: float, wait: bool, console: Console,
       poll: float | None = None) -> list[native.Launch]:
    """Start the named native services (already running ones are left alone); returns those started."""
    with prepared(loaded, names, console) as todo:
        start_all(loaded, todo, timeout=timeout, wait=wait, console=console, poll=poll)
    return todo


@contextlib.contextmanager
def prepared(loaded: Loaded, names: list[str], console: Console) -> Iterator[list[native.Launch]]:
    """Every check that needs no engine process, holding each service's start lock until the
    block ends; yields the services still to start (running ones are reported and skipped)."""
    from sparkserve.runtime.memguard import Floor, below_floor, low_memory_message, meminfo_path, read_meminfo
    from sparkserve.runtime.ports import check_ports_free

    stack, path = loaded.stack, loaded.path
    launches = _launches(loaded, names)
    locks: list[native.StartLock] = []
    try:
        todo = []
        for name in names:
            # The lock first: while another `up` waits for the service, its pid file already says running.
            locks.append(native.StartLock(path, name).acquire())
            if _already_running(path, name, console):
                continue
            if native.observe(path, name).state in (native.CRASHED, native.STALE):
                seen = native.stop(path, name)  # stops leftover workers of a crashed engine, never a stranger
                console.print(f"{name}: removed a stale pid file ({seen.detail})", markup=False, soft_wrap=True)
            todo.append(launches[name])
        if todo:
            check_ports_free(stack.spec.stack.bind, {launch.name: launch.port for launch in todo}, path)
            low = below_floor(Floor(stack.spec.stack.min_mem_available_gib), read_meminfo(meminfo_path()))
            if low:
                raise UserError(low_memory_message(todo[0].name, *low, starting=False))
            for launch in todo:
                _check_arguments(path, launch, console)
        yield todo
    finally:
        for lock in locks:
            lock.release()


def start_all(loaded: Loaded, todo: list[native.Launch], *, timeout: float, wait: bool, console: Console,
              poll: float | None = None) -> None:
    """Start prepared services one at a time, each ready (or failed and stopped) before the next."""
    from sparkserve.runtime.memguard import Floor

    floor = Floor(loaded.stack.spec.stack.min_mem_available_gib)
    with interrupt_on_terminate():
        for launch in todo:
            _start_one(loaded.path, launch, floor, timeout=timeout, wait=wait, console=console, poll=poll,
                       log_max_mib=loaded.stack.spec.stack.log_max_mib)


def _launches(loaded: Loaded, names: list[str]) -> dict[str, native.Launch]:
    plans = {p.name: p for p in loaded.plan.services}
    out = {}
    for name in names:
        svc = loaded.stack.services[name]
        configured = getattr(loaded.stack.spec.stack, svc.engine, None)
        exe, source = native.locate_executable(svc.engine, configured, loaded.path)
        out[name] = dataclasses.replace(
            native.build_launch(loaded.stack, name, plans[name], exe), executable_source=source
        )
    return out


def _already_running(path: Path, name: str, console: Console) -> bool:
    seen = native.observe(path, name)
    if seen.state != native.RUNNING or seen.record is None:
        return False
    console.print(
        f"{name}: already running (pid {seen.record.pid}, up {fmt_duration(native.uptime_s(seen.record))}); "
        "'sparkserve down' stops it"
    )
    return True


def _check_arguments(path: Path, launch: native.Launch, console: Console) -> None:
    """The installed engine judges its arguments in seconds (vLLM: its own parser); a start would
    take minutes to fail."""
    from sparkserve.engines import get_engine

    engine = get_engine(launch.engine)
    if not engine.arg_check:
        return
    console.print(f"{launch.name}: {engine.arg_check}")
    verdict, message = engine.check_args(launch.argv[0], launch.argv[1:], launch.env)
    if verdict == "error":
        raise UserError(
            f"{launch.name}: the installed {engine.label} rejects the arguments: {message}"
            f"{_fix(engine.name, message)}; "
            f"they come from services.{launch.name}.args in {path} and the plan ('sparkserve plan'). "
            "Nothing was started"
        )
    if verdict == "skip":
        console.print(f"{launch.name}: note: arguments not checked before start ({message})")


def _fix(engine: str, message: str) -> str:
    try:
        from sparkserve.doctor.diagnose import diagnose

        findings = diagnose(f"{engine} serve: error: {message}")
    except Exception:  # noqa: BLE001 - the engine's own message stands without a fix
        return ""
    return f" ({findings[0].fix})" if findings else ""


def _start_one(
    path: Path,
    launch: native.Launch,
    floor,
    *,
    timeout: float,
    wait: bool,
    console: Console,
    poll: float | None,
    log_max_mib: float = native.DEFAULT_LOG_MAX_MIB,
) -> None:
    from sparkserve.runtime.memguard import MemoryGuard
    from sparkserve.runtime.readiness import Target, progress_lines, wait_ready
    from sparkserve.secrets import redact_argv, secret_values

    log = native.log_file(path, launch.name)
    hidden = secret_values(launch.env)
    if launch.executable_source:
        console.print(
            f"{launch.name}: {launch.engine} {launch.argv[0]} (from {launch.executable_source})",
            markup=False,
            soft_wrap=True,
        )
    console.print(f"starting {launch.name}: {shlex.join(redact_argv(launch.argv))}", markup=False, soft_wrap=True)
    console.print(f"  log: {log}", markup=False, soft_wrap=True)
    record: native.Record | None = None
    guard = None
    try:
        with procs.deferred_signals():  # a signal now arrives after `record` is set, inside this try
            proc, record = native.start(path, launch, log_max_mib=log_max_mib)
        started = record
        def breach(_msg: str) -> None:
            native.stop_record(started, kill_at_once=True)

        guard = MemoryGuard(launch.name, floor, on_breach=breach)
        if not wait:
            console.print(f"{launch.name}: started (pid {record.pid}); not waiting, so the memory guard is off")
            return
        shown: set[str] = set()

        def alive() -> str | None:
            if guard.tripped:
                return guard.tripped
            code = proc.poll()
            return None if code is None else native.exit_reason(launch.engine, code, log, hidden)

        def tick() -> None:
            for line in progress_lines(launch.engine, "\n".join(native.log_tail(log, 200, hidden))):
                if line not in shown:
                    shown.add(line)
                    console.print(f"  {launch.name}: {line}", markup=False, soft_wrap=True)

        target = Target(
            name=launch.name, engine=launch.engine, base_url=launch.url, model=launch.model, api_key=launch.api_key
        )
        with guard:
            ready = wait_ready(
                target,
                timeout=timeout,
                alive=alive,
                say=console.print,
                tick=tick,
                poll=poll if poll is not None else float(os.environ.get("SPARKSERVE_POLL_S", "1")),
            )
        tick()
        console.print(
            f"[green]ready[/] {launch.name}: {ready.url} ({ready.model}, pid {record.pid}, {ready.seconds:.0f} s)"
        )
    except BaseException as exc:
        if record is None:
            raise
        with uninterruptible():
            native.stop_record(record)
            proc.poll()
            native.pid_file(path, launch.name).unlink(missing_ok=True)
        if guard is not None and guard.tripped:
            raise UserError(guard.tripped) from None
        if isinstance(exc, KeyboardInterrupt):
            console.print(f"{launch.name}: interrupted; stopped it (pid {record.pid})")
        raise


# --- down, status, logs ---------------------------------------------------------------------------


def down(loaded: Loaded, names: list[str], console: Console) -> None:
    for name in names:
        with uninterruptible():
            seen = native.stop(loaded.path, name)
        pid = seen.record.pid if seen.record else "?"
        if seen.state == native.RUNNING:
            console.print(f"stopped {name} (pid {pid})")
        elif seen.state == native.CRASHED:
            extra = f"; stopped {len(seen.leftover)} leftover process(es) of its group" if seen.leftover else ""
            console.print(
                f"{name} was not running (pid {pid} had exited){extra}; removed its pid file",
                soft_wrap=True,
            )
        elif seen.state == native.STALE:
            console.print(f"{name}: removed a stale pid file ({seen.detail})", markup=False, soft_wrap=True)
        else:
            console.print(f"{name}: not running")


def print_problems(native_rows: list[dict], console: Console) -> None:
    """Below the table: why a crashed or stale service is not running, with its last log lines."""
    for row in native_rows:
        if row["state"] == native.CRASHED:
            console.print(f"{row['service']}: {row['detail']}; last lines of {row['log']}:", markup=False)
            for line in row.get("log_tail", []):
                console.print(f"  {line}", markup=False, soft_wrap=True)
            if row.get("leftover_pids"):
                console.print(
                    f"  processes {', '.join(map(str, row['leftover_pids']))} of its group still run; "
                    "'sparkserve down' stops them",
                    markup=False,
                )
        elif row["state"] == native.STALE:
            console.print(
                f"{row['service']}: stale pid file: {row['detail']}; 'sparkserve up' or 'down' cleans it", markup=False
            )


def logs(loaded: Loaded, name: str, *, follow: bool, tail: int | None) -> None:
    """Print a native service's log file (streamed in blocks, secrets redacted); --follow keeps
    printing, across rotations, until Ctrl-C."""
    import sys

    from sparkserve.secrets import known_values

    native.checked_state_dir(loaded.path)
    path = native.log_file(loaded.path, name)
    if not path.exists() and not path.is_symlink():
        raise UserError(f"no log for {name} yet ({path}); start it with 'sparkserve up {name}'")
    if path.is_symlink():
        raise UserError(f"{path} is a symbolic link; sparkserve never follows links in its state directory: remove it")
    hidden = known_values(loaded.path.parent / native.ENV_FILE)

    def write(text: str) -> None:
        sys.stdout.write(text)

    try:
        if tail:
            for line in native.log_tail(path, tail, hidden):
                write(line + "\n")
            offset = path.stat().st_size
        else:
            offset = native.stream_log(path, write, hidden)
        sys.stdout.flush()
        if not follow:
            return
        inode = path.stat().st_ino
        while True:
            try:
                now = path.stat()
            except FileNotFoundError:
                now = None
            if now is not None and now.st_ino != inode:  # rotated: the rest of the old part is in .log.1
                inode, offset = now.st_ino, 0
            if now is not None and now.st_size > offset:
                offset = native.stream_log(path, write, hidden, start=offset)
                sys.stdout.flush()
            else:
                time.sleep(0.5)
    except KeyboardInterrupt:
        return
    except BrokenPipeError:  # `sparkserve logs | head`
        return
