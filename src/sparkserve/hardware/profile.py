"""What the planner needs to know about one accelerator and the links between them."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Link:
    """A path between devices: NVLink or PCIe inside a host, a network between hosts."""

    name: str
    bandwidth_gbs: float  # GB/s, one direction, per device
    latency_us: float  # one small message, end to end


@dataclass(frozen=True)
class HardwareProfile:
    """One accelerator (per device figures); `--gpus`/`--nodes` multiply it in the planner."""

    id: str
    name: str
    arch: str  # "ampere", "ada", "hopper", "blackwell"
    compute_capability: str  # "9.0", "12.1"
    memory_gb: float  # physical memory per device, decimal GB as marketed
    gpu_memory_gib: float  # total the CUDA runtime reports (what vLLM multiplies by utilisation)
    unified: bool  # CPU and GPU share one pool (GB10, GH200's CPU side excluded)
    bandwidth_gbs: float  # spec memory bandwidth, GB/s
    effective_bandwidth_gbs: float  # sustained streaming bandwidth, GB/s (measured)
    tflops: dict[str, float] = field(default_factory=dict)  # dense tensor TFLOPS: bf16, fp16, fp8, int8, fp4
    native_fp8: bool = False
    native_nvfp4: bool = False
    native_mxfp4: bool = False
    intra_link: Link | None = None  # between GPUs of one host
    inter_link: Link | None = None  # between hosts
    os_reserve_gib: float = 0.0  # unified memory the OS and desktop keep for themselves
    max_gpus: int = 1  # GPUs one host of this kind holds
    cpu_arch: str = "x86_64"  # host CPU: picks container images

    def dense_tflops(self, dtype: str) -> float:
        """Dense tensor TFLOPS for a compute dtype, falling back to the nearest wider one."""
        for key in {"fp4": ("fp4", "fp8", "bf16"), "fp8": ("fp8", "bf16"), "int8": ("int8", "fp8", "bf16")}.get(
            dtype, (dtype, "bf16")
        ):
            if key in self.tflops:
                return self.tflops[key]
        return self.tflops["bf16"]
