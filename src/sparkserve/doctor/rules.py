"""Known causes of failed LLM service starts, kept as data the diagnoser walks.

A rule names a cause, the log lines that betray it (signatures), the context it needs or
must not see, and summary/fix templates. Named groups in signatures, in `extract`
patterns (searched in the matched line plus the next two, to survive wrapped lines) and
in log-wide facts fill the templates; `derive` turns raw numbers into concrete advice.
Template segments in [brackets] are dropped when a field inside them is unknown.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sparkserve.plan.recommend import round_down_len

Fields = Mapping[str, str]
Deriver = Callable[[Fields], dict[str, str]]

_CLASS_ESCAPES = set("dDsSwWbBAZ")


def _split_alternatives(pattern: str) -> list[str]:
    """Top-level branches of a regex (split on '|' outside groups and classes)."""
    parts, depth, start, i, in_class = [], 0, 0, 0, False
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            i += 2
            continue
        if in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
            if pattern[i + 1 : i + 2] == "]":
                i += 1
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            parts.append(pattern[start:i])
            start = i + 1
        i += 1
    parts.append(pattern[start:])
    return parts


def _branch_needle(branch: str) -> str | None:
    """Longest literal run outside groups that every match of `branch` must contain."""
    runs: list[str] = []
    run: list[str] = []
    depth = 0
    i = 0

    def close() -> None:
        if run:
            runs.append("".join(run))
            run.clear()

    while i < len(branch):
        ch = branch[i]
        if ch == "\\" and i + 1 < len(branch):
            nxt = branch[i + 1]
            if depth == 0 and nxt not in _CLASS_ESCAPES and not nxt.isalnum():
                run.append(nxt)
            else:
                close()
            i += 2
        elif ch == "[":
            close()
            j = i + 1
            if branch[j : j + 1] == "]":
                j += 1
            while j < len(branch) and branch[j] != "]":
                j += 2 if branch[j] == "\\" else 1
            i = j + 1
        elif ch == "(":
            close()
            depth += 1
            i += 1
        elif ch == ")":
            depth -= 1
            i += 1
        elif ch in "?*{":
            if depth == 0 and run:
                run.pop()
            close()
            close_brace = branch.find("}", i) if ch == "{" else -1
            i = close_brace + 1 if close_brace >= 0 else i + 1
        elif ch in "+.^$":
            close()
            i += 1
        else:
            if depth == 0:
                run.append(ch)
            i += 1
    close()
    best = max(runs, key=len, default="")
    return best.lower() if len(best.strip()) >= 3 else None


def _inline_groups(branch: str) -> str:
    """Replace each unquantified group without alternation by its content: its literals are required too."""
    out: list[str] = []
    i = 0
    while i < len(branch):
        ch = branch[i]
        if ch == "\\":
            out.append(branch[i : i + 2])
            i += 2
            continue
        if ch == "[":
            j = i + 1
            if branch[j : j + 1] == "]":
                j += 1
            while j < len(branch) and branch[j] != "]":
                j += 2 if branch[j] == "\\" else 1
            out.append(branch[i : j + 1])
            i = j + 1
            continue
        if ch == "(":
            end = _group_end(branch, i)
            header = re.match(r"\(\?P<\w+>|\(\?:|\((?!\?)", branch[i:])
            inner = branch[i + len(header.group(0)) : end] if header else ""
            quantified = branch[end + 1 : end + 2] in ("?", "*", "+", "{")
            if header and not quantified and len(_split_alternatives(inner)) == 1:
                out.append(_inline_groups(inner))
            else:
                out.append(branch[i : end + 1])
            i = end + 1
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _group_end(pattern: str, start: int) -> int:
    depth, i = 0, start
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "[":
            i += 1
            if pattern[i : i + 1] == "]":
                i += 1
            while i < len(pattern) and pattern[i] != "]":
                i += 2 if pattern[i] == "\\" else 1
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return len(pattern) - 1


def literal_needles(pattern: str) -> tuple[str, ...]:
    """Literals of which every match contains at least one, lowercased; () when unsure.

    Lines holding none of them are never handed to the regex, which keeps a scan of a
    long log to cheap substring tests.
    """
    needles = [_branch_needle(_inline_groups(b)) for b in _split_alternatives(pattern)]
    if any(n is None for n in needles):
        return ()
    return tuple(dict.fromkeys(n for n in needles if n))


@dataclass(frozen=True)
class Probe:
    """A compiled pattern plus the literal a line must contain before it is tried."""

    regex: re.Pattern[str]
    needles: tuple[str, ...]

    def search(self, line: str, lowered: str) -> re.Match[str] | None:
        if self.needles and not any(n in lowered for n in self.needles):
            return None
        return self.regex.search(line)


def probe(pattern: str, needle: str | None = None, flags: int = re.IGNORECASE) -> Probe:
    """Compile a case-insensitive pattern; its needle is derived unless given."""
    needles = (needle.lower(),) if needle else literal_needles(pattern)
    return Probe(re.compile(pattern, flags), needles)


@dataclass(frozen=True)
class Signature:
    """One log pattern that points at a cause; it may override the rule's texts."""

    probe: Probe
    summary: str | None = None
    fix: str | None = None


