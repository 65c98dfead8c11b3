"""One failure, printed through every wrapper a user meets, is one finding; the log is normalised once."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparkserve.doctor.diagnose import MAX_BYTES, diagnose, diagnose_file
from sparkserve.doctor.normalise import normalise, normalise_line

KV = ("ValueError: The model's max seq len (32768) is larger than the maximum number of tokens that can be stored in "
      "KV cache (15248). Try increasing `gpu_memory_utilization` or decreasing `max_model_len` when initializing the "
      "engine.")
WRAPPED = {
    "plain": KV,
    "compose": f"vllm-qwen-1  | {KV}",
    "compose + ansi": f"\x1b[36mvllm-1  |\x1b[0m \x1b[31mERROR\x1b[0m 11-18 18:07:28 [core.py:708] {KV}",
    "shipper ansi": f"#033[2m#033[36m(EngineCore_DP0 pid=60)#033[0m ERROR 01-12 01:09:14 [core.py:708] {KV}",
    "caret ansi": f"^[[0;36m(EngineCore_DP0 pid=738)^[[0;0m ^[[31mERROR^[[0m 01-26 09:25:37 [core.py:935] {KV}",
    "ci timestamp": f"[2025-03-10T15:07:20Z] (EngineCore_DP0 pid=6940) ERROR 03-10 08:07:20 [core.py:302] {KV}",
    "iso timestamp": f"2025-10-14T23:59:25.360249332Z (APIServer pid=1) ERROR 10-14 16:59:25 [core.py:251] {KV}",
    "ray": f"(RayWorkerWrapper pid=1463574, ip=192.168.10.60) ERROR 03-27 10:29:13 [worker_base.py:620] {KV}",
    "torch rank": f"[rank0]: {KV}",
    "journald": f"Sep 22 23:46:42 ml2-1-a100-1 vllm[361991]: ERROR 09-22 23:46:42 engine.py:366] {KV}",
    "issue quote": f"> {KV}",
    "json line": '{"ts": "2025-01-01T00:00:00Z", "level": "error", "message": "' + KV.replace('`', "'") + '"}',
    "loguru": f"2024-04-27 10:13:05 | ERROR | stderr | {KV}",
    "uvicorn": f"ERROR:    {KV}",
}


@pytest.mark.parametrize("wrapper", WRAPPED, ids=list(WRAPPED))
def test_the_same_failure_through_any_wrapper_is_the_same_finding(wrapper: str) -> None:
    findings = diagnose(WRAPPED[wrapper])
    assert [f.cause_id for f in findings] == ["kv_cache_too_small_for_max_model_len"]
    assert "15,248 tokens" in findings[0].fix
    assert findings[0].evidence[0].startswith(("ValueError: The model's max seq len", "The model's max seq len"))


def test_ollama_logfmt_lines_keep_their_message_and_error() -> None:
    line = ('time=2025-02-25T10:05:54.000+08:00 level=ERROR source=sched.go:455 msg="error loading llama server" '
            'error="llama runner process has terminated: exit status 2"')
    assert normalise_line(line) == ["error loading llama server: llama runner process has terminated: exit status 2"]
    assert [f.cause_id for f in diagnose(line)] == ["ollama_runner_terminated"]


def test_lines_a_terminal_glued_together_are_split_again() -> None:
    glued = ("(APIServer pid=2960)     raise _format(RepositoryNotFoundError, message, response) from e(APIServer "
             "pid=2960) huggingface_hub.errors.RepositoryNotFoundError: 401 Client Error.")
    assert normalise_line(glued) == [
        "raise _format(RepositoryNotFoundError, message, response) from e",
        "huggingface_hub.errors.RepositoryNotFoundError: 401 Client Error.",
    ]


def test_docker_compose_prefix_without_a_message_is_not_mistaken_for_text() -> None:
    assert list(normalise(["ollama-1  | ", "plain text | with a bar"])) == ["", "plain text | with a bar"]


def test_a_root_cause_ranks_before_its_consequences() -> None:
    # A chained traceback: the Hub's 401 is the cause, vLLM's "model not found" wrapper is the consequence.
    log = "\n".join([
        "requests.exceptions.HTTPError: 401 Client Error: Unauthorized for url: "
        "https://huggingface.co/meta-llama/Llama-3.1-8B-Instruct/resolve/main/config.json",
        "The above exception was the direct cause of the following exception:",
        "Traceback (most recent call last):",
        "huggingface_hub.errors.GatedRepoError: 401 Client Error.",
        "Cannot access gated repo for url https://huggingface.co/meta-llama/Llama-3.1-8B-Instruct/resolve/main/"
        "config.json.",
        "OSError: meta-llama/Llama-3.1-8B-Instruct is not a local folder and is not a valid model identifier",
        "RuntimeError: Engine core initialization failed. See root cause above.",
    ])
    ids = [f.cause_id for f in diagnose(log)]
    assert ids[0] == "gated_model_access"
    assert "model_not_found" not in ids


def test_port_fix_never_prints_a_placeholder() -> None:
    (finding,) = diagnose("OSError: [Errno 98] Address already in use")
    assert finding.cause_id == "port_in_use"
    assert "{port}" not in finding.fix and "{" not in finding.summary
    (with_port,) = diagnose("docker: Error response from daemon: driver failed programming external connectivity on "
                            "endpoint vllm (3f2a): Bind for 0.0.0.0:8000 failed: port is already allocated.")
    assert "ss -ltnp 'sport = :8000'" in with_port.fix


def test_a_last_line_longer_than_the_read_window_is_read_truncated(tmp_path: Path) -> None:
    path = tmp_path / "service.log"
    huge = "x" * (MAX_BYTES + 1000)
    path.write_text("INFO starting\n" + KV + " " + huge + "\n", encoding="utf-8")
    assert diagnose_file(path) == []  # the message is at the line's start, past the window: honestly not seen
    path.write_text("INFO starting\n" + huge + " " + KV + "\n", encoding="utf-8")
    assert [f.cause_id for f in diagnose_file(path)] == ["kv_cache_too_small_for_max_model_len"]
    path.write_text("INFO starting\n" + huge + " " + KV, encoding="utf-8")  # no trailing newline either
    assert [f.cause_id for f in diagnose_file(path)] == ["kv_cache_too_small_for_max_model_len"]
