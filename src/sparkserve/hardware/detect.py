"""Find this machine's NVIDIA GPUs through NVML and match them to a catalog profile.

Every NVML reading is optional: a GB10 answers NOT_SUPPORTED for memory, containers may
hide power or clocks, and an old driver may lack a call. One failed reading becomes None
(shown as n/a); it never aborts detection. pynvml is imported only inside `detect`, so a
machine without it (or without a driver) still plans with `--hardware`. Where NVML cannot
load (no libnvidia-ml.so.1 in the container, a broken binding), `nvidia-smi --query-gpu`
gives the same identity and most readings.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from typing import Any

from sparkserve.hardware.catalog import PROFILES, get_profile
from sparkserve.readings.meminfo import DROP_CACHES, read_meminfo  # noqa: F401 - DROP_CACHES re-exported
from sparkserve.readings.nvml import load as nvml_load
from sparkserve.readings.nvml import read as _read
from sparkserve.units import GIB

# Ordered: more specific names first (GH200 before H200, H100 NVL/PCIe before H100).
# Matched against the lower-cased NVML name with a leading "nvidia " removed.
_NAME_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"\bgb10\b", "dgx-spark"),
    (r"\bgh200\b", "gh200"),
    (r"\bh100 nvl\b", "h100-nvl"),
    (r"\bh100 pcie\b", "h100-pcie"),
    (r"\bh100 (80gb hbm3|sxm)", "h100-sxm"),
    (r"^h200$|\bh200 (sxm|141gb)", "h200"),
    (r"\ba100\b.*\b40gb\b", "a100-40gb"),
    (r"\ba100\b.*\b80gb\b", "a100-80gb"),
    (r"^l40s$", "l40s"),
    (r"^geforce rtx 4090$", "rtx-4090"),
    (r"^geforce rtx 5090$", "rtx-5090"),
    (r"^rtx pro 6000 blackwell\b", "rtx-pro-6000"),
)


@dataclass(frozen=True)
class GPUProcess:
    """A compute process on a GPU; memory is None where NVML cannot attribute it (WDDM, some containers)."""

    pid: int
    used_memory_bytes: int | None


@dataclass(frozen=True)
class DetectedGPU:
    """One GPU as NVML reports it; None marks a reading NVML would not give."""

    index: int
    name: str
    uuid: str | None = None
    memory_total_gib: float | None = None  # None on GB10: NVML says NOT_SUPPORTED
    unified: bool = False  # memory is the host's (/proc/meminfo), not the GPU's own
    compute_capability: str | None = None
    memory_bus_width_bits: int | None = None
    max_memory_clock_mhz: int | None = None
    bandwidth_gbs: float | None = None  # derived from bus width and memory clock
    power_w: float | None = None
    power_limit_w: float | None = None
    temperature_c: int | None = None
    utilization_pct: int | None = None
    profile_id: str | None = None
    memory_used_gib: float | None = None  # None on GB10, like the total
    processes: tuple[GPUProcess, ...] = ()  # per-process memory works on GB10 (field notes)


@dataclass(frozen=True)
class Detection:
    """What `sparkserve hw` found on this machine."""

    gpus: list[DetectedGPU]
    profile_id: str | None
    driver_version: str | None = None
    cuda_driver_version: str | None = None
    memavailable_gib: float | None = None
    memtotal_gib: float | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)




def profile_for_name(name: str) -> str | None:
    """Catalog id for an NVML device name, or None when the catalog has no such GPU."""
    key = re.sub(r"^nvidia\s+", "", name.strip().lower())
    for pattern, profile_id in _NAME_PATTERNS:
        if re.search(pattern, key):
            return profile_id
    return None


def nvml_bandwidth_gbs(bus_width_bits: int | None, max_memory_clock_mhz: int | None) -> float | None:
    """Peak bandwidth from NVML's bus width and max memory clock (double data rate), GB/s."""
    if not bus_width_bits or not max_memory_clock_mhz:
        return None
    return round(bus_width_bits / 8 * max_memory_clock_mhz * 2 / 1000, 1)


def closest_profile(gpu: DetectedGPU) -> str | None:
    """The catalog profile nearest an unknown GPU by bandwidth and memory (log distance)."""
    if gpu.bandwidth_gbs is None and gpu.memory_total_gib is None:
        return None

    def distance(p_id: str) -> float:
        p = PROFILES[p_id]
        d = 0.0
        if gpu.bandwidth_gbs:
            d += abs(math.log(gpu.bandwidth_gbs / p.bandwidth_gbs))
        if gpu.memory_total_gib:
            d += abs(math.log(gpu.memory_total_gib / p.gpu_memory_gib))
        return d

    return min(PROFILES, key=distance)


