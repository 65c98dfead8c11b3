"""Run an engine and copy its output to its log file, rotating the file at a size cap.

    python -m sparkserve.runtime.logpump LOG MAX_BYTES STATUS_FD -- ARGV...

Started in a new session by `runtime.native.start`, so it leads the engine's process group and
goes when the group is stopped. It forks the engine with stdout and stderr on a pipe, writes
"pid N" (or "error MESSAGE" when the engine cannot be executed) to STATUS_FD, then copies the
pipe to LOG: past MAX_BYTES, LOG becomes LOG.1 (replacing the previous one) and a new LOG is
created, never through a symbolic link. It exits with the engine's status (a signal is passed
on as the same signal), so its parent sees the engine's exit. Only the standard library: the
engine may run for weeks, this process must cost nothing.
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


def main(argv: list[str]) -> int:
    log, max_bytes, status_fd = argv[0], int(argv[1]), int(argv[2])
    command = argv[argv.index("--") + 1:]
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
    try:
        os.write(status_fd, (f"error {failed}\n" if failed else f"pid {pid}\n").encode())
    finally:
        os.close(status_fd)
    out = 1  # the log file sparkserve created for this start
    copier = threading.Thread(target=pump, args=(read_end, log, out, max_bytes), daemon=True)
    copier.start()
    _, status = os.waitpid(pid, 0)
    copier.join(timeout=2.0)  # workers that still hold the pipe may keep writing; their output is dropped
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    return os.waitstatus_to_exitcode(status) if not os.WIFSIGNALED(status) else 128 + os.WTERMSIG(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
