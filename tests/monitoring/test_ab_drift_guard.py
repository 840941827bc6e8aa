"""Drift as an A/B guardrail (issue 14, item 6), on real footage: a candidate that is the same model at a much
higher confidence threshold outputs fewer, surer boxes than the control on the same scene, and is held however much
faster it is; a candidate whose outputs match the control's (same model, same threshold) is promoted."""

import dataclasses

import numpy as np
import pytest

from experiments.report import build_report
from sinks.experiment_samples import output_drift
from tests.experiment_builders import samples
from tests.experiment_builders import speed_experiment as experiment
from tests.monitoring.footage_outputs import footage_outputs, production_settings, stream_frames

FRAMES = 4000  # per variant: 400 s of the scene at 10 frames/s, in 5-second stretches


@pytest.fixture(scope="module")
def clip():
    return footage_outputs(production_settings(), "none")


def variant(clip, rng, threshold: float, **latency):
    counts, confidence = clip.at(threshold)
    chosen = stream_frames(clip, FRAMES, 10, rng)
    base = samples(rng, FRAMES, **latency)
    return dataclasses.replace(base, detections=counts[chosen].astype(float), error=np.zeros(FRAMES, bool),
                               mean_confidence=confidence[chosen])


def test_a_candidate_whose_outputs_drift_is_held_and_one_whose_outputs_match_is_promoted(clip):
    rng = np.random.default_rng(6)
    guarded = experiment(guardrails={"max_output_drift": 0.1})
    control = variant(clip, rng, 0.1)
    same = variant(clip, rng, 0.1, slower_ms=-2.0)
    stricter = variant(clip, rng, 0.5, slower_ms=-2.0)

    aa = output_drift(control, same)
    held = output_drift(control, stricter)
    print(f"\nJensen-Shannon of the outputs from the control's: same model and threshold {aa}, "
          f"threshold 0.5 {held}")
    assert max(aa.values()) < 0.1 < min(held.values())

    report = build_report(guarded, {"a": control, "b": stricter}, output_drift={"b": held})
    assert report.decision == "keep control" and "b is held" in report.reason
    report = build_report(guarded, {"a": control, "b": same}, output_drift={"b": aa})
    assert (report.decision, report.promote) == ("promote", "b"), report.reason
