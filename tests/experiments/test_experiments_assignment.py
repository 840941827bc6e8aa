"""Assignment of cameras to variants: deterministic, sticky, proportional to weights; shadow sampling."""

import math
from collections import Counter

import pytest

from experiments.assignment import AssignmentError, assign, should_shadow
from experiments.config import Experiment

HOUR_MS = 3_600_000


def experiment(**overrides) -> Experiment:
    data = {
        "name": "weights",
        "variants": [{"name": "a", "model": "yolo@1.0.0", "weight": 1},
                     {"name": "b", "model": "yolo@2.0.0", "weight": 2},
                     {"name": "c", "model": "yolo@3.0.0", "weight": 1}],
    }
    return Experiment.model_validate({**data, **overrides})


def test_same_camera_gets_the_same_variant_from_an_equal_definition():
    assert assign(experiment(), "cam-17").name == assign(experiment(), "cam-17").name


def test_camera_mode_is_sticky_whatever_the_timestamp():
    definition = experiment()
    assert {assign(definition, "cam-17", ts).name for ts in range(0, 100 * HOUR_MS, HOUR_MS)} == {
        assign(definition, "cam-17").name
    }


def test_shares_match_weights_within_four_binomial_standard_deviations_over_10000_cameras():
    n = 10_000
    counts = Counter(assign(experiment(), f"cam-{i}").name for i in range(n))
    for name, share in (("a", 0.25), ("b", 0.5), ("c", 0.25)):
        assert abs(counts[name] - n * share) <= 4 * math.sqrt(n * share * (1 - share)), counts


def test_another_salt_redraws_cameras():
    cameras = [f"cam-{i}" for i in range(200)]
    first = [assign(experiment(), c).name for c in cameras]
    second = [assign(experiment(salt="round-2"), c).name for c in cameras]
    assert first != second


def test_time_slot_mode_keeps_a_variant_within_a_slot():
    definition = experiment(assignment="time_slot", slot_minutes=60)
    start = 500 * HOUR_MS
    assert len({assign(definition, "cam-1", start + offset).name for offset in range(0, HOUR_MS, 60_000)}) == 1


def test_time_slot_mode_varies_a_camera_across_slots():
    definition = experiment(assignment="time_slot", slot_minutes=60)
    assert len({assign(definition, "cam-1", slot * HOUR_MS).name for slot in range(48)}) == 3


def test_time_slot_mode_needs_the_timestamp():
    with pytest.raises(AssignmentError, match="ts_ms"):
        assign(experiment(assignment="time_slot"), "cam-1")


def test_shadow_sampling_is_deterministic_and_near_the_sample_rate():
    definition = experiment(shadow={"enabled": True, "candidate": "b", "sample_rate": 0.1})
    picks = [should_shadow(definition, "cam-1", seq) for seq in range(10_000)]
    assert picks == [should_shadow(definition, "cam-1", seq) for seq in range(10_000)]
    assert abs(sum(picks) - 1000) <= 4 * math.sqrt(10_000 * 0.1 * 0.9)


def test_disabled_shadow_samples_nothing():
    definition = experiment(shadow={"enabled": False, "candidate": "b", "sample_rate": 1.0})
    assert not any(should_shadow(definition, "cam-1", seq) for seq in range(100))
