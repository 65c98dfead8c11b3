"""`up`/`down`/`restart`/`logs`/`status` against a recording `docker` stand-in on PATH, with the
readiness loop talking to real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sparkserve.errors import UserError
from sparkserve.hardware.catalog import get_profile
from sparkserve.runtime import readiness
from sparkserve.runtime.docker import explain_failure, parse_ps

REPO = Path(__file__).resolve().parents[1]
FAKE_DOCKER = REPO / "tests" / "data" / "fake_docker" / "docker"
GIB = 1024**3


# --- real HTTP servers standing in for vLLM and Ollama --------------------------------------------

class FakeServer:
    """A ThreadingHTTPServer on 127.0.0.1 whose routes a test sets; it records every request."""

    def __init__(self, routes):
        self.routes = routes
        self.requests: list[tuple[str, str, dict, bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                outer.requests.append((self.command, self.path, dict(self.headers), body))
                status, payload = outer.routes(self.command, self.path, body)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _serve

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    def paths(self) -> list[str]:
        return [f"{m} {p}" for m, p, _, _ in self.requests]


def vllm_routes(model="Qwen/Qwen3-8B", unhealthy_polls=2, healthy=True):
    state = {"health": 0}

    def routes(method, path, body):
        if path == "/health":
            state["health"] += 1
            return (200, {}) if healthy and state["health"] > unhealthy_polls else (503, {"detail": "loading"})
        if path == "/v1/models":
            return 200, {"object": "list", "data": [{"id": model, "object": "model", "max_model_len": 16384}]}
        if path == "/v1/completions" and method == "POST":
            req = json.loads(body)
            return 200, {"id": "cmpl-1", "object": "text_completion", "model": req["model"],
                         "choices": [{"index": 0, "text": " there", "finish_reason": "length"}],
                         "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
        return 404, {"detail": "Not Found"}

    return routes


def ollama_routes(model="qwen3:4b"):
    state = {"pulled": False, "loaded": False}

    def routes(method, path, body):
        if path == "/api/version":
            return 200, {"version": "0.12.6"}
        if path == "/api/tags":
            return 200, {"models": [{"name": model, "size": 2_600_000_000}] if state["pulled"] else []}
        if path == "/api/pull":
            state["pulled"] = True
            events = [
                {"status": "pulling manifest"},
                {
                    "status": "pulling 3e4cb1417446",
                    "digest": "sha256:3e4c",
                    "total": 2_600_000_000,
                    "completed": 1_300_000_000,
                },
                {
                    "status": "pulling 3e4cb1417446",
                    "digest": "sha256:3e4c",
                    "total": 2_600_000_000,
                    "completed": 2_600_000_000,
                },
                {"status": "verifying sha256 digest"},
                {"status": "writing manifest"},
                {"status": "success"},
            ]
            return 200, "\n".join(json.dumps(e) for e in events).encode() + b"\n"
        if path == "/api/generate":
            state["loaded"] = True
            return 200, {"model": json.loads(body)["model"], "response": "", "done": True, "done_reason": "load"}
        if path == "/api/ps":
            return 200, {"models": [{"name": model, "size_vram": 3_500_000_000}] if state["loaded"] else []}
        return 404, {"error": "not found"}

    return routes


# --- readiness loop -----------------------------------------------------------------------------------


def test_vllm_readiness_goes_health_models_completion():
    with FakeServer(vllm_routes()) as server:
        said: list[str] = []
        target = readiness.Target("v", "vllm", f"http://127.0.0.1:{server.port}", "Qwen/Qwen3-8B", api_key="k-123")
        ready = readiness.wait_ready(target, timeout=10, say=said.append, poll=0.01)
    assert ready.model == "Qwen/Qwen3-8B"
    assert server.paths() == ["GET /health"] * 3 + ["GET /v1/models", "POST /v1/completions"]
    assert all(h.get("Authorization") == "Bearer k-123" for _, _, h, _ in server.requests)
    completion = json.loads(server.requests[-1][3])
    assert completion["max_tokens"] == 1 and completion["model"] == "Qwen/Qwen3-8B"
    assert said[0] == "v: engine up (/health)" and "warm-up completion" in said[-1]


def test_ollama_readiness_pulls_then_loads():
    with FakeServer(ollama_routes()) as server:
        pulls: list[tuple[str, int, int]] = []
        target = readiness.Target("o", "ollama", f"http://127.0.0.1:{server.port}", "qwen3:4b")
        ready = readiness.wait_ready(target, timeout=10, pull_progress=lambda *a: pulls.append(a), poll=0.01)
    assert ready.model == "qwen3:4b"
    assert server.paths() == [
        "GET /api/version",
        "GET /api/tags",
        "POST /api/pull",
        "POST /api/generate",
        "GET /api/ps",
    ]
    assert ("pulling 3e4cb1417446", 1_300_000_000, 2_600_000_000) in pulls and pulls[-1][0] == "success"
    assert json.loads(server.requests[3][3]) == {"model": "qwen3:4b", "prompt": "", "stream": False}


def test_readiness_times_out_with_the_reason():
    with FakeServer(vllm_routes(healthy=False)) as server:
        target = readiness.Target("v", "vllm", f"http://127.0.0.1:{server.port}", "m")
        with pytest.raises(
            UserError, match=r"v: the engine not ready at .*/health in time \(HTTP 503\); see 'sparkserve logs v'"
        ):
            readiness.wait_ready(target, timeout=0.2, poll=0.02)


def test_readiness_stops_when_the_container_dies():
    with FakeServer(vllm_routes(healthy=False)) as server:
        target = readiness.Target("v", "vllm", f"http://127.0.0.1:{server.port}", "m")
        with pytest.raises(UserError, match="v stopped while waiting for the engine: container exited"):
            readiness.wait_ready(target, timeout=10, alive=lambda: "container exited", poll=0.01)


def test_readiness_explains_a_missing_api_key():
    def routes(method, path, body):
        return (200, {}) if path == "/health" else (401, {"error": "Unauthorized"})

    with FakeServer(routes) as server:
        target = readiness.Target("v", "vllm", f"http://127.0.0.1:{server.port}", "m")
        with pytest.raises(UserError, match="wants an API key; set VLLM_API_KEY in .env"):
            readiness.wait_ready(target, timeout=5, poll=0.01)


def test_readiness_waits_through_a_closed_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    target = readiness.Target("v", "vllm", f"http://127.0.0.1:{port}", "m")
    with pytest.raises(UserError, match=r"in time \(ConnectError\)"):
        readiness.wait_ready(target, timeout=0.2, poll=0.02)


def test_progress_lines_pick_the_start_up_milestones():
    text = FAKE_DOCKER.read_text().split('VLLM_LOG = """\\\n')[1].split('"""')[0]
    assert readiness.progress_lines("vllm", text) == [
        "Model loading took 15.2 GiB memory and 27.200487 seconds",
        "Available KV cache memory: 33.31 GiB",
        "GPU KV cache size: 218,112 tokens",
        "Maximum concurrency for 16,384 tokens per request: 13.31x",
    ]


# --- checks before start ------------------------------------------------------------------------------


def test_memory_check_on_unified_memory():
    from sparkserve.commands.lifecycle import memory_check

    spark, h100 = get_profile("dgx-spark"), get_profile("h100-sxm")
    plenty = {
        "MemTotal": 128 * GIB,
        "MemFree": 20 * GIB,
        "MemAvailable": 115 * GIB,
        "Cached": 90 * GIB,
        "Buffers": 1 * GIB,
        "Shmem": 1 * GIB,
    }
    error, note = memory_check(spark, 109.5, plenty)
    assert error is None
    assert "115.0 GiB available for 109.5 GiB" in note and "90.0 GiB is page cache that could be dropped" in note
    assert "drop_caches" in note and "drop it before a large model starts" in note
    short = dict(plenty, MemAvailable=60 * GIB)
    error, _ = memory_check(spark, 109.5, short)
    assert error.startswith("only 60.0 GiB of unified memory is available but the services need 109.5 GiB")
    assert memory_check(h100, 109.5, short) == (None, None)
    assert memory_check(spark, 109.5, {}) == (None, None)


def test_architecture_check():
    from sparkserve.commands.lifecycle import check_architecture

    check_architecture(get_profile("dgx-spark"), machine="aarch64")
    check_architecture(get_profile("h100-sxm"), machine="AMD64")
    with pytest.raises(
        UserError, match=r"targets NVIDIA DGX Spark \(GB10\) \(aarch64 images\) but this machine is x86_64"
    ):
        check_architecture(get_profile("dgx-spark"), machine="x86_64")


@pytest.mark.parametrize(
    "stderr,expected",
    [
        (
            "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?",
            "the Docker daemon is not running; start it with: sudo systemctl start docker",
        ),
        (
            "permission denied while trying to connect to the Docker daemon socket at unix:///var/run/docker.sock",
            "no permission to use the Docker daemon",
        ),
        (
            'Error response from daemon: could not select device driver "nvidia" with capabilities: [[gpu]]',
            "Docker cannot reach the GPU (no NVIDIA runtime); install the NVIDIA Container Toolkit",
        ),
        ("Bind for 127.0.0.1:8000 failed: port is already allocated", "a port of the stack is already in use"),
        ("exec /usr/bin/vllm: exec format error", "an image is built for another CPU architecture"),
        ("something odd\nlast words", "docker compose up failed: last words"),
    ],
)
def test_docker_failures_become_fixes(stderr, expected):
    assert explain_failure("docker compose up", stderr).startswith(expected)


def test_parse_ps_reads_both_formats():
    line = {"Service": "a", "State": "running", "Health": "healthy", "ExitCode": 0}
    assert parse_ps(json.dumps(line)) == parse_ps(json.dumps([line]))
    assert parse_ps("") == []
    assert parse_ps(json.dumps(dict(line, State="exited", ExitCode=137)))[0].exit_code == 137


# --- the CLI with a docker stand-in -------------------------------------------------------------------

STACK = """
[stack]
hardware = "h100-sxm"

