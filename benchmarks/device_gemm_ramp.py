"""How full a GPU's tensor cores get as a matmul gains rows: run on a real GPU (device tool).

    python benchmarks/device_gemm_ramp.py [--out docs/gemm-ramp.md]

For each row count M (tokens in a prefill chunk, or tokens routed to one expert) it times
`[M x K] @ [K x N]` in BF16 (and FP8 with torch._scaled_mm where the GPU has it) for two layer
shapes of Qwen3-32B, and reports achieved TFLOPS and the share of the profile's dense peak. The
planner's `gemm_half_rows` (rows at which a matmul reaches half of its large-M share) comes from
this curve.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

ROWS = (1, 4, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
# Qwen3-32B (bundled config): hidden 5120, intermediate 25600; q_proj 5120 -> 8192 (64 heads x 128).
SHAPES = {"mlp up (5120 -> 2x25600)": (5120, 51200), "attention q (5120 -> 8192)": (5120, 8192)}


def timed_tflops(torch, fn, flops: float, iters: int = 20) -> float:
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    torch.cuda.synchronize()
    return flops * iters / (start.elapsed_time(end) / 1000) / 1e12


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "gemm-ramp.md")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    import torch

    from sparkserve.hardware.catalog import get_profile
    from sparkserve.hardware.detect import detect

    found = detect()
    profile = get_profile(found.profile_id) if found.profile_id else None
    name = torch.cuda.get_device_name(0)
    fp8 = hasattr(torch, "_scaled_mm") and torch.cuda.get_device_capability(0) >= (8, 9)
    results = []
    for label, (k, n) in SHAPES.items():
        w16 = torch.randn(n, k, device="cuda", dtype=torch.bfloat16)
        w8 = w16.to(torch.float8_e4m3fn) if fp8 else None
        one = torch.ones((), device="cuda")
        for m in ROWS:
            x16 = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
            flops = 2 * m * k * n
            bf16 = timed_tflops(torch, lambda: x16 @ w16.t(), flops)
            row = {"shape": label, "rows": m, "bf16_tflops": bf16}
            if fp8 and m % 16 == 0:
                x8 = x16.to(torch.float8_e4m3fn)
                row["fp8_tflops"] = timed_tflops(
                    torch, lambda: torch._scaled_mm(x8, w8.t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16), flops
                )
            results.append(row)
            print(json.dumps(row), flush=True)
    peak16 = profile.dense_tflops("bf16") if profile else None
    peak8 = profile.dense_tflops("fp8") if profile else None
    lines = ["# Matmul efficiency against rows", "",
             f"Written by `benchmarks/device_gemm_ramp.py` on {name} (profile {found.profile_id}); dense peaks "
             f"BF16 {peak16} / FP8 {peak8} TFLOPS from the hardware catalog.", "",
             "| shape | rows | BF16 TFLOPS | share of BF16 peak | FP8 TFLOPS | share of FP8 peak |", "|---|---|---|---|---|---|"]
    for r in results:
        f8 = r.get("fp8_tflops")
        lines.append(
            f"| {r['shape']} | {r['rows']} | {r['bf16_tflops']:.1f} | "
            f"{r['bf16_tflops'] / peak16:.0%} | " if peak16 else f"| {r['shape']} | {r['rows']} | {r['bf16_tflops']:.1f} | n/a | "
        )
        lines[-1] += (f"{f8:.1f} | {f8 / peak8:.0%} |" if f8 and peak8 else "n/a | n/a |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
