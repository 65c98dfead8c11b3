"""`runtime = "native"`: run a service's engine as a local process instead of a container.

Each service runs `vllm serve ...` (the same arguments compose gets, from the same builder) or
`ollama serve` in its own session, so its process group holds the engine and every worker it
forks and one signal reaches them all. Its state lives in `.sparkserve/` beside the stack file:

- `<name>.pid`: JSON with pid, process group, start tick, argv, port, model and a random marker.
  The start tick and argv tell the engine from an unrelated program that reused the pid; the
  marker (SPARKSERVE_ID in the environment of every process of the engine) decides which
  processes a stop may signal.
- `<name>.log`: the engine's stdout and stderr, copied by `runtime.logpump` and rotated at
  `[stack] log_max_mib` (the previous part, or the previous start's log, is `.log.1`).
- `<name>.lock`: held (flock) while one `sparkserve` starts the service, so two `up` calls
  never start two copies.

The directory must belong to the user and be writable by nobody else; its files are opened
without following symbolic links (a planted link is an error, never a write elsewhere), new
ones exclusively and readable by the owner only.

Secrets from `.env` reach the engine through its environment only; argv, pid files and
everything sparkserve prints hold none.
"""

from __future__ import annotations

import errno
import fcntl
import json
import math
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sparkserve.errors import UserError
from sparkserve.runtime import procs

if TYPE_CHECKING:
    from sparkserve.plan.planner import ServicePlan
    from sparkserve.stack.load import Stack
    from sparkserve.stack.schema import ServiceSpec

STATE_DIR = ".sparkserve"
ENV_FILE = ".env"
STOP_TIMEOUT_S = 30.0
DEFAULT_LOG_MAX_MIB = 64.0  # keep in step with stack.schema.DEFAULT_LOG_MAX_MIB
PID_FILE_MAX_BYTES = 1 << 20  # a pid file is a few hundred bytes; a larger one is not ours


# --- where things are -----------------------------------------------------------------------------

def state_dir(stack_path: Path) -> Path:
    return stack_path.resolve().parent / STATE_DIR


def checked_state_dir(stack_path: Path, *, create: bool = False) -> Path:
    """The state directory, refused when it is a link, not a directory, someone else's or
    writable by others (any of them could plant files sparkserve trusts)."""
    directory = state_dir(stack_path)
    if create:
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            pass
        except OSError as exc:
            raise UserError(f"{directory}: cannot create the state directory ({exc.strerror or exc})") from None
    try:
        st = os.lstat(directory)
    except FileNotFoundError:
        return directory
    if stat.S_ISLNK(st.st_mode):
        raise UserError(f"{directory} is a symbolic link; sparkserve keeps its state in a real directory: remove the "
                        "link and run again")
    if not stat.S_ISDIR(st.st_mode):
        raise UserError(f"{directory} is not a directory; remove it and run again")
    if st.st_uid != os.geteuid():
        raise UserError(f"{directory} belongs to uid {st.st_uid}, not to you (uid {os.geteuid()}); run sparkserve as "
                        "its owner, or remove it")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UserError(f"{directory} is writable by other users (mode {stat.S_IMODE(st.st_mode):o}); run "
                        f"'chmod 700 {directory}'")
    return directory