[services.vllm-small]
engine = "vllm"
model = "{model}"
port = {vllm_port}
env = {{ HF_TOKEN = "${{HF_TOKEN}}" }}

[services.vllm-small.args]
max_model_len = 16384
gpu_memory_utilization = 0.6

[services.ollama]
engine = "ollama"
model = "qwen3:4b"
port = {ollama_port}
"""


@pytest.fixture
def project(tmp_path):
    """A stack directory and a PATH whose `docker` records every call."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(f"#!{sys.executable}\n" + FAKE_DOCKER.read_text().split("\n", 1)[1])
    docker.chmod(0o755)
    work = tmp_path / "stack"
    work.mkdir()
    calls = tmp_path / "docker-calls.jsonl"

    class Project:
        dir = work

        def write(self, vllm_port=18000, ollama_port=18001, model="Qwen/Qwen3-8B"):
            (work / "sparkserve.toml").write_text(
                STACK.format(vllm_port=vllm_port, ollama_port=ollama_port, model=model)
            )
            if not (work / ".env").exists():
                (work / ".env").write_text("HF_TOKEN=\n")

        def run(self, *args, mode="ok", path=None, extra_env=None):
            env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "VLLM_API_KEY")}
            env.update(
                {
                    "PATH": path if path is not None else f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
                    "FAKE_DOCKER_LOG": str(calls),
                    "FAKE_DOCKER_MODE": mode,
                    "FAKE_DOCKER_SERVICES": "vllm-small,ollama",
                    "SPARKSERVE_POLL_S": "0.02",
                    "COLUMNS": "200",
                    **(extra_env or {}),
                }
            )
            return subprocess.run(
                [sys.executable, "-m", "sparkserve.cli", *args],
                cwd=work,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )

        def calls(self) -> list[list[str]]:
            if not calls.exists():
                return []
            return [json.loads(line) for line in calls.read_text().splitlines()]

        def compose_commands(self) -> list[str]:
            out = []
            for argv in self.calls():
                if argv[:1] == ["compose"]:
                    rest = argv[1:]
                    while rest and rest[0] in ("--file", "--project-directory"):
                        rest = rest[2:]
                    out.append(" ".join(rest))
                else:
                    out.append(" ".join(argv))
            return out

    return Project()


