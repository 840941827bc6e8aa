"""Live guardrails stop a candidate only after breaching a limit for breach_seconds without pause."""

import pytest

from experiments.config import Experiment
from experiments.guardrails import GuardrailMonitor, UnknownVariant


def monitor(**guardrails) -> GuardrailMonitor:
    limits = {"max_error_rate": 0.05, "max_p95_latency_ms": 100.0, "breach_seconds": 30.0,
              "window_seconds": 10.0, "min_window_frames": 20, **guardrails}
    return GuardrailMonitor(Experiment.model_validate({
        "name": "guarded",
        "variants": [{"name": "a", "model": "yolo@1.0.0"}, {"name": "b", "model": "yolo@2.0.0"}],
        "guardrails": limits,
    }))


def run(guard: GuardrailMonitor, variant: str, start_s: int, end_s: int, latency_ms: float, error_every: int = 0):
    """Feed 10 frames per second of ``variant`` and check at the end of every second; the first stop or None.

    Every ``error_every``-th frame fails (0: none).
    """
    for second in range(start_s, end_s):
        for i in range(second * 10, second * 10 + 10):
            guard.observe(variant, i * 100, latency_ms, bool(error_every) and i % error_every == 0)
        if (decision := guard.check(second * 1000 + 999)) is not None:
            return decision
    return None


def test_slow_candidate_is_not_stopped_before_breach_seconds():
    guard = monitor()
    assert run(guard, "b", 0, 31, latency_ms=150.0) is None  # breached from t=2 s (20 frames), 29 s < 30 s


def test_slow_candidate_is_stopped_once_the_breach_lasted_breach_seconds():
    decision = run(monitor(), "b", 0, 60, latency_ms=150.0)
    assert (decision.variant, decision.metric, decision.since_ms, decision.at_ms) == ("b", "p95_latency_ms",
                                                                                      1_999, 31_999)
    assert decision.reason == "guardrail: variant b p95_latency_ms 150.0 ms > 100 ms for 30 s"


def test_a_healthy_check_ends_the_breach():
    guard = monitor()
    assert run(guard, "b", 0, 15, latency_ms=150.0) is None
    assert run(guard, "b", 15, 35, latency_ms=50.0) is None  # the 10 s window is healthy from about t=25 s
    assert run(guard, "b", 35, 60, latency_ms=150.0) is None  # a new breach, from about t=37 s


def test_error_rate_breach_stops_the_candidate():
    decision = run(monitor(), "b", 0, 60, latency_ms=20.0, error_every=5)  # 20 % errors
    assert (decision.metric, decision.observed) == ("error_rate", pytest.approx(0.2))


def test_a_window_with_too_few_frames_is_not_judged():
    guard = monitor(min_window_frames=200)  # 10 s at 10 fps is only 100 frames
    assert run(guard, "b", 0, 60, latency_ms=150.0) is None


def test_the_control_is_not_guarded():
    assert run(monitor(), "a", 0, 60, latency_ms=150.0) is None


def test_an_unknown_variant_is_refused():
    with pytest.raises(UnknownVariant, match="has no variant 'z'"):
        monitor().observe("z", 0, 10.0, False)


def test_output_drift_beyond_its_guardrail_stops_the_candidate_after_breach_seconds():
    guard = monitor(max_output_drift=0.1)
    decision = None
    for second in range(60):
        for i in range(second * 10, second * 10 + 10):
            guard.observe("b", i * 100, 20.0, False)
        drift = {"b": 0.35 if second >= 5 else 0.02}
        if (decision := guard.check(second * 1000 + 999, drift)) is not None:
            break
    assert (decision.metric, decision.since_ms, decision.at_ms) == ("output_drift", 5_999, 35_999)
    assert "0.350 > 0.1 (Jensen-Shannon" in decision.reason


def test_output_drift_is_not_judged_without_its_guardrail():
    guard = monitor()
    for i in range(400):
        guard.observe("b", i * 100, 20.0, False)
    assert guard.check(40_000, {"b": 0.9}) is None
