"""`render --monitoring`: Prometheus and Grafana join the compose project (valid by the compose-spec
package and compose-go's schema), listen on 127.0.0.1 only, scrape every vLLM service and the
exporter, and provision a dashboard whose queries read old and new vLLM metric names."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from sparkserve.engines.vllm import METRIC_ALIASES
from sparkserve.hardware.catalog import get_profile
from sparkserve.stack.init import default_stack_text
from test_compose import STACK, run_cli, validate


def render_monitoring(tmp_path: Path, stack_text: str, *flags: str) -> dict:
    (tmp_path / "sparkserve.toml").write_text(stack_text)
    result = run_cli("render", *(flags or ("--monitoring",)), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return validate((tmp_path / "docker-compose.yml").read_text())


def test_default_stack_with_monitoring(tmp_path):
    doc = render_monitoring(tmp_path, default_stack_text(get_profile("dgx-spark")))
    assert set(doc["services"]) == {"vllm-qwen3-32b", "ollama", "prometheus", "grafana", "sparkserve-exporter"}
    prom, graf, exp = (doc["services"][n] for n in ("prometheus", "grafana", "sparkserve-exporter"))
    for svc in (prom, graf, exp):
        assert svc["network_mode"] == "host" and "ports" not in svc  # nothing published beyond 127.0.0.1
        assert all(v.endswith(":ro") or v.split(":")[0] in doc["volumes"] for v in svc["volumes"])
    assert "--web.listen-address=127.0.0.1:9090" in prom["command"]
    stack_dir = str(tmp_path.resolve())
    assert exp["command"] == ["--stack", f"{stack_dir}/sparkserve.toml", "--bind", "127.0.0.1", "--port", "9400"]
    assert exp["volumes"] == [f"{stack_dir}:{stack_dir}:ro"] and exp["pid"] == "host"
    assert exp["image"].startswith("sparkserve-exporter:") and exp["build"] == {"context": "./monitoring/exporter"}
    dockerfile = (tmp_path / "monitoring/exporter/Dockerfile").read_text()
    assert (
        "FROM python:3.12-slim" in dockerfile and 'ENTRYPOINT ["python", "-m", "sparkserve", "exporter"]' in dockerfile
    )
    unit = (tmp_path / "monitoring/sparkserve-exporter.service").read_text()
    assert "-m sparkserve exporter --stack " in unit and "--port 9400" in unit
    assert graf["environment"]["GF_SERVER_HTTP_ADDR"] == "127.0.0.1"
    assert graf["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == "${GRAFANA_ADMIN_PASSWORD:-admin}"
    assert {"prometheus-data", "grafana-data", "vllm-compile-cache"} <= set(doc["volumes"])
    assert "GRAFANA_ADMIN_PASSWORD=\n" in (tmp_path / ".env.example").read_text()
    for svc in doc["services"].values():
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:")

    scrape = yaml.safe_load((tmp_path / "monitoring" / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in scrape["scrape_configs"]}
    assert jobs["vllm"]["static_configs"] == [
        {"targets": ["127.0.0.1:8000"], "labels": {"service": "vllm-qwen3-32b", "runtime": "compose"}}
    ]
    assert jobs["sparkserve-exporter"]["static_configs"] == [{"targets": ["127.0.0.1:9400"]}]
    assert scrape["global"]["scrape_interval"] == "5s"

    datasources = yaml.safe_load((tmp_path / "monitoring/grafana/provisioning/datasources/prometheus.yml").read_text())
    (ds,) = datasources["datasources"]
    assert ds["type"] == "prometheus" and ds["url"] == "http://127.0.0.1:9090" and ds["isDefault"] is True
    providers = yaml.safe_load((tmp_path / "monitoring/grafana/provisioning/dashboards/sparkserve.yml").read_text())
    assert providers["providers"][0]["options"]["path"] == "/etc/grafana/dashboards"

    dashboard = json.loads((tmp_path / "monitoring/grafana/dashboards/sparkserve.json").read_text())
    panels = {p["title"]: p for p in dashboard["panels"]}
    assert {
        "Requests running / waiting",
        "Tokens / s",
        "Time to first token",
        "Inter-token latency",
        "KV cache usage",
        "Preemptions / s",
        "Memory (unified on DGX Spark)",
    } <= set(panels)
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == ds["uid"] and panel["targets"]
        for target in panel["targets"]:
            assert target["expr"].count("(") == target["expr"].count(")")
    exprs = {t["legendFormat"]: t["expr"] for p in dashboard["panels"] for t in p["targets"]}
    ttft = [t["expr"] for t in panels["Time to first token"]["targets"]]
    assert [e.split(",")[0] for e in ttft] == [f"histogram_quantile({q}" for q in ("0.5", "0.9", "0.99")]
    assert all("vllm:time_to_first_token_seconds_bucket" in e for e in ttft)
    # One dashboard for old and new vLLM: both names of a renamed metric are queried.
    itl = panels["Inter-token latency"]["targets"][0]["expr"]
    assert all(f"{name}_bucket" in itl for name in METRIC_ALIASES["inter_token_latency_seconds"])
    kv = panels["KV cache usage"]["targets"][0]["expr"]
    assert "vllm:kv_cache_usage_perc or vllm:gpu_cache_usage_perc" in kv
    assert "sparkserve_memory_available_bytes" in exprs["available"]


def test_native_services_and_wildcard_bind_are_scraped_on_loopback(tmp_path):
    render_monitoring(tmp_path, STACK.format(bind="0.0.0.0"))
    scrape = yaml.safe_load((tmp_path / "monitoring" / "prometheus.yml").read_text())
    (vllm_job,) = [j for j in scrape["scrape_configs"] if j["job_name"] == "vllm"]
    assert {c["labels"]["service"]: c["targets"] for c in vllm_job["static_configs"]} == {
        "chat": ["127.0.0.1:9000"],
        "native-one": ["127.0.0.1:8100"],
    }


def test_monitoring_stays_until_removed(tmp_path):
    doc = render_monitoring(tmp_path, default_stack_text(get_profile("h100-sxm")))
    assert "prometheus" in doc["services"]
    again = render_monitoring(tmp_path, default_stack_text(get_profile("h100-sxm")), "--write-env")
    assert "grafana" in again["services"]  # a plain render (as `up` does) keeps it
    removed = render_monitoring(tmp_path, default_stack_text(get_profile("h100-sxm")), "--no-monitoring")
    assert set(removed["services"]) == {"vllm-qwen3-32b", "ollama"}
    assert not (tmp_path / "monitoring" / "prometheus.yml").exists()
    assert not (tmp_path / "monitoring/exporter/Dockerfile").exists()
    assert "prometheus-data" not in removed.get("volumes", {})


def test_monitoring_ports_come_from_the_stack(tmp_path):
    stack = (
        default_stack_text(get_profile("h100-sxm")) + "\n[monitoring]\nprometheus_port = 19090\nexporter_port = 19400\n"
    )
    doc = render_monitoring(tmp_path, stack)
    assert "--web.listen-address=127.0.0.1:19090" in doc["services"]["prometheus"]["command"]
    assert doc["services"]["sparkserve-exporter"]["command"][-1] == "19400"
    scrape = yaml.safe_load((tmp_path / "monitoring" / "prometheus.yml").read_text())
    (exporter_job,) = [j for j in scrape["scrape_configs"] if j["job_name"] == "sparkserve-exporter"]
    assert exporter_job["static_configs"] == [{"targets": ["127.0.0.1:19400"]}]
    (tmp_path / "sparkserve.toml").write_text(stack.replace("exporter_port", "exporter_prot"))
    bad = run_cli("render", "--monitoring", cwd=tmp_path)
    assert bad.returncode == 2 and "exporter_prot" in bad.stderr and "exporter_port" in bad.stderr
