"""The stack file: `init` writes a planner-sized default, the loader turns every mistake into one
clear line with exit code 2, and `plan` plans a stack file's services together."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from sparkserve.errors import UserError
from sparkserve.hardware.catalog import get_profile, list_profiles
from sparkserve.plan.recommend import sized_max_num_seqs
from sparkserve.stack.init import default_stack_text, plan_default_stack
from sparkserve.stack.load import find_stack, load_stack, parse_stack, planner_settings
from sparkserve.stack.stackplan import plan_stack

REPO = Path(__file__).resolve().parents[1]
STACKS = REPO / "tests" / "data" / "stacks"
SPARKSERVE = [sys.executable, "-m", "sparkserve.cli"]


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*SPARKSERVE, *args], cwd=cwd or REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


# --- init -----------------------------------------------------------------------------------

def test_init_writes_the_default_spark_stack(tmp_path):
    result = run_cli("init", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "sparkserve.toml").read_text()
    data = tomllib.loads(text)
    assert data["stack"] == {"hardware": "dgx-spark", "bind": "127.0.0.1", "hf_cache": "/opt/hf"}
    vllm = data["services"]["vllm-qwen3-32b"]
    assert (vllm["engine"], vllm["model"], vllm["quant"], vllm["port"], vllm["gpus"]) == (
        "vllm", "Qwen/Qwen3-32B", "fp8", 8000, "all")
    assert vllm["env"] == {"HF_TOKEN": "${HF_TOKEN}"}
    args = vllm["args"]
    # 121.6 GiB less Ollama's 6.1 GiB and the OS's 12 GiB, floored to hundredths.
    assert args["gpu_memory_utilization"] == 0.85
    # The KV cache holds Qwen3-32B's 40,960 positions more than twice, so the whole window is kept;
    # it holds 6.8 such requests: 2x that, as a power of two, is 8 sequences.
    assert args["max_model_len"] == 40960
    assert args["max_num_batched_tokens"] == 8192
    assert args["max_num_seqs"] == 8
    assert args["enable_prefix_caching"] is True and args["enable_chunked_prefill"] is True
    assert "swap_space" not in args
    ollama = data["services"]["ollama"]
    assert (ollama["engine"], ollama["port"], ollama["gpus"]) == ("ollama", 11434, "all")
    assert ollama["env"]["OLLAMA_KEEP_ALIVE"] == "30m"
    assert ollama["volumes"] == ["/opt/ollama:/root/.ollama"]
    assert "KV cache holds" in text and "leaving 18.2 GiB for Ollama and the OS" in text
    assert "wrote sparkserve.toml" in result.stdout


def test_init_refuses_to_overwrite_without_force(tmp_path):
    target = tmp_path / "sparkserve.toml"
    target.write_text("# mine\n")
    result = run_cli("init", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: sparkserve.toml already exists; pass --force to overwrite it"
    assert target.read_text() == "# mine\n"
    forced = run_cli("init", "--force", "--variant", "int4", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    data = tomllib.loads(target.read_text())
    assert data["services"]["vllm-qwen3-32b"]["model"] == "Qwen/Qwen3-32B-AWQ"
    assert data["services"]["vllm-qwen3-32b"]["quant"] == "awq"


@pytest.mark.parametrize("variant,model,quant", [
    ("bf16", "Qwen/Qwen3-32B", "bf16"), ("fp8", "Qwen/Qwen3-32B", "fp8"), ("int4", "Qwen/Qwen3-32B-AWQ", "awq"),
])
def test_variants_load_and_fit_on_a_spark(variant, model, quant):
    spark = get_profile("dgx-spark")
    spec = parse_stack(default_stack_text(spark, variant))
    svc = spec.services["vllm-qwen3-32b"]
    assert (svc.model, svc.quant) == (model, quant)
    assert plan_default_stack(spark, variant).fits


def test_init_rejects_unknown_variant(tmp_path):
    result = run_cli("init", "--variant", "fp4", cwd=tmp_path)
    assert result.returncode == 2
    assert "unknown variant 'fp4'; expected one of bf16, fp8, int4" in result.stderr
    assert not (tmp_path / "sparkserve.toml").exists()


@pytest.mark.parametrize("hw", [p.id for p in list_profiles()])
def test_default_stack_loads_for_every_profile(hw):
    spec = parse_stack(default_stack_text(get_profile(hw)))
    assert spec.stack.hardware == hw
    assert set(spec.services) == {"vllm-qwen3-32b", "ollama"}


def test_max_num_seqs_stays_within_what_the_kv_cache_holds():
    for profile in list_profiles():
        stack = plan_default_stack(profile, "int4")
        vplan = stack.services[0]
        seqs = vplan.memory.settings.max_num_seqs
        assert seqs == sized_max_num_seqs(vplan)
        assert 1 <= seqs <= max(1, 2 * vplan.memory.max_concurrency)
        assert seqs & (seqs - 1) == 0  # a power of two


def test_init_leaves_room_for_ollama_on_a_discrete_gpu():
    h100 = get_profile("h100-sxm")
    stack = plan_default_stack(h100, "fp8")
    vllm, ollama = stack.services
    assert vllm.memory.budget_gib + ollama.memory.total_gib <= h100.gpu_memory_gib
    assert stack.fits


# --- loading: good files ---------------------------------------------------------------------

def test_minimal_stack_takes_defaults():
    stack = load_stack(STACKS / "minimal.toml")
    svc = stack.services["qwen3-8b"]
    assert stack.spec.stack.bind == "127.0.0.1" and stack.spec.stack.hf_cache == "/opt/hf"
    assert (svc.runtime, svc.gpus, svc.quant, svc.image, svc.volumes, svc.env) == ("compose", "all", None, None, [], {})
    assert planner_settings(svc) == {"max_model_len": 16384}


def test_planner_settings_use_planner_names():
    spec = parse_stack("""