def test_up_starts_the_project_and_waits_for_every_model(project):
    with FakeServer(vllm_routes()) as vllm_server, FakeServer(ollama_routes()) as ollama_server:
        project.write(vllm_server.port, ollama_server.port)
        result = project.run("up")
    assert result.returncode == 0, result.stderr
    commands = project.compose_commands()
    assert commands[:4] == [
        "version",
        "info --format {{json .Runtimes}}",
        "ps --all --format json",
        "up --detach --remove-orphans vllm-small ollama",
    ]
    compose_argv = project.calls()[3]
    assert compose_argv[1:5] == [
        "--file",
        str(project.dir / "docker-compose.yml"),
        "--project-directory",
        str(project.dir),
    ]
    assert (project.dir / "docker-compose.yml").is_file() and (project.dir / ".env.example").is_file()
    out = result.stdout
    assert "vllm-small: Model loading took 15.2 GiB memory" in out
    assert "vllm-small: GPU KV cache size: 218,112 tokens" in out
    assert "ready vllm-small" in out and "ready ollama" in out
    assert f"vllm-small: http://127.0.0.1:{vllm_server.port}/v1" in out
    assert f"ollama: http://127.0.0.1:{ollama_server.port}" in out
    assert "POST /v1/completions" in vllm_server.paths() and "POST /api/pull" in ollama_server.paths()


