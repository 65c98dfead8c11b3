"""Drive `docker compose` for a rendered project, and turn Docker's failures into fixes.

Every call goes through `docker` on PATH (tests put a recording stand-in there).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sparkserve.errors import UserError

DOCKER_INSTALL = "install Docker Engine: https://docs.docker.com/engine/install/"
COMPOSE_INSTALL = "install the compose plugin: sudo apt-get install docker-compose-plugin"
DAEMON_DOWN = ("start it with: sudo systemctl start docker "
               "(or add yourself to the docker group: sudo usermod -aG docker $USER, then log in again)")
NATIVE_HINT = (
    'or run the services without Docker: runtime = "native" in their [services.<name>] tables '
    "(vLLM and Ollama then run as local processes)"
)
NVIDIA_RUNTIME = (
    "install the NVIDIA Container Toolkit and register it: sudo apt-get install nvidia-container-toolkit && "
    "sudo nvidia-ctk runtime configure --runtime=docker && sudo systemctl restart docker"
)


@dataclass(frozen=True)
class ServiceState:
    """One row of `docker compose ps`."""

    service: str
    state: str  # running, exited, restarting, created, ...
    health: str  # healthy, unhealthy, starting, or "" without a healthcheck
    exit_code: int = 0


class Compose:
    """`docker compose --file <project>/docker-compose.yml ...` for one project directory."""

    def __init__(self, compose_file: Path):
        self.compose_file = compose_file

    def _base(self) -> list[str]:
        return [
            "docker",
            "compose",
            "--file",
            str(self.compose_file),
            "--project-directory",
            str(self.compose_file.parent),
        ]

    def run(self, *args: str, check: bool = True, capture: bool = True) -> subprocess.CompletedProcess:
        try:
            result = subprocess.run([*self._base(), *args], capture_output=capture, text=True)
        except FileNotFoundError:
            raise UserError(compose_missing("docker not found on PATH")) from None
        if check and result.returncode != 0:
            raise UserError(explain_failure(f"docker compose {args[0]}", result.stderr or ""))
        return result

    def up(self, services: list[str]) -> None:
        self.run("up", "--detach", "--remove-orphans", *services)

    def down(self) -> None:
        self.run("down")

    def restart(self, services: list[str]) -> None:
        self.run("restart", *services)

    def logs(self, services: list[str], follow: bool = False, tail: int | None = None) -> int:
        """Stream logs to the terminal; returns docker's exit code."""
        args = ["logs", "--no-color"] + (["--follow"] if follow else []) + ([f"--tail={tail}"] if tail else [])
        return self.run(*args, *services, check=False, capture=False).returncode

    def log_text(self, service: str, tail: int = 200) -> str:
        result = self.run("logs", "--no-color", "--no-log-prefix", f"--tail={tail}", service, check=False)
        return (result.stdout or "") + (result.stderr or "")

    def ps(self) -> list[ServiceState]:
        result = self.run("ps", "--all", "--format", "json")
        return parse_ps(result.stdout)


def parse_ps(text: str) -> list[ServiceState]:
    """`docker compose ps --format json`: one JSON object per line (v2.21+) or one JSON array (older)."""
    text = text.strip()
    if not text:
        return []
    rows = (
        json.loads(text) if text.startswith("[") else [json.loads(line) for line in text.splitlines() if line.strip()]
    )
    return [
        ServiceState(
            service=r.get("Service", ""),
            state=r.get("State", ""),
            health=r.get("Health", ""),
            exit_code=int(r.get("ExitCode") or 0),
        )
        for r in rows
    ]


def compose_missing(reason: str) -> str:
    """The one message every command gives when Docker or its compose plugin is missing."""
    return (
        f"docker compose is not available: {reason}; {DOCKER_INSTALL} and the compose plugin "
        f"(sudo apt-get install docker-compose-plugin), {NATIVE_HINT}"
    )


def require_compose() -> None:
    """`docker` on PATH and `docker compose version` answering, else the one message above."""
    if shutil.which("docker") is None:
        raise UserError(compose_missing("docker not found on PATH"))
    try:
        version = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UserError(compose_missing(f"'docker compose version' failed: {exc}")) from None
    if version.returncode != 0:
        raise UserError(compose_missing("the compose plugin is missing ('docker compose version' failed)"))


def preflight() -> None:
    """Docker, the compose plugin, a running daemon and the NVIDIA runtime, each with its fix."""
    require_compose()
    info = subprocess.run(["docker", "info", "--format", "{{json .Runtimes}}"], capture_output=True, text=True)
    if info.returncode != 0:
        raise UserError(explain_failure("docker info", info.stderr))
    try:
        runtimes = json.loads(info.stdout.strip() or "{}")
    except json.JSONDecodeError:
        runtimes = {}
    if "nvidia" not in runtimes:
        raise UserError(f"Docker has no NVIDIA runtime, so containers cannot see the GPU; {NVIDIA_RUNTIME}")


def explain_failure(what: str, stderr: str) -> str:
    """One line naming the cause of a failed docker call and its fix."""
    text = stderr.strip()
    lowered = text.lower()
    if "cannot connect to the docker daemon" in lowered or "is the docker daemon running" in lowered:
        return f"the Docker daemon is not running; {DAEMON_DOWN}"
    if "permission denied" in lowered and "docker.sock" in lowered:
        return "no permission to use the Docker daemon; sudo usermod -aG docker $USER, then log in again"
    if "could not select device driver" in lowered or "unknown or invalid runtime name: nvidia" in lowered:
        return f"Docker cannot reach the GPU (no NVIDIA runtime); {NVIDIA_RUNTIME}"
    if "address already in use" in lowered or "port is already allocated" in lowered:
        return (f"a port of the stack is already in use ({_last_line(text)}); "
                "stop what holds it or change the service's port")
    if "exec format error" in lowered or "does not match the detected host platform" in lowered:
        return (
            "an image is built for another CPU architecture; on a DGX Spark (arm64) use an arm64 image such as "
            "nvcr.io/nvidia/vllm, or set the stack's hardware to match this machine"
        )
    if "is not a docker command" in lowered or ("unknown command" in lowered and "compose" in lowered):
        return compose_missing("the compose plugin is missing")
    return f"{what} failed: {_last_line(text) or 'no output'}"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""