def _text(value: Any) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _read_gpu(nvml: Any, index: int) -> tuple[DetectedGPU, bool]:
    """One GPU's readings; the flag says NVML refused memory info as NOT_SUPPORTED."""
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    name = _text(_read(nvml.nvmlDeviceGetName, handle)) or f"GPU {index}"
    not_supported = getattr(nvml, "NVMLError_NotSupported", ())
    memory_total_gib = memory_used_gib = None
    memory_not_supported = False
    try:
        info = nvml.nvmlDeviceGetMemoryInfo(handle)
        memory_total_gib = round(info.total / GIB, 2)
        used = getattr(info, "used", None)
        memory_used_gib = round(used / GIB, 2) if isinstance(used, int) else None
    except not_supported:
        memory_not_supported = True
    except Exception:  # noqa: BLE001
        pass
    cc = _read(nvml.nvmlDeviceGetCudaComputeCapability, handle)
    bus = _read(nvml.nvmlDeviceGetMemoryBusWidth, handle)
    mem_clock = _read(nvml.nvmlDeviceGetMaxClockInfo, handle, getattr(nvml, "NVML_CLOCK_MEM", 2))
    power_mw = _read(nvml.nvmlDeviceGetPowerUsage, handle)
    limit_mw = _read(nvml.nvmlDeviceGetEnforcedPowerLimit, handle)
    util = _read(nvml.nvmlDeviceGetUtilizationRates, handle)
    profile_id = profile_for_name(name)
    unified = memory_not_supported or (profile_id is not None and PROFILES[profile_id].unified)
    gpu = DetectedGPU(
        index=index,
        name=name,
        uuid=_text(_read(nvml.nvmlDeviceGetUUID, handle)),
        memory_total_gib=memory_total_gib,
        unified=unified,
        compute_capability=f"{cc[0]}.{cc[1]}" if cc else None,
        memory_bus_width_bits=bus or None,
        max_memory_clock_mhz=mem_clock or None,
        bandwidth_gbs=nvml_bandwidth_gbs(bus, mem_clock),
        power_w=round(power_mw / 1000, 1) if power_mw is not None else None,
        power_limit_w=round(limit_mw / 1000, 1) if limit_mw is not None else None,
        temperature_c=_read(nvml.nvmlDeviceGetTemperature, handle, getattr(nvml, "NVML_TEMPERATURE_GPU", 0)),
        utilization_pct=getattr(util, "gpu", None),
        profile_id=profile_id,
        memory_used_gib=memory_used_gib,
        processes=_processes(nvml, handle),
    )
    return gpu, memory_not_supported


def _processes(nvml: Any, handle: Any) -> tuple[GPUProcess, ...]:
    """Compute processes and their memory; () when NVML will not list them."""
    query = getattr(nvml, "nvmlDeviceGetComputeRunningProcesses", None)  # missing in very old bindings
    found = (_read(query, handle) if query else None) or []
    out = []
    for proc in found:
        pid = getattr(proc, "pid", None)
        if isinstance(pid, int):
            used = getattr(proc, "usedGpuMemory", None)  # pynvml turns NVML_VALUE_NOT_AVAILABLE into None
            out.append(GPUProcess(pid=pid, used_memory_bytes=used if isinstance(used, int) else None))
    return tuple(out)


def _cuda_version(raw: int | None) -> str | None:
    return f"{raw // 1000}.{raw % 1000 // 10}" if raw else None