def test_up_one_service_without_waiting(project):
    project.write()
    result = project.run("up", "ollama", "--no-wait")
    assert result.returncode == 0, result.stderr
    assert "up --detach --remove-orphans ollama" in project.compose_commands()


def test_up_rejects_an_unknown_service(project):
    project.write()
    result = project.run("up", "olama")
    assert result.returncode == 2
    assert "no service 'olama'" in result.stderr and "did you mean 'ollama'?" in result.stderr
    assert project.calls() == []


def test_up_refuses_a_stack_that_does_not_fit(project):
    project.write(model="meta-llama/Llama-3.1-70B-Instruct")
    result = project.run("up")
    assert result.returncode == 2
    assert "the stack does not fit on NVIDIA H100 SXM5 80GB" in result.stderr and "pass --force" in result.stderr
    assert project.calls() == []


def test_up_needs_a_token_for_gated_models(project):
    project.write(model="meta-llama/Llama-3.1-8B-Instruct")
    result = project.run("up", "--no-wait")
    assert result.returncode == 2
    assert "meta-llama/Llama-3.1-8B-Instruct is gated on Hugging Face and HF_TOKEN is empty" in result.stderr
    assert project.calls() == []
    (project.dir / ".env").write_text("HF_TOKEN=hf_test_token_value\n")
    again = project.run("up", "--no-wait")
    assert again.returncode == 0, again.stderr
    assert "hf_test_token_value" not in again.stdout + again.stderr
    assert "hf_test_token_value" not in (project.dir / "docker-compose.yml").read_text()


@pytest.mark.parametrize(
    "mode,message",
    [
        (
            "no-compose",
            "error: docker compose is not available: the compose plugin is missing ('docker compose version' failed);",
        ),
        ("no-daemon", "error: the Docker daemon is not running; start it with: sudo systemctl start docker"),
        (
            "no-nvidia",
            "error: Docker has no NVIDIA runtime, so containers cannot see the GPU; install the NVIDIA Container Toolkit",
        ),
        ("port-busy", "error: a port of the stack is already in use (Error response from daemon: driver failed"),
        ("arch", "error: an image is built for another CPU architecture"),
    ],
)
def test_up_docker_problems_each_give_their_fix(project, mode, message):
    project.write()
    result = project.run("up", mode=mode)
    assert result.returncode == 2
    assert result.stderr.startswith(message), result.stderr
    assert result.stderr.count("\n") == 1


