"""A stand-in for the pynvml module, for GPUs that cannot exist on this GPU-less machine.

It answers only what it is given: every reading left as None raises NVML's NOT_SUPPORTED,
the way a DGX Spark's GB10 answers memory, bus width and clocks. `FakeNVML(init_error=...)`
is a host whose NVML library is missing.
"""

from __future__ import annotations

import types


class FakeNVML:
    class NVMLError(Exception):
        pass

    class NVMLError_NotSupported(NVMLError):
        pass

    NVML_CLOCK_MEM = 2
    NVML_TEMPERATURE_GPU = 0

    def __init__(self, name: str = "NVIDIA GB10", *, memory_bytes: int | None = None, bus: int | None = None,
                 clock: int | None = None, compute_capability: tuple[int, int] | None = (12, 1),
                 driver: str = "580.95.05", cuda: int = 13000, power_mw: int | None = None,
                 temperature_c: int | None = None, utilization_pct: int | None = None,
                 processes: list[tuple[int, int | None]] | None = None, init_error: str | None = None) -> None:
        self.name, self.memory_bytes, self.bus, self.clock = name, memory_bytes, bus, clock
        self.compute_capability, self.driver, self.cuda = compute_capability, driver, cuda
        self.power_mw, self.temperature_c, self.utilization_pct = power_mw, temperature_c, utilization_pct
        self.processes, self.init_error = processes, init_error

    def _given(self, value):
        if value is None:
            raise self.NVMLError_NotSupported("Not Supported")
        return value

    def nvmlInit(self):
        if self.init_error:
            raise self.NVMLError(self.init_error)

    def nvmlShutdown(self):
        pass

    def nvmlSystemGetDriverVersion(self):
        return self.driver

    def nvmlSystemGetCudaDriverVersion(self):
        return self.cuda

    def nvmlDeviceGetCount(self):
        return 1

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetName(self, h):
        return self.name

    def nvmlDeviceGetUUID(self, h):
        raise self.NVMLError("no permission")

    def nvmlDeviceGetMemoryInfo(self, h):
        return types.SimpleNamespace(total=self._given(self.memory_bytes))

    def nvmlDeviceGetCudaComputeCapability(self, h):
        return self._given(self.compute_capability)

    def nvmlDeviceGetMemoryBusWidth(self, h):
        return self._given(self.bus)

    def nvmlDeviceGetMaxClockInfo(self, h, kind):
        return self._given(self.clock)

    def nvmlDeviceGetPowerUsage(self, h):
        return self._given(self.power_mw)

    def nvmlDeviceGetEnforcedPowerLimit(self, h):
        return self._given(None)

    def nvmlDeviceGetTemperature(self, h, sensor):
        return self._given(self.temperature_c)

    def nvmlDeviceGetUtilizationRates(self, h):
        return types.SimpleNamespace(gpu=self._given(self.utilization_pct), memory=0)

    def nvmlDeviceGetComputeRunningProcesses(self, h):
        return [types.SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in self._given(self.processes)]