def open_state(path: Path, flags: int, mode: int = 0o600) -> int:
    """os.open for a file in the state directory: never through a symbolic link."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UserError(f"{path} is a symbolic link; sparkserve never follows links in its state directory: "
                            "remove it and run again") from None
        if exc.errno == errno.EEXIST:
            raise UserError(f"{path} appeared while sparkserve was creating it; remove it and run again") from None
        raise


def pid_file(stack_path: Path, name: str) -> Path:
    return state_dir(stack_path) / f"{name}.pid"


def log_file(stack_path: Path, name: str) -> Path:
    return state_dir(stack_path) / f"{name}.log"


def lock_file(stack_path: Path, name: str) -> Path:
    return state_dir(stack_path) / f"{name}.lock"


def find_executable(engine: str, configured: str | None, stack_path: Path) -> str:
    return locate_executable(engine, configured, stack_path)[0]


def locate_executable(engine: str, configured: str | None, stack_path: Path) -> tuple[str, str]:
    """The engine's executable and where it came from: `[stack] <engine>` (a path, or a name the engine
    knows, such as vLLM's "cpu" for its CPU build), then $SPARKSERVE_<ENGINE>, then PATH. Nothing is
    picked unasked: a GPU host that lacks vLLM must not quietly serve from its CPU build."""
    from sparkserve.engines import get_engine

    eng = get_engine(engine)
    named = eng.named_executable(configured, stack_path) if configured else None
    if named is not None:
        return named
    if configured:
        path = Path(configured).expanduser()
        if not path.is_absolute():
            path = stack_path.resolve().parent / path
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise UserError(f"{stack_path}: stack.{engine}: {path} is not an executable file")
        return str(path), f"stack.{engine}"
    variable = eng.executable_env
    from_env = os.environ.get(variable) if variable else None
    if from_env:
        if not (os.path.isfile(from_env) and os.access(from_env, os.X_OK)):
            raise UserError(f"${variable} is {from_env}, which is not an executable file")
        return from_env, f"${variable}"
    on_path = shutil.which(eng.executable or engine)
    if on_path:
        return on_path, "PATH"
    raise UserError(eng.not_found_message(stack_path.name))


# --- what to run ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Launch:
    """One service's process: argv, its full environment (which holds secrets: never print it),
    and where it answers."""

    name: str
    engine: str
    argv: list[str]
    env: dict[str, str] = field(repr=False)
    url: str
    model: str  # the name clients send (vLLM's served name, Ollama's tag)
    api_key: str | None = field(default=None, repr=False)
    executable_source: str = ""  # where argv[0] was found, said when it starts

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


def read_env_file(path: Path) -> dict[str, str]:
    from sparkserve.runtime.compose import read_env_file as read

    return read(path)


_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}")


def expand(value: str, variables: Mapping[str, str], where: str) -> str:
    """Fill in ${VAR}, ${VAR:-default}, ${VAR:?message} and ${VAR:+alt} the way compose does."""

    def one(m: re.Match) -> str:
        name, op, arg = m.group(1), m.group(2) or "", m.group(3) or ""
        value = variables.get(name)
        is_set = value is not None and (value != "" or not op.startswith(":"))
        if op.endswith("-"):
            return value if is_set and value is not None else arg
        if op.endswith("?"):
            if not is_set or value is None:
                raise UserError(f"{where}: {name} must be set in {ENV_FILE}{': ' + arg if arg else ''}")
            return value
        if op.endswith("+"):
            return arg if is_set else ""
        return value or ""

    return _REF.sub(one, value)


def served_name(svc: ServiceSpec) -> str:
    """The model name clients send (the engine knows where it is set, e.g. vLLM's served_model_name)."""
    from sparkserve.engines import get_engine

    return get_engine(svc.engine).served_name(svc.model, svc.args)


def service_url(bind: str, port: int) -> str:
    import ipaddress

    addr = ipaddress.ip_address(bind)
    host = ("127.0.0.1" if addr.version == 4 else "::1") if addr.is_unspecified else bind
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def build_launch(stack: Stack, name: str, plan: ServicePlan, executable: str,
                 base_env: Mapping[str, str] | None = None) -> Launch:
    """argv and environment for one native service; .env values and the service's `env` are
    layered over this process's environment."""
    from sparkserve.engines import get_engine

    svc = stack.services[name]
    engine = get_engine(svc.engine)
    settings = stack.spec.stack
    secrets = read_env_file(stack.path.parent / ENV_FILE)
    env = dict(os.environ if base_env is None else base_env)
    env.update(secrets)
    hf_cache = settings.hf_cache if "hf_cache" in settings.model_fields_set else None
    command = engine.native_command(svc, plan, bind=settings.bind, hf_cache=hf_cache,
                                    stack_dir=str(stack.path.resolve().parent))
    env.update(command.env)
    argv = [executable, *command.args]
    lookup = {**env}
    for key, value in svc.env.items():
        env[key] = expand(value, lookup, f"{stack.path}: services.{name}.env.{key}")
    api_key = (env.get(engine.api_key_env) or None) if engine.api_key_env else None
    return Launch(name=name, engine=svc.engine, argv=argv, env=env, url=service_url(settings.bind, svc.port),
                  model=served_name(svc), api_key=api_key)


# --- the pid file ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Record:
    """What the pid file says about a started service."""

    pid: int
    pgid: int
    start_ticks: int
    argv: list[str]
    engine: str
    url: str
    model: str
    started_at: float  # time.time()
    log: str
    marker: str  # SPARKSERVE_ID in the engine's environment: only processes carrying it are signalled
    group_start_ticks: int  # the group leader's (runtime.logpump's) start: no member of ours is older

    @classmethod
    def read(cls, path: Path) -> Record | None:
        """The record, or None when there is no pid file; anything else than a file sparkserve
        wrote (a link, wrong types, pid 0 or 1, our own group) raises ValueError."""
        try:
            fd = open_state(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        except (OSError, UserError) as exc:
            raise ValueError(f"unusable pid file {path}: {getattr(exc, 'strerror', None) or exc}") from None
        try:
            with os.fdopen(fd, "rb") as fh:
                raw = fh.read(PID_FILE_MAX_BYTES + 1)
            if len(raw) > PID_FILE_MAX_BYTES:
                raise ValueError("larger than any pid file sparkserve writes")
            data = json.loads(raw.decode("utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"unreadable pid file {path}: {exc}") from None
        problem = _record_problem(data)
        if problem:
            raise ValueError(f"pid file {path} was not written by this sparkserve: {problem}")
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})

    def write(self, path: Path) -> None:
        """Write to a new private file, then rename it over the pid file (readers see all or nothing)."""
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.unlink(missing_ok=True)
        fd = open_state(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(asdict(self), indent=2) + "\n")
        os.replace(tmp, path)


def _record_problem(data: object) -> str | None:
    """What makes pid-file data unusable, or None."""
    if not isinstance(data, dict):
        return "expected a JSON object"
    missing = [k for k in Record.__dataclass_fields__ if k not in data]
    if missing:
        return f"missing {', '.join(missing)}"
    for key in ("pid", "pgid"):
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, int) or value <= 1:
            return f"{key} must be an integer > 1, got {value!r}"
    if data["pgid"] == os.getpgrp():
        return f"pgid {data['pgid']} is sparkserve's own process group"
    for key in ("start_ticks", "group_start_ticks"):
        start = data[key]
        if isinstance(start, bool) or not isinstance(start, int) or start < 0:
            return f"{key} must be an integer >= 0, got {start!r}"
    if not isinstance(data["argv"], list) or not data["argv"] or not all(isinstance(a, str) for a in data["argv"]):
        return "argv must be a non-empty list of strings"
    for key in ("engine", "url", "model", "log"):
        if not isinstance(data[key], str):
            return f"{key} must be a string, got {data[key]!r}"
    if not isinstance(data["marker"], str) or not re.fullmatch(r"[0-9a-f]{32}", data["marker"]):
        return f"marker must be 32 hex digits, got {data['marker']!r}"
    started = data["started_at"]
    if isinstance(started, bool) or not isinstance(started, (int, float)) or not math.isfinite(started):
        return f"started_at must be a number, got {started!r}"
    return None


# --- what is running ------------------------------------------------------------------------------

RUNNING, CRASHED, STALE, STOPPED = "running", "crashed", "stale", "stopped"


@dataclass(frozen=True)
class Observed:
    """A service's state as the pid file and /proc tell it.

    running: the recorded process is alive and still runs the recorded argv.
    crashed: it is gone without `down` (workers of its group may still be alive: `leftover`).
    stale: the pid now belongs to another program, or the pid file is unreadable.
    stopped: no pid file.
    """

    name: str
    state: str
    record: Record | None = None
    detail: str = ""
    leftover: tuple[int, ...] = ()


def observe(stack_path: Path, name: str) -> Observed:
    try:
        record = Record.read(pid_file(stack_path, name))
    except ValueError as exc:
        return Observed(name, STALE, None, str(exc))
    if record is None:
        return Observed(name, STOPPED)
    info = procs.proc_info(record.pid)
    if info is not None and info.alive:
        if (info.start_ticks == record.start_ticks and procs.runs_argv(info, record.argv)
                and procs.carries_marker(record.pid, record.marker)):
            return Observed(name, RUNNING, record)
        from sparkserve.secrets import redact_argv

        now = " ".join(redact_argv(info.cmdline))[:120] or "a kernel thread"
        return Observed(name, STALE, record, f"pid {record.pid} now belongs to another program ({now})")
    ours = procs.group_is_ours(record.pgid, record.marker, record.group_start_ticks)
    leftover = tuple(m.pid for m in procs.group_members(record.pgid)) if ours else ()
    return Observed(name, CRASHED, record, f"pid {record.pid} is gone (it was not stopped by 'sparkserve down')",
                    leftover)


LOG_BLOCK = 64 * 1024
LOG_TAIL_MAX_BYTES = 16 * 1024 * 1024  # `logs --tail N` reads back at most this much


def log_tail(path: Path | str, lines: int = 12, secrets: list[str] | None = None) -> list[str]:
    """The last `lines` non-blank lines of a log (read backwards, never the whole file, never
    through a link), secret values and `--secret-flag value` pairs redacted."""
    from sparkserve.secrets import redact_text

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return []
    with os.fdopen(fd, "rb") as fh:
        end = fh.seek(0, os.SEEK_END)
        data = b""
        pos = end
        while pos > 0 and data.count(b"\n") <= lines and end - pos < LOG_TAIL_MAX_BYTES:
            step = min(LOG_BLOCK, pos)
            pos -= step
            fh.seek(pos)
            data = fh.read(step) + data
    text = data.decode(errors="replace")
    kept = [line.rstrip() for line in text.splitlines() if line.strip()][-lines:]
    return [redact_text(line, secrets) for line in kept]


def stream_log(path: Path | str, write, secrets: list[str] | None = None, start: int = 0) -> int:
    """Copy a log from byte `start` to `write` line by line (redacted) in fixed-size blocks;
    returns the offset reached. Memory stays at one block whatever the file's size."""
    from sparkserve.secrets import redact_text

    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as fh:
        fh.seek(start)
        pending = b""
        while block := fh.read(LOG_BLOCK):
            pending += block
            *whole, pending = pending.split(b"\n")
            for line in whole:
                write(redact_text(line.decode(errors="replace"), secrets) + "\n")
            if len(pending) > LOG_BLOCK:  # one very long line: pass it on in pieces
                write(redact_text(pending.decode(errors="replace"), secrets))
                pending = b""
        offset = fh.tell() - len(pending)
    return offset


def exit_reason(engine: str, returncode: int | None, log: Path, secrets: list[str] | None = None) -> str:
    """Why an engine stopped, in one line: its exit, the error line of its log, and a known fix."""
    import signal

    if returncode is None:
        how = "is gone"
    elif returncode < 0:
        try:
            how = f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            how = f"was killed by signal {-returncode}"
    else:
        how = f"exited with code {returncode}"
    text = "\n".join(log_tail(log, 400, secrets))
    from sparkserve.engines import get_engine

    why = get_engine(engine).startup_error(text)
    tail = log_tail(log, 1, secrets)
    message = f"{engine} {how}: {why or (tail[-1] if tail else 'no log output')}"
    try:
        from sparkserve.doctor.diagnose import diagnose

        findings = diagnose(text)
    except Exception:  # noqa: BLE001 - a diagnosis is a bonus; the log line above stands alone
        findings = []
    if findings:
        message += f"; fix: {findings[0].fix}"
    return f"{message} (log: {log})"


# --- start and stop -------------------------------------------------------------------------------

class StartLock:
    """flock on `<name>.lock` while this process starts the service; a second `up` gets a clear error."""

    def __init__(self, stack_path: Path, name: str):
        self.stack_path = stack_path
        self.path = lock_file(stack_path, name)
        self.name = name
        self._fd: int | None = None

    def acquire(self) -> StartLock:
        checked_state_dir(self.stack_path, create=True)
        while True:
            fd = open_state(self.path, os.O_RDWR | os.O_CREAT)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise UserError(f"{self.name} is being started by another sparkserve (pid {holder}); "
                                "wait for it, or stop it with 'sparkserve down'") from None
            if _same_file(fd, self.path):
                break
            os.close(fd)  # the holder removed the file between our open and our lock: take the new one
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def release(self) -> None:
        """Remove the lock file while still holding it (others re-check the inode), then unlock."""
        if self._fd is not None:
            if _same_file(self._fd, self.path):
                self.path.unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = None


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


class EngineProcess:
    """A started engine as the sparkserve that started it sees it: `poll()` is the engine's exit
    code (negative: killed by that signal), None while it runs; read from the log pump's status pipe."""

    def __init__(self, pump: subprocess.Popen, status_fd: int):
        self.pump = pump
        self.pid = 0
        self.returncode: int | None = None
        self._fd: int | None = status_fd
        self._buf = b""

    def first_line(self) -> str:
        """The pump's first report (blocking): "pid N" or "error MESSAGE"."""
        assert self._fd is not None
        while b"\n" not in self._buf:
            chunk = os.read(self._fd, 4096)
            if not chunk:
                break
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        os.set_blocking(self._fd, False)
        return line.decode(errors="replace").strip()

    def poll(self) -> int | None:
        if self.returncode is not None or self._fd is None:
            return self.returncode
        try:
            while chunk := os.read(self._fd, 4096):
                self._buf += chunk
            eof = True
        except BlockingIOError:
            eof = False
        for line in self._buf.decode(errors="replace").splitlines():
            if line.startswith("exit "):
                self.returncode = int(line.split()[1])
        if self.returncode is None and eof:  # the pump itself was killed (SIGKILL to the group)
            self.returncode = self.pump.wait()
        if self.returncode is not None:
            self.close()
        return self.returncode

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def start(stack_path: Path, launch: Launch, *,
          log_max_mib: float = DEFAULT_LOG_MAX_MIB) -> tuple[EngineProcess, Record]:
    """Start the engine in a new session under runtime.logpump (which copies its output to the
    log file, rotating it at `log_max_mib`), marked with a fresh SPARKSERVE_ID, and write the pid file.

    The returned EngineProcess reports the engine's exit. Call it inside the block
    that stops the engine on failure: the pid file is written before this returns.
    """
    import uuid

    checked_state_dir(stack_path, create=True)
    log = log_file(stack_path, launch.name)
    try:
        if stat.S_ISREG(os.lstat(log).st_mode) or os.path.islink(log):
            os.replace(log, log.with_name(log.name + ".1"))  # a rename moves a link itself, never its target
    except FileNotFoundError:
        pass
    out = open_state(log, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    marker = uuid.uuid4().hex
    status_read, status_write = os.pipe()
    pump = [sys.executable, "-m", "sparkserve.runtime.logpump", str(log), str(int(log_max_mib * 1024 * 1024)),
            str(status_write)]
    env = {**launch.env, procs.MARKER_ENV: marker, "SPARKSERVE_PUMP_ARGV": json.dumps(launch.argv)}
    try:
        pump_proc = subprocess.Popen(pump, stdout=out, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, env=env,
                                     cwd=stack_path.resolve().parent, start_new_session=True,
                                     pass_fds=(status_write,))
    except OSError as exc:
        os.close(status_read)
        raise UserError(f"{launch.name}: cannot start {sys.executable}: {exc.strerror or exc}") from None
    finally:
        os.close(out)
        os.close(status_write)
    proc = EngineProcess(pump_proc, status_read)
    status = proc.first_line()
    if not status.startswith("pid "):
        pump_proc.wait()
        proc.close()
        why = status.removeprefix("error ") or f"the launcher exited with {pump_proc.returncode}"
        raise UserError(f"{launch.name}: cannot run {launch.argv[0]}: {why}")
    pid = proc.pid = int(status.split()[1])
    info, leader = procs.proc_info(pid), procs.proc_info(pump_proc.pid)
    from sparkserve.secrets import redact_argv

    record = Record(pid=pid, pgid=pump_proc.pid, start_ticks=info.start_ticks if info else 0,
                    argv=redact_argv(launch.argv), engine=launch.engine, url=launch.url, model=launch.model,
                    started_at=time.time(), log=str(log), marker=marker,
                    group_start_ticks=leader.start_ticks if leader else 0)
    record.write(pid_file(stack_path, launch.name))
    return proc, record


def stop_timeout() -> float:
    """Seconds between SIGTERM and SIGKILL: STOP_TIMEOUT_S, or $SPARKSERVE_STOP_TIMEOUT_S."""
    try:
        value = float(os.environ.get("SPARKSERVE_STOP_TIMEOUT_S", STOP_TIMEOUT_S))
    except ValueError:
        return STOP_TIMEOUT_S
    return value if 0 <= value < math.inf else STOP_TIMEOUT_S


def stop_record(record: Record, *, timeout: float | None = None, kill_at_once: bool = False) -> str:
    """Stop the processes of a started engine: only those carrying its marker."""
    timeout = stop_timeout() if timeout is None else timeout
    return procs.stop_group(record.pgid, timeout=timeout, kill_at_once=kill_at_once, marker=record.marker,
                            since_ticks=record.group_start_ticks)


def stop(stack_path: Path, name: str, *, timeout: float | None = None, kill_at_once: bool = False) -> Observed:
    """Stop a service's processes (SIGTERM, SIGKILL after `timeout`) and remove its pid and lock
    files. Only processes carrying the pid file's marker are signalled: never a stranger that
    reused the pid or the group. Returns what was seen."""
    checked_state_dir(stack_path)
    seen = observe(stack_path, name)
    if seen.record is not None and seen.state in (RUNNING, CRASHED):
        record = seen.record
        info = procs.proc_info(record.pid) if seen.state == RUNNING else None
        if info is not None and info.pgid != record.pgid and info.pgid > 1:
            # A verified engine whose pid file names another group: stop the engine's real group.
            from dataclasses import replace

            record = replace(record, pgid=info.pgid)
        stop_record(record, timeout=timeout, kill_at_once=kill_at_once)
    forget(stack_path, name)
    return seen


def forget(stack_path: Path, name: str) -> None:
    """Remove the pid file, and the lock file unless a starting `up` holds it; logs stay (for
    'sparkserve logs' after a crash) until the next start rotates them."""
    pid_file(stack_path, name).unlink(missing_ok=True)
    lock = lock_file(stack_path, name)
    try:
        fd = open_state(lock, os.O_RDWR)
    except (FileNotFoundError, UserError):
        lock.unlink(missing_ok=True)  # unlink removes a link itself, never its target
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if _same_file(fd, lock):
            lock.unlink(missing_ok=True)
    except BlockingIOError:
        pass
    finally:
        os.close(fd)


def uptime_s(record: Record, now: float | None = None) -> float:
    return max(0.0, (now if now is not None else time.time()) - record.started_at)
