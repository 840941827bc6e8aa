"""Resource metrics of a camcount process: CPU, memory, threads always; GPU utilisation and memory where NVML works."""

from __future__ import annotations

from types import SimpleNamespace

from prometheus_client import CollectorRegistry, generate_latest

from foundation.process_metrics import GpuCollector, register_resource_metrics


class FakeNvml:
    """NVML's Python surface for two GPUs, the second failing its queries: no GPU exists on this CPU host, so the
    real library can only be exercised in its absence (see the test below that uses it)."""

    class NVMLError(Exception):
        pass

    def nvmlInit(self) -> None:
        pass

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        if index == 1:
            raise self.NVMLError("GPU is lost")
        return index

    def nvmlDeviceGetName(self, handle: int) -> bytes:
        return b"NVIDIA H200"

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> SimpleNamespace:
        return SimpleNamespace(gpu=85, memory=40)

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> SimpleNamespace:
        return SimpleNamespace(used=6 * 2**30, total=141 * 2**30, free=135 * 2**30)


def _samples(registry: CollectorRegistry) -> dict[str, float]:
    return {sample.name + str(sorted(sample.labels.items())): sample.value
            for family in registry.collect() for sample in family.samples}


def test_every_process_exports_its_cpu_memory_fds_and_threads():
    registry = CollectorRegistry()
    register_resource_metrics(registry)
    text = generate_latest(registry).decode()
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds",
                 "camcount_process_threads", "python_info"):
        assert f"\n{name}" in text or text.startswith(name), name


def test_without_an_nvml_library_the_gpu_collector_exports_nothing_and_does_not_fail():
    collector = GpuCollector()  # the real nvidia-ml-py on a host without the NVIDIA driver
    assert not collector.available
    assert all(not family.samples for family in collector.collect())


def test_each_answering_gpu_reports_utilisation_and_memory_and_a_failing_one_is_left_out():
    registry = CollectorRegistry()
    registry.register(GpuCollector(FakeNvml()))
    samples = _samples(registry)
    labels = "[('gpu', '0'), ('name', 'NVIDIA H200')]"
    assert samples[f"camcount_gpu_utilization_ratio{labels}"] == 0.85
    assert samples[f"camcount_gpu_memory_used_bytes{labels}"] == 6 * 2**30
    assert samples[f"camcount_gpu_memory_total_bytes{labels}"] == 141 * 2**30
    assert not any("'gpu', '1'" in key for key in samples)
