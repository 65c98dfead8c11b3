"""`sparkserve pull` through the real download code: huggingface_hub's snapshot_download against the local
Hub-shaped server (tests/hub_server.py), interrupted and resumed; Ollama's /api/pull stream against the
Ollama stand-in; and doctor's disk check counting the download, not the in-memory size.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from hub_server import HubRepo, HubServer, safetensors_file

REPO_ROOT = Path(__file__).resolve().parents[1]
FAKE_OLLAMA = REPO_ROOT / "tests" / "data" / "fake_ollama" / "ollama"
HIDDEN, LAYERS, VOCAB = 1024, 2, 32000
CONFIG = {
    "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": HIDDEN, "num_hidden_layers": LAYERS,
    "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 128, "intermediate_size": 3072,
    "vocab_size": VOCAB, "max_position_embeddings": 8192, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
}


def _tensors(layers: range) -> dict[str, tuple[str, tuple[int, ...]]]:
    t: dict[str, tuple[str, tuple[int, ...]]] = {}
    for i in layers:
        p = f"model.layers.{i}"
        for proj, shape in (("q_proj", (1024, HIDDEN)), ("k_proj", (512, HIDDEN)), ("v_proj", (512, HIDDEN)),
                            ("o_proj", (HIDDEN, 1024))):
            t[f"{p}.self_attn.{proj}.weight"] = ("BF16", shape)
        for proj, shape in (("gate_proj", (3072, HIDDEN)), ("up_proj", (3072, HIDDEN)), ("down_proj", (HIDDEN, 3072))):
            t[f"{p}.mlp.{proj}.weight"] = ("BF16", shape)
    return t


def publish(hub: HubServer, repo_id: str) -> HubRepo:
    shard1 = safetensors_file({"model.embed_tokens.weight": ("BF16", (VOCAB, HIDDEN)), **_tensors(range(1))})
    shard2 = safetensors_file({**_tensors(range(1, LAYERS)), "model.norm.weight": ("BF16", (HIDDEN,)),
                               "lm_head.weight": ("BF16", (VOCAB, HIDDEN))})
    files = {
        "config.json": json.dumps(CONFIG).encode(),
        "tokenizer.json": b'{"version": "1.0", "model": {"type": "BPE"}}',
        "generation_config.json": b'{"do_sample": true}',
        "model-00001-of-00002.safetensors": shard1,
        "model-00002-of-00002.safetensors": shard2,
        "model.safetensors.index.json": b'{"weight_map": {}}',
        "consolidated.safetensors": safetensors_file({"w": ("BF16", (4096, 4096))}),  # Mistral layout: vLLM skips
        "original/consolidated.00.pth": b"pickle",
        "README.md": b"# a model card",
    }
    return hub.add(HubRepo(repo_id, files))


def write_stack(directory: Path, body: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sparkserve.toml").write_text(body)
    return directory


def start_pull(cwd: Path, *args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"} | {"COLUMNS": "120"}
    return subprocess.Popen([sys.executable, "-m", "sparkserve", "pull", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def pull(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    proc = start_pull(cwd, *args)
    out, err = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def snapshot(cache: Path, repo: HubRepo) -> Path:
    return cache / "hub" / f"models--{repo.repo_id.replace('/', '--')}" / "snapshots" / repo.commit


def test_pull_downloads_what_vllm_loads_and_resumes_after_an_interruption(tmp_path, hub_server: HubServer):
    repo = publish(hub_server, "acme/Pull-Qwen3")
    cache = tmp_path / "hf"
    stack = write_stack(tmp_path / "stack", f"""
[stack]
hardware = "h100-sxm"
hf_cache = "{cache}"

