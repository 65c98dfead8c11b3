"""Host-level causes of failed LLM service starts: Docker, the NVIDIA driver and container runtime, CUDA and
GPU architecture, NCCL, Ray, Hugging Face downloads, disk, shared memory and ports.

Engine-specific rules live beside their engine (engines/vllm_doctor.py, engines/ollama_doctor.py) and are
collected through each registered engine's `doctor_rules()`; `all_rules()` joins them with these.
"""

from __future__ import annotations

from sparkserve.logrules import advice
from sparkserve.logrules.matcher import Fact, LogRules, Probe, Rule, literal_needles, probe, rx, sig
from sparkserve.plan.recommend import round_down_len

__all__ = ["all_rules", "literal_needles", "round_down_len", "rule_by_id", "HOST"]

_WEIGHTS_LOADED = probe(r"Model loading took|Loading model weights took|Loading weights took")

NOISE: tuple[Probe, ...] = (
    probe(r"`resume_download` is deprecated"),
    probe(r"`trust_remote_code` is to be used with Auto classes"),
    probe(r"Using a slow tokenizer"),
    probe(r"Token indices sequence length is longer than the specified maximum"),
    probe(r"\bNCCL INFO\b"),
    probe(r"the attribute `version` is obsolete"),
    probe(r"Xet Storage is enabled for this repo"),
)

_SIZE = r"(?P<v>[\d.]+\s*(?:[KMGT]i?B|kB|[KMGT]i)?)\b"

FACTS: tuple[Fact, ...] = (
    Fact("uma", probe(r"\bGB10\b|\bsm_121a?\b|DGX Spark|unified memory|is_integrated|Jetson")),
    Fact("driver", probe(r"Driver Version:\s*(?P<v>[\d.]+)")),
    Fact("host_cuda", probe(r"CUDA Version:\s*(?P<v>\d+\.\d+)")),
    # A memory snapshot in /proc/meminfo's names (`MemFree:  3212 kB`) or a tool's key=value (`free=66GB`).
    Fact("mem_free", probe(rf"(?<![\w/-])(?:MemFree|free)\s*[=:]\s*{_SIZE}", needle="free")),
    Fact("mem_cache", probe(rf"(?<![\w/-])(?:Cached|(?:page[_ ]?)?cache)\s*[=:]\s*{_SIZE}", needle="cache")),
    Fact("mem_available", probe(rf"(?<![\w/-])(?:MemAvailable|available)\s*[=:]\s*{_SIZE}", needle="available")),
)

