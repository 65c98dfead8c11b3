"""Is each service's host port free? Asked before anything starts, so a port another program
holds stops `up` with its fix instead of leaving a half-started stack behind."""

from __future__ import annotations

import errno
import socket
from collections.abc import Mapping
from pathlib import Path

from sparkserve.errors import UserError


def port_in_use(bind: str, port: int) -> bool:
    """Whether a socket already listens on `bind:port` (or on a wildcard address covering it).

    Binding a socket is the question the engine or docker-proxy will ask the kernel moments later.
    SO_REUSEADDR lets connections of a stopped server, still in TIME_WAIT, count as free, while
    Linux still refuses the bind while anything listens there. Other bind errors (a privileged
    port, an address this host lacks) are not "in use": docker reports those itself.
    """
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((bind, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def busy_ports(bind: str, ports: Mapping[str, int]) -> dict[str, int]:
    """The services (name -> port) whose port something already listens on."""
    return {name: port for name, port in ports.items() if port_in_use(bind, port)}


def check_ports_free(bind: str, ports: Mapping[str, int], stack_file: str | Path) -> None:
    """Raise one line naming each service whose port is taken and how to free or move it."""
    busy = busy_ports(bind, ports)
    if not busy:
        return
    taken = ", ".join(f"{name}: port {port}" for name, port in busy.items())
    first = next(iter(busy.values()))
    fields = " / ".join(f"services.{name}.port" for name in busy)
    verb = "is" if len(busy) == 1 else "are"
    raise UserError(
        f"{taken} on {bind} {verb} already in use by another process; stop it "
        f"(`sudo ss -ltnp 'sport = :{first}'` or `docker ps` shows which) or change {fields} in {stack_file}"
    )
