"""Run an engine and copy its output to its log file, rotating the file at a size cap.

    SPARKSERVE_PUMP_ARGV='["vllm", "serve", ...]' python -m sparkserve.runtime.logpump LOG MAX_BYTES STATUS_FD

Started in a new session by `runtime.native.start`, so it leads the engine's process group (the
command comes through the environment, so `ps` and `pgrep` see the engine's command line once).
It forks the engine with stdout and stderr on a pipe, writes "pid N" (or "error MESSAGE" when the
engine cannot be executed) to STATUS_FD, then copies the pipe to LOG: past MAX_BYTES, LOG becomes
LOG.1 (replacing the previous one) and a new LOG is created, never through a symbolic link. When
the engine exits it writes "exit CODE" to STATUS_FD (negative: killed by that signal) and keeps
copying until every process holding the pipe (the engine's workers) is gone: as the group's
leader, alive with its recorded start time and marker, it vouches that the group is still the
one sparkserve started, even when workers rewrite their /proc environ (setproctitle). Only the
standard library: the engine may run for weeks, this process must cost nothing.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

CHUNK = 64 * 1024


def _open_new(path: str) -> int | None:
    """A fresh log file; None when something (a link planted meanwhile) is in the way."""
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError:
        return None


def pump(source: int, log: str, out: int | None, max_bytes: int) -> None:
    """Copy `source` to the log until EOF, rotating past `max_bytes`; output that cannot be
    written is dropped, never left to fill the pipe (the engine would block on it)."""
    written = os.fstat(out).st_size if out is not None else 0
    while True:
        try:
            data = os.read(source, CHUNK)
        except InterruptedError:
            continue
        if not data:
            break
        if out is not None and written + len(data) > max_bytes and written > 0:
            os.close(out)
            try:
                os.replace(log, log + ".1")
            except OSError:
                pass
            out, written = _open_new(log), 0
        if out is not None:
            try:
                os.write(out, data)
                written += len(data)
            except OSError:
                pass
    if out is not None:
        os.close(out)


def _tell(fd: int, line: str) -> None:
    """A line for the starting sparkserve; it may have exited already (not waiting, or done)."""
    try:
        os.write(fd, line.encode())
    except OSError:
        pass


def main(argv: list[str]) -> int:
    import json

    log, max_bytes, status_fd = argv[0], int(argv[1]), int(argv[2])
    command = json.loads(os.environ.pop("SPARKSERVE_PUMP_ARGV"))
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # the engine decides when it is done; EOF ends the copy
    # A signal mask inherited from a starting sparkserve (which holds signals) must not reach the engine.
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    read_end, write_end = os.pipe()
    exec_read, exec_write = os.pipe()  # close-on-exec: EOF means the exec succeeded
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        os.close(exec_read)
        os.close(status_fd)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        os.dup2(write_end, 1)
        os.dup2(write_end, 2)
        os.close(write_end)
        try:
            os.execvp(command[0], command)
        except OSError as exc:
            os.write(exec_write, (exc.strerror or str(exc)).encode())
            os._exit(127)
    os.close(write_end)
    os.close(exec_write)
    failed = os.read(exec_read, 4096).decode(errors="replace")
    os.close(exec_read)
    _tell(status_fd, f"error {failed}\n" if failed else f"pid {pid}\n")
    out = 1  # the log file sparkserve created for this start
    copier = threading.Thread(target=pump, args=(read_end, log, out, max_bytes), daemon=True)
    copier.start()
    _, status = os.waitpid(pid, 0)
    _tell(status_fd, f"exit {os.waitstatus_to_exitcode(status)}\n")
    os.close(status_fd)
    copier.join()  # until the engine's workers, which share the pipe, are gone too
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        signal.signal(number, signal.SIG_DFL)
        os.kill(os.getpid(), number)
    return os.waitstatus_to_exitcode(status) if not os.WIFSIGNALED(status) else 128 + os.WTERMSIG(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