RULES: tuple[Rule, ...] = (
    Rule(
        "unified_memory_exhausted",
        priority=86,
        signatures=(
            sig(r"(?P<nv_err>NV_ERR_NO_MEMORY)"),
            sig(r"(?P<cuda_alloc>cudaErrorMemoryAllocation)"),
            sig(r"Out of memory: Killed process \d+ \((?P<proc>[^)]+)\)"),
        ),
        summary=(
            "The unified memory pool ran out: the NVIDIA driver (or the kernel) could not allocate memory"
            "[ and killed {proc}]."
        ),
        fix=(
            "Leave more of the shared pool to the OS: lower --gpu-memory-utilization[ (now {util})] or cap the "
            "KV cache with --kv-cache-memory-bytes, reduce --max-num-batched-tokens and --max-num-seqs, stop other "
            "memory users, and flush page cache before start (`sync; echo 3 | sudo tee /proc/sys/vm/drop_caches`). "
            "On Spark an OOM can freeze the whole host: keep 8-10 GiB of MemAvailable free."
        ),
        when=lambda f: (
            ("nv_err" in f and "ready" not in f) or (("proc" in f or "cuda_alloc" in f) and advice.on_unified_memory(f))
        ),
        supersedes=("cuda_oom_runtime",),
    ),
    Rule(
        "page_cache_pressure",
        priority=96,
        signatures=(
            sig(
                r"needs? (?:about )?(?P<need>[\d.]+ ?[KMGT]i?B)\b.{0,40}?\bbut (?:can (?:only )?admit|only "
                r"(?:about )?|has (?:only )?)\s*(?P<have>[\d.]+ ?[KMGT]i?B)",
                needle="but ",
            ),
            sig(r"(?:does not|doesn't|will not|won't) fit (?:in(?:to)? )?the current (?:per-node )?memory"),
        ),
        summary=(
            "A memory check refused the start[ ({need} needed, {have} admitted)] while {cache_gib} GiB sat in the "
            "page cache[ (MemFree {mem_free}, MemAvailable {mem_available})]: the check counted reclaimable cache "
            "as used."
        ),
        fix=(
            "Flush clean caches and retry: `sync; echo 3 | sudo tee /proc/sys/vm/drop_caches` (downloading, staging "
            "or mmap-ing model files fills the cache; on DGX Spark it is the GPU's pool too). Judge headroom by "
            "MemAvailable, not MemFree; if the tool keeps refusing, tell its authors that its check reads MemFree."
        ),
        when=advice.page_cache_covers,
        derive=advice.page_cache,
    ),
    Rule(
        "gated_model_access",
        priority=95,
        signatures=(
            sig(r"Cannot access gated repo for url"),
            sig(r"You are trying to access a gated repo"),
            sig(r"GatedRepoError"),
            sig(r"Access to model (?P<repo>\S+) is restricted"),
            sig(r"is awaiting a review from the repo authors|not in the authorized list"),
        ),
        summary="The model[ {repo}] is gated on Hugging Face and this token may not download it[ (HTTP {status})].",
        fix=(
            "Accept the licence on the model page[ (https://huggingface.co/{repo})] with the account whose token you "
            "use, then pass the token to the server: HF_TOKEN=hf_… in the container environment (or "
            "`huggingface-cli login` for native runs). A 403 means the account is not on the access list yet."
        ),
        extract=(
            rx(r"(?P<status>40[13]) Client Error"),
            rx(r"Access to model (?P<repo>[\w.-]+/[\w.-]+) is restricted"),
            rx(r"huggingface\.co/(?P<repo>[\w.-]+/[\w.-]+?)(?:/resolve|\.\s|\.$|\s|$)"),
        ),
        supersedes=("model_not_found", "download_failure"),
    ),
    Rule(
        "gated_model_access",
        priority=80,
        signatures=(
            sig(r"(?P<status>40[13]) Client Error[.:]?(?: \w+)*? for url: https://huggingface\.co/(?P<repo>[\w.-]+/[\w.-]+)"),
            sig(r"(?P<status>40[13]) Client Error\. \(Request ID: ", needle="client error. (request id"),
        ),
        summary="The Hugging Face Hub refused the download (HTTP {status})[ for {repo}]: the repository needs a token "
        "with access.",
        fix=(
            "Accept the licence on the model page[ (https://huggingface.co/{repo})] with the account whose token you "
            "use, then pass the token to the server: HF_TOKEN=hf_… in the container environment (or "
            "`huggingface-cli login` for native runs). 401 means no or an invalid token, 403 a token without access."
        ),
        excludes=(probe(r"Repository Not Found|RepositoryNotFoundError|RevisionNotFoundError|EntryNotFoundError"),),
        supersedes=("download_failure",),
    ),
    Rule(
        "model_not_found",
        priority=85,
        signatures=(
            sig(r"Repository Not Found for url"),
            sig(r"RepositoryNotFoundError"),
            sig(r"Invalid repository ID or local directory specified: '(?P<model>[^']+)'"),
            sig(r"Repo id must be in the form 'repo_name' or 'namespace/repo_name': '(?P<model>[^']+)'"),
            sig(r"is not a local folder and is not a valid model identifier"),
            sig(r"pull model manifest: file does not exist"),
            sig(r"RevisionNotFoundError|Invalid rev id: (?P<rev>\S+)", needle="rev"),
            sig(r"does not appear to have a file named (?P<file>config\.json|[\w.-]+\.(?:json|safetensors))"),
            sig(r"model \\?['\"](?P<model>[^'\"\\]+)\\?['\"] not found, try pulling it first"),
        ),
        summary="The model[ '{model}'] was found neither locally nor on the hub.",
        fix=(
            "Check the exact name: a Hugging Face id is `org/name` (case-sensitive), a local path must exist inside "
            "the container (mount it: `-v /host/models:/models`) and contain config.json; for Ollama use a tag from "
            "ollama.com/library such as `qwen3:8b` (`ollama list` shows what is local). A private repo also "
            "needs HF_TOKEN.[ The hub answered '{auth}': the token is wrong or expired, create a new one.]"
        ),
        extract=(
            rx(r"huggingface\.co/(?P<model>[\w.-]+/[\w.-]+?)/resolve"),
            rx(r"(?P<auth>Invalid username or password)"),
            rx(r"'(?P<model>[^']+)'"),
        ),
    ),
    Rule(
        "arch_mismatch_exec_format",
        priority=95,
        signatures=(
            sig(r"exec format error"),
            sig(
                r"image's platform \((?P<image>[\w/]+)\) does not match the detected host platform \((?P<host>[\w/]+)\)"
            ),
            sig(r"image platform \((?P<image>[\w/]+)\) does not match the expected platform \((?P<host>[\w/]+)\)"),
        ),
        summary="The container image is built for another CPU architecture[ ({image} on a {host} host)].",
        fix=(
            "Pull an arm64 or multi-arch image (DGX Spark is arm64): nvcr.io/nvidia/vllm:<YY.MM>-py3, the "
            "vllm/vllm-openai CUDA 13 arm64 builds, or ollama/ollama; check with "
            "`docker image inspect --format '{{{{.Architecture}}}}' <image>`."
        ),
        extract=(
            rx(
                r"platform \((?P<image>[\w/]+)\) does not match the (?:detected host|expected) platform "
                r"\((?P<host>[\w/]+)\)"
            ),
        ),
    ),
    Rule(
        "unsupported_gpu_arch",
        priority=90,
        signatures=(
            sig(r"no kernel image is available for execution on the device"),
            sig(r"with CUDA capability (?P<sm>sm_\d+a?) is not compatible with the current PyTorch installation"),
            sig(r"PyTorch no longer supports this GPU because it is too old"),
            sig(
                r"ptxas fatal\s*:\s*Value '(?P<sm>sm_\d+[af]?)' is not defined for option 'gpu-name'",
                summary="Triton's bundled ptxas does not know this GPU's architecture ({sm}).",
                fix=(
                    "Point Triton at the CUDA toolkit's own ptxas, which knows {sm}: "
                    "TRITON_PTXAS_PATH=/usr/local/cuda/bin/ptxas (CUDA 12.9+/13 for sm_121 on DGX Spark), or use an "
                    "image built for this GPU (nvcr.io/nvidia/vllm, vllm/vllm-openai CUDA 13 builds)."
                ),
            ),
            sig(
                r"PTXASError: PTXAS error",
                summary="Triton could not assemble a GPU kernel for this GPU (ptxas failed).",
                fix=(
                    "Usually Triton's bundled ptxas is older than the GPU (sm_121a on DGX Spark): set "
                    "TRITON_PTXAS_PATH=/usr/local/cuda/bin/ptxas from a CUDA 12.9+/13 toolkit, or use an image built "
                    "for this GPU (nvcr.io/nvidia/vllm); --enforce-eager avoids some compiled kernels."
                ),
            ),
            sig(
                r"expects arch to be one of \[(?P<supported>[^\]]*)\], but got Arch\.(?P<sm>sm_\d+[af]?)",
                summary="A CUTLASS/FlashInfer kernel was built for {supported} only, not this GPU ({sm}).",
                fix=(
                    "Select a kernel path this GPU has: on DGX Spark (sm_121) use --attention-backend TRITON_ATTN "
                    "and Marlin for NVFP4/MoE (--moe-backend marlin, VLLM_USE_FLASHINFER_MOE_FP4=0), or a vLLM/"
                    "FlashInfer build that includes sm_121 (nvcr.io/nvidia/vllm)."
                ),
            ),
            sig(
                r"Failed to initialize cutlass TMA WS grouped gemm|No compiled cutlass_scaled_mm\w* for a compute "
                r"capability|cutlass_scaled_mm\w* (?:is )?not supported|FP4\b[^.]*\bnot supported on "
                r"(?:this|the current) (?:GPU|device|platform)",
                summary="This build has no NVFP4/CUTLASS kernel for this GPU.",
                fix=(
                    "On DGX Spark (sm_121) and RTX 50 (sm_120) use the Marlin path for NVFP4 (--moe-backend marlin, "
                    "VLLM_USE_FLASHINFER_MOE_FP4=0) or a build compiled with sm_120/sm_121 kernels "
                    "(nvcr.io/nvidia/vllm); or serve an FP8/AWQ checkpoint instead."
                ),
            ),
            sig(r"Unsupported gpu architecture '(?P<sm>compute_\d+[af]?)'"),
        ),
        summary="The engine build has no GPU kernels for this GPU[ ({gpu}, {sm})].",
        fix=(
            "Use a build compiled for this GPU[ (this one supports {supported})]: Blackwell (sm_120, GB10 "
            "sm_121) needs CUDA 12.8+ builds (on DGX Spark: nvcr.io/nvidia/vllm or the vllm/vllm-openai CUDA 13 "
            "images); GPUs older than the build's minimum[ ({minimum})] need an older release or a source build "
            "with TORCH_CUDA_ARCH_LIST set."
        ),
        extract=(
            rx(r"(?P<gpu>NVIDIA [\w -]+?) with CUDA capability (?P<sm>sm_\d+a?)"),
            rx(r"supports CUDA capabilities (?P<supported>(?:sm_\d+\s*)+)"),
            rx(r"Found GPU\d+ (?P<gpu>.+?) which is of cuda capability (?P<sm>\d+(?:\.\d+)?)"),
            rx(r"minimum cuda capability supported by this library is (?P<minimum>\d+(?:\.\d+)?)"),
        ),
    ),
    Rule(
        "host_driver_too_old_for_image",
        priority=95,
        signatures=(
            sig(r"unsatisfied condition: cuda ?>= ?(?P<need_cuda>\d+\.\d+)"),
            sig(r"CUDA driver version is insufficient for CUDA runtime version"),
            sig(r"The NVIDIA driver on your system is too old \(found version (?P<found>\d+)\)"),
        ),
        summary=(
            "The host NVIDIA driver is older than the CUDA version the image/wheel needs[ (needs CUDA ≥ {need_cuda})]."
        ),
        fix=(
            "Upgrade the host driver[ to branch R{branch} or newer][ (host: driver {driver}, CUDA {host_cuda})], "
            "or use an image/wheel built for the CUDA version the driver supports (`nvidia-smi` shows it)."
        ),
        derive=advice.driver,
    ),
    Rule(
        "cuda_compat_mismatch",
        priority=92,
        signatures=(
            sig(r"Error 803: system has unsupported"),
            sig(r"unsupported display driver / cuda driver combination"),
            sig(r"Error 804: forward compatibility"),
        ),
        summary="The CUDA driver library inside the container does not match the host kernel driver.",
        fix=(
            "The image's forward-compatibility libcuda (/usr/local/cuda/compat) is being loaded against a host driver "
            "it does not suit (forward compatibility works only on data-centre GPUs). Keep the host's libcuda first: "
            "start with `--gpus all` instead of `--runtime nvidia` plus device env, or set LD_LIBRARY_PATH without "
            "/usr/local/cuda/compat; otherwise upgrade the host driver to the image's CUDA branch."
        ),
    ),
    Rule(
        "nvidia_runtime_missing",
        priority=95,
        signatures=(
            sig(r'could not select device driver "(?P<driver>[^"]*)" with capabilities: \[\[gpu\]\]'),
            sig(r"unknown or invalid runtime name: nvidia"),
            sig(r"nvidia-container-cli: initialization error"),
        ),
        summary=(
            "Docker cannot hand the GPU to the container: the NVIDIA container runtime is missing or not registered."
        ),
        fix=(
            "Install the NVIDIA Container Toolkit, register it and restart Docker: "
            "`sudo nvidia-ctk runtime configure --runtime=docker && sudo systemctl restart docker`; "
            "check with `docker run --rm --gpus all ubuntu nvidia-smi`."
        ),
    ),
    Rule(
        "port_in_use",
        priority=90,
        signatures=(
            sig(r"Bind for (?P<addr>[\d.:\[\]]+?):(?P<port>\d+) failed: port is already allocated"),
            sig(r"failed to bind host port for (?P<addr>[\d.]+):(?P<port>\d+)\S*: address already in use"),
            sig(
                r"listen tcp (?P<addr>[\d.\[\]:]*?):(?P<port>\d+): bind: ",
                fix=(
                    "Port {port} is taken — usually by the Ollama system service that already runs: use it, or stop it "
                    "(`sudo systemctl stop ollama`, or quit the tray app) before `ollama serve`, or set "
                    "OLLAMA_HOST=127.0.0.1:<other port>."
                ),
            ),
            sig(r"Bind for (?P<addr>[\d.:\[\]]+?):(?P<port>\d+): unexpected error \(Failure EADDRINUSE\)"),
            sig(r"\[Errno 98\][^\n]*(?:address already in use|Address already in use)"),
            sig(r"error while attempting to bind on address \('(?P<addr>[^']*)', (?P<port>\d+)\)"),
            sig(r"\[WinError 10048\]|\bEADDRINUSE\b|OSError: \[Errno 48\] Address already in use"),
        ),
        summary="Port[ {port}] is already in use on the host.",
        fix=(
            "Find the process or container that holds the port (`ss -ltnp`[ → `ss -ltnp 'sport = :{port}'`], "
            "`docker ps`[ → `docker ps --filter publish={port}`]) and stop it, or publish another host port "
            "(`-p <free port>:<container port>` / compose `ports`)."
        ),
    ),
    Rule(
        "shm_too_small",
        priority=87,
        signatures=(
            sig(r"Error while creating shared memory segment"),
            sig(r"Error while attaching to shared memory segment"),
            sig(r"Call to posix_fallocate failed"),
            sig(r"/dev/shm has only (?P<shm_bytes>\d+) bytes available"),
            sig(r"unable to write to file </torch_\w+>"),
        ),
        summary="Shared memory (/dev/shm) is too small or not shared for the engine's worker processes.",
        fix=(
            "Docker gives containers 64 MB of /dev/shm: start with `--ipc=host` (as vLLM's docs do) or "
            "`--shm-size=16g`; in compose `ipc: host` or `shm_size: 16gb`."
        ),
        supersedes=("nccl_init_failure", "disk_full"),
    ),
    Rule(
        "nccl_init_failure",
        priority=40,
        signatures=(
            sig(r"NCCL error"),
            sig(r"\bnccl(?:System|Internal|Remote|UnhandledCuda|InvalidUsage)Error\b", needle="nccl"),
            sig(r"DistBackendError"),
            sig(r"NCCL WARN"),
        ),
        summary="NCCL could not set up communication between GPUs or nodes[ ({why})].",
        fix=(
            "Rerun with NCCL_DEBUG=INFO and read the first WARN. On one host: --ipc=host and `nvidia-smi topo -m`; try "
            "NCCL_P2P_DISABLE=1. Across two Sparks: set NCCL_SOCKET_IFNAME and GLOO_SOCKET_IFNAME to the ConnectX-7 "
            "interface on each node, use the same image on both, and check NCCL_IB_HCA. An earlier error on one rank "
            "often shows up as NCCL errors on the others."
        ),
        extract=(
            rx(r"(?P<why>unhandled (?:system|cuda) error|remote process exited|connection (?:refused|reset|closed))"),
        ),
    ),
    Rule(
        "ray_memory_kill",
        priority=82,
        signatures=(
            sig(r"Task was killed due to the node running low on memory"),
            sig(r"Ray killed this worker"),
            sig(r"killed due to memory pressure \(OOM\)"),
        ),
        summary=(
            "Ray's memory monitor killed a worker because host memory ran low"
            "[ ({used}/{total} GB used, threshold {thr})]."
        ),
        fix=(
            "Free host RAM (other processes, fewer --max-num-seqs); on DGX Spark host RAM is the GPU pool, so lower "
            "--gpu-memory-utilization. As a last resort raise RAY_memory_usage_threshold[ to {thr_up}] "
            "when starting Ray."
        ),
        extract=(
            rx(
                r"was (?P<used>[\d.]+)GB / (?P<total>[\d.]+)GB \([\d.]+\), which exceeds the memory usage threshold "
                r"of (?P<thr>\d+(?:\.\d+)?)"
            ),
        ),
        derive=advice.ray,
    ),
    Rule(
        "corrupt_model_files",
        priority=88,
        signatures=(
            sig(r"Error while deserializing header: (?P<why>\w+)"),
            sig(r"tensor '[^']+' data is not within the file bounds|invalid (?:file )?magic|failed to read magic"),
            sig(r"digest mismatch, file must be downloaded again"),
            sig(r"PytorchStreamReader failed reading zip archive"),
            sig(r"invalid load key"),
        ),
        summary="Model files on disk are incomplete or corrupt[ ({why})].",
        fix=(
            "Delete the damaged files and download again: remove the snapshot under ~/.cache/huggingface/hub (or "
            "`huggingface-cli download <repo> --force-download`); for Ollama `ollama rm <model>` then pull again "
            "(behind a proxy set HTTPS_PROXY for the ollama service)."
        ),
        supersedes=("download_failure",),
    ),
    Rule(
        "disk_full",
        priority=80,
        signatures=(
            sig(r"No space left on device"),
            sig(
                r"Not enough free disk space to download the file\. The expected file size is: (?P<need>[\d.]+ MB)\. "
                r"The target location (?P<path>\S+) only has (?P<have>[\d.]+ MB) free disk space"
            ),
        ),
        summary="The disk is full[ ({path} has {have} free, {need} needed)].",
        fix=(
            "Free space where models and images live (`df -h`; `docker system prune`; old HF snapshots under "
            "~/.cache/huggingface/hub), or point HF_HOME / OLLAMA_MODELS at a bigger disk."
        ),
    ),
    Rule(
        "download_failure",
        priority=70,
        signatures=(
            sig(r"LocalEntryNotFoundError"),
            sig(r"We couldn't connect to 'https://huggingface\.co'"),
            sig(r"Connection to (?P<host>[\w.-]+) timed out"),
            sig(r"pull model manifest: Get \S+: (?P<why>.+)$"),
            sig(r"max retries exceeded: (?P<why>.+)$"),
            sig(r"HTTPSConnectionPool\(host='(?P<host>[^']+)'.*Max retries exceeded"),
            sig(r"dial tcp: lookup (?P<host>[\w.-]+)[^:]*: (?P<why>no such host|i/o timeout|server misbehaving)"),
        ),
        excludes=(_WEIGHTS_LOADED,),
        summary="Downloading the model failed[ ({why})][ — {host} unreachable].",
        fix=(
            "Check network, DNS and proxy: set HTTPS_PROXY for the server (for the Ollama service in its systemd "
            "unit), retry (downloads resume), or fetch the files ahead (`huggingface-cli download`, `ollama pull`) and "
            "run offline with HF_HUB_OFFLINE=1 against the mounted cache."
        ),
    ),
)

HOST = LogRules(RULES, FACTS, NOISE)


def _engine_tables() -> tuple[LogRules, ...]:
    from sparkserve.engines import engines

    return tuple(t for e in engines() for t in e.doctor_rules() if isinstance(t, LogRules))


def all_rules() -> LogRules:
    """Host rules and every registered engine's rules, as one table (engines registered later count too)."""
    tables = (HOST, *_engine_tables())
    return LogRules(tuple(r for t in tables for r in t.rules), tuple(f for t in tables for f in t.facts),
                    tuple(p for t in tables for p in t.noise))


def rule_by_id(cause_id: str, engine: str | None = None) -> Rule:
    """The first rule for `cause_id`; with `engine`, that engine's own rule wins over the host's."""
    tables: tuple[LogRules, ...] = (all_rules(),)
    if engine is not None:
        from sparkserve.engines.registry import get_engine

        own = tuple(t for t in get_engine(engine).doctor_rules() if isinstance(t, LogRules))
        tables = (*own, *tables)
    for table in tables:
        for rule in table.rules:
            if rule.cause_id == cause_id:
                return rule
    raise KeyError(cause_id)