[services.chat]
engine = "vllm"
model = "{repo.repo_id}"
port = 8000
""")
    (stack / ".env").write_text("HF_TOKEN=hf_pull_secret_value\n")
    (stack / ".env").chmod(0o600)
    big = "model-00001-of-00002.safetensors"

    hub_server.chunk_delay_s = 0.1
    try:
        first = start_pull(stack)
        blobs = cache / "hub" / f"models--{repo.repo_id.replace('/', '--')}" / "blobs"
        t0 = time.monotonic()
        def partial_mib() -> float:
            parts = list(blobs.glob("*.sparkserve-partial")) if blobs.is_dir() else []
            return max((p.stat().st_size for p in parts), default=0) / 2**20

        while partial_mib() < 3:
            assert first.poll() is None, first.communicate()
            assert time.monotonic() - t0 < 120, "the download never got going"
            time.sleep(0.05)
        os.killpg(first.pid, signal.SIGKILL)  # as a lost connection or a killed terminal would
        first.wait()
    finally:
        hub_server.chunk_delay_s = 0.0
    partial = max(p.stat().st_size for p in blobs.glob("*.sparkserve-partial"))
    assert not (snapshot(cache, repo) / big).exists()

    done = pull(stack)
    assert done.returncode == 0, done.stderr
    assert "pulled chat: acme/Pull-Qwen3" in done.stdout
    got = sorted(str(p.relative_to(snapshot(cache, repo))) for p in snapshot(cache, repo).rglob("*") if p.is_file())
    assert got == ["config.json", "generation_config.json", "model-00001-of-00002.safetensors",
                   "model-00002-of-00002.safetensors", "model.safetensors.index.json", "tokenizer.json"]
    for name in got:
        content = repo.files[name]
        data = (snapshot(cache, repo) / name).read_bytes()
        assert data == (content if isinstance(content, bytes) else content.read(0, content.size))
    resumed = [r for r in hub_server.requests if r.path.endswith(big) and r.method == "GET" and r.range]
    assert resumed and int(resumed[-1].range.split("=")[1].split("-")[0]) >= partial > 0, resumed
    assert not any("consolidated" in r.path or "README" in r.path for r in hub_server.requests if r.method == "GET")
    assert all(r.token == "hf_pull_secret_value" for r in hub_server.requests if "Pull-Qwen3" in r.path)
    assert "hf_pull_secret_value" not in done.stdout + done.stderr

    before = len(hub_server.requests)
    again = pull(stack, "chat")  # everything there: nothing downloaded twice
    assert again.returncode == 0, again.stderr
    assert not [r for r in hub_server.requests[before:] if r.method == "GET" and "/resolve/" in r.path]


def test_pull_through_ollama_streams_its_progress(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "ollama.jsonl"
    server = subprocess.Popen([sys.executable, str(FAKE_OLLAMA), "serve"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True,
                              env=os.environ | {"OLLAMA_HOST": f"127.0.0.1:{port}", "FAKE_OLLAMA_LOG": str(log),
                                                "OLLAMA_MODELS": str(tmp_path / "models")})
    try:
        deadline = time.monotonic() + 30
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            assert time.monotonic() < deadline and server.poll() is None
            time.sleep(0.05)
        stack = write_stack(tmp_path / "stack", f"""
[stack]
hardware = "h100-sxm"

[services.local]
engine = "ollama"
model = "qwen3:8b"
port = {port}
runtime = "native"
""")
        result = pull(stack, "local")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=20)
    assert result.returncode == 0, result.stderr
    assert "pulling 3e4cb1417446" in result.stdout and "2.6/2.6 GB" in result.stdout
    assert "pulled local: qwen3:8b" in result.stdout
    asked = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(e["path"], e["body"].get("model")) for e in asked if e.get("event") == "request"] == [
        ("/api/pull", "qwen3:8b")]
    assert (tmp_path / "models" / "manifests" / "registry.ollama.ai" / "library" / "qwen3" / "8b").is_file()


def test_pull_names_an_unknown_service_and_a_stopped_ollama(tmp_path):
    stack = write_stack(tmp_path / "stack", """
[stack]
hardware = "h100-sxm"

[services.local]
engine = "ollama"
model = "qwen3:8b"
port = 1
runtime = "native"
""")
    wrong = pull(stack, "locla")
    assert wrong.returncode == 2 and wrong.stderr == "error: no service 'locla' in " \
        f"{stack / 'sparkserve.toml'}; did you mean 'local'?\n"
    down = pull(stack)
    assert down.returncode == 2 and "does not answer at http://127.0.0.1:1" in down.stderr
    assert "sparkserve up local --no-wait" in down.stderr


def test_doctor_counts_the_download_not_the_memory(tmp_path, hub_server: HubServer, monkeypatch):
    """An FP8 service of a BF16 checkpoint downloads the BF16 files: doctor's disk check says so."""
    from sparkserve.doctor.checks import Context, check_disk
    from sparkserve.hardware.detect import Detection
    from sparkserve.runtime.pull import selected
    from sparkserve.stack.load import load_stack
    from sparkserve.stack.stackplan import plan_stack, stack_hardware

    repo = publish(hub_server, "acme/Disk-Qwen3")
    stack_dir = write_stack(tmp_path / "stack", f"""
[stack]
hardware = "h100-sxm"
hf_cache = "{tmp_path / 'hf'}"

[services.chat]
engine = "vllm"
model = "{repo.repo_id}"
quant = "fp8"
port = 8000
""")
    stack = load_stack(stack_dir / "sparkserve.toml")
    hw = stack_hardware(stack)
    plan = plan_stack(stack, hw)
    ctx = Context(detection=Detection(gpus=[], profile_id=None), meminfo={}, stack=stack, hw=hw, plan=plan)
    sizes = {path: len(c) if isinstance(c, bytes) else c.size for path, c in repo.files.items()}
    from sparkserve.engines import get_engine

    download = sum(selected(sizes, get_engine("vllm").hub_download_patterns(list(sizes))).values()) / 1024**3
    in_memory = plan.services[0].memory.weights_gib
    assert download > in_memory * 1.1  # BF16 on disk, FP8 in memory (embeddings stay BF16)
    listed = check_disk(ctx)
    assert f"for {download:.1f} GiB of downloads (repo file list)" in listed.summary, listed

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    offline = check_disk(ctx)
    spec = plan.services[0].deployment.model
    bf16 = (sum(b for _, b in spec.checkpoint_bytes) or spec.params.checkpoint_total * 2) / 1024**3
    assert bf16 > in_memory * 1.1
    assert f"for {bf16:.1f} GiB of downloads (checkpoint dtype)" in offline.summary, offline
