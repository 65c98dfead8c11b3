"""Hardware catalog and detection: the catalog is complete and self-consistent, detection
reads real files and never raises without a GPU."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fake_nvml import FakeNVML
from sparkserve.errors import UserError
from sparkserve.hardware.catalog import PROFILES, get_profile, list_profiles
from sparkserve.hardware.detect import (
    DetectedGPU,
    Detection,
    closest_profile,
    detect,
    nvml_bandwidth_gbs,
    profile_for_name,
    read_meminfo,
    render_detection,
)

EXPECTED_IDS = {
    "dgx-spark",
    "h100-sxm",
    "h100-pcie",
    "h100-nvl",
    "h200",
    "a100-80gb",
    "a100-40gb",
    "l40s",
    "rtx-4090",
    "rtx-5090",
    "rtx-pro-6000",
    "gh200",
}


def test_catalog_has_exactly_the_expected_ids():
    assert set(PROFILES) == EXPECTED_IDS
    assert [p.id for p in list_profiles()][0] == "dgx-spark"


@pytest.mark.parametrize("profile", list_profiles(), ids=lambda p: p.id)
def test_profile_is_self_consistent(profile):
    assert profile.tflops["bf16"] > 0
    assert profile.bandwidth_gbs > 0
    assert 0 < profile.effective_bandwidth_gbs <= profile.bandwidth_gbs
    # CUDA's total is a little below the marketed size (GiB < GB, driver reserve).
    assert 0.85 * profile.memory_gb / 1.074 < profile.gpu_memory_gib < profile.memory_gb
    assert all(v > 0 for v in profile.tflops.values())
    assert set(profile.tflops) <= {"bf16", "fp16", "fp8", "int8", "fp4"}
    assert ("fp8" in profile.tflops) == profile.native_fp8
    assert ("fp4" in profile.tflops) == profile.native_nvfp4
    assert profile.max_gpus >= 1
    assert (profile.intra_link is None) == (profile.max_gpus == 1)
    assert profile.os_reserve_gib == 0 or profile.unified


def test_only_blackwell_has_fp4_formats():
    for p in list_profiles():
        assert p.native_nvfp4 == (p.arch == "blackwell"), p.id
        assert p.native_mxfp4 == (p.arch == "blackwell"), p.id


def test_ampere_has_no_fp8_and_hopper_ada_do():
    assert not get_profile("a100-80gb").native_fp8
    assert "fp8" not in get_profile("a100-40gb").tflops
    assert get_profile("h100-sxm").native_fp8 and get_profile("l40s").native_fp8


def test_spark_profile_matches_field_notes():
    spark = get_profile("dgx-spark")
    assert spark.unified and spark.cpu_arch == "aarch64" and spark.max_gpus == 1
    assert spark.bandwidth_gbs == 273 and spark.effective_bandwidth_gbs == 218
    assert spark.gpu_memory_gib == pytest.approx(121.6)
    assert spark.inter_link.bandwidth_gbs == 25
    assert spark.os_reserve_gib > 0
    assert 86 <= spark.tflops["bf16"]  # measured cuBLAS BF16 is 86-92: peak is not below it


def test_gh200_is_arm_and_not_unified():
    gh = get_profile("gh200")
    assert gh.cpu_arch == "aarch64" and not gh.unified and gh.memory_gb == 96


def test_get_profile_is_case_insensitive():
    assert get_profile("DGX-Spark").id == "dgx-spark"
    assert get_profile(" H100-SXM ").id == "h100-sxm"


def test_unknown_profile_names_closest_match():
    with pytest.raises(UserError) as err:
        get_profile("h100-sx")
    msg = str(err.value)
    assert "unknown hardware 'h100-sx'" in msg
    assert "h100-sxm" in msg
    assert "sparkserve hw" in msg


def test_dense_tflops_falls_back_to_wider_dtype():
    assert get_profile("a100-80gb").dense_tflops("fp8") == 312.0
    assert get_profile("dgx-spark").dense_tflops("fp4") == 500.0


def test_read_meminfo_parses_a_real_file(tmp_path):
    path = tmp_path / "meminfo"
    path.write_text(
        "MemTotal:       127500000 kB\n"
        "MemFree:         1000000 kB\n"
        "MemAvailable:   100000000 kB\n"
        "HugePages_Total:       0\n"
        "garbage line\n"
    )
    info = read_meminfo(str(path))
    assert info["MemTotal"] == 127500000 * 1024
    assert info["MemAvailable"] == 100000000 * 1024
    assert info["HugePages_Total"] == 0
    assert "garbage line" not in info


def test_read_meminfo_of_this_machine_and_of_a_missing_file(tmp_path):
    assert read_meminfo(str(tmp_path / "absent")) == {}
    info = read_meminfo()
    assert info.get("MemTotal", 1) > 0


@pytest.mark.parametrize(
    ("name", "profile_id"),
    [
        ("NVIDIA GB10", "dgx-spark"),
        ("NVIDIA H100 80GB HBM3", "h100-sxm"),
        ("NVIDIA H100 PCIe", "h100-pcie"),
        ("NVIDIA H100 NVL", "h100-nvl"),
        ("NVIDIA H200", "h200"),
        ("NVIDIA GH200 480GB", "gh200"),
        ("GH200 120GB", "gh200"),
        ("NVIDIA A100-SXM4-80GB", "a100-80gb"),
        ("NVIDIA A100 80GB PCIe", "a100-80gb"),
        ("NVIDIA A100-SXM4-40GB", "a100-40gb"),
        ("NVIDIA A100-PCIE-40GB", "a100-40gb"),
        ("NVIDIA L40S", "l40s"),
        ("NVIDIA GeForce RTX 4090", "rtx-4090"),
        ("NVIDIA GeForce RTX 5090", "rtx-5090"),
        ("NVIDIA RTX PRO 6000 Blackwell Workstation Edition", "rtx-pro-6000"),
        ("NVIDIA RTX PRO 6000 Blackwell Server Edition", "rtx-pro-6000"),
        ("NVIDIA L40", None),
        ("NVIDIA H200 NVL", None),
        ("NVIDIA RTX 6000 Ada Generation", None),
        ("NVIDIA GeForce RTX 4080", None),
    ],
)
def test_profile_for_name(name, profile_id):
    assert profile_for_name(name) == profile_id


def test_nvml_bandwidth_reproduces_spec():
    assert nvml_bandwidth_gbs(6016, 3201) == pytest.approx(4814, abs=1)  # H200 (field notes)
    assert nvml_bandwidth_gbs(5120, 2619) == pytest.approx(3352, abs=1)  # H100 SXM
    assert nvml_bandwidth_gbs(None, 3201) is None
    assert nvml_bandwidth_gbs(256, None) is None


def test_closest_profile_for_an_unknown_gpu():
    l40 = DetectedGPU(index=0, name="NVIDIA L40", memory_total_gib=44.99, bandwidth_gbs=864.0)
    assert closest_profile(l40) == "l40s"
    assert closest_profile(DetectedGPU(index=0, name="x")) is None


def test_detect_without_driver_reports_no_gpu():
    d = detect()
    assert d.gpus == [] and d.profile_id is None
    assert d.notes and ("NVML" in d.notes[0] or "nvidia-ml-py" in d.notes[0])
    assert d.memtotal_gib is None or d.memtotal_gib > 0


def test_render_without_gpu_prints_profiles(capsys):
    render_detection(Detection(gpus=[], profile_id=None, notes=["NVML unavailable: test"]))
    out = capsys.readouterr().out
    assert out.startswith("No NVIDIA GPU detected (NVML unavailable: test)")
    assert "--hardware: dgx-spark, h100-sxm" in out


def test_render_json_is_one_object(capsys):
    render_detection(detect(), json_out=True)
    obj = json.loads(capsys.readouterr().out)
    assert obj["gpus"] == [] and "notes" in obj


def test_hw_command_exits_zero_without_gpu():
    run = subprocess.run(
        [sys.executable, "-m", "sparkserve.cli", "hw"], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    assert "No NVIDIA GPU detected" in run.stdout


def _spark_meminfo(tmp_path):
    path = tmp_path / "meminfo"
    path.write_text("MemTotal:       127500000 kB\nMemAvailable:   110000000 kB\n")
    return str(path)


def test_detect_gb10_takes_memory_from_meminfo(tmp_path, capsys):
    d = detect(meminfo_path=_spark_meminfo(tmp_path), nvml=FakeNVML("NVIDIA GB10", power_mw=12345, temperature_c=41, utilization_pct=3))
    (gpu,) = d.gpus
    assert d.profile_id == "dgx-spark"
    assert gpu.memory_total_gib is None and gpu.unified
    assert gpu.bandwidth_gbs is None and gpu.uuid is None and gpu.power_limit_w is None
    assert gpu.power_w == 12.3 and gpu.temperature_c == 41 and gpu.compute_capability == "12.1"
    assert d.memtotal_gib == pytest.approx(127500000 / 1024**2, abs=0.01)
    assert d.cuda_driver_version == "13.0" and d.driver_version == "580.95.05"
    assert any("NOT_SUPPORTED" in n for n in d.notes)
    render_detection(d)
    out = capsys.readouterr().out
    assert "unified" in out and "dgx-spark" in out


def test_detect_unknown_gpu_suggests_closest_profile(tmp_path):
    fake = FakeNVML("NVIDIA L40", memory_bytes=46068 * 1024**2, bus=384, clock=9001)
    d = detect(meminfo_path=_spark_meminfo(tmp_path), nvml=fake)
    assert d.profile_id is None
    assert d.gpus[0].bandwidth_gbs == pytest.approx(864.1, abs=0.1)
    assert any("closest profile: l40s" in n and "864 GB/s" in n for n in d.notes)
