"""Who can reach a service: the address it really listens on, and a warning when that is not this host.

A service bound to 0.0.0.0 (or any non-loopback address) answers everyone on the network. With
an API key that is a choice; without one (or on Ollama, which has no authentication) anyone
who can reach the port can use the model and the GPU.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping


def is_loopback(bind: str) -> bool:
    return ipaddress.ip_address(bind).is_loopback


def endpoint(bind: str, port: int, path: str = "") -> str:
    """What `up` prints: the address the service listens on, and for 0.0.0.0/:: how to reach it here."""
    addr = ipaddress.ip_address(bind)
    host = f"[{bind}]" if addr.version == 6 else bind
    text = f"http://{host}:{port}{path}"
    if addr.is_unspecified:
        local = "127.0.0.1" if addr.version == 4 else "[::1]"
        text += f" (every interface; from this host http://{local}:{port}{path})"
    return text


def auth_env(engine: str) -> str | None:
    """The environment variable that makes the engine require a key, or None when it has no authentication."""
    from sparkserve.engines import get_engine

    return get_engine(engine).api_key_env


def warnings(bind: str, services: Mapping[str, str], variables: Mapping[str, str]) -> list[str]:
    """One warning per exposed service (name -> engine), louder without authentication; [] on loopback."""
    if is_loopback(bind):
        return []
    fix = 'set bind = "127.0.0.1" under [stack] to keep it on this host'
    out = []
    for name, engine in services.items():
        key = auth_env(engine)
        if key is None:
            out.append(f"WARNING: {name} listens on {bind} and {engine} has no authentication: anyone who can reach "
                       f"this host can use it; {fix}, or put an authenticating proxy in front")
        elif not variables.get(key):
            out.append(f"WARNING: {name} listens on {bind} without an API key: anyone who can reach this host can use "
                       f"it; set {key} in .env (chmod 600), or {fix}")
        else:
            out.append(f"warning: {name} listens on {bind} (reachable from the network, {key} required); {fix} "
                       "if that is not intended")
    return out
