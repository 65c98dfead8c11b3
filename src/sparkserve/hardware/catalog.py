"""Known accelerators, so a plan can be made for a machine that is not this one.

Conventions behind the numbers (each profile cites its own sources):
- tflops are dense (no 2:4 sparsity): NVIDIA datasheets quote sparse figures with an
  asterisk; dense is half. GeForce cards run BF16/FP16 (and FP8) with FP32 accumulate at half
  rate, and frameworks accumulate in FP32, so their FP32-accumulate column is used.
- gpu_memory_gib is the total `cudaMemGetInfo` / `torch.cuda.mem_get_info()[1]` returns,
  which vLLM logs as "total_gpu_memory (X GiB)". It sits about 0.45-0.6 GiB below NVML's
  total (nvidia-smi's MiB column): H100 80GB 81559 MiB = 79.65 GiB vs 79.18 and H200
  143771 MiB = 140.40 vs 139.80 (both measured on device, 2026-11-27); RTX 5090 32607 MiB =
  31.84 vs 31.37 (vLLM log). Where no vLLM log for a card was found, the value is NVML's
  total less ~0.47 GiB, marked "estimate".
- effective_bandwidth_gbs: Hopper HBM sustains about 90 % of spec in a device-to-device
  copy, counting bytes read plus written (measured on device, 2026-11-27, with
  benchmarks/device_hw_check.py: H100 SXM 3022 of 3350 GB/s = 0.902, H200 4289 of 4800 GB/s
  = 0.894). That 0.90 is applied to other HBM parts as an assumption; GDDR parts get an
  assumed 0.85 (no cited measurement).
- Link latencies are order-of-magnitude assumptions (NVLink p2p ~3 us, PCIe ~8 us, RDMA
  network ~5-10 us for one small NCCL message), not measurements, except the Spark pair's
  ConnectX-7, which is taken from published nccl-tests runs (see CX7_SPARK).
"""

from __future__ import annotations

from sparkserve.errors import unknown
from sparkserve.hardware.profile import HardwareProfile, Link

# Per direction, per device. PCIe x16: 32 GT/s (Gen5) / 16 GT/s (Gen4) x 16 lanes, 128b/130b.
PCIE_GEN5_X16 = Link("PCIe Gen5 x16", bandwidth_gbs=64.0, latency_us=8.0)
PCIE_GEN4_X16 = Link("PCIe Gen4 x16", bandwidth_gbs=32.0, latency_us=8.0)
# NVLink 4 on H100/H200 SXM: 900 GB/s total per GPU (datasheets) = 450 GB/s each way.
NVLINK4 = Link("NVLink 4 (NVSwitch)", bandwidth_gbs=450.0, latency_us=3.0)
# H100 NVL / A100: "NVLink 600 GB/s" is bidirectional (the same sheets give PCIe Gen5 as
# 128 GB/s, i.e. both ways), so 300 GB/s each way.
NVLINK_BRIDGE_H100_NVL = Link("NVLink bridge (pairs)", bandwidth_gbs=300.0, latency_us=3.0)
NVLINK3 = Link("NVLink 3 (NVSwitch)", bandwidth_gbs=300.0, latency_us=3.0)
# 400 Gb/s InfiniBand NDR / ConnectX-7 per GPU, as in DGX H100/H200 = 50 GB/s.
IB_NDR = Link("InfiniBand NDR 400 Gb/s", bandwidth_gbs=50.0, latency_us=5.0)
# DGX A100 ships ConnectX-6 HDR 200 Gb/s per GPU = 25 GB/s.
IB_HDR = Link("InfiniBand HDR 200 Gb/s", bandwidth_gbs=25.0, latency_us=5.0)
# Two Sparks over their ConnectX-7 ports, 200 Gb/s (field notes) = 25 GB/s; RoCE. Latency measured:
# nccl-tests all_reduce_perf between two GB10 nodes takes 30-35 us for 8-16 KB (NVIDIA/dgx-spark-playbooks
# PR #103), i.e. 15 us per hop of the 2 x log2(n) the planner counts; four Sparks take 54-64 us for a
# 48 KB all-reduce (local-inference-lab/b12x PR #295), as 2 x log2(4) x 15 us predicts.
CX7_SPARK = Link("ConnectX-7 200 Gb/s (RoCE)", bandwidth_gbs=25.0, latency_us=15.0)
# Assumption for consumer cards: hosts joined by 100 GbE = 12.5 GB/s, TCP/RoCE.
ETH_100G = Link("100 GbE", bandwidth_gbs=12.5, latency_us=10.0)

