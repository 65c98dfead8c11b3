"""`render --monitoring`: Prometheus, Grafana and `sparkserve exporter` beside the stack, with a
provisioned dashboard.

All three run with host networking and listen on 127.0.0.1 only: Prometheus then reaches every
vLLM service (compose-published or native) and the exporter on the host at the addresses users
see, and nothing is opened to the network. Queries name vLLM metrics through
`engines.vllm.METRIC_ALIASES`, so one dashboard reads old and new vLLM releases.

The exporter runs in a slim image built from the rendered `monitoring/exporter/Dockerfile`
(python:3.12-slim + `pip install sparkserve`), or natively from the rendered systemd unit
`monitoring/sparkserve-exporter.service`; ports come from the stack's `[monitoring]` table.
"""

from __future__ import annotations

import ipaddress
import json
import shlex
import sys
from pathlib import Path

from sparkserve import __version__
from sparkserve.engines.vllm import METRIC_ALIASES
from sparkserve.runtime import yamltext
from sparkserve.stack.load import Stack

PROMETHEUS_IMAGE = "prom/prometheus:v3.5.0"  # LTS line; multi-arch (amd64, arm64)
GRAFANA_IMAGE = "grafana/grafana:11.6.0"  # multi-arch (amd64, arm64)
LOCAL = "127.0.0.1"
DATASOURCE_UID = "sparkserve-prometheus"
DIR = "monitoring"
PROMETHEUS_YML = f"{DIR}/prometheus.yml"
DATASOURCES_YML = f"{DIR}/grafana/provisioning/datasources/prometheus.yml"
DASHBOARDS_YML = f"{DIR}/grafana/provisioning/dashboards/sparkserve.yml"
DASHBOARD_JSON = f"{DIR}/grafana/dashboards/sparkserve.json"
EXPORTER_DOCKERFILE = f"{DIR}/exporter/Dockerfile"
EXPORTER_UNIT = f"{DIR}/sparkserve-exporter.service"
EXPORTER_BASE_IMAGE = "python:3.12-slim"  # Debian slim with CPython 3.12: sparkserve needs >= 3.11
EXPORTER_SERVICE = "sparkserve-exporter"
SERVICES = ("prometheus", "grafana", EXPORTER_SERVICE)
ENV_NAMES = ("GRAFANA_ADMIN_PASSWORD",)  # .env.example lists it (note in compose.ENV_EXAMPLE_NOTES)


def is_rendered(out_dir: Path) -> bool:
    """Monitoring stays in the project once rendered: a later `up` re-renders it too."""
    return (out_dir / PROMETHEUS_YML).is_file()


def _scrape_host(bind: str) -> str:
    """Where a service on `bind` answers from the host: wildcard binds answer on loopback."""
    addr = ipaddress.ip_address(bind)
    if addr.is_unspecified:
        return LOCAL if addr.version == 4 else "[::1]"
    return f"[{bind}]" if addr.version == 6 else bind


def prometheus_config(stack: Stack) -> dict:
    """Scrape every service whose engine serves Prometheus metrics (one job per engine), and the
    sparkserve exporter on the host."""
    from sparkserve.engines import get_engine

    exporter_port = stack.spec.monitoring.exporter_port
    host = _scrape_host(stack.spec.stack.bind)
    jobs: list[dict] = []
    by_engine: dict[str, list[dict]] = {}
    for name, svc in stack.services.items():
        if get_engine(svc.engine).metrics_path:
            by_engine.setdefault(svc.engine, []).append(
                {"targets": [f"{host}:{svc.port}"], "labels": {"service": name, "runtime": svc.runtime}})
    for engine, targets in by_engine.items():
        jobs.append({"job_name": engine, "metrics_path": get_engine(engine).metrics_path, "static_configs": targets})
    jobs.append({"job_name": "sparkserve-exporter", "metrics_path": "/metrics",
                 "static_configs": [{"targets": [f"{LOCAL}:{exporter_port}"]}]})
    return {"global": {"scrape_interval": "5s", "evaluation_interval": "15s"}, "scrape_configs": jobs}


