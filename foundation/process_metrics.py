"""Resource metrics every camcount process exports: its own CPU, memory, file descriptors and threads, and, where
NVML finds NVIDIA GPUs, each device's utilisation and memory. A host without GPUs (or without the driver) exports
the process metrics only: the GPU collector then yields empty families, never an error."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from types import ModuleType

import psutil
from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)


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


def _import_nvml() -> ModuleType | None:
    try:
        import pynvml  # nvidia-ml-py
    except ImportError:
        return None
    return pynvml


def register_resource_metrics(registry: CollectorRegistry, nvml: ModuleType | None = None) -> None:
    """Add this process's CPU, memory and fds (``process_*``), threads, Python version and GPU collectors to
    ``registry``."""
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    registry.register(ThreadsCollector())
    registry.register(GpuCollector(nvml))