HBM_EFFECTIVE = 0.90  # measured on H100 SXM (0.902) and H200 (0.894), see module docstring
GDDR_EFFECTIVE = 0.85  # assumption: no cited measurement


def _hbm(spec_gbs: float) -> float:
    return round(spec_gbs * HBM_EFFECTIVE)


def _gddr(spec_gbs: float) -> float:
    return round(spec_gbs * GDDR_EFFECTIVE)

_H100_URL = "https://www.nvidia.com/en-us/data-center/h100/"
_H100_NVL_URL = "https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/h100/PB-11773-001_v01.pdf"
_H200_URL = "https://www.nvidia.com/en-us/data-center/h200/"
_A100_URL = "https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf"
_L40S_URL = "https://www.nvidia.com/en-us/data-center/l40s/"
_ADA_WP = "https://images.nvidia.com/aem-dam/Solutions/geforce/ada/nvidia-ada-gpu-architecture.pdf"
_BLACKWELL_WP = "https://images.nvidia.com/aem-dam/Solutions/geforce/blackwell/nvidia-rtx-blackwell-gpu-architecture.pdf"
_RTX_PRO_URL = "https://www.nvidia.com/en-us/products/workstations/professional-desktop-gpus/rtx-pro-6000/"
_GH200_URL = "https://www.nvidia.com/en-us/data-center/grace-hopper-superchip/"
_SPARK_URL = "https://www.nvidia.com/en-us/products/workstations/dgx-spark/"