def services(stack: Stack) -> dict[str, dict]:
    """The three compose services; configuration files are mounted read-only from ./monitoring."""
    ports = stack.spec.monitoring
    stack_dir = str(stack.path.parent.resolve())
    return {
        "prometheus": {
            "image": PROMETHEUS_IMAGE,
            "command": [
                "--config.file=/etc/prometheus/prometheus.yml",
                "--storage.tsdb.path=/prometheus",
                "--storage.tsdb.retention.time=15d",
                f"--web.listen-address={LOCAL}:{ports.prometheus_port}",
            ],
            "network_mode": "host",
            "volumes": [f"./{PROMETHEUS_YML}:/etc/prometheus/prometheus.yml:ro", "prometheus-data:/prometheus"],
            "restart": "unless-stopped",
        },
        "grafana": {
            "image": GRAFANA_IMAGE,
            "network_mode": "host",
            "environment": {
                "GF_SERVER_HTTP_ADDR": LOCAL,
                "GF_SERVER_HTTP_PORT": str(ports.grafana_port),
                "GF_SECURITY_ADMIN_PASSWORD": "${GRAFANA_ADMIN_PASSWORD:-admin}",
                "GF_AUTH_ANONYMOUS_ENABLED": "true",
                "GF_AUTH_ANONYMOUS_ORG_ROLE": "Viewer",
                "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH": "/etc/grafana/dashboards/sparkserve.json",
            },
            "volumes": [
                f"./{DIR}/grafana/provisioning:/etc/grafana/provisioning:ro",
                f"./{DIR}/grafana/dashboards:/etc/grafana/dashboards:ro",
                "grafana-data:/var/lib/grafana",
            ],
            "depends_on": ["prometheus"],
            "restart": "unless-stopped",
        },
        EXPORTER_SERVICE: {
            "build": {"context": f"./{DIR}/exporter"},
            "image": f"sparkserve-exporter:{__version__}",
            # The stack directory at its host path: the exporter finds the stack's Ollama services and
            # the pid files of its native ones where the host's sparkserve wrote them.
            "command": ["--stack", str(stack.path.resolve()), "--bind", LOCAL, "--port", str(ports.exporter_port)],
            "network_mode": "host",  # Ollama and the services' ports on 127.0.0.1
            "pid": "host",  # reads the services' processes (RSS, GPU memory per pid)
            "volumes": [f"{stack_dir}:{stack_dir}:ro"],
            "deploy": {"resources": {"reservations": {"devices": [
                {"driver": "nvidia", "count": "all", "capabilities": ["gpu", "utility"]},
            ]}}},
            "restart": "unless-stopped",
        },
    }


VOLUMES = ("prometheus-data", "grafana-data")


def exporter_dockerfile() -> str:
    """The exporter's image: the released sparkserve on a slim Python; SPARKSERVE= picks a wheel or URL."""
    return (f"# Generated by `sparkserve render --monitoring`: the image of the {EXPORTER_SERVICE} service.\n"
            f"# docker compose builds it; --build-arg SPARKSERVE=<wheel, path or URL> installs another build.\n"
            f"FROM {EXPORTER_BASE_IMAGE}\n"
            f"ARG SPARKSERVE=sparkserve=={__version__}\n"
            'RUN pip install --no-cache-dir "$SPARKSERVE"\n'
            'ENTRYPOINT ["python", "-m", "sparkserve", "exporter"]\n')


def exporter_unit(stack: Stack) -> str:
    """A systemd unit for the exporter as a native service, run by this Python's sparkserve."""
    argv = [sys.executable, "-m", "sparkserve", "exporter", "--stack", str(stack.path.resolve()),
            "--bind", LOCAL, "--port", str(stack.spec.monitoring.exporter_port)]
    return (
        "# Generated by `sparkserve render --monitoring`: `sparkserve exporter` as a native service.\n"
        f"# Install: systemctl --user link {Path(EXPORTER_UNIT).name} path; or copy it to ~/.config/systemd/user/,\n"
        f"# then: systemctl --user daemon-reload && systemctl --user enable --now {Path(EXPORTER_UNIT).name}\n"
        "[Unit]\n"
        "Description=sparkserve exporter: Ollama models, unified memory and GPU readings for Prometheus\n"
        "After=network-online.target\n\n"
        "[Service]\n"
        f"ExecStart={shlex.join(argv)}\n"
        f"WorkingDirectory={stack.path.parent.resolve()}\n"
        "Restart=on-failure\n"
        "RestartSec=5\n\n"
        "[Install]\n"
        "WantedBy=default.target\n"
    )


def datasource_config(stack: Stack) -> dict:
    return {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "Prometheus",
                "uid": DATASOURCE_UID,
                "type": "prometheus",
                "access": "proxy",
                "url": f"http://{LOCAL}:{stack.spec.monitoring.prometheus_port}",
                "isDefault": True,
                "jsonData": {"timeInterval": "5s"},
            }
        ],
    }


def dashboards_provider() -> dict:
    return {
        "apiVersion": 1,
        "providers": [
            {
                "name": "sparkserve",
                "folder": "sparkserve",
                "type": "file",
                "disableDeletion": False,
                "options": {"path": "/etc/grafana/dashboards"},
            }
        ],
    }


def alias(canonical: str, template: str = "{m}") -> str:
    """PromQL that reads whichever name of a vLLM metric the server exposes: `(a or b)`."""
    names = METRIC_ALIASES[canonical]
    parts = [template.format(m=name) for name in names]
    return parts[0] if len(parts) == 1 else "(" + " or ".join(parts) + ")"


def _rate(canonical: str, suffix: str = "") -> str:
    return alias(canonical, "rate({m}" + suffix + "[$__rate_interval])")


def _quantiles(canonical: str) -> list[tuple[str, str]]:
    return [
        (
            f"histogram_quantile({q}, sum by (le, service) ({_rate(canonical, '_bucket')}))",
            f"p{int(q * 100)} {{{{service}}}}",
        )
        for q in (0.5, 0.9, 0.99)
    ]