def detect(meminfo_path: str = "/proc/meminfo", nvml: Any = None) -> Detection:
    """Detect GPUs and host memory; never raises. `nvml` replaces the pynvml module (tests)."""
    meminfo = read_meminfo(meminfo_path)
    memtotal = round(meminfo["MemTotal"] / GIB, 2) if "MemTotal" in meminfo else None
    memavailable = round(meminfo["MemAvailable"] / GIB, 2) if "MemAvailable" in meminfo else None
    host = {"memtotal_gib": memtotal, "memavailable_gib": memavailable}

    nvml, why = nvml_load(nvml)
    if nvml is None:
        return _fallback(str(why), host)

    notes: list[str] = []
    gpus: list[DetectedGPU] = []
    driver = cuda = None
    try:
        driver = _text(_read(nvml.nvmlSystemGetDriverVersion))
        cuda = _cuda_version(_read(nvml.nvmlSystemGetCudaDriverVersion))
        for index in range(_read(nvml.nvmlDeviceGetCount) or 0):
            try:
                gpu, memory_not_supported = _read_gpu(nvml, index)
            except Exception as exc:  # noqa: BLE001 - e.g. a handle NVML will not give
                notes.append(f"GPU {index}: unreadable ({exc or type(exc).__name__})")
                continue
            gpus.append(gpu)
            if memory_not_supported:
                notes.append(
                    f"GPU {index} ({gpu.name}): NVML reports memory as NOT_SUPPORTED; "
                    "unified memory, taken from /proc/meminfo (MemTotal, MemAvailable)"
                )
    finally:
        _read(nvml.nvmlShutdown)

    if not gpus:
        notes.insert(0, "NVML found no GPU")
    notes.extend(_profile_notes(gpus))
    ids = {g.profile_id for g in gpus}
    profile_id = ids.pop() if len(ids) == 1 else None
    return Detection(gpus=gpus, profile_id=profile_id, driver_version=driver, cuda_driver_version=cuda, notes=notes,
                     **host)


def _fallback(reason: str, host: dict[str, Any]) -> Detection:
    """nvidia-smi's readings when NVML would not load; the NVML reason when that fails too."""
    smi = shutil.which("nvidia-smi")
    found = query_nvidia_smi(smi) if smi else None
    if found is None:
        where = "nvidia-smi is not on PATH" if smi is None else "nvidia-smi did not answer"
        return Detection(gpus=[], profile_id=None, notes=[f"{reason}; {where} (no NVIDIA driver?)"], **host)
    gpus, driver, cuda = found
    notes = [f"{reason}; read with nvidia-smi instead"] if gpus else [f"nvidia-smi found no GPU ({reason})"]
    for gpu in gpus:
        if gpu.unified and gpu.memory_total_gib is None:
            notes.append(
                f"GPU {gpu.index} ({gpu.name}): nvidia-smi reports memory as Not Supported; "
                "unified memory, taken from /proc/meminfo (MemTotal, MemAvailable)"
            )
    notes.extend(_profile_notes(gpus))
    ids = {g.profile_id for g in gpus}
    profile_id = ids.pop() if len(ids) == 1 else None
    return Detection(
        gpus=gpus, profile_id=profile_id, driver_version=driver, cuda_driver_version=cuda, notes=notes, **host
    )


# nvidia-smi --help-query-gpu names these; compute_cap needs driver 510+, hence the retry without it.
SMI_FIELDS = (
    "index",
    "name",
    "uuid",
    "memory.total",
    "memory.used",
    "power.draw",
    "power.limit",
    "temperature.gpu",
    "utilization.gpu",
    "clocks.max.memory",
    "driver_version",
    "compute_cap",
)
SMI_APPS = ("gpu_uuid", "pid", "used_memory")


