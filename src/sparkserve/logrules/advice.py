"""The arithmetic behind the fixes: turn numbers a log (or the plan) gives into concrete settings.

Each function takes the fields a rule gathered and returns new template fields; none reads files.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping

from sparkserve.logrules.matcher import Fields
from sparkserve.plan.recommend import round_down_len


def num(fields: Fields, key: str) -> float | None:
    try:
        return float(fields[key].replace(",", ""))
    except (KeyError, ValueError):
        return None


def gib(fields: Fields, key: str) -> float | None:
    """A memory size in GiB from a field like '896.00 MiB' or '2.9 GiB'."""
    raw = fields.get(key)
    if raw is None:
        return None
    m = re.match(r"\s*([\d.]+)\s*([KMGT]?)i?B?", raw, re.IGNORECASE)
    if not m:
        return None
    scale = {"K": 2**-20, "M": 2**-10, "G": 1.0, "T": 1024.0, "": 1.0}[m.group(2).upper()]
    return float(m.group(1)) * scale


def kv_cache(f: Fields) -> dict[str, str]:
    out: dict[str, str] = {}
    max_len = num(f, "max_len")
    est = num(f, "est")
    needed, avail = num(f, "needed"), num(f, "avail")
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
    elif max_len and est and (kv := num(f, "kv_size")):
        extra = kv * (max_len / est - 1)
    elif max_len and est and (per_token := num(f, "kv_bytes_per_token")):  # the plan's, per GPU
        extra = (max_len - est) * per_token / 2**30
    out["util_advice"] = " or raise --gpu-memory-utilization"
    util, total = num(f, "util"), num(f, "total_gib")
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


def free_memory(f: Fields) -> dict[str, str]:
    free, total = num(f, "free"), num(f, "total")
    if free is None or not total:
        return {}
    return {"held": f"{total - free:.2f}", "max_util": f"{math.floor(free / total * 100) / 100:.2f}"}


# Minimum Linux driver branch of each CUDA toolkit's GA release: NVIDIA CUDA Toolkit release notes, "CUDA
# Toolkit and Corresponding Driver Versions" (12.0 >=525.60.13, 12.1 >=530.30.02, 12.2 >=535.54.03,
# 12.3 >=545.23.06, 12.4 >=550.54.14, 12.5 >=555.42.02, 12.6 >=560.28.03, 12.8 >=570.26, 12.9 >=575.51.03,
# 13.0 >=580.65.06). Images check it through NVIDIA_REQUIRE_CUDA ("unsatisfied condition: cuda>=X.Y").
_CUDA_DRIVER_BRANCH = {"12.0": "525", "12.1": "530", "12.2": "535", "12.3": "545", "12.4": "550", "12.5": "555",
                       "12.6": "560", "12.8": "570", "12.9": "575", "13.0": "580"}


def _reclaimable(f: Fields) -> float | None:
    """GiB of page cache the kernel would hand back: Cached, else MemAvailable - MemFree."""
    cache = gib(f, "mem_cache")
    if cache is not None:
        return cache
    free, available = gib(f, "mem_free"), gib(f, "mem_available")
    return available - free if free is not None and available is not None else None


def page_cache_covers(f: Fields) -> bool:
    """The cache alone would have met the refused request (or, without its numbers, outweighs what was free)."""
    cache = _reclaimable(f)
    if cache is None or cache <= 0:
        return False
    need, have = gib(f, "need"), gib(f, "have")
    if need is not None and have is not None:
        return cache >= need - have
    free = gib(f, "mem_free")
    return free is not None and cache >= free


def page_cache(f: Fields) -> dict[str, str]:
    """The cache in GiB, and /proc/meminfo's kB figures in GiB too."""
    out: dict[str, str] = {}
    cache = _reclaimable(f)
    if cache is not None:
        out["cache_gib"] = f"{cache:.0f}"
    for key in ("mem_free", "mem_available"):
        size = gib(f, key)
        if size is not None and f[key].rstrip().endswith("kB"):
            out[key] = f"{size:.1f} GiB"
    return out


def driver(f: Fields) -> dict[str, str]:
    need = f.get("need_cuda", "")
    branch = _CUDA_DRIVER_BRANCH.get(need)
    return {"branch": branch} if branch else {}


def flag_verdict(f: Fields, removed: Mapping[str, str], help_hint: str) -> dict[str, str]:
    """What to say about a rejected flag: removed (and when), ambiguous, misspelled (closest), or unknown."""
    raw = f.get("flag", "")
    flag = raw.split("=", 1)[0]
    if flag.startswith("--"):
        flag = "--" + flag[2:].replace("_", "-")
    out = {"flag": flag}
    if flag in removed:
        out["verdict"] = removed[flag]
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
            f"check {help_hint} in the same image, or upgrade the image"
        )
    return out


def choices(f: Fields) -> dict[str, str]:
    choices = [c.strip(" '\"") for c in re.split(r"[,\s]+", f.get("choices", "")) if c.strip(" '\"")]
    out: dict[str, str] = {}
    if choices:
        out["choices_short"] = ", ".join(choices[:12]) + (", …" if len(choices) > 12 else "")
        close = difflib.get_close_matches(f.get("value", ""), choices, n=1, cutoff=0.5)
        if close:
            out["closest"] = close[0]
    return out


def ray(f: Fields) -> dict[str, str]:
    thr = num(f, "thr")
    return {"thr_up": f"{min(thr + 0.03, 0.99):.2f}"} if thr is not None else {}


def ollama_memory(f: Fields) -> dict[str, str]:
    need, have = gib(f, "need"), gib(f, "have")
    return {"short": f"{need - have:.1f} GiB"} if need is not None and have is not None else {}


def runner(f: Fields) -> dict[str, str]:
    need, have = gib(f, "required"), gib(f, "available")
    if need is not None and have is not None and need > have:
        return {"mem_hint": f"the server log shows {f['required']} needed but {f['available']} available"}
    return {}


def on_unified_memory(f: Fields) -> bool:
    """DGX Spark / GB10 and other integrated GPUs: GPU memory is host RAM."""
    if f.get("uma"):
        return True
    total = num(f, "total") or num(f, "total_gib")
    return total is not None and 119.0 <= total <= 123.5


SPARK_MEMORY = (
    "On DGX Spark the GPU pool is host RAM: flush page cache before starting "
    "(`sync; echo 3 | sudo tee /proc/sys/vm/drop_caches`), judge headroom by MemAvailable, "
    "and keep --gpu-memory-utilization at or below 0.85."
)
