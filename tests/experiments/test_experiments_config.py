"""Experiment definitions: defaults derived from other fields, and validation errors that name the field."""

import pytest

from experiments.config import Experiment, ExperimentConfigError, load_experiment


def definition(**overrides):
    data = {
        "name": "fast-model",
        "variants": [{"name": "control", "model": "yolov4-tiny@1.0.0"},
                     {"name": "fast", "model": "yolov4-tiny@production", "confidence_threshold": 0.3}],
    }
    return {**data, **overrides}


def error_of(data) -> str:
    with pytest.raises(ExperimentConfigError) as info:
        load_experiment(data)
    return str(info.value)


def test_salt_defaults_to_the_name_and_control_to_the_first_variant():
    experiment = load_experiment(definition())
    assert (experiment.salt, experiment.control) == ("fast-model", "control")
    assert [v.name for v in experiment.candidates] == ["fast"]


def test_model_reference_splits_into_name_and_version_or_alias():
    experiment = load_experiment(definition())
    assert (experiment.variants[1].model_name, experiment.variants[1].model_selector) == ("yolov4-tiny", "production")


def test_a_single_variant_is_rejected_naming_the_field():
    message = error_of(definition(variants=[{"name": "only", "model": "yolo@1.0.0"}]))
    assert "variants:" in message and "at least 2" in message


def test_duplicate_variant_names_are_rejected_and_listed():
    message = error_of(definition(variants=[{"name": "a", "model": "yolo@1.0.0"},
                                            {"name": "a", "model": "yolo@2.0.0"}]))
    assert "variants: variant names must be unique" in message and "['a']" in message


def test_control_must_be_one_of_the_variants():
    message = error_of(definition(control="missing"))
    assert "control: 'missing' is not a variant" in message and "['control', 'fast']" in message


def test_weights_must_be_positive():
    message = error_of(definition(variants=[{"name": "a", "model": "yolo@1.0.0", "weight": 0},
                                            {"name": "b", "model": "yolo@2.0.0"}]))
    assert "variants.0.weight:" in message and "greater than 0" in message


def test_model_without_version_or_alias_is_rejected_with_an_example():
    message = error_of(definition(variants=[{"name": "a", "model": "yolo"}, {"name": "b", "model": "yolo@2.0.0"}]))
    assert "variants.0.model:" in message and "yolov4-tiny@1.1.0" in message


def test_shadow_candidate_must_be_a_variant_other_than_the_control():
    message = error_of(definition(shadow={"enabled": True, "candidate": "control"}))
    assert "shadow.candidate: the control cannot shadow itself" in message


def test_every_problem_is_listed_at_once():
    message = error_of({"name": "Bad Name", "variants": [{"name": "a", "model": "yolo@1.0.0"}], "alpha": 2})
    assert "name:" in message and "variants:" in message and "alpha:" in message


def test_experiment_is_immutable():
    experiment = Experiment.model_validate(definition())
    with pytest.raises(ValueError):
        experiment.alpha = 0.1