def _smi(binary: str, *args: str) -> str | None:
    try:
        out = subprocess.run([binary, *args], capture_output=True, text=True, timeout=15, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def _smi_value(text: str) -> str | None:
    """None for nvidia-smi's n/a spellings: [N/A], [Not Supported], N/A, [Unknown Error]."""
    value = text.strip()
    return None if not value or value.startswith("[") or value.upper() == "N/A" else value


def _smi_number(text: str) -> float | None:
    value = _smi_value(text)
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def query_nvidia_smi(binary: str = "nvidia-smi") -> tuple[list[DetectedGPU], str | None, str | None] | None:
    """GPUs, driver and CUDA version from nvidia-smi's CSV queries; None when it does not answer."""
    fields: tuple[str, ...] = SMI_FIELDS
    text = _smi(binary, f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits")
    if text is None:
        fields = SMI_FIELDS[:-1]
        text = _smi(binary, f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits")
    if text is None:
        return None
    apps: dict[str, list[GPUProcess]] = {}
    for line in (
        _smi(binary, f"--query-compute-apps={','.join(SMI_APPS)}", "--format=csv,noheader,nounits") or ""
    ).splitlines():
        app = [c.strip() for c in line.split(",")]
        if len(app) == len(SMI_APPS) and app[1].isdigit():
            used = _smi_number(app[2])
            apps.setdefault(app[0], []).append(
                GPUProcess(pid=int(app[1]), used_memory_bytes=int(used * 1024**2) if used is not None else None)
            )
    gpus: list[DetectedGPU] = []
    driver = None
    for line in text.splitlines():
        cols = dict(zip(fields, (c.strip() for c in line.split(",")), strict=False))
        if len(cols) != len(fields) or not cols["index"].isdigit():
            continue
        name = cols["name"]
        total, used = _smi_number(cols["memory.total"]), _smi_number(cols["memory.used"])  # MiB
        profile_id = profile_for_name(name)
        power, limit = _smi_number(cols["power.draw"]), _smi_number(cols["power.limit"])
        temperature, util = _smi_number(cols["temperature.gpu"]), _smi_number(cols["utilization.gpu"])
        clock = _smi_number(cols["clocks.max.memory"])
        driver = driver or _smi_value(cols["driver_version"])
        gpus.append(
            DetectedGPU(
                index=int(cols["index"]),
                name=name,
                uuid=_smi_value(cols["uuid"]),
                memory_total_gib=round(total / 1024, 2) if total is not None else None,
                unified=total is None or (profile_id is not None and PROFILES[profile_id].unified),
                compute_capability=_smi_value(cols.get("compute_cap", "")),
                max_memory_clock_mhz=int(clock) if clock is not None else None,
                power_w=power,
                power_limit_w=limit,
                temperature_c=int(temperature) if temperature is not None else None,
                utilization_pct=int(util) if util is not None else None,
                profile_id=profile_id,
                memory_used_gib=round(used / 1024, 2) if used is not None else None,
                processes=tuple(apps.get(cols["uuid"], ())),
            )
        )
    return gpus, driver, _smi_cuda_version(binary)


def _smi_cuda_version(binary: str) -> str | None:
    """The "CUDA Version : 13.0" line of `nvidia-smi --version` (drivers 525 and newer print it)."""
    match = re.search(r"^CUDA Version\s*:\s*(\d+\.\d+)", _smi(binary, "--version") or "", re.M)
    return match.group(1) if match else None


def _profile_notes(gpus: list[DetectedGPU]) -> list[str]:
    notes = []
    for gpu in gpus:
        if gpu.profile_id is not None:
            expected = PROFILES[gpu.profile_id].gpu_memory_gib
            if gpu.memory_total_gib and abs(gpu.memory_total_gib / expected - 1) > 0.05:
                notes.append(
                    f"GPU {gpu.index} ({gpu.name}) has {gpu.memory_total_gib} GiB, profile "
                    f"{gpu.profile_id} assumes {expected} GiB: another memory variant?"
                )
            continue
        guess = closest_profile(gpu)
        bw = f"{gpu.bandwidth_gbs:.0f} GB/s" if gpu.bandwidth_gbs else "n/a"
        hint = f"closest profile: {guess}" if guess else "no close profile"
        notes.append(f"GPU {gpu.index} ({gpu.name}) is not in the catalog; {hint}; NVML-derived bandwidth {bw}")
    if len({g.profile_id for g in gpus}) > 1:
        notes.append("GPUs of different kinds: pick one with --hardware")
    return notes


def _fmt(value: float | None, unit: str, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f} {unit}"


def render_detection(d: Detection, json_out: bool = False) -> None:
    """Print a table (or exactly one JSON object); with no GPU, say how to pick a profile."""
    if json_out:
        print(json.dumps(d.to_dict(), indent=2))
        return
    if not d.gpus:
        reason = d.notes[0] if d.notes else "no GPU"
        print(f"No NVIDIA GPU detected ({reason}). Pick a profile with --hardware: {', '.join(PROFILES)}")
        return

    from rich.console import Console
    from rich.table import Table

    table = Table(title="NVIDIA GPUs")
    for column in ("GPU", "memory", "bandwidth", "compute", "driver / CUDA", "profile"):
        table.add_column(column)
    for gpu in d.gpus:
        if gpu.unified:
            memory = f"{_fmt(d.memtotal_gib, 'GiB')} unified ({_fmt(d.memavailable_gib, 'GiB')} available)"
        else:
            memory = _fmt(gpu.memory_total_gib, "GiB")
        profile = gpu.profile_id or "unknown"
        if gpu.profile_id:
            p = get_profile(gpu.profile_id)
            profile = f"{p.id} ({p.bandwidth_gbs:.0f} GB/s spec, {p.gpu_memory_gib} GiB CUDA total)"
        table.add_row(
            f"{gpu.index}: {gpu.name}",
            memory,
            _fmt(gpu.bandwidth_gbs, "GB/s", 0),
            gpu.compute_capability or "n/a",
            f"{d.driver_version or 'n/a'} / {d.cuda_driver_version or 'n/a'}",
            profile,
        )
    console = Console()
    console.print(table)
    for note in d.notes:
        console.print(f"note: {note}", markup=False, highlight=False)