def sig(pattern: str, *, summary: str | None = None, fix: str | None = None, needle: str | None = None) -> Signature:
    """A signature line; `summary`/`fix` replace the rule's texts when this is the first line found."""
    return Signature(probe(pattern, needle), summary, fix)


@dataclass(frozen=True)
class Rule:
    """A known cause: how to spot it and what to tell the user.

    `requires`/`excludes` must / must not match somewhere in the log (e.g. weights still
    loading); `when` is a last check on the gathered fields; a cause in `supersedes` is not
    reported next to this one because this one explains it. Higher `priority` means more
    specific: it is ranked first and claims the lines it matched.
    """

    cause_id: str
    priority: int
    signatures: tuple[Signature, ...]
    summary: str
    fix: str
    extract: tuple[re.Pattern[str], ...] = ()
    requires: tuple[Probe, ...] = ()
    excludes: tuple[Probe, ...] = ()
    when: Callable[[Fields], bool] | None = None
    derive: Deriver | None = None
    supersedes: tuple[str, ...] = ()
    uma_note: str | None = None


@dataclass(frozen=True)
class Fact:
    """Context read from anywhere in the log (current settings, hardware hints)."""

    name: str
    probe: Probe
    accumulate: bool = False


def rx(pattern: str) -> re.Pattern[str]:
    """An `extract` pattern: only run on lines a signature already matched."""
    return re.compile(pattern, re.IGNORECASE)


def _num(fields: Fields, key: str) -> float | None:
    try:
        return float(fields[key].replace(",", ""))
    except (KeyError, ValueError):
        return None


def _gib(fields: Fields, key: str) -> float | None:
    """A memory size in GiB from a field like '896.00 MiB' or '2.9 GiB'."""
    raw = fields.get(key)
    if raw is None:
        return None
    m = re.match(r"\s*([\d.]+)\s*([KMGT]?)i?B?", raw, re.IGNORECASE)
    if not m:
        return None
    scale = {"K": 2**-20, "M": 2**-10, "G": 1.0, "T": 1024.0, "": 1.0}[m.group(2).upper()]
    return float(m.group(1)) * scale


def _kv_cache(f: Fields) -> dict[str, str]:
    out: dict[str, str] = {}
    max_len = _num(f, "max_len")
    est = _num(f, "est")
    needed, avail = _num(f, "needed"), _num(f, "avail")
    out["est_approx"] = ""
    if est is None and max_len and needed and avail:
        est = math.floor(max_len * avail / needed)
        out["est_approx"] = "about "
    if max_len is not None:
        out["max_len_fmt"] = f"{int(max_len):,}"
    if est is not None:
        out.update(est=str(int(est)), est_fmt=f"{int(est):,}", suggested=str(round_down_len(int(est))))
    extra = None
    if needed is not None and avail is not None:
        extra = needed - avail
    elif max_len and est and (kv := _num(f, "kv_size")):
        extra = kv * (max_len / est - 1)
    elif max_len and est and (per_token := _num(f, "kv_bytes_per_token")):  # the plan's, per GPU
        extra = (max_len - est) * per_token / 2**30
    out["util_advice"] = " or raise --gpu-memory-utilization"
    util, total = _num(f, "util"), _num(f, "total_gib")
    if extra is not None and util is not None and total:
        fit = math.ceil(round((util + extra / total) * 100, 6)) / 100
        if fit <= 0.99:
            out["util_advice"] = (
                f" or raise --gpu-memory-utilization to {fit:.2f} "
                f"(now {util:.2f}; {extra:.2f} GiB more of {total:g} GiB)"
            )
        else:
            out["util_advice"] = (
                f"; raising --gpu-memory-utilization cannot fit it "
                f"({extra:.2f} GiB more of {total:g} GiB, now {util:.2f})"
            )
    return out


