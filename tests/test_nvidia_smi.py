"""Detection through `nvidia-smi` when NVML cannot load: the real parsing code against recorded outputs."""

from __future__ import annotations

import os
import subprocess
import sys

import fake_nvidia_smi
from fake_nvml import FakeNVML
from sparkserve.hardware.detect import detect, query_nvidia_smi

NO_NVML = "NVML Shared Library Not Found"


def _meminfo(tmp_path):
    path = tmp_path / "meminfo"
    path.write_text("MemTotal:       127500000 kB\nMemAvailable:   110000000 kB\n")
    return str(path)


def test_gb10_is_detected_through_nvidia_smi_when_nvml_fails(tmp_path, monkeypatch):
    log = fake_nvidia_smi.install(tmp_path / "bin", "gb10")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    d = detect(meminfo_path=_meminfo(tmp_path), nvml=FakeNVML(init_error=NO_NVML))
    (gpu,) = d.gpus
    assert d.profile_id == "dgx-spark" and gpu.name == "NVIDIA GB10"
    assert gpu.unified and gpu.memory_total_gib is None and gpu.memory_used_gib is None
    assert gpu.compute_capability == "12.1" and gpu.power_w == 11.52 and gpu.power_limit_w is None
    assert gpu.temperature_c == 44 and gpu.utilization_pct == 3
    assert [(p.pid, p.used_memory_bytes) for p in gpu.processes] == [(4242, 38210 * 1024**2)]
    assert d.driver_version == "580.95.05" and d.cuda_driver_version == "13.0"
    assert NO_NVML in d.notes[0] and "nvidia-smi" in d.notes[0]
    assert any("Not Supported" in n and "/proc/meminfo" in n for n in d.notes)
    asked = fake_nvidia_smi.calls(log)
    assert [a[0].split("=")[0] for a in asked] == ["--query-gpu", "--query-compute-apps", "--version"]


def test_an_old_driver_without_compute_cap_is_asked_again_without_it(tmp_path, monkeypatch):
    log = fake_nvidia_smi.install(tmp_path / "bin", "gb10", fail_compute_cap=True)
    found = query_nvidia_smi(str(tmp_path / "bin" / "nvidia-smi"))
    assert found is not None
    (gpu,), driver, _ = found
    assert gpu.profile_id == "dgx-spark" and gpu.compute_capability is None and driver == "580.95.05"
    first, second = fake_nvidia_smi.calls(log)[:2]
    assert "compute_cap" in first[0] and "compute_cap" not in second[0]


def test_no_nvml_and_no_nvidia_smi_says_both(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    d = detect(meminfo_path=_meminfo(tmp_path), nvml=FakeNVML(init_error=NO_NVML))
    assert d.gpus == [] and d.profile_id is None
    assert NO_NVML in d.notes[0] and "nvidia-smi is not on PATH" in d.notes[0]


def test_hw_command_on_a_spark_whose_nvml_does_not_load(tmp_path):
    """The installed command: this machine's real pynvml fails to load NVML, nvidia-smi answers."""
    fake_nvidia_smi.install(tmp_path / "bin", "gb10")
    env = os.environ | {"PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}", "COLUMNS": "200"}
    run = subprocess.run([sys.executable, "-m", "sparkserve.cli", "hw"], capture_output=True, text=True,
                         timeout=60, env=env)
    assert run.returncode == 0, run.stderr
    assert "NVIDIA GB10" in run.stdout and "dgx-spark" in run.stdout and "unified" in run.stdout
    assert "read with nvidia-smi instead" in run.stdout


def test_h200_output_captured_on_a_real_host(tmp_path, monkeypatch):
    """tests/data/nvidia_smi/h200-*: what nvidia-smi 580.159 printed on an H200 with no process."""
    fake_nvidia_smi.install(tmp_path / "bin", "h200")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    d = detect(meminfo_path=_meminfo(tmp_path), nvml=FakeNVML(init_error=NO_NVML))
    (gpu,) = d.gpus
    assert d.profile_id == "h200" and not gpu.unified
    assert gpu.memory_total_gib == round(143771 / 1024, 2) and gpu.memory_used_gib == 0
    assert gpu.compute_capability == "9.0" and gpu.power_limit_w == 700 and gpu.max_memory_clock_mhz == 3201
    assert gpu.processes == () and d.driver_version == "580.159.04" and d.cuda_driver_version == "13.0"
    assert not any("not in the catalog" in n or "another memory variant" in n for n in d.notes)
