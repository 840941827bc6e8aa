"""The counting benchmark runs on synthetic walkers and reports per-frame timings."""

import subprocess
import sys

from counting.bench import bench_counting


def test_bench_reports_per_frame_timings_and_counts_crossings():
    report = bench_counting(objects=5, frames=200)
    assert report["frames"] == 200
    assert 0 < report["ms_per_frame_p50"] <= report["ms_per_frame_p99"]
    assert report["crossings"] > 0


def test_counting_core_imports_no_kafka_faust_clickhouse_or_redis():
    probe = (
        "import sys, counting, counting.bench; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'confluent_kafka', 'faust', 'clickhouse_driver', 'redis', 'kafka', 'aiokafka'}))"
    )
    output = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"
