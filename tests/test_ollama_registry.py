"""Ollama tags priced from the registry's manifest (the real GGUF layer sizes) when it answers, from the mapped
HF architecture otherwise; the manifest shape is the Docker registry v2 one Ollama documents."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sparkserve.models.catalog import resolve_model
from sparkserve.plan.memory import weight_bytes
from sparkserve.plan.quant import weight_format

GGUF_BYTES = 18_556_700_000


def _manifest(model_bytes: int) -> dict:
    def layer(media: str, size: int) -> dict:
        return {"mediaType": media, "digest": "sha256:" + "0" * 64, "size": size}

    return {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": layer("application/vnd.docker.container.image.v1+json", 489),
            "layers": [layer("application/vnd.ollama.image.model", model_bytes),
                       layer("application/vnd.ollama.image.template", 1_723),
                       layer("application/vnd.ollama.image.license", 11_343),
                       layer("application/vnd.ollama.image.params", 42)]}


class Registry:
    """A registry answering /v2/library/<model>/manifests/<tag> for the manifests it holds; records requests."""

    def __init__(self, manifests: dict[str, dict]) -> None:
        self.manifests, self.requests = manifests, []
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                registry.requests.append((self.path, self.headers.get("Accept")))
                found = registry.manifests.get(self.path)
                body = json.dumps(found or {"errors": [{"code": "MANIFEST_UNKNOWN"}]}).encode()
                self.send_response(200 if found else 404)
                self.send_header("Content-Type", "application/vnd.docker.distribution.manifest.v2+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch, tmp_path) -> Iterator[Registry]:
    reg = Registry({"/v2/library/qwen3.6/manifests/35b": _manifest(GGUF_BYTES)})
    monkeypatch.setenv("OLLAMA_REGISTRY", reg.url)
    monkeypatch.setenv("SPARKSERVE_MODELS_CACHE", str(tmp_path))
    yield reg
    reg.httpd.shutdown()
    reg.httpd.server_close()


def test_tag_weights_are_the_manifest_model_layer(registry: Registry) -> None:
    resolved = resolve_model("qwen3.6:35b")
    assert resolved.default_quant == "q4_k_m" and resolved.ollama_tag == "qwen3.6:35b"
    assert weight_bytes(resolved.spec, weight_format("q4_k_m"), "ollama") == pytest.approx(GGUF_BYTES)
    assert registry.requests == [("/v2/library/qwen3.6/manifests/35b",
                                  "application/vnd.docker.distribution.manifest.v2+json")]
    resolve_model("qwen3.6:35b")  # the second time from the on-disk cache
    assert len(registry.requests) == 1


def test_unknown_tag_or_other_quant_falls_back_to_the_hf_shape(registry: Registry) -> None:
    resolved = resolve_model("qwen3.6:35b-a3b-q8_0")
    assert resolved.spec.gguf_bytes == 0 and resolved.default_quant == "q8_0"
    estimate = weight_bytes(resolved.spec, weight_format("q8_0"), "ollama")
    assert estimate == pytest.approx(resolved.spec.params.total * 8.5 / 8, rel=0.02)
    known = resolve_model("qwen3.6:35b").spec
    assert weight_bytes(known, weight_format("q8_0"), "ollama") == pytest.approx(estimate)  # manifest is for q4_k_m


def test_offline_never_asks_the_registry(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_model("qwen3.6:35b").spec.gguf_bytes == 0
    assert registry.requests == []


def test_a_registry_that_misses_is_not_asked_again_on_every_plan(registry: Registry) -> None:
    resolve_model("qwen3.6:27b")  # a tag this registry does not hold: 404
    resolve_model("qwen3.6:27b")
    assert [path for path, _ in registry.requests] == ["/v2/library/qwen3.6/manifests/27b"]


def test_an_unreachable_registry_costs_one_attempt(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("OLLAMA_REGISTRY", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("SPARKSERVE_MODELS_CACHE", str(tmp_path))
    assert resolve_model("qwen3.6:35b").spec.gguf_bytes == 0
    assert list(tmp_path.rglob("35b.json")), "the miss is remembered on disk"