[services.a]
engine = "ollama"
model = "qwen3:8b"
port = 1
args = { num_ctx = 4096, kv_cache_type = "q8_0" }
[services.b]
engine = "vllm"
model = "Qwen/Qwen3-8B"
port = 2
args = { gpu_memory_utilization = 1, tensor_parallel_size = 2, enable_prefix_caching = false }
[services.c]
engine = "vllm"
model = "Qwen/Qwen3-8B"
port = 3
args = { linear_backend = "marlin" }
[services.d]
engine = "vllm"
model = "openai/gpt-oss-20b"
port = 4
args = { attention_backend = "flashinfer" }
""")
    assert planner_settings(spec.services["a"]) == {"num_ctx": 4096, "kv_cache_dtype": "q8_0"}
    assert planner_settings(spec.services["b"]) == {"gpu_memory_utilization": 1.0, "gpus": 2}
    assert planner_settings(spec.services["c"]) == {"marlin": True}  # its matmuls are priced at BF16
    assert planner_settings(spec.services["d"]) == {"attention_backend": "FLASHINFER"}  # vLLM's spelling


def test_env_may_reference_dotenv_variables():
    spec = parse_stack("""
[services.v]
engine = "vllm"
model = "Qwen/Qwen3-8B"
port = 8000
env = { HF_TOKEN = "${HF_TOKEN}", VLLM_LOGGING_LEVEL = "DEBUG", OMP_NUM_THREADS = 4 }
""")
    assert spec.services["v"].env == {"HF_TOKEN": "${HF_TOKEN}", "VLLM_LOGGING_LEVEL": "DEBUG", "OMP_NUM_THREADS": "4"}


def test_find_stack_prefers_explicit_then_cwd(tmp_path):
    assert find_stack(None, cwd=tmp_path) is None
    (tmp_path / "sparkserve.toml").write_text("")
    assert find_stack(None, cwd=tmp_path) == tmp_path / "sparkserve.toml"
    with pytest.raises(UserError, match="no such stack file"):
        find_stack(tmp_path / "other.toml")


# --- loading: bad files, each one line and exit code 2 -----------------------------------------

BAD = {
    "unknown_key": "services.vllm-qwen3-32b.prot: unknown key 'prot' in services.vllm-qwen3-32b; did you mean 'port'?",
    "unknown_stack_key": "stack.hardwear: unknown key 'hardwear' in stack; did you mean 'hardware'?",
    "wrong_type": "services.ollama.volumes: expected a list, got '/opt/ollama:/root/.ollama'",
    "wrong_arg_type": "services.vllm-qwen3-32b.args.max_model_len: expected an integer >= 1, got '32k'",
    "bad_port": "services.vllm-qwen3-32b.port: expected a TCP port number 1-65535, got 80000",
    "unknown_engine": "services.vllm-qwen3-32b.engine: expected 'vllm' or 'ollama', got 'vlm'; did you mean 'vllm'?",
    "unknown_model": "services.vllm-qwen3-32b.model: unknown model 'Qwen/Qwen3-33B'; closest: Qwen/Qwen3-32B",
    "unknown_hardware": "stack.hardware: unknown hardware 'dgx-sprak'; closest: dgx-spark",
    "duplicate_port": "services.ollama.port: port 8000 is already used by service 'vllm-qwen3-32b'",
    "duplicate_name": "line 9, column 17: invalid TOML: Cannot declare ('services', 'ollama') twice",
    "invalid_toml": "line 6, column 9: invalid TOML: Invalid value",
    "inline_secret": 'services.vllm-qwen3-32b.env: HF_TOKEN looks like a secret: put its value in .env and write HF_TOKEN = "${HF_TOKEN}" here',
    "removed_flag": "services.vllm-qwen3-32b.args.swap_space: current vLLM no longer accepts --swap-space",
    "api_key_arg": "services.vllm-qwen3-32b.args.api_key: 'api_key' holds a secret and the stack file is not the place for it",
    "unknown_quant": "services.vllm-qwen3-32b.quant: unknown quantisation 'fp9'; closest: fp8",
    "gguf_on_vllm": "services.vllm-qwen3-32b.quant: quantisation 'q4_k_m' is a GGUF type",
    "ollama_arg": "services.ollama.args.num_ctxx: Ollama takes no argument 'num_ctxx'; did you mean 'num_ctx'?",
    "bad_bind": "stack.bind: expected an IP address",
    "no_services": "services: required key missing",
    "bad_gpus": "services.ollama.gpus: expected \"all\" or a number of GPUs >= 1, got 'two'",
    "bad_volume": 'services.ollama.volumes: expected "host:/container/path"',
    "missing_model": "services.ollama.model: required key missing",
}


def test_every_bad_file_has_a_case():
    assert {p.stem for p in (STACKS / "bad").glob("*.toml")} == set(BAD)


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_stack_file_gives_one_clear_line(name):
    path = STACKS / "bad" / f"{name}.toml"
    with pytest.raises(UserError) as caught:
        load_stack(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    assert BAD[name] in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "name",
    [
        "unknown_key",
        "wrong_type",
        "bad_port",
        "unknown_engine",
        "unknown_model",
        "unknown_hardware",
        "duplicate_port",
        "invalid_toml",
    ],
)
@pytest.mark.parametrize("command", ["plan", "render"])
def test_bad_stack_file_exits_2_from_the_cli(name, command):
    rel = f"tests/data/stacks/bad/{name}.toml"
    result = run_cli(command, "--stack", rel)
    assert result.returncode == 2
    assert result.stderr == f"error: {rel}: {BAD[name]}" + result.stderr.split(BAD[name], 1)[1]
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "body,message",
    [
        (
            "args = { x = { a = 1 } }",
            "services.s.args.x: expected a number, a string, true/false or a list of them, got {'a': 1}",
        ),
        ("volumes = [1]", "services.s.volumes[0]: expected a string, got 1"),
        ("image = 3", "services.s.image: expected a string, got 3"),
        ('runtime = "docker"', "services.s.runtime: expected 'compose' or 'native', got 'docker'"),
        ('env = { "1BAD" = "x" }', "services.s.env: '1BAD' is not a valid environment variable name"),
    ],
)
def test_inline_mistakes_name_the_field(body, message):
    text = f'[services.s]\nengine = "vllm"\nmodel = "Qwen/Qwen3-8B"\nport = 1\n{body}\n'
    with pytest.raises(UserError) as caught:
        parse_stack(text, "x.toml")
    assert str(caught.value) == f"x.toml: {message}"


def test_missing_stack_file_is_an_error(tmp_path):
    result = run_cli("plan", "--stack", "nope.toml", cwd=tmp_path)
    assert result.returncode == 2
    assert "nope.toml: no such stack file; create one with 'sparkserve init'" in result.stderr
    result = run_cli("render", cwd=tmp_path)
    assert result.returncode == 2
    assert "no sparkserve.toml here" in result.stderr


# --- plan with a stack file --------------------------------------------------------------------


def test_plan_of_the_init_stack_matches_the_built_in_default(tmp_path):
    assert run_cli("init", cwd=tmp_path).returncode == 0
    from_file = run_cli("plan", "--json", cwd=tmp_path)
    assert from_file.returncode == 0, from_file.stderr
    planned = json.loads(from_file.stdout)
    assert [s["name"] for s in planned["services"]] == ["vllm-qwen3-32b", "ollama"]
    assert set(planned) >= {"name", "memory", "perf", "recommended_args", "services", "host"}
    assert planned["host"]["hardware"] == "dgx-spark" and planned["host"]["fits"] is True
    vllm = planned["services"][0]
    assert vllm["memory"]["settings"]["gpu_memory_utilization"] == 0.85
    assert vllm["memory"]["settings"]["max_num_seqs"] == 8
    builtin = json.loads(run_cli("plan", "--json", cwd=REPO).stdout)
    assert set(builtin) == set(planned)
    assert builtin["host"]["used_gib"] == pytest.approx(planned["host"]["used_gib"], abs=0.5)


def test_plan_with_stack_option_plans_each_service():
    result = run_cli("plan", "--json", "--stack", "tests/data/stacks/minimal.toml")
    assert result.returncode == 0, result.stderr
    planned = json.loads(result.stdout)
    assert [s["name"] for s in planned["services"]] == ["qwen3-8b"]
    assert planned["hardware"] == "h100-sxm" and planned["memory"]["max_model_len"] == 16384
    assert planned["host"]["pool_gib"] == pytest.approx(79.18)
    # --hardware overrides the file
    other = json.loads(run_cli("plan", "--json", "--stack", "tests/data/stacks/minimal.toml", "-H", "h200").stdout)
    assert other["hardware"] == "h200"


def test_plan_stack_and_model_conflict():
    result = run_cli("plan", "--stack", "tests/data/stacks/minimal.toml", "--model", "Qwen/Qwen3-8B")
    assert result.returncode == 2
    assert "drop --model" in result.stderr


def test_plan_stack_shares_unified_memory():
    stack = load_stack(STACKS / "minimal.toml")
    plan = plan_stack(stack, get_profile("dgx-spark"))
    util = plan.services[0].memory.settings.gpu_memory_utilization
    assert util <= (121.6 - 12.0) / 121.6


def test_a_marlin_backend_in_args_reaches_the_plan(tmp_path):
    """`linear_backend = "marlin"` runs NVFP4 weights through W4A16 kernels: the plan prices those
    matmuls at the BF16 rate, so the same service prefills slower and holds the same weights."""
    text = '[services.v]\nengine = "vllm"\nmodel = "Qwen/Qwen3-8B"\nquant = "nvfp4"\nport = 8000\n'
    plans = []
    for i, extra in enumerate(("", 'args = { linear_backend = "marlin" }\n')):
        path = tmp_path / f"{i}.toml"
        path.write_text(text + extra)
        plans.append(plan_stack(load_stack(path), get_profile("dgx-spark")).services[0])
    native, marlin = plans
    assert marlin.perf.prefill_tps < native.perf.prefill_tps
    assert marlin.memory.weights_gib == native.memory.weights_gib


def test_plain_commands_do_not_load_the_stack_schema(tmp_path):
    probe = (
        "import sys\n"
        "from sparkserve.cli import main\n"
        "sys.argv = ['sparkserve'] + sys.argv[1:]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith(('pydantic', 'sparkserve.stack.schema', 'sparkserve.stack.load'))), file=sys.stderr)\n"
    )
    help_run = subprocess.run([sys.executable, "-c", probe, "--help"], cwd=tmp_path, capture_output=True, text=True)
    assert help_run.stderr.strip().splitlines()[-1] == "[]"
    plan_run = subprocess.run(
        [sys.executable, "-c", probe, "plan", "--json"], cwd=tmp_path, capture_output=True, text=True
    )
    # typer itself imports pydantic to run a command; the stack schema must still stay unloaded
    assert "sparkserve.stack.schema" not in plan_run.stderr.strip().splitlines()[-1]
