"""Adapter: experiment samples from ClickHouse (what ``experiments.report.build_report`` takes).

Queries are written for ClickHouse 18.16: FINAL, groupArray, toStartOfHour; no CTEs, no window functions.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

import numpy as np
from clickhouse_driver import Client

from experiments.assignment import assign
from experiments.config import Experiment
from experiments.report import Report, ShadowSamples, VariantSamples, build_report
from monitoring.distances import Distribution, jensen_shannon

logger = logging.getLogger(__name__)

# One row per (variant, camera, assignment slot, hour). groupArray calls of one group see the rows in the same
# order, so the arrays stay aligned per frame. The slot expression is filled in by load_samples.
FRAMES_SQL = """
SELECT
    variant,
    camera_id,
    {slot} AS slot,
    toUnixTimestamp(toStartOfHour(capture_time)) AS hour,
    groupArray(infer_ms),
    groupArray(e2e_ms),
    groupArray(detections),
    groupArray(mean_confidence),
    groupArray(status = 'error')
FROM inference_log FINAL
WHERE experiment = %(experiment)s
  AND status != 'skipped'
GROUP BY variant, camera_id, slot, hour
"""

CROSSINGS_SQL = """
SELECT variant, camera_id, toUnixTimestamp(toStartOfHour(capture_time)) AS hour, count()
FROM crossing_events FINAL
WHERE experiment = %(experiment)s
GROUP BY variant, camera_id, hour
"""


SHADOW_SQL = """
SELECT control_detections, candidate_detections, matched_boxes, control_infer_ms, candidate_infer_ms
FROM shadow_pairs FINAL
WHERE experiment = %(experiment)s
ORDER BY camera_id, frame_seq
"""


def load_shadow_samples(clickhouse_client: Client, experiment: Experiment) -> ShadowSamples | None:
    """The experiment's shadow pairs (one row per shadowed frame), or None when shadow mode is off."""
    if not experiment.shadow.enabled:
        return None
    rows = clickhouse_client.execute(SHADOW_SQL, {"experiment": experiment.name})
    columns = [np.asarray(column, dtype=np.float64) for column in zip(*rows)] if rows else [np.zeros(0)] * 5
    return ShadowSamples(experiment.shadow.candidate or "", *columns)


def load_samples(clickhouse_client: Client, experiment: Experiment) -> dict[str, VariantSamples]:
    """Per-variant samples of every frame labelled with ``experiment``.

    A frame counts for a variant only if ``assign`` puts its camera (and slot) in that variant; other rows are
    shadow inferences or misrouted frames and are left out (logged). Camera-hours are the hours in which a
    variant inferred frames of a camera; one without crossings counts 0. Every variant is in the result,
    with empty arrays when it has no data.
    """
    # Every frame is labelled with its experiment by the ingestor and names are never reused, so the name alone
    # selects the rows; no time filter, as replayed footage can carry capture times ahead of the wall clock.
    params: dict[str, Any] = {"experiment": experiment.name}
    slot_ms = experiment.slot_minutes * 60_000 if experiment.assignment == "time_slot" else None
    slot = f"intDiv(capture_ts_ms, {slot_ms})" if slot_ms else "toUInt64(0)"
    columns: dict[str, list[list[Any]]] = defaultdict(lambda: [[], [], [], [], []])
    cameras: dict[str, set[str]] = defaultdict(set)
    camera_hours: dict[str, set[tuple[str, int]]] = defaultdict(set)
    foreign = 0
    for variant, camera_id, slot_index, hour, *arrays in clickhouse_client.execute(
        FRAMES_SQL.format(slot=slot), params
    ):
        served = assign(experiment, camera_id, slot_index * slot_ms if slot_ms else None).name
        if served != variant:
            foreign += len(arrays[0])
            continue
        for target, values in zip(columns[variant], arrays, strict=True):
            target.extend(values)
        cameras[variant].add(camera_id)
        camera_hours[variant].add((camera_id, hour))
    if foreign:
        logger.info("experiment %s: left out %d frames inferred by a variant their camera is not assigned to "
                    "(shadow runs or misrouted frames)", experiment.name, foreign)
    crossings: dict[tuple[str, str, int], int] = {
        (variant, camera_id, hour): count
        for variant, camera_id, hour, count in clickhouse_client.execute(CROSSINGS_SQL, params)
    }
    samples = {}
    for name in experiment.variant_names:
        infer_ms, e2e_ms, detections, confidence, error = columns[name]
        hours = sorted(camera_hours[name])
        samples[name] = VariantSamples(
            infer_ms=np.asarray(infer_ms, dtype=np.float64),
            e2e_ms=np.asarray(e2e_ms, dtype=np.float64),
            detections=np.asarray(detections, dtype=np.float64),
            mean_confidence=np.asarray(confidence, dtype=np.float64),
            error=np.asarray(error, dtype=np.bool_),
            crossings_per_camera_hour=np.asarray([crossings.get((name, c, h), 0) for c, h in hours],
                                                 dtype=np.float64),
            cameras=len(cameras[name]),
        )
    return samples


OUTPUT_SIGNALS = {"detections_per_frame": "detections", "mean_confidence": "confidence"}
"""Report metric -> drift monitor signal: the outputs compared between a candidate and the control."""


def output_drift(control: VariantSamples, candidate: VariantSamples, min_frames: int = 50) -> dict[str, float]:
    """Jensen-Shannon distance (``monitoring.distances``, the drift monitor's binning) of the candidate's outputs
    from the control's, per report metric with at least ``min_frames`` values on both sides."""
    drift = {}
    for metric in OUTPUT_SIGNALS:
        reference, current = control.metric(metric), candidate.metric(metric)
        if reference.size >= min_frames and current.size >= min_frames:
            drift[metric] = jensen_shannon(Distribution.of(reference), Distribution.of(current))
    return drift


def experiment_report(clickhouse_client: Client, experiment: Experiment) -> Report:
    """The A/B report of ``experiment``, from its samples in ClickHouse, with each candidate's output drift from
    the control (``guardrails.max_output_drift`` holds a candidate beyond it)."""
    samples = load_samples(clickhouse_client, experiment)
    control = samples[experiment.control]
    drift = {variant.name: output_drift(control, samples[variant.name]) for variant in experiment.candidates}
    return build_report(experiment, samples, load_shadow_samples(clickhouse_client, experiment), drift)