def _free_memory(f: Fields) -> dict[str, str]:
    free, total = _num(f, "free"), _num(f, "total")
    if free is None or not total:
        return {}
    return {"held": f"{total - free:.2f}", "max_util": f"{math.floor(free / total * 100) / 100:.2f}"}


# Minimum Linux driver branch of each CUDA toolkit's GA release: NVIDIA CUDA Toolkit release notes, "CUDA
# Toolkit and Corresponding Driver Versions" (12.0 >=525.60.13, 12.1 >=530.30.02, 12.2 >=535.54.03,
# 12.3 >=545.23.06, 12.4 >=550.54.14, 12.5 >=555.42.02, 12.6 >=560.28.03, 12.8 >=570.26, 12.9 >=575.51.03,
# 13.0 >=580.65.06). Images check it through NVIDIA_REQUIRE_CUDA ("unsatisfied condition: cuda>=X.Y").
_CUDA_DRIVER_BRANCH = {"12.0": "525", "12.1": "530", "12.2": "535", "12.3": "545", "12.4": "550", "12.5": "555",
                       "12.6": "560", "12.8": "570", "12.9": "575", "13.0": "580"}


def _driver(f: Fields) -> dict[str, str]:
    need = f.get("need_cuda", "")
    branch = _CUDA_DRIVER_BRANCH.get(need)
    return {"branch": branch} if branch else {}


REMOVED_FLAGS: dict[str, str] = {
    "--swap-space": "was removed in vLLM 0.18 (vllm#36216; it did nothing on the V1 engine): delete it",
    "--disable-log-requests": (
        "was removed in vLLM 0.12 (vllm#29402); request logging is off by default: delete it "
        "(or say --no-enable-log-requests)"
    ),
}


def _flag(f: Fields) -> dict[str, str]:
    raw = f.get("flag", "")
    flag = raw.split("=", 1)[0]
    if flag.startswith("--"):
        flag = "--" + flag[2:].replace("_", "-")
    out = {"flag": flag}
    if flag in REMOVED_FLAGS:
        out["verdict"] = REMOVED_FLAGS[flag]
        return out
    choices = [
        c for c in re.split(r"[\s,]+", f.get("valid_flags", "") + " " + f.get("candidates", "")) if c.startswith("-")
    ]
    close = difflib.get_close_matches(flag, sorted(set(choices)), n=1, cutoff=0.6)
    if f.get("candidates"):
        out["verdict"] = f"is ambiguous or unknown; the engine offers {f['candidates'].strip()}"
        if flag == "--model":
            out["verdict"] += " (the model is the positional argument: `vllm serve <model>`)"
    elif close:
        out["verdict"] = f"is not a flag of this engine; did you mean {close[0]}?"
    else:
        out["verdict"] = (
            "is not known to the installed engine (removed, misspelled, or newer than this version): "
            "check `vllm serve --help=all` in the same image, or upgrade the image"
        )
    return out


def _choices(f: Fields) -> dict[str, str]:
    choices = [c.strip(" '\"") for c in re.split(r"[,\s]+", f.get("choices", "")) if c.strip(" '\"")]
    out: dict[str, str] = {}
    if choices:
        out["choices_short"] = ", ".join(choices[:12]) + (", …" if len(choices) > 12 else "")
        close = difflib.get_close_matches(f.get("value", ""), choices, n=1, cutoff=0.5)
        if close:
            out["closest"] = close[0]
    return out


def _ray(f: Fields) -> dict[str, str]:
    thr = _num(f, "thr")
    return {"thr_up": f"{min(thr + 0.03, 0.99):.2f}"} if thr is not None else {}


