"""The Hub-shaped test server answers the real huggingface_hub client the way the Hub does."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import EntryNotFoundError, GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

from hub_server import HubRepo, HubServer, safetensors_file, tensor_bytes

CONFIG = json.dumps({"architectures": ["LlamaForCausalLM"], "hidden_size": 64}).encode()
BIG = {"model.embed_tokens.weight": ("BF16", (151_936, 4096)), "lm_head.weight": ("BF16", (151_936, 4096))}


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[HubServer]:
    shard1 = safetensors_file(BIG, {"format": "pt"})
    shard2 = safetensors_file({"model.norm.weight": ("BF16", (4096,))})
    index = {"metadata": {"total_size": 0}, "weight_map": {
        "model.embed_tokens.weight": "model-00001-of-00002.safetensors",
        "lm_head.weight": "model-00001-of-00002.safetensors",
        "model.norm.weight": "model-00002-of-00002.safetensors",
    }}
    repos = [
        HubRepo("org/sharded", {"config.json": CONFIG, "model.safetensors.index.json": json.dumps(index).encode(),
                                "model-00001-of-00002.safetensors": shard1,
                                "model-00002-of-00002.safetensors": shard2}),
        HubRepo("org/single", {"config.json": CONFIG,
                               "model.safetensors": safetensors_file({"w": ("F32", (2, 3))})}),
        HubRepo("org/gated", {"config.json": CONFIG}, gated=True, granted_tokens=frozenset({"hf_granted"})),
    ]
    with HubServer(repos) as server:
        yield server


def test_file_download_with_commit_and_etag(hub: HubServer, tmp_path: Path) -> None:
    path = hf_hub_download("org/single", "config.json", cache_dir=tmp_path, endpoint=hub.url, token=False)
    assert Path(path).read_bytes() == CONFIG
    commit = hub.repos["org/single"].commit
    assert f"snapshots/{commit}/config.json" in path
    assert (tmp_path / "models--org--single" / "refs" / "main").read_text() == commit


def test_safetensors_headers_by_range_requests_without_weights(hub: HubServer) -> None:
    api = HfApi(endpoint=hub.url, token=False)
    meta = api.get_safetensors_metadata("org/sharded")
    assert meta.sharded
    shard = meta.files_metadata["model-00001-of-00002.safetensors"]
    assert shard.tensors["lm_head.weight"].shape == [151_936, 4096]
    assert shard.tensors["lm_head.weight"].dtype == "BF16"
    weights = hub.bytes_served(".safetensors")
    assert weights < 200_000  # two headers and at most the first 100 kB the client asks for, not 2.5 GB
    assert all(r.range for r in hub.requests if r.method == "GET" and r.path.endswith(".safetensors"))
    single = api.get_safetensors_metadata("org/single")
    assert not single.sharded and single.files_metadata["model.safetensors"].tensors["w"].shape == [2, 3]


def test_range_answers_206_with_content_range(hub: HubServer) -> None:
    import httpx

    url = f"{hub.url}/org/single/resolve/main/model.safetensors"
    whole = httpx.get(url)
    part = httpx.get(url, headers={"Range": "bytes=0-7"})
    assert part.status_code == 206 and part.content == whole.content[:8]
    assert part.headers["Content-Range"] == f"bytes 0-7/{len(whole.content)}"
    assert len(whole.content) - 8 - int.from_bytes(part.content, "little") == tensor_bytes("F32", (2, 3))


def test_gated_repo_401_without_token_403_without_access(hub: HubServer, tmp_path: Path) -> None:
    with pytest.raises(GatedRepoError) as anonymous:
        hf_hub_download("org/gated", "config.json", cache_dir=tmp_path, endpoint=hub.url, token=False)
    assert anonymous.value.response.status_code == 401
    with pytest.raises(GatedRepoError) as refused:
        hf_hub_download("org/gated", "config.json", cache_dir=tmp_path, endpoint=hub.url, token="hf_other")
    assert refused.value.response.status_code == 403
    path = hf_hub_download("org/gated", "config.json", cache_dir=tmp_path, endpoint=hub.url, token="hf_granted")
    assert Path(path).read_bytes() == CONFIG
    assert any(r.token == "hf_granted" and r.status == 200 for r in hub.requests)


def test_missing_repo_file_and_revision(hub: HubServer, tmp_path: Path) -> None:
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("org/nope", "config.json", cache_dir=tmp_path, endpoint=hub.url, token=False)
    with pytest.raises(EntryNotFoundError):
        hf_hub_download("org/single", "nope.json", cache_dir=tmp_path, endpoint=hub.url, token=False)
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download("org/single", "config.json", revision="v9", cache_dir=tmp_path, endpoint=hub.url, token=False)


def test_model_info_and_snapshot_download_of_whole_files(hub: HubServer, tmp_path: Path) -> None:
    api = HfApi(endpoint=hub.url, token=False)
    info = api.model_info("org/single")
    assert info.sha == hub.repos["org/single"].commit
    assert sorted(s.rfilename for s in info.siblings or []) == ["config.json", "model.safetensors"]
    folder = snapshot_download("org/single", cache_dir=tmp_path, endpoint=hub.url, token=False)
    weights = Path(folder, "model.safetensors").read_bytes()
    assert len(weights) == hub.repos["org/single"].files["model.safetensors"].size
    assert Path(folder, "config.json").read_bytes() == CONFIG