def test_up_without_a_dotenv_file_starts(project):
    """.env is optional: compose fills the services' ${VAR:-} references with empty values."""
    project.write()
    (project.dir / ".env").unlink()
    result = project.run("up", "--no-wait")
    assert result.returncode == 0, result.stderr
    assert any(c.startswith("up ") for c in project.compose_commands()), project.compose_commands()


NO_COMPOSE_HINT = 'or run the services without Docker: runtime = "native" in their [services.<name>] tables'


@pytest.mark.parametrize("command", [["up"], ["down"], ["restart"], ["logs"], ["logs", "ollama"]])
def test_every_command_says_the_same_without_docker(project, tmp_path, command):
    project.write()
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    result = project.run(*command, path=str(empty))
    assert result.returncode == 2
    assert result.stderr.startswith(
        "error: docker compose is not available: docker not found on PATH; install Docker Engine"
    )
    assert NO_COMPOSE_HINT in result.stderr and result.stderr.count("\n") == 1


@pytest.mark.parametrize("command", [["up"], ["down"], ["restart"], ["logs"]])
def test_every_command_says_the_same_without_the_compose_plugin(project, command):
    project.write()
    result = project.run(*command, mode="no-compose")
    assert result.returncode == 2
    assert result.stderr.startswith("error: docker compose is not available: the compose plugin is missing")
    assert NO_COMPOSE_HINT in result.stderr and result.stderr.count("\n") == 1
    assert "Usage" not in result.stdout + result.stderr
    assert [c for c in project.compose_commands() if not c.startswith("version")] == []


def test_up_reports_a_container_that_exits(project):
    import socket

    with socket.socket() as s:  # an exited container listens nowhere: a port nothing holds
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    project.write(port, 18001)
    result = project.run("up", "vllm-small", mode="exited")
    assert result.returncode == 2
    assert "vllm-small stopped while waiting for the engine: container exited (exit code 1)" in result.stderr
    assert "CUDA out of memory" in result.stderr


def test_down_restart_logs_status(project):
    project.write()
    assert project.run("down").returncode == 2  # nothing rendered yet
    assert project.run("render").returncode == 0
    assert project.run("down").returncode == 0
    with FakeServer(vllm_routes(unhealthy_polls=0)) as vllm_server, FakeServer(ollama_routes()) as ollama_server:
        project.write(vllm_server.port, ollama_server.port)
        assert project.run("render").returncode == 0
        restarted = project.run("restart", "vllm-small")
        assert restarted.returncode == 0, restarted.stderr
        assert "ready vllm-small" in restarted.stdout
        status = project.run("status", "--json")
    assert project.run("logs", "-f", "--tail", "50", "vllm-small").returncode == 0
    commands = project.compose_commands()
    assert "down" in commands
    assert "restart vllm-small" in commands
    assert "logs --no-color --follow --tail=50 vllm-small" in commands
    rows = json.loads(status.stdout)["services"]
    assert [(r["service"], r["state"], r["answers"]) for r in rows] == [
        ("vllm-small", "running", True),
        ("ollama", "running", True),
    ]


def test_status_and_monitor_before_render_and_without_docker(project, tmp_path):
    """Every service gets a row, down, with what compose could not say; nothing exits 2."""
    project.write(_closed_port(), _closed_port())
    status = project.run("status", "--json", "--interval", "0.1")
    assert status.returncode == 0, status.stderr
    rows = json.loads(status.stdout)["services"]
    assert [(r["service"], r["state"], r["api_status"]) for r in rows] == [
        ("vllm-small", "not rendered", "down"),
        ("ollama", "not rendered", "down"),
    ]
    once = project.run("monitor", "--once", "--interval", "0.1")
    assert once.returncode == 0, once.stderr
    assert "vllm-small" in once.stdout and "ollama" in once.stdout and "(no services)" not in once.stdout
    assert project.calls() == []  # nothing rendered: docker is not asked

    assert project.run("render").returncode == 0
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    status = project.run("status", "--json", "--interval", "0.1", path=str(empty))
    assert status.returncode == 0, status.stderr
    states = [r["state"] for r in json.loads(status.stdout)["services"]]
    assert states == ["n/a (docker compose is not available: docker not found on PATH)"] * 2


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