def _panel(pid: int, title: str, targets: list[tuple[str, str]], unit: str, x: int, y: int, w: int = 12) -> dict:
    ds = {"type": "prometheus", "uid": DATASOURCE_UID}
    return {
        "id": pid,
        "type": "timeseries",
        "title": title,
        "datasource": ds,
        "gridPos": {"h": 8, "w": w, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": ds, "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(targets)
        ],
    }


def dashboard() -> dict:
    """Requests, tokens/s, TTFT and ITL percentiles, KV cache, preemptions, memory and GPU."""
    by = "sum by (service) "
    panels = [
        (
            "Requests running / waiting",
            [
                (by + f"({alias('num_requests_running')})", "running {{service}}"),
                (by + f"({alias('num_requests_waiting')})", "waiting {{service}}"),
            ],
            "short",
        ),
        (
            "Finished requests / s",
            [
                (
                    f"sum by (service, finished_reason) ({_rate('request_success_total')})",
                    "{{service}} {{finished_reason}}",
                ),
            ],
            "reqps",
        ),
        (
            "Tokens / s",
            [
                (by + f"({_rate('generation_tokens_total')})", "generated {{service}}"),
                (by + f"({_rate('prompt_tokens_total')})", "prompt {{service}}"),
            ],
            "short",
        ),
        ("KV cache usage", [(f"max by (service) ({alias('kv_cache_usage_perc')})", "{{service}}")], "percentunit"),
        ("Time to first token", _quantiles("time_to_first_token_seconds"), "s"),
        ("Inter-token latency", _quantiles("inter_token_latency_seconds"), "s"),
        ("Preemptions / s", [(by + f"({_rate('num_preemptions_total')})", "{{service}}")], "short"),
        (
            "Prefix cache hit rate",
            [
                (
                    f"{by}({_rate('prefix_cache_hits_total')}) / {by}({_rate('prefix_cache_queries_total')})",
                    "{{service}}",
                ),
            ],
            "percentunit",
        ),
        (
            "Memory (unified on DGX Spark)",
            [
                ("sparkserve_memory_total_bytes", "total"),
                ("sparkserve_memory_available_bytes", "available"),
                ("sparkserve_memory_page_cache_bytes", "page cache (droppable)"),
                ("sparkserve_service_gpu_memory_bytes", "GPU memory {{service}}"),
                ("sparkserve_service_rss_bytes", "RSS {{service}}"),
                ("sparkserve_ollama_model_size_bytes", "Ollama {{model}}"),
            ],
            "bytes",
        ),
        (
            "GPU",
            [
                ("sparkserve_gpu_utilization_percent", "utilisation % GPU {{gpu}}"),
                ("sparkserve_gpu_power_watts", "power W GPU {{gpu}}"),
                ("sparkserve_gpu_temperature_celsius", "temperature C GPU {{gpu}}"),
            ],
            "short",
        ),
    ]
    return {
        "uid": "sparkserve",
        "title": "sparkserve",
        "tags": ["sparkserve", "vllm", "ollama"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "5s",
        "time": {"from": "now-30m", "to": "now"},
        "panels": [
            _panel(i + 1, title, targets, unit, x=12 * (i % 2), y=8 * (i // 2))
            for i, (title, targets, unit) in enumerate(panels)
        ],
    }


def files(stack: Stack) -> dict[str, str]:
    """Relative path -> text of every monitoring file."""
    note = "Generated by `sparkserve render --monitoring`: edit the stack file, not this one."
    return {
        PROMETHEUS_YML: yamltext.dump(prometheus_config(stack), header=note),
        DATASOURCES_YML: yamltext.dump(datasource_config(stack), header=note),
        DASHBOARDS_YML: yamltext.dump(dashboards_provider(), header=note),
        DASHBOARD_JSON: json.dumps(dashboard(), indent=2) + "\n",
        EXPORTER_DOCKERFILE: exporter_dockerfile(),
        EXPORTER_UNIT: exporter_unit(stack),
    }


def add_to_project(stack: Stack, document: dict, env_names: list[str]) -> None:
    """Put the three services and their volumes into a compose document built by `build_project`."""
    document.setdefault("services", {}).update(services(stack))
    volumes = document.setdefault("volumes", {})
    for name in VOLUMES:
        volumes.setdefault(name, {})
    for name in ENV_NAMES:
        if name not in env_names:
            env_names.append(name)


def remove_files(out_dir: Path) -> list[Path]:
    """Delete what `write_files` wrote (render --no-monitoring); returns []: nothing was written."""
    for rel in (PROMETHEUS_YML, DATASOURCES_YML, DASHBOARDS_YML, DASHBOARD_JSON, EXPORTER_DOCKERFILE, EXPORTER_UNIT):
        (out_dir / rel).unlink(missing_ok=True)
    return []


def write_files(stack: Stack, out_dir: Path) -> list[Path]:
    written = []
    for rel, text in files(stack).items():
        path = out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
