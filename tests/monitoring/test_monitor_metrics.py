"""The monitor's Prometheus exporter removes the series it no longer wants from the label sets it set itself."""

from camcount.monitor import MonitorMetrics
from monitoring.diagnosis import Key


def samples(metrics: MonitorMetrics, name: str) -> list[dict[str, str]]:
    return [s.labels for family in metrics.registry.collect() for s in family.samples if s.name == name]


def test_forgetting_a_key_removes_its_scores_and_episode_and_keeps_the_others():
    metrics = MonitorMetrics()
    for camera in ("a", "b"):
        metrics.set(metrics.drift_active, (camera, "m", "1"), 0)
        for signal in ("detections", "class_mix"):
            metrics.set(metrics.drift_score, (camera, "m", "1", signal, "psi"), 0.05)

    metrics.forget({Key("a", "m", "1")})

    assert {s["camera"] for s in samples(metrics, "camcount_drift_score")} == {"b"}
    assert [s["camera"] for s in samples(metrics, "camcount_drift_active")] == ["b"]
    assert metrics.series(metrics.drift_score) == [("b", "m", "1", "class_mix", "psi"),
                                                   ("b", "m", "1", "detections", "psi")]


def test_a_new_accuracy_evaluation_replaces_the_series_of_the_version_served_before():
    metrics = MonitorMetrics()
    metrics.set_accuracy("m", "1", {"precision": 0.9, "recall": 0.8}, 1_000)
    metrics.set_accuracy("m", "2", {"precision": 0.7, "recall": 0.6}, 2_000)

    assert {(s["version"], s["metric"]) for s in samples(metrics, "camcount_model_accuracy_ratio")} == {
        ("2", "precision"), ("2", "recall")}
    assert [s["version"] for s in samples(metrics, "camcount_model_accuracy_evaluated_timestamp_seconds")] == ["2"]


def test_removing_a_series_twice_is_harmless_for_the_bookkeeping():
    metrics = MonitorMetrics()
    metrics.set(metrics.drift_active, ("a", "m", "1"), 1)
    metrics.forget({Key("a", "m", "1")})
    metrics.forget({Key("a", "m", "1")})
    assert metrics.series(metrics.drift_active) == [] and samples(metrics, "camcount_drift_active") == []