def _ollama_memory(f: Fields) -> dict[str, str]:
    need, have = _gib(f, "need"), _gib(f, "have")
    return {"short": f"{need - have:.1f} GiB"} if need is not None and have is not None else {}


def _runner(f: Fields) -> dict[str, str]:
    need, have = _gib(f, "required"), _gib(f, "available")
    if need is not None and have is not None and need > have:
        return {"mem_hint": f"the server log shows {f['required']} needed but {f['available']} available"}
    return {}


def on_unified_memory(f: Fields) -> bool:
    """DGX Spark / GB10 and other integrated GPUs: GPU memory is host RAM."""
    if f.get("uma"):
        return True
    total = _num(f, "total") or _num(f, "total_gib")
    return total is not None and 119.0 <= total <= 123.5


_SPARK_MEMORY = (
    "On DGX Spark the GPU pool is host RAM: flush page cache before starting "
    "(`sync; echo 3 | sudo tee /proc/sys/vm/drop_caches`), judge headroom by MemAvailable, "
    "and keep --gpu-memory-utilization at or below 0.85."
)

NOISE: tuple[Probe, ...] = (
    probe(r"If out-of-memory error occurs during cudagraph capture"),
    probe(r"No available shared memory broadcast block found"),
    probe(r"Default sampling parameters have been overridden"),
    probe(r"Found ulimit of \d+ and failed to automatically increase"),
    probe(r"Possibly too large swap space"),
    probe(r"We must use the `spawn` multiprocessing start method"),
    probe(r"To see benefits of async output processing"),
    probe(r"does not have native support for FP8 computation"),
    probe(r"Casting torch\.\w+ to torch\.\w+"),
    probe(r"`resume_download` is deprecated"),
    probe(r"Not enough SMs to use max_autotune_gemm"),
    probe(r"destroy_process_group\(\) was not called"),
    probe(r"`trust_remote_code` is to be used with Auto classes"),
    probe(r"Using a slow tokenizer"),
    probe(r"SyntaxWarning: invalid escape sequence"),
    probe(r"Cudagraph is disabled under eager mode"),
    probe(r"Token indices sequence length is longer than the specified maximum"),
    probe(r"\bNCCL INFO\b"),
    probe(r"\[GIN-debug\] \[WARNING\]"),
    probe(r"the attribute `version` is obsolete"),
    probe(r"Xet Storage is enabled for this repo"),
    probe(r"not control-type; this is probably a bug in the model"),
    probe(r"Failed to import from vllm\._C with ModuleNotFoundError"),
)

FACTS: tuple[Fact, ...] = (
    Fact(
        "util",
        probe(r"gpu[-_]memory[-_]utilization['\"]?\s*(?:=|:|\s)\s*\(?(?P<v>0?\.\d+|1\.0)\b", needle="utilization"),
    ),
    Fact("util", probe(r"desired GPU memory utilization (?:is )?\((?P<v>[\d.]+),")),
    Fact("total_gib", probe(r"total_gpu_memory\s*[=(]\s*(?P<v>[\d.]+)\s*GiB")),
    Fact("total_gib", probe(r"total capacity of (?P<v>[\d.]+) GiB")),
    Fact("total_gib", probe(r"Free memory on device(?: \S+)? \([\d.]+/(?P<v>[\d.]+) GiB\)")),
    Fact("kv_size", probe(r"kv_cache_size=(?P<v>[\d.]+)GiB")),
    Fact("uma", probe(r"\bGB10\b|\bsm_121a?\b|DGX Spark|unified memory|is_integrated|Jetson")),
    Fact("mem_get_info", probe(r"mem_get_info|cudaMemGetInfo")),
    Fact("ready", probe(r"Application startup complete|Starting vLLM API server")),
    Fact("valid_flags", probe(r"\[(?P<v>--[a-z0-9][\w-]*)", needle="[--"), accumulate=True),
    Fact("driver", probe(r"Driver Version:\s*(?P<v>[\d.]+)")),
    Fact("host_cuda", probe(r"CUDA Version:\s*(?P<v>\d+\.\d+)")),
    Fact("required", probe(r'memory\.required\.full="(?P<v>[\d.]+ [KMG]iB)"')),
    Fact("available", probe(r'memory\.available="(?P<v>[\d.]+ [KMG]iB)"')),
)