_PROFILES: tuple[HardwareProfile, ...] = (
    HardwareProfile(
        id="dgx-spark",
        name="NVIDIA DGX Spark (GB10)",
        arch="blackwell",
        compute_capability="12.1",  # sm_121, field notes
        memory_gb=128.0,  # LPDDR5x unified, _SPARK_URL and field notes
        gpu_memory_gib=121.6,  # what vLLM sees, field notes
        unified=True,
        bandwidth_gbs=273.0,  # 256-bit x 8533 MT/s, field notes
        effective_bandwidth_gbs=218.0,  # measured copy bandwidth, field notes (80 % of spec)
        # Only official figure: "1 PFLOP sparse FP4" (_SPARK_URL) -> 500 dense FP4; FP8 and
        # BF16 follow the Blackwell 2x-per-halving ladder (250, 125). Kept as peaks like every
        # other profile: measured cuBLAS BF16 86-92 TFLOPS is 69-74 % of 125 (H100 reaches
        # ~80 % of 989), and prefill implies >= 128 effective FP8 and 165-175 effective NVFP4
        # (field notes), so FP4/FP8 run further below peak on this chip today.
        tflops={"bf16": 125.0, "fp16": 125.0, "fp8": 250.0, "int8": 250.0, "fp4": 500.0},
        native_fp8=True,
        native_nvfp4=True,
        native_mxfp4=True,
        intra_link=None,
        inter_link=CX7_SPARK,
        # Left for the OS, the desktop and the engine's own host-side process (all from the
        # same pool): vLLM's default 0.92 of 121.6 GiB (9.7 GiB left) has failed at start for
        # large models while recipes' 0.85 (18.2 GiB left) works (field notes); 12 GiB sits
        # between them, i.e. a utilisation of about 0.90 before other overheads.
        os_reserve_gib=12.0,
        max_gpus=1,
        cpu_arch="aarch64",  # 20 Arm cores, field notes
    ),
    HardwareProfile(
        id="h100-sxm",
        name="NVIDIA H100 SXM5 80GB",
        arch="hopper",
        compute_capability="9.0",
        memory_gb=80.0,  # HBM3, _H100_URL
        # Measured on device, 2026-11-27 (H100 80GB HBM3, driver 580.159.04):
        # torch.cuda.mem_get_info()[1] = 79.18 GiB; NVML 81559 MiB = 79.65 GiB. Public vLLM
        # logs on 80 GB Hopper show 79.11-79.25 GiB (e.g. vllm-project/vllm#10511: 79.22).
        gpu_memory_gib=79.18,
        unified=False,
        bandwidth_gbs=3350.0,  # _H100_URL
        effective_bandwidth_gbs=3022.0,  # device-to-device copy, measured on device, 2026-11-27
        # _H100_URL sparse figures halved: BF16/FP16 1979*, FP8 3958*, INT8 3958*
        tflops={"bf16": 989.4, "fp16": 989.4, "fp8": 1978.9, "int8": 1978.9},
        native_fp8=True,
        intra_link=NVLINK4,
        inter_link=IB_NDR,
        max_gpus=8,  # HGX/DGX H100
    ),
    HardwareProfile(
        id="h100-pcie",
        name="NVIDIA H100 PCIe 80GB",
        arch="hopper",
        compute_capability="9.0",
        memory_gb=80.0,  # HBM2e, _H100_URL
        # A public model card reports "NVIDIA H100 PCIe (79.19 GB VRAM)" (torch total);
        # NVML reports 81559 MiB, as on SXM.
        gpu_memory_gib=79.19,
        unified=False,
        bandwidth_gbs=2000.0,  # _H100_URL
        effective_bandwidth_gbs=_hbm(2000.0),
        # _H100_URL sparse figures halved: BF16/FP16 1513*, FP8 3026*, INT8 3026*
        tflops={"bf16": 756.5, "fp16": 756.5, "fp8": 1513.0, "int8": 1513.0},
        native_fp8=True,
        intra_link=PCIE_GEN5_X16,  # an optional NVLink bridge pairs cards; not assumed
        inter_link=IB_NDR,
        max_gpus=8,
    ),
    HardwareProfile(
        id="h100-nvl",
        name="NVIDIA H100 NVL 94GB",
        arch="hopper",
        compute_capability="9.0",
        memory_gb=94.0,  # HBM3, _H100_NVL_URL
        gpu_memory_gib=93.1,  # estimate: NVML 95830 MiB = 93.58 GiB (public nvidia-smi output) less ~0.47
        unified=False,
        bandwidth_gbs=3900.0,  # _H100_NVL_URL
        effective_bandwidth_gbs=_hbm(3900.0),
        # _H100_NVL_URL sparse figures halved: BF16/FP16 1671*, FP8 3341*, INT8 3341*
        tflops={"bf16": 835.5, "fp16": 835.5, "fp8": 1670.5, "int8": 1670.5},
        native_fp8=True,
        # Cards are bridged in pairs; between pairs traffic crosses PCIe Gen5.
        intra_link=NVLINK_BRIDGE_H100_NVL,
        inter_link=IB_NDR,
        max_gpus=8,  # PCIe servers hold 8 cards = 4 bridged pairs
    ),
    HardwareProfile(
        id="h200",
        name="NVIDIA H200 SXM 141GB",
        arch="hopper",
        compute_capability="9.0",
        memory_gb=141.0,  # HBM3e, _H200_URL
        # Measured on device, 2026-11-27 (NVIDIA H200, driver 580.159.04):
        # torch.cuda.mem_get_info()[1] = 139.80 GiB; NVML 143771 MiB = 140.40 GiB. A public
        # vLLM log on 8x H200 shows total_gpu_memory (139.81GiB).
        gpu_memory_gib=139.80,
        unified=False,
        bandwidth_gbs=4800.0,  # _H200_URL
        effective_bandwidth_gbs=4289.0,  # device-to-device copy, measured on device, 2026-11-27
        # _H200_URL sparse figures halved (same Hopper die as H100 SXM)
        tflops={"bf16": 989.4, "fp16": 989.4, "fp8": 1978.9, "int8": 1978.9},
        native_fp8=True,
        intra_link=NVLINK4,
        inter_link=IB_NDR,
        max_gpus=8,  # HGX H200
    ),
    HardwareProfile(
        id="a100-80gb",
        name="NVIDIA A100 80GB (SXM4)",
        arch="ampere",
        compute_capability="8.0",
        memory_gb=80.0,  # HBM2e, _A100_URL
        # vLLM log on NVIDIA A100-SXM4-80GB (Unsloth tutorial): total_gpu_memory (79.15GiB)
        gpu_memory_gib=79.15,
        unified=False,
        bandwidth_gbs=2039.0,  # SXM, _A100_URL (the 80GB PCIe card: 1935)
        effective_bandwidth_gbs=_hbm(2039.0),
        # _A100_URL: BF16/FP16 312 dense (624*), INT8 624 dense (1248*); no FP8 on Ampere
        tflops={"bf16": 312.0, "fp16": 312.0, "int8": 624.0},
        intra_link=NVLINK3,
        inter_link=IB_HDR,
        max_gpus=8,  # HGX/DGX A100
    ),
    HardwareProfile(
        id="a100-40gb",
        name="NVIDIA A100 40GB (SXM4)",
        arch="ampere",
        compute_capability="8.0",
        memory_gb=40.0,  # HBM2, _A100_URL
        # vLLM log on a single A100 40GB (Llama-3-8B): total_gpu_memory (39.50GiB)
        gpu_memory_gib=39.5,
        unified=False,
        bandwidth_gbs=1555.0,  # _A100_URL
        effective_bandwidth_gbs=_hbm(1555.0),
        tflops={"bf16": 312.0, "fp16": 312.0, "int8": 624.0},  # _A100_URL, as the 80GB
        intra_link=NVLINK3,
        inter_link=IB_HDR,
        max_gpus=8,
    ),
    HardwareProfile(
        id="l40s",
        name="NVIDIA L40S 48GB",
        arch="ada",
        compute_capability="8.9",
        memory_gb=48.0,  # GDDR6 ECC, _L40S_URL
        # vLLM log on L40S (fused_moe config "device_name=NVIDIA_L40S"): total_gpu_memory
        # (44.31GiB); NVML 46068 MiB.
        gpu_memory_gib=44.31,
        unified=False,
        bandwidth_gbs=864.0,  # _L40S_URL
        effective_bandwidth_gbs=_gddr(864.0),
        # _L40S_URL sparse figures halved: BF16/FP16 733*, FP8 1466*, INT8 1466*
        tflops={"bf16": 362.05, "fp16": 362.05, "fp8": 733.0, "int8": 733.0},
        native_fp8=True,
        intra_link=PCIE_GEN4_X16,  # no NVLink, _L40S_URL
        inter_link=IB_NDR,
        max_gpus=8,
    ),
    HardwareProfile(
        id="rtx-4090",
        name="NVIDIA GeForce RTX 4090 24GB",
        arch="ada",
        compute_capability="8.9",
        memory_gb=24.0,  # GDDR6X, _ADA_WP
        # NVML 24564 MiB = 23.99 GiB (vllm-project/vllm#7553); vLLM logs on 24 GiB cards
        # show 23.53-23.65 GiB (e.g. vllm-project/vllm#11550: 23.55GiB); a display costs more.
        gpu_memory_gib=23.55,
        unified=False,
        bandwidth_gbs=1008.0,  # 384-bit x 21 Gbps, _ADA_WP
        effective_bandwidth_gbs=_gddr(1008.0),
        # _ADA_WP, FP32-accumulate columns (half rate on GeForce): BF16/FP16 165.2,
        # FP8 330.3; INT8 660.6 TOPS.
        tflops={"bf16": 165.2, "fp16": 165.2, "fp8": 330.3, "int8": 660.6},
        native_fp8=True,
        intra_link=PCIE_GEN4_X16,  # no NVLink on Ada GeForce
        inter_link=ETH_100G,
        max_gpus=4,  # typical workstation; 8-card blower servers exist
    ),
    HardwareProfile(
        id="rtx-5090",
        name="NVIDIA GeForce RTX 5090 32GB",
        arch="blackwell",
        compute_capability="12.0",
        memory_gb=32.0,  # GDDR7, _BLACKWELL_WP
        # vLLM log on an RTX 5090 (Qwen2.5-7B): total_gpu_memory (31.37GiB); NVML 32607 MiB.
        gpu_memory_gib=31.37,
        unified=False,
        bandwidth_gbs=1792.0,  # 512-bit x 28 Gbps, _BLACKWELL_WP
        effective_bandwidth_gbs=_gddr(1792.0),
        # _BLACKWELL_WP, dense, FP32 accumulate: BF16/FP16 209.5, FP8 419, FP4 1676
        # (3352 "AI TOPS" is sparse FP4); INT8 838.
        tflops={"bf16": 209.5, "fp16": 209.5, "fp8": 419.0, "int8": 838.0, "fp4": 1676.0},
        native_fp8=True,
        native_nvfp4=True,
        native_mxfp4=True,
        intra_link=PCIE_GEN5_X16,
        inter_link=ETH_100G,
        max_gpus=4,  # typical workstation
    ),
    HardwareProfile(
        id="rtx-pro-6000",
        name="NVIDIA RTX PRO 6000 Blackwell 96GB",
        arch="blackwell",
        compute_capability="12.0",
        memory_gb=96.0,  # GDDR7 ECC, _RTX_PRO_URL
        gpu_memory_gib=95.1,  # estimate: NVML 97887 MiB = 95.59 GiB (public nvidia-smi output) less ~0.47
        unified=False,
        bandwidth_gbs=1792.0,  # 512-bit x 28 Gbps, _RTX_PRO_URL
        effective_bandwidth_gbs=_gddr(1792.0),
        # _RTX_PRO_URL gives only "4000 AI TOPS" (sparse FP4) -> 2000 dense FP4, 1000 FP8/INT8,
        # 500 BF16/FP16, assuming full-rate FP32 accumulate as on professional cards.
        # Workstation Edition (600 W); Max-Q (300 W) clocks lower.
        tflops={"bf16": 500.0, "fp16": 500.0, "fp8": 1000.0, "int8": 1000.0, "fp4": 2000.0},
        native_fp8=True,
        native_nvfp4=True,
        native_mxfp4=True,
        intra_link=PCIE_GEN5_X16,  # no NVLink
        inter_link=IB_NDR,
        max_gpus=8,  # RTX PRO servers hold 8 Server Edition cards
    ),
    HardwareProfile(
        id="gh200",
        name="NVIDIA GH200 Grace Hopper (96GB HBM3)",
        arch="hopper",
        compute_capability="9.0",
        # The 96 GB HBM3 GPU (4 TB/s) of "GH200 480GB"; the 144 GB HBM3e variant (4.9 TB/s)
        # is not modelled. Grace's LPDDR5X is reachable over NVLink-C2C but is not GPU
        # memory in vLLM's sense, hence unified=False. _GH200_URL
        memory_gb=96.0,
        gpu_memory_gib=95.1,  # estimate: NVML 97871 MiB = 95.58 GiB (public nvidia-smi output) less ~0.47
        unified=False,
        bandwidth_gbs=4000.0,  # _GH200_URL
        effective_bandwidth_gbs=_hbm(4000.0),
        # _GH200_URL sparse figures halved (H100 SXM-class GPU): FP8 3958*, BF16 1979*
        tflops={"bf16": 989.4, "fp16": 989.4, "fp8": 1978.9, "int8": 1978.9},
        native_fp8=True,
        intra_link=None,
        inter_link=IB_NDR,
        max_gpus=1,  # one superchip per node in common offerings; quad-GH200 nodes exist
        cpu_arch="aarch64",  # 72 Neoverse V2 cores, _GH200_URL
    ),
)

PROFILES: dict[str, HardwareProfile] = {p.id: p for p in _PROFILES}


def get_profile(id: str) -> HardwareProfile:
    """The profile for an id, case-insensitively; a UserError naming the closest ids otherwise."""
    profile = PROFILES.get(id.strip().lower())
    if profile is None:
        raise unknown("hardware", id, PROFILES, hint="run 'sparkserve hw' to detect this machine")
    return profile


def list_profiles() -> list[HardwareProfile]:
    """All profiles, in catalog order (Spark first)."""
    return list(PROFILES.values())


DEFAULT_PROFILE = "dgx-spark"  # the product's home: plans without --hardware are for a Spark


def resolve_profile(name: str | None) -> HardwareProfile:
    """A profile id, 'auto' (detect this machine), or nothing (the default profile)."""
    if not name:
        return get_profile(DEFAULT_PROFILE)
    if name.lower() == "auto":
        from sparkserve.errors import UserError
        from sparkserve.hardware.detect import detect

        found = detect()
        if not found.profile_id:
            raise UserError("no known GPU detected on this machine; "
                            "pick a profile with --hardware (see 'sparkserve hw')")
        return get_profile(found.profile_id)
    return get_profile(name)
