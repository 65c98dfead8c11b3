"""Check hardware detection against a real GPU and measure what the catalog assumes.

Run on a GPU machine from the repo root: `PYTHONPATH=src python benchmarks/device_hw_check.py`.
Prints one JSON object: sparkserve's Detection, the CUDA runtime's view (the total vLLM
logs as total_gpu_memory), and a device-to-device copy bandwidth (the catalog's
effective_bandwidth_gbs), so catalog entries can cite a measurement.
"""

from __future__ import annotations

import json
import sys
import time

from sparkserve.hardware.catalog import get_profile
from sparkserve.hardware.detect import detect, render_detection

GIB = 1024**3


def copy_bandwidth_gbs(torch, size_gib: float = 4.0, iters: int = 20) -> float:
    """Best device-to-device copy rate, counting bytes read plus bytes written (GB/s)."""
    n = int(size_gib * GIB)
    src = torch.empty(n, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        dst.copy_(src)
        end.record()
        end.synchronize()
        best = min(best, start.elapsed_time(end) / 1000)
    del src, dst
    torch.cuda.empty_cache()
    return round(2 * n / best / 1e9, 1)


def cuda_view() -> dict:
    try:
        import torch
    except ImportError:
        return {"error": "torch not installed"}
    if not torch.cuda.is_available():
        return {"error": "torch sees no CUDA device"}
    free, total = torch.cuda.mem_get_info()
    props = torch.cuda.get_device_properties(0)
    return {
        "torch": torch.__version__,
        "cuda_runtime": torch.version.cuda,
        "mem_get_info_total_gib": round(total / GIB, 3),
        "mem_get_info_free_gib": round(free / GIB, 3),
        "name": props.name,
        "total_memory_gib": round(props.total_memory / GIB, 3),
        "compute_capability": f"{props.major}.{props.minor}",
        "multi_processor_count": props.multi_processor_count,
        "copy_bandwidth_gbs": copy_bandwidth_gbs(torch),
    }


def main() -> int:
    t0 = time.time()
    detection = detect()
    report = {"detection": detection.to_dict(), "cuda": cuda_view()}
    if detection.profile_id:
        p = get_profile(detection.profile_id)
        cuda = report["cuda"]
        report["catalog"] = {
            "id": p.id,
            "gpu_memory_gib": p.gpu_memory_gib,
            "bandwidth_gbs": p.bandwidth_gbs,
            "effective_bandwidth_gbs": p.effective_bandwidth_gbs,
            "measured_over_spec": round(cuda["copy_bandwidth_gbs"] / p.bandwidth_gbs, 3)
            if "copy_bandwidth_gbs" in cuda
            else None,
        }
    report["seconds"] = round(time.time() - t0, 1)
    print(json.dumps(report, indent=2))
    render_detection(detection, json_out=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
