"""Resource metrics of a camcount process: CPU, memory, threads always; GPU utilisation and memory where NVML works."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from prometheus_client import CollectorRegistry, generate_latest

from foundation.process_metrics import GpuCollector, LimitsCollector, register_resource_metrics


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
                 "camcount_process_threads", "camcount_process_cpu_limit_cores",
                 "camcount_process_memory_limit_bytes", "python_info"):
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


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def test_limits_on_this_host_are_positive_and_no_larger_than_the_machine():
    import os

    import psutil

    limits = LimitsCollector()
    assert 0 < limits.cpu_limit_cores() <= len(os.sched_getaffinity(0))
    assert 0 < limits.memory_limit_bytes() <= psutil.virtual_memory().total


def test_cgroup_v2_limits_of_the_process_cgroup_and_its_parents_lower_cpus_and_memory(tmp_path):
    # A Kubernetes pod on cgroup v2: the pod's cgroup limits memory, the container's cgroup the CPU quota.
    proc = tmp_path / "proc_cgroup"
    _write(proc, "0::/kubepods/pod1/ctr")
    root = tmp_path / "cgroup"
    _write(root / "kubepods" / "cpu.max", "max 100000")
    _write(root / "kubepods" / "memory.max", "max")
    _write(root / "kubepods" / "pod1" / "memory.max", str(2 * 2**30))
    _write(root / "kubepods" / "pod1" / "ctr" / "cpu.max", "150000 100000")
    _write(root / "kubepods" / "pod1" / "ctr" / "memory.max", "max")
    limits = LimitsCollector(root, proc, cpus=8, physical_memory=64 * 2**30)
    assert limits.cpu_limit_cores() == 1.5
    assert limits.memory_limit_bytes() == 2 * 2**30


def test_cgroup_v1_inside_a_container_without_cgroup_namespace_reads_the_mount_root(tmp_path):
    # /proc/self/cgroup names the host's hierarchy; inside the container only the mount's own files exist.
    proc = tmp_path / "proc_cgroup"
    _write(proc, "5:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/")
    root = tmp_path / "cgroup"
    _write(root / "cpu,cpuacct" / "cpu.cfs_quota_us", "200000")
    _write(root / "cpu,cpuacct" / "cpu.cfs_period_us", "100000")
    _write(root / "memory" / "memory.limit_in_bytes", str(512 * 2**20))
    limits = LimitsCollector(root, proc, cpus=16, physical_memory=64 * 2**30)
    assert limits.cpu_limit_cores() == 2.0
    assert limits.memory_limit_bytes() == 512 * 2**20


def test_without_cgroup_limits_the_machine_is_the_limit(tmp_path):
    proc = tmp_path / "proc_cgroup"
    _write(proc, "4:memory:/\n3:cpu,cpuacct:/\n0::/")
    root = tmp_path / "cgroup"
    _write(root / "cpu,cpuacct" / "cpu.cfs_quota_us", "-1")
    _write(root / "cpu,cpuacct" / "cpu.cfs_period_us", "100000")
    _write(root / "memory" / "memory.limit_in_bytes", "9223372036854771712")
    limits = LimitsCollector(root, proc, cpus=2, physical_memory=24 * 2**30)
    assert limits.cpu_limit_cores() == 2.0
    assert limits.memory_limit_bytes() == 24 * 2**30
    assert LimitsCollector(root, tmp_path / "missing", cpus=3, physical_memory=10).cpu_limit_cores() == 3.0
    registry = CollectorRegistry()
    registry.register(limits)
    samples = _samples(registry)
    assert samples["camcount_process_cpu_limit_cores[]"] == 2.0
    assert samples["camcount_process_memory_limit_bytes[]"] == 24 * 2**30
