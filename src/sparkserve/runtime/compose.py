"""Turn a stack into a Docker Compose project: `docker-compose.yml` and `.env.example`.

Secrets never reach the generated files: each service names only the variables it needs as
`${VAR:-}` references, which compose fills in at start from the project's `.env` (optional: a
missing file or variable is empty). No `env_file`, so Ollama never sees HF_TOKEN.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from sparkserve.hardware.profile import HardwareProfile
from sparkserve.plan.planner import ServicePlan, StackPlan
from sparkserve.stack.load import Stack
from sparkserve.stack.schema import ServiceSpec, env_references

COMPOSE_FILE = "docker-compose.yml"
ENV_FILE = ".env"
ENV_EXAMPLE = ".env.example"
# NVIDIA's container guides start GPU containers with `--ulimit memlock=-1 --ulimit stack=67108864`:
# pinned host memory for CUDA copies and NCCL, and a 64 MiB stack for deep compiled kernels' threads.
ULIMITS = {"memlock": {"soft": -1, "hard": -1}, "stack": {"soft": 67108864, "hard": 67108864}}
ENV_EXAMPLE_NOTES = {
    "HF_TOKEN": "Hugging Face token (https://huggingface.co/settings/tokens); gated models need it",
    "VLLM_API_KEY": "set to make vLLM require 'Authorization: Bearer <key>' on /v1; empty leaves it open",
    "GRAFANA_ADMIN_PASSWORD": "Grafana's admin password for render --monitoring (empty: admin, changed at first login)",
}


@dataclass
class ComposeProject:
    """A rendered project: the compose document and the variables its `.env` should define."""

    document: dict
    env_names: list[str]
    skipped: list[str] = field(default_factory=list)  # runtime = "native": not run by compose


def build_project(stack: Stack, hw: HardwareProfile, plan: StackPlan) -> ComposeProject:
    from sparkserve.engines import get_engine

    plans = {p.name: p for p in plan.services}
    services: dict[str, dict] = {}
    named_volumes: set[str] = set()
    env_names = ["HF_TOKEN"]
    skipped: list[str] = []
    for name, svc in stack.services.items():
        if svc.runtime != "compose":
            skipped.append(name)
            continue
        services[name] = _service(stack, svc, hw, plans[name], named_volumes)
        for value in svc.env.values():
            env_names += [ref for ref in env_references(value) if ref not in env_names]
        env_names += [n for n in get_engine(svc.engine).secret_env_names() if n not in env_names]
    doc: dict = {"services": services}
    if named_volumes:
        doc["volumes"] = {v: {} for v in sorted(named_volumes)}
    return ComposeProject(document=doc, env_names=env_names, skipped=skipped)


def _service(stack: Stack, svc: ServiceSpec, hw: HardwareProfile, plan: ServicePlan,
             named_volumes: set[str]) -> dict:
    """The engine's fragment (image, command, environment, its volumes) plus what every service gets."""
    from sparkserve.engines import get_engine

    engine = get_engine(svc.engine)
    bind = stack.spec.stack.bind
    part = engine.compose_fragment(svc, plan, hw, stack.spec.stack.hf_cache)
    volumes = [*part.volumes, *(_volume(v, stack.path.parent, named_volumes) for v in svc.volumes)]
    named_volumes.update(part.named_volumes)
    out: dict = {"image": part.image}
    if part.entrypoint:
        out["entrypoint"] = part.entrypoint
    if part.command:
        out["command"] = [_escape(a) for a in part.command]
    container_port, health, environment = engine.container_port, engine.healthcheck_test(), part.environment
    shm = part.shm_size
    out["ports"] = [f"{_host(bind)}:{svc.port}:{container_port}"]
    if environment:
        out["environment"] = {k: _optional_refs(_escape(v)) for k, v in environment.items()}
    out["volumes"] = volumes
    if shm:
        out["shm_size"] = shm
    out["ulimits"] = ULIMITS
    out["deploy"] = {"resources": {"reservations": {"devices": [
        {"driver": "nvidia", "count": svc.gpus, "capabilities": ["gpu"]},
    ]}}}
    out["healthcheck"] = {"test": health, "interval": "30s", "timeout": "10s", "retries": 5,
                          "start_period": engine.start_period}
    out["restart"] = "unless-stopped"
    return out


