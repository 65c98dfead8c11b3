"""Which roofline corner the device's own matmul timings draw (no GPU needed: reads docs/gemm-ramp.md).

    python benchmarks/gemm_ramp_corner.py

`plan/speed.py` prices a step at the larger of its weight reads and its arithmetic (a streaming GEMV pays
both). A kernel that hides neither fully under the other takes (t_mem^k + t_arith^k)^(1/k), between the
larger (k large) and the sum (k = 1). This reads that k off the BF16 matmuls
`benchmarks/device_gemm_ramp.py` timed on a real GPU: for each shape t_mem is its 1-row time (the weights
streamed once), t_arith its FLOPs at the share of peak its largest matmuls reach, and k the exponent whose
corner fits every row count best (least squared log error). 64 stands for the larger of the two. docs/planner.md says what a planner fitted with such a k scored.
"""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from device_gemm_ramp import SHAPES

ROOT = Path(__file__).resolve().parents[1]
CANDIDATES = (1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 8.0, 12.0, 16.0, 32.0, 64.0)


def read_ramp(path: Path) -> tuple[float, dict[str, list[tuple[int, float]]]]:
    """(BF16 dense peak in FLOP/s, per shape [(rows, achieved BF16 FLOP/s)]) from the report's header and table."""
    text = path.read_text()
    peak = float(re.search(r"dense peaks BF16 ([\d.]+)", text).group(1)) * 1e12  # type: ignore[union-attr]
    ramp: dict[str, list[tuple[int, float]]] = {label: [] for label in SHAPES}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) >= 3 and cells[0] in SHAPES and cells[1].isdigit():
            ramp[cells[0]].append((int(cells[1]), float(cells[2]) * 1e12))
    return peak, ramp


def corner_time(t_mem: float, t_arith: float, k: float) -> float:
    return max(t_mem, t_arith) if k >= 64 else (t_mem**k + t_arith**k) ** (1 / k)


def best_corner(shape: tuple[int, int], points: list[tuple[int, float]], peak: float) -> tuple[float, float]:
    """(k, share of peak the large matmuls reach) for one shape."""
    k_dim, n_dim = shape
    flops = [2 * rows * k_dim * n_dim for rows, _ in points]
    timed = [f / rate for f, (_, rate) in zip(flops, points, strict=True)]
    share = max(rate for _, rate in points) / peak
    t_mem = timed[0]

    def loss(k: float) -> float:
        return sum(math.log(corner_time(t_mem, f / (share * peak), k) / t) ** 2 for f, t in zip(flops, timed, strict=True))

    return min(CANDIDATES, key=loss), share


def main() -> int:
    peak, ramp = read_ramp(ROOT / "docs" / "gemm-ramp.md")
    for label, points in ramp.items():
        k, share = best_corner(SHAPES[label], points, peak)
        print(f"{label}: k = {k:g} (large matmuls at {share:.0%} of the BF16 peak, {len(points)} row counts)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
