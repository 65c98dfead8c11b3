"""Port in use: real listening sockets on 127.0.0.1, and `up` with a recording `docker` stand-in on PATH."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from sparkserve.errors import UserError
from sparkserve.runtime.ports import busy_ports, check_ports_free, port_in_use

REPO = Path(__file__).resolve().parents[1]
FAKE_DOCKER = REPO / "tests" / "data" / "fake_docker" / "docker"


@contextmanager
def listening(host: str = "127.0.0.1") -> Iterator[int]:
    """A TCP socket listening on an OS-chosen port, as a server holding it would."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((host, 0))
        server.listen()
        yield server.getsockname()[1]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_listening_port_is_in_use_and_free_once_closed():
    with listening() as port:
        assert port_in_use("127.0.0.1", port)
    assert not port_in_use("127.0.0.1", port)


def test_a_listener_on_loopback_blocks_the_wildcard_address():
    with listening("127.0.0.1") as port:
        assert port_in_use("0.0.0.0", port)


def test_connections_of_a_stopped_server_do_not_count():
    """A server that just stopped leaves its connections in TIME_WAIT; the port is free for the next one."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = server.accept()
            accepted.close()  # the server side closes first, so its end lingers in TIME_WAIT
            client.recv(1)
    assert not port_in_use("127.0.0.1", port)


def test_busy_ports_names_only_the_taken_ones():
    free = closed_port()
    with listening() as taken:
        assert busy_ports("127.0.0.1", {"vllm": taken, "ollama": free}) == {"vllm": taken}


def test_check_names_service_port_and_fix():
    with listening() as port:
        with pytest.raises(UserError) as caught:
            check_ports_free("127.0.0.1", {"vllm-qwen3-32b": port}, "/srv/stack/sparkserve.toml")
    message = str(caught.value)
    assert message.startswith(f"vllm-qwen3-32b: port {port} on 127.0.0.1 is already in use by another process; stop it")
    assert message.endswith("or change services.vllm-qwen3-32b.port in /srv/stack/sparkserve.toml")
    assert "\n" not in message
    check_ports_free("127.0.0.1", {"vllm-qwen3-32b": port}, "sparkserve.toml")


# --- `sparkserve up` with a docker stand-in ---------------------------------------------------------------

STACK = """
[stack]
hardware = "h100-sxm"

[services.vllm-small]
engine = "vllm"
model = "Qwen/Qwen3-8B"
port = {vllm_port}

[services.vllm-small.args]
max_model_len = 16384
gpu_memory_utilization = 0.6

[services.ollama]
engine = "ollama"
model = "qwen3:4b"
port = {ollama_port}
"""


@pytest.fixture
def stack_dir(tmp_path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(f"#!{sys.executable}\n" + FAKE_DOCKER.read_text().split("\n", 1)[1])
    docker.chmod(0o755)
    work = tmp_path / "stack"
    work.mkdir()
    (work / ".env").write_text("HF_TOKEN=\n")
    return work


def up(
    work: Path, vllm_port: int, ollama_port: int, running: str
) -> tuple[subprocess.CompletedProcess, list[list[str]]]:
    """`sparkserve up --no-wait`; `running` lists the services `docker compose ps` reports running."""
    (work / "sparkserve.toml").write_text(STACK.format(vllm_port=vllm_port, ollama_port=ollama_port))
    calls = work.parent / "docker-calls.jsonl"
    calls.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "VLLM_API_KEY")}
    env.update(
        {
            "PATH": f"{work.parent / 'bin'}{os.pathsep}{os.environ['PATH']}",
            "FAKE_DOCKER_LOG": str(calls),
            "FAKE_DOCKER_MODE": "ok",
            "FAKE_DOCKER_SERVICES": running,
            "COLUMNS": "200",
        }
    )
    result = subprocess.run(
        [sys.executable, "-m", "sparkserve.cli", "up", "--no-wait"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    argv = [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []
    return result, argv


def compose_args(argv: list[str]) -> list[str]:
    """`docker compose --file F --project-directory D up ...` -> ["up", ...]; other docker calls as they are."""
    if argv[:1] != ["compose"]:
        return argv
    rest = argv[1:]
    while rest and rest[0] in ("--file", "--project-directory"):
        rest = rest[2:]
    return rest


def compose_command(argv: list[str]) -> str:
    return compose_args(argv)[0]


def test_up_refuses_a_port_another_process_holds(stack_dir):
    with listening() as port:
        result, calls = up(stack_dir, port, closed_port(), running="")
    assert result.returncode == 2
    assert result.stderr == (
        f"error: vllm-small: port {port} on 127.0.0.1 is already in use by another process; stop it "
        f"(`sudo ss -ltnp 'sport = :{port}'` or `docker ps` shows which) or change services.vllm-small.port in "
        f"{stack_dir / 'sparkserve.toml'}\n"
    )
    commands = [compose_command(argv) for argv in calls]
    assert calls and "up" not in commands and "restart" not in commands
    assert commands == ["version", "info", "ps"]


def test_up_names_every_taken_port(stack_dir):
    with listening() as vllm_port, listening() as ollama_port:
        result, calls = up(stack_dir, vllm_port, ollama_port, running="")
    assert result.returncode == 2
    assert result.stderr.startswith(
        f"error: vllm-small: port {vllm_port}, ollama: port {ollama_port} on 127.0.0.1 are already in use"
    )
    assert "change services.vllm-small.port / services.ollama.port in" in result.stderr
    assert result.stderr.count("\n") == 1
    assert "up" not in [compose_command(argv) for argv in calls]


def test_up_accepts_a_port_its_own_running_container_holds(stack_dir):
    with listening() as port:
        result, calls = up(stack_dir, port, closed_port(), running="vllm-small,ollama")
    assert result.returncode == 0, result.stderr
    assert compose_args(calls[-1]) == ["up", "--detach", "--remove-orphans", "vllm-small", "ollama"]