def _host(bind: str) -> str:
    return f"[{bind}]" if ipaddress.ip_address(bind).version == 6 else bind


def _volume(volume: str, base: Path, named: set[str]) -> str:
    """Relative host paths resolve against the stack file; bare names are compose named volumes."""
    source, rest = volume.split(":", 1)
    if source.startswith((".", "/", "~")):
        if source.startswith("."):
            source = str((base / source).resolve())
    else:
        named.add(source)
    return f"{source}:{rest}"


def _escape(value: str) -> str:
    """Keep ${VAR} for compose to fill in; a literal `$` is written `$$` so compose leaves it alone."""
    return re.sub(r"\$(?!\{)", lambda _: "$$", value)


def _optional_refs(value: str) -> str:
    """`${VAR}` -> `${VAR:-}`: a variable missing from .env (or no .env) is empty, without a warning."""
    return re.sub(r"\$\{(\w+)\}", r"${\1:-}", value)


def compose_yaml(project: ComposeProject, source: str) -> str:
    from sparkserve.runtime import yamltext

    header = (f"Generated by `sparkserve render` from {source}: edit the stack file, not this one.\n"
              "Secrets come from .env (optional) through ${VAR:-} references; none are written here.")
    return yamltext.dump(project.document, header=header)


def env_example(project: ComposeProject) -> str:
    lines = ["# Copy to .env (chmod 600) and fill in; never commit .env.", ""]
    for name in project.env_names:
        note = ENV_EXAMPLE_NOTES.get(name)
        if note:
            lines.append(f"# {note}")
        lines.append(f"{name}=")
    return "\n".join(lines) + "\n"


def write_env_if_missing(directory: Path) -> Path | None:
    """Create `.env` readable by its owner only, holding an empty HF_TOKEN; None if it exists."""
    path = directory / ENV_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return None
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("HF_TOKEN=\n")
    os.chmod(path, 0o600)
    return path


@dataclass
class RenderResult:
    written: list[Path]
    env_created: Path | None
    project: ComposeProject


def render(stack: Stack, hw: HardwareProfile, plan: StackPlan, out_dir: Path, write_env: bool = False,
           monitoring: bool | None = None) -> RenderResult:
    """Write docker-compose.yml and .env.example into `out_dir`; `.env` only when asked and missing.

    `monitoring` adds Prometheus and Grafana (runtime/monitoring.py); None keeps whatever the
    last render chose, so `up` does not drop them.
    """
    from sparkserve.errors import UserError
    from sparkserve.runtime import monitoring as mon

    project = build_project(stack, hw, plan)
    with_monitoring = mon.is_rendered(out_dir) if monitoring is None else monitoring
    if with_monitoring:
        mon.add_to_project(stack, project.document, project.env_names)
    compose_path, example_path = out_dir / COMPOSE_FILE, out_dir / ENV_EXAMPLE
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        compose_path.write_text(compose_yaml(project, stack.path.name), encoding="utf-8")
        example_path.write_text(env_example(project), encoding="utf-8")
        created = write_env_if_missing(out_dir) if write_env else None
        extra = mon.write_files(stack, out_dir) if with_monitoring else mon.remove_files(out_dir)
    except OSError as exc:
        raise UserError(f"{out_dir}: cannot write the compose project ({exc.strerror or exc})") from None
    return RenderResult(written=[compose_path, example_path, *extra], env_created=created, project=project)


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines of a .env file (comments, blanks and `export` allowed); {} when absent.

    Values stay in memory: sparkserve only checks that a token is set and sends the API key
    to its own readiness probe; it never prints or writes them.
    """
    from sparkserve.errors import UserError

    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return {}
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text at byte {exc.start}; write it as KEY=value lines in UTF-8") from None
    out: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        if "\0" in line:
            raise UserError(f"{path}: line {number} holds a NUL character, which no environment can carry; remove it")
        key, value = line.removeprefix("export ").split("=", 1)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[key.strip()] = value
    return out
