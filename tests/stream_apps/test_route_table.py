"""A variant whose model cannot be loaded, or an experiment the store cannot read, never takes the worker down:
those frames are refused (dead-lettered as MODEL_002 or SYS_003 with the reason), everything else keeps being
served, and the experiment is tried again after the retry period.

Models here are plain named objects: a RouteTable only hands them to the worker, it never runs them.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from experiments.config import Experiment, load_experiment
from models.errors import ChecksumMismatch
from sinks.experiment_store import ExperimentNotFound, ExperimentStore
from stream_apps.inference.frames import BadFrame, FrameProblem
from stream_apps.inference.routing import RouteTable
from tests.services import free_ports

CONTROL_MODEL, CANDIDATE_MODEL = "yolov4-tiny@1.0.0", "yolov4-tiny@9.0.0"


class ModelShelf:
    """Loads models by reference, counting loads; a reference in ``broken`` fails as tampered weights do."""

    def __init__(self, *broken: str) -> None:
        self.broken = set(broken)
        self.loads: list[str] = []

    def load(self, reference: str) -> SimpleNamespace:
        self.loads.append(reference)
        if reference in self.broken:
            raise ChecksumMismatch(f"{reference}: weights sha256 differs from the manifest")
        name, _, version = reference.partition("@")
        return SimpleNamespace(name=name, version=version)


def _experiment(**extra) -> Experiment:
    return load_experiment({"name": "exp", "variants": [{"name": "control", "model": CONTROL_MODEL},
                                                        {"name": "candidate", "model": CANDIDATE_MODEL}], **extra})


def _store(*experiments: Experiment):
    known = {e.name: e for e in experiments}

    def find(name: str) -> Experiment:
        if name not in known:
            raise ExperimentNotFound(name)
        return known[name]
    return find


PRODUCTION = SimpleNamespace(name="yolov4-tiny", version="0.9.0")


def _refusal(routes: RouteTable, experiment: str, variant: str) -> BadFrame:
    with pytest.raises(BadFrame) as caught:
        routes.route(experiment, variant)
    return caught.value


def test_frames_of_a_variant_whose_model_fails_to_load_are_refused_as_unavailable_with_the_reason():
    routes = RouteTable(PRODUCTION, ModelShelf(CANDIDATE_MODEL).load, _store(_experiment()))
    refusal = _refusal(routes, "exp", "candidate")
    assert refusal.problem == FrameProblem.VARIANT_MODEL_UNAVAILABLE
    assert CANDIDATE_MODEL in refusal.reason and "[MODEL_002]" in refusal.reason


def test_production_and_the_other_variants_are_served_while_a_variant_model_is_unavailable():
    routes = RouteTable(PRODUCTION, ModelShelf(CANDIDATE_MODEL).load, _store(_experiment()))
    _refusal(routes, "exp", "candidate")
    assert routes.route("", "").detector is PRODUCTION
    assert routes.route("exp", "control").detector.version == "1.0.0"


def test_a_variant_model_that_failed_is_not_loaded_again_before_the_retry_period():
    shelf = ModelShelf(CANDIDATE_MODEL)
    routes = RouteTable(PRODUCTION, shelf.load, _store(_experiment()), unavailable_retry_s=60)
    for _ in range(3):
        _refusal(routes, "exp", "candidate")
    assert shelf.loads.count(CANDIDATE_MODEL) == 1


def test_a_variant_model_fixed_after_a_failure_is_served_after_the_retry_period():
    shelf = ModelShelf(CANDIDATE_MODEL)
    routes = RouteTable(PRODUCTION, shelf.load, _store(_experiment()), unavailable_retry_s=0.05)
    _refusal(routes, "exp", "candidate")
    shelf.broken.clear()
    time.sleep(0.1)
    assert routes.route("exp", "candidate").detector.version == "9.0.0"


def test_a_variant_the_experiment_does_not_have_is_still_an_unknown_variant():
    routes = RouteTable(PRODUCTION, ModelShelf(CANDIDATE_MODEL).load, _store(_experiment()))
    _refusal(routes, "exp", "candidate")
    assert _refusal(routes, "exp", "nobody-serves-this").problem == FrameProblem.UNKNOWN_VARIANT


def test_control_frames_get_no_shadow_run_while_the_candidate_model_is_unavailable():
    experiment = _experiment(shadow={"enabled": True, "candidate": "candidate", "sample_rate": 1.0})
    routes = RouteTable(PRODUCTION, ModelShelf(CANDIDATE_MODEL).load, _store(experiment))
    assert routes.route("exp", "control").detector.version == "1.0.0"
    assert routes.shadow_route("exp", "control", "cam", 1) is None


def test_frames_of_an_experiment_the_store_cannot_read_are_refused_as_unavailable_and_production_served():
    unreachable = redis.Redis(port=free_ports(1)[0], retry=Retry(NoBackoff(), 0))  # nothing listens there
    routes = RouteTable(PRODUCTION, ModelShelf().load, ExperimentStore(unreachable).get)
    refusal = _refusal(routes, "exp", "control")
    assert refusal.problem == FrameProblem.EXPERIMENT_UNREADABLE and "ConnectionError" in refusal.reason
    assert (refusal.code, refusal.detail) == ("SYS_003", "experiment-unreadable")
    assert routes.route("", "").detector is PRODUCTION


class ManualClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _second_experiment() -> Experiment:
    return load_experiment({"name": "thresholds", "variants": [
        {"name": "control", "model": CONTROL_MODEL},
        {"name": "strict", "model": CONTROL_MODEL, "confidence_threshold": 0.5}]})


def test_an_experiment_without_frames_for_the_idle_period_is_released_with_its_models():
    clock = ManualClock()
    shelf = ModelShelf()
    routes = RouteTable(PRODUCTION, shelf.load, _store(_experiment()), idle_release_s=600, clock=clock)
    routes.route("exp", "control")

    clock.now += 600
    routes.refresh()

    assert routes.detectors() == [PRODUCTION]
    routes.route("exp", "control")  # a later frame looks the experiment up and loads its models again
    assert shelf.loads == [CONTROL_MODEL, CANDIDATE_MODEL] * 2


def test_an_experiment_with_recent_frames_keeps_its_models():
    clock = ManualClock()
    routes = RouteTable(PRODUCTION, ModelShelf().load, _store(_experiment()), idle_release_s=600, clock=clock)
    routes.route("exp", "control")

    clock.now += 599
    routes.route("exp", "candidate")
    clock.now += 599
    routes.refresh()

    assert len(routes.detectors()) == 3


def test_releasing_an_idle_experiment_keeps_a_model_another_experiment_still_serves():
    clock = ManualClock()
    routes = RouteTable(PRODUCTION, ModelShelf().load, _store(_experiment(), _second_experiment()),
                        idle_release_s=600, clock=clock)
    routes.route("exp", "candidate")
    clock.now += 300
    routes.route("thresholds", "strict")

    clock.now += 300
    routes.refresh()

    assert sorted(d.version for d in routes.detectors()) == ["0.9.0", "1.0.0"]
    assert routes.route("thresholds", "control").detector.version == "1.0.0"


def test_a_variant_serving_the_production_version_shares_the_production_model():
    production = SimpleNamespace(name="yolov4-tiny", version="1.0.0")
    routes = RouteTable(production, ModelShelf().load, _store(_experiment()))

    assert routes.route("exp", "control").detector is production
    assert len(routes.detectors()) == 2


def test_variants_reaching_one_version_through_different_references_share_one_model():
    experiment = load_experiment({"name": "alias", "variants": [
        {"name": "pinned", "model": "yolov4-tiny@1.1.0"}, {"name": "canary", "model": "yolov4-tiny@canary"}]})

    def load(reference: str) -> SimpleNamespace:
        return SimpleNamespace(name="yolov4-tiny", version="1.2.0")  # both references resolve to 1.2.0

    routes = RouteTable(PRODUCTION, load, _store(experiment))

    assert routes.route("alias", "pinned").detector is routes.route("alias", "canary").detector


def test_the_running_experiment_s_models_are_loaded_before_its_first_frame():
    experiment = _experiment().model_copy(update={"status": "running"})
    shelf = ModelShelf()
    routes = RouteTable(PRODUCTION, shelf.load, _store(experiment), poll_interval_s=0.02,
                        find_active=lambda: experiment)
    deadline = time.monotonic() + 5
    while not shelf.loads and time.monotonic() < deadline:
        routes.refresh()  # the worker calls this between batches
        time.sleep(0.02)

    assert sorted(shelf.loads) == sorted([CONTROL_MODEL, CANDIDATE_MODEL])
    assert routes.route("exp", "candidate").detector.version == "9.0.0"
    assert len(shelf.loads) == 2, "the first frame must not load anything"


def test_an_unreachable_store_never_stalls_the_routes_while_watching_for_experiments():
    def unreachable() -> Experiment:
        time.sleep(0.5)
        raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    routes = RouteTable(PRODUCTION, ModelShelf().load, _store(), poll_interval_s=0.01, find_active=unreachable)
    started = time.monotonic()
    for _ in range(20):
        routes.refresh()

    assert time.monotonic() - started < 0.2
    assert routes.route("", "").detector is PRODUCTION
