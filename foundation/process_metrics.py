"""Resource metrics every camcount process exports: its own CPU, memory, file descriptors and threads, the CPU and
memory it may use (its container's limits), and, where NVML finds NVIDIA GPUs, each device's utilisation and
memory. A host without GPUs (or without the driver) exports the process metrics only: the GPU collector then yields
empty families, never an error."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import psutil
from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)


def cpu_seconds(process: psutil.Process) -> float:
    """User + system CPU seconds ``process`` has used so far, its finished threads included."""
    times = process.cpu_times()
    return times.user + times.system


class GpuCollector(Collector):
    """``camcount_gpu_utilization_ratio``, ``camcount_gpu_memory_used_bytes`` and ``camcount_gpu_memory_total_bytes``
    per device (label ``gpu``: index, ``name``), read through NVML at scrape time.

    NVML is initialised once; when that fails (no driver, no GPU: the usual CPU host) the collector stays empty and
    says so in one INFO line. A device that fails to answer at a scrape is left out of that scrape.
    """

    def __init__(self, nvml: ModuleType | None = None) -> None:
        self._nvml = nvml if nvml is not None else _import_nvml()
        self.available = False
        if self._nvml is None:
            return
        try:
            self._nvml.nvmlInit()
            self.available = True
        except self._nvml.NVMLError as exc:
            log.info("no GPU metrics: NVML is not usable here (%s)", exc)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        labels = ("gpu", "name")
        utilisation = GaugeMetricFamily("camcount_gpu_utilization_ratio",
                                        "Fraction of the last sample period the GPU was busy (NVML)", labels=labels)
        used = GaugeMetricFamily("camcount_gpu_memory_used_bytes", "GPU memory in use (NVML)", labels=labels)
        total = GaugeMetricFamily("camcount_gpu_memory_total_bytes", "GPU memory size (NVML)", labels=labels)
        if self.available:
            nvml = self._nvml
            for index in range(nvml.nvmlDeviceGetCount()):
                try:
                    handle = nvml.nvmlDeviceGetHandleByIndex(index)
                    name = nvml.nvmlDeviceGetName(handle)
                    rates = nvml.nvmlDeviceGetUtilizationRates(handle)
                    memory = nvml.nvmlDeviceGetMemoryInfo(handle)
                except nvml.NVMLError as exc:
                    log.warning("GPU %d did not answer NVML (%s); left out of this scrape", index, exc)
                    continue
                device = [str(index), name.decode() if isinstance(name, bytes) else name]
                utilisation.add_metric(device, rates.gpu / 100)
                used.add_metric(device, memory.used)
                total.add_metric(device, memory.total)
        yield utilisation
        yield used
        yield total


class ThreadsCollector(Collector):
    """``camcount_process_threads``: OS threads of this process (ONNX Runtime's and librdkafka's included)."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily("camcount_process_threads", "OS threads of this process",
                                value=psutil.Process().num_threads())


class LimitsCollector(Collector):
    """``camcount_process_cpu_limit_cores`` and ``camcount_process_memory_limit_bytes``: what this process may use,
    so the resource alerts can divide by it (``rate(process_cpu_seconds_total)`` and
    ``process_resident_memory_bytes`` alone say nothing about 80 %).

    CPU: the CPUs the process may run on (affinity, i.e. a cpuset), lowered by a CFS quota (a Kubernetes or Docker CPU
    limit: cgroup v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``/``cpu.cfs_period_us``). Memory: the host's physical memory,
    lowered by a cgroup memory limit (v2 ``memory.max``, v1 ``memory.limit_in_bytes``). The process's own cgroup and
    every ancestor are read (the tightest wins), at scrape time, so an in-place resize is seen.
    """

    def __init__(self, cgroup_root: str | Path = "/sys/fs/cgroup", proc_cgroup: str | Path = "/proc/self/cgroup",
                 cpus: int | None = None, physical_memory: int | None = None) -> None:
        self._root = Path(cgroup_root)
        self._proc_cgroup = Path(proc_cgroup)
        self._cpus = cpus
        self._physical_memory = physical_memory

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily("camcount_process_cpu_limit_cores",
                                "CPUs this process may use: its affinity, lowered by a cgroup CPU quota",
                                value=self.cpu_limit_cores())
        yield GaugeMetricFamily("camcount_process_memory_limit_bytes",
                                "Memory this process may use: physical memory, lowered by a cgroup memory limit",
                                value=self.memory_limit_bytes())

    def cpu_limit_cores(self) -> float:
        cores = float(self._cpus or _cpu_count())
        for values in self._cgroup_files(("cpu.max",), "cpu", ("cpu.cfs_quota_us", "cpu.cfs_period_us")):
            quota, period = (values[0].split() + values[1:])[:2]  # v2: "QUOTA PERIOD" or "max PERIOD"
            try:
                if quota not in ("max", "-1") and float(quota) > 0 and float(period) > 0:
                    cores = min(cores, float(quota) / float(period))
            except ValueError:
                continue
        return cores

    def memory_limit_bytes(self) -> float:
        limit = float(self._physical_memory or psutil.virtual_memory().total)
        for (value,) in self._cgroup_files(("memory.max",), "memory", ("memory.limit_in_bytes",)):
            if value.isdigit():  # v2 says "max" for none; v1 a huge number, which min() ignores
                limit = min(limit, float(value))
        return limit

    def _cgroup_files(self, v2_files: tuple[str, ...], v1_controller: str,
                      v1_files: tuple[str, ...]) -> Iterator[list[str]]:
        """The contents of ``v2_files`` (unified hierarchy) or ``v1_files`` (the v1 controller's hierarchy) in the
        process's cgroup and each ancestor that has all of them."""
        try:
            lines = self._proc_cgroup.read_text().splitlines()
        except OSError:
            return
        for line in lines:
            hierarchy, _, rest = line.partition(":")
            controllers, _, path = rest.partition(":")
            if hierarchy == "0" and controllers == "":
                mount, names = self._root, v2_files
            elif v1_controller in controllers.split(","):
                mount, names = self._root / controllers, v1_files
                if not mount.is_dir():
                    mount = self._root / v1_controller  # "cpu,cpuacct" is usually also linked as "cpu"
            else:
                continue
            for directory in _ancestors(mount, path):
                values = [_read(directory / name) for name in names]
                if all(v is not None for v in values):
                    yield [v for v in values if v is not None]


def _ancestors(mount: Path, path: str) -> list[Path]:
    """The cgroup directory of ``path`` under ``mount`` and every parent up to the mount itself (inside a container
    without a cgroup namespace the path names the host's hierarchy and only the mount's own files exist)."""
    parts = [p for p in path.split("/") if p and p != ".."]
    return [mount.joinpath(*parts[:n]) for n in range(len(parts), -1, -1)]


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _import_nvml() -> ModuleType | None:
    try:
        import pynvml  # nvidia-ml-py
    except ImportError:
        return None
    return pynvml


def register_resource_metrics(registry: CollectorRegistry, nvml: ModuleType | None = None) -> None:
    """Add this process's CPU, memory and fds (``process_*``), threads, CPU and memory limits, Python version and GPU
    collectors to ``registry``."""
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    registry.register(ThreadsCollector())
    registry.register(LimitsCollector())
    registry.register(GpuCollector(nvml))