_FREE_MEMORY_NUMBERS = (
    rx(
        r"Free memory on device(?: \S+)? \((?P<free>[\d.]+)/(?P<total>[\d.]+) GiB\) on startup is\s*"
        r"less\s*than\s*desired\s*GPU\s*memory\s*utilization\s*"
        r"\((?P<util>[\d.]+),\s*(?P<requested>[\d.]+)\s*GiB\)"
    ),
    rx(r"Free memory on device(?: \S+)? \((?P<free>[\d.]+)/(?P<total>[\d.]+) GiB\)"),
)
_WEIGHTS_LOADED = probe(r"Model loading took|Loading model weights took|Loading weights took")
_CUDA_OOM = r"CUDA out of memory|OutOfMemoryError: CUDA|CUDA error: out of memory"
_OOM_NUMBERS = (
    rx(r"Tried to allocate (?P<tried>[\d.]+ [KMG]iB)"),
    rx(r"total capa(?:ci)?ty of (?P<total>[\d.]+ GiB) of which (?P<free>[\d.]+ [KMG]iB) is free"),
    rx(r"\(GPU \d+; (?P<total>[\d.]+ GiB) total capacity"),
)

RULES: tuple[Rule, ...] = (
    Rule(
        "no_kv_cache_memory",
        priority=95,
        signatures=(
            sig(r"No available memory for the cache blocks"),
            sig(r"# GPU blocks: 0\b", needle="# gpu blocks: 0"),
            sig(r"Available KV cache memory: (?P<kv>-[\d.]+) ?GiB", needle="available kv cache memory: -"),
        ),
        summary=(
            "After the weights and the activation peak nothing was left for the KV cache[ at "
            "--gpu-memory-utilization {util}][ ({kv} GiB)]."
        ),
        fix=(
            "Give vLLM a larger share: raise --gpu-memory-utilization[ above {util}] if no other process uses the GPU "
            "(`nvidia-smi`), lower the activation peak (--max-num-batched-tokens, --max-num-seqs, --enforce-eager), "
            "or serve a quantized/smaller model or more GPUs (--tensor-parallel-size)."
        ),
        supersedes=("cuda_oom_runtime",),
        uma_note=_SPARK_MEMORY,
    ),
    Rule(
        "kv_cache_too_small_for_max_model_len",
        priority=95,
        signatures=(sig(r"max seq len \(\d+\)"),),
        summary="The KV cache cannot hold one request of max-model-len[ ({needed} GiB needed, {avail} GiB available)].",
        fix=(
            "KV cache holds {est_approx}{est_fmt} tokens, max-model-len is {max_len_fmt}: lower --max-model-len to "
            "{suggested} (or ≤ {est}){util_advice}."
        ),
        extract=(
            rx(
                r"max seq len \((?P<max_len>\d+)\),\s*\(?(?P<needed>[\d.]+)\s*GiB\s*KV\s*cache\s*is\s*needed,"
                r"\s*which\s*is\s*larger\s*than\s*the\s*available\s*KV\s*cache\s*memory\s*\((?P<avail>[\d.]+)\s*GiB\)"
            ),
            rx(r"estimated\s*maximum\s*model\s*length\s*is\s*(?P<est>\d+)"),
            rx(
                r"max seq len \((?P<max_len>\d+)\) is larger than the maximum number of tokens that can be stored in "
                r"KV cache \((?P<est>\d+)\)"
            ),
        ),
        derive=_kv_cache,
        supersedes=("cuda_oom_runtime",),
        uma_note=(
            "On DGX Spark prefer a shorter --max-model-len over a higher utilisation: the pool is shared with the OS."
        ),
    ),
    Rule(
        "page_cache_pressure",
        priority=96,
        signatures=(
            sig(r"Free memory on device .*on startup is\b", needle="free memory on device"),
            sig(_CUDA_OOM),
        ),
        summary=(
            "On unified memory (DGX Spark) too little memory was free at start-up[: {free} of {total} GiB free, "
            "{requested} GiB requested at utilisation {util}]; page cache and other processes count as used."
        ),
        fix=(
            "Flush clean caches and retry: `sync; echo 3 | sudo tee /proc/sys/vm/drop_caches`; compare MemAvailable "
            "with MemFree in /proc/meminfo and stop other memory users (other containers, leftover vLLM processes; "
            "reboot if memory stays trapped). Only then lower --gpu-memory-utilization"
            "[ (≤ {max_util} fits right now)]; Spark recipes use 0.85."
        ),
        extract=_FREE_MEMORY_NUMBERS,
        when=lambda f: on_unified_memory(f) and ("free" in f or "mem_get_info" in f),
        derive=_free_memory,
        supersedes=("free_memory_below_utilization", "cuda_oom_runtime"),
    ),
    Rule(
        "free_memory_below_utilization",
        priority=90,
        signatures=(sig(r"Free memory on device .*on startup is\b", needle="free memory on device"),),
        summary=(
            "Less GPU memory was free at start-up than --gpu-memory-utilization asks for[: {free} of {total} GiB "
            "free, {requested} GiB requested]."
        ),
        fix=(
            "[Something else holds {held} GiB: ]stop the other GPU processes (`nvidia-smi`; leftover vLLM workers, "
            "a second container) or lower --gpu-memory-utilization[ from {util} to ≤ {max_util}]."
        ),
        extract=_FREE_MEMORY_NUMBERS,
        derive=_free_memory,
    ),
    Rule(
        "weights_oom",
        priority=88,
        signatures=(
            sig(r"Failed to create \w+ (?:\w+ )?weights: CUDA out of memory"),
            sig(_CUDA_OOM),
        ),
        summary="The GPU ran out of memory while loading the model weights[ (tried {tried}, {free} free of {total})].",
        fix=(
            "The weights do not fit[ in {total}]: use a quantized checkpoint (FP8, AWQ/GPTQ, NVFP4), spread it over "
            "more GPUs with --tensor-parallel-size, or free the GPU (another process may hold memory: `nvidia-smi`). "
            "Lowering --max-model-len does not help at this stage."
        ),
        extract=_OOM_NUMBERS,
        requires=(
            probe(
                r"load_model|load_weights|create_weights|weight_loader|model_loader|load_single_module"
                r"|Loading (?:safetensors|pt) checkpoint shards|Loading (?:safetensors )?weights"
            ),
        ),
        excludes=(_WEIGHTS_LOADED,),
        supersedes=("cuda_oom_runtime",),
        uma_note=_SPARK_MEMORY,
    ),
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
            ("nv_err" in f and "ready" not in f) or (("proc" in f or "cuda_alloc" in f) and on_unified_memory(f))
        ),
        supersedes=("cuda_oom_runtime",),
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
        derive=_driver,
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
        "entrypoint_args_mismatch",
        priority=92,
        signatures=(
            sig(r"unrecognized arguments: (?P<arg>[^-\s]\S*)"),
            sig(r"""exec: "?(?P<arg>--[\w-]+)"?: (?:executable file )?not found""", needle="exec: "),
        ),
        summary="The container command does not fit the image's entrypoint (the engine got '{arg}' as an argument).",
        fix=(
            "The vllm/vllm-openai entrypoint already runs the server: pass only the model and flags as the command "
            '(`command: ["<model>", "--max-model-len", "8192"]`), not `vllm serve …` or a shell; images without '
            "an entrypoint (nvcr.io/nvidia/vllm) need the full `vllm serve <model> …`. To run a shell, override "
            "`--entrypoint`."
        ),
    ),
    Rule(
        "unknown_cli_flag",
        priority=90,
        signatures=(
            sig(r"unrecognized arguments: (?P<flag>--?[\w-]+(?:=\S*)?)"),
            sig(r"ambiguous option: (?P<flag>--?[\w-]+)(?:=\S*)? could match (?P<candidates>.+)$"),
            sig(r"flag provided but not defined: (?P<flag>-+[\w-]+)"),
            sig(r"unknown (?:shorthand )?flag: '?(?P<flag>-*[\w-]+)'?", needle="flag: "),
        ),
        summary="The engine rejected the command-line flag {flag}.",
        fix="{flag} {verdict}.",
        derive=_flag,
    ),
    Rule(
        "invalid_engine_argument",
        priority=85,
        signatures=(
            sig(r"Unknown quantization method: (?P<value>[\w-]+)\. Must be one of \[(?P<choices>[^\]]*)\]"),
            sig(
                r"argument (?P<arg>--[\w-]+)(?:/-\w+)?: invalid choice: '(?P<value>[^']*)' \(choose from "
                r"(?P<choices>[^)]*)\)"
            ),
            sig(r"type=literal_error, input_value='(?P<value>[^']*)'", needle="literal_error"),
            sig(
                r"Quantization method specified in the model config \((?P<cfg>[\w-]+)\) does not match the "
                r"quantization method specified in the `?quantization`? argument \((?P<value>[\w-]+)\)",
                summary="--quantization {value} contradicts the checkpoint, which is quantized as {cfg}.",
                fix="Drop --quantization (vLLM reads it from the checkpoint) or set --quantization {cfg}.",
            ),
            sig(
                r"User-specified max_model_len \((?P<user>\d+)\) is greater than the derived max_model_len "
                r"\((?:\w+=)?(?P<derived>\d+)(?: in (?P<where>[^)]*))?",
                summary="--max-model-len {user} is longer than the model supports ({derived}[, from {where}]).",
                fix=(
                    "Set --max-model-len ≤ {derived}; go beyond it only with a model-supported RoPE scaling "
                    "(--hf-overrides), not with VLLM_ALLOW_LONG_MAX_MODEL_LEN."
                ),
            ),
        ),
        summary="An engine argument has an invalid value[: '{value}'][ for {arg}].",
        fix=(
            "Use one of the accepted values[: {choices_short}][ — closest: {closest}]; "
            "`vllm serve --help=all` lists them."
        ),
        extract=(rx(r"Input should be (?P<choices>.+?) \[type=literal_error"),),
        derive=_choices,
    ),
    Rule(
        "broken_engine_install",
        priority=93,
        signatures=(
            sig(r"_C\S*\.so: undefined symbol"),
            sig(
                r"Error in inspecting model architecture '(?P<arch>[^']+)'",
                summary=(
                    "vLLM could not import its own model code while inspecting '{arch}': "
                    "the install or platform is broken."
                ),
                fix=(
                    "Run vLLM where it is supported (Linux or WSL2, or the official container), in a clean venv "
                    "with the torch its wheel pins; the 'architecture not supported' error that follows is a "
                    "consequence."
                ),
            ),
            sig(r"No module named '(?P<module>vllm\._C|vllm|torch)'"),
            sig(r"operator torchvision::nms does not exist"),
            sig(r"(?P<module>lib\w+\.so[.\d]*): cannot open shared object file"),
        ),
        summary=(
            "The engine installation is broken: its compiled extension does not match the installed "
            "PyTorch/CUDA libraries."
        ),
        fix=(
            "Reinstall in a clean venv so pip picks the torch the vLLM wheel was built against (`pip install "
            "vllm==<version>`), never upgrade torch separately; on CPU builds remove CUDA torchvision/torchaudio "
            "(`pip uninstall -y torchvision torchaudio`). The official container image avoids this."
        ),
        supersedes=("model_format_unsupported_by_engine",),
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
        derive=_ray,
    ),
    Rule(
        "model_format_unsupported_by_engine",
        priority=92,
        signatures=(
            sig(
                r"GGUF model with architecture (?P<arch>[\w.-]+) is not supported",
                fix=(
                    "vLLM's GGUF loader does not know '{arch}': serve the original safetensors checkpoint with "
                    "vLLM, or serve this GGUF with Ollama or llama.cpp."
                ),
            ),
            sig(
                r"Architecture (?P<arch>[\w.-]+) not supported",
                needle="architecture ",
                fix=(
                    "The GGUF reader does not know '{arch}': serve the original safetensors checkpoint with vLLM, or "
                    "serve this GGUF with Ollama or llama.cpp."
                ),
            ),
            sig(
                r"unknown model architecture: '(?P<arch>[^']+)'",
                fix=(
                    "This Ollama/llama.cpp build does not know '{arch}': upgrade it (`ollama -v`) "
                    "or pick a model it supports."
                ),
            ),
            sig(r"Model architectures \[(?P<arch>[^\]]+)\] are not supported for now"),
            sig(
                r"(?:unable to load model|error loading model):? (?P<blob>\S*blobs[/\\]sha256[-:][0-9a-f]+)",
                summary="Ollama could not load the model file {blob}.",
                fix=(
                    "Most often the model needs a newer Ollama than this one (`ollama -v`; new model families need "
                    "the release that added them): upgrade Ollama. If it is already current, the blob is damaged or "
                    "came from elsewhere: `ollama rm <model>` and `ollama pull <model>` again."
                ),
            ),
            sig(
                r"error loading model: (?P<why>check_tensor_dims: tensor '[^']+' not found|done_getting_tensors: "
                r"wrong number of tensors[^\n]*|missing tensor '[^']+')",
                summary="The model file has tensors this Ollama/llama.cpp build does not expect ({why}).",
                fix=(
                    "The GGUF was made for a newer llama.cpp: upgrade Ollama (`ollama -v`), or pick a GGUF of the "
                    "same model converted for this version."
                ),
            ),
            sig(r"(?:requires|needs) (?:a )?newer version of Ollama|requires Ollama (?:version )?[\d.]+",
                fix="Upgrade Ollama to the version the model needs (`ollama -v` shows this one), then pull again."),
        ),
        summary="The engine cannot load this model format/architecture[ ('{arch}')].",
        fix=(
            "Use a checkpoint format this engine supports for '{arch}' (safetensors for vLLM, GGUF for Ollama), "
            "or upgrade the engine."
        ),
        supersedes=("ollama_runner_terminated",),
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
        "ollama_insufficient_system_memory",
        priority=95,
        signatures=(
            sig(
                r"model requires more system memory \((?P<need>[\d.]+ \w+)\) than is available \((?P<have>[\d.]+ \w+)\)"
            ),
        ),
        summary="Ollama refused to load the model: it needs {need} of RAM but {have} is available.",
        fix=(
            "Free {short} or more: stop other loaded models (`ollama ps`, `ollama stop <model>`, "
            "OLLAMA_MAX_LOADED_MODELS=1), choose a smaller quantization or model, lower num_ctx and "
            "OLLAMA_NUM_PARALLEL (the KV cache is num_ctx × NUM_PARALLEL), or add swap."
        ),
        derive=_ollama_memory,
    ),
    Rule(
        "ollama_runner_terminated",
        priority=50,
        signatures=(
            sig(r"llama runner process has terminated:? ?(?P<status>[^\"\n]*)"),
            sig(r"llama-server process has terminated:? ?(?P<status>[^\"\n]*)"),
            sig(r"llama runner process no longer running: ?(?P<status>\S*)"),
            sig(r"llama runner terminated:? ?(?P<status>[^\"\n]*)"),
        ),
        summary="Ollama's model runner crashed while loading or running the model[ ({status})].",
        fix=(
            "Read the server log lines just before this one (`journalctl -u ollama` or `docker logs <container>`) for "
            "the real error[ — {mem_hint}]; common causes are GPU memory (lower num_ctx or num_gpu), an architecture "
            "this Ollama does not support (upgrade Ollama), or a broken GPU library install."
        ),
        derive=_runner,
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
    Rule(
        "cuda_oom_runtime",
        priority=60,
        signatures=(sig(_CUDA_OOM),),
        summary=(
            "The GPU ran out of memory after the weights loaded (profiling, CUDA-graph capture or a large batch)[: "
            "tried {tried}, {free} free of {total}]."
        ),
        fix=(
            "Leave more headroom: lower --gpu-memory-utilization[ from {util}], reduce --max-num-seqs and "
            "--max-num-batched-tokens, or add --enforce-eager to skip CUDA graphs; "
            "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True helps when memory is fragmented."
        ),
        extract=_OOM_NUMBERS,
        uma_note=_SPARK_MEMORY,
    ),
)


def rule_by_id(cause_id: str) -> Rule:
    for rule in RULES:
        if rule.cause_id == cause_id:
            return rule
    raise KeyError(cause_id)
