"""Conversions between topic records and the pure core's types. Pure: no Kafka clients or Faust here."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import ValidationError

from models.calibration import BoxCalibration
from models.detections import Detections
from schemas import UndecodablePayload


@dataclass(frozen=True)
class Provenance:
    """What every record downstream of inference carries, so any count traces back to frames and model."""

    camera_id: str
    frame_seq: int
    capture_ts_ms: int
    model_name: str
    model_version: str
    variant: str
    experiment: str

    @classmethod
    def of(cls, record: dict[str, Any]) -> "Provenance":
        return cls(record["camera_id"], record["frame_seq"], record["capture_ts_ms"], record["model_name"],
                   record["model_version"], record["variant"], record["experiment"])


def check_detections_record(record: dict[str, Any]) -> None:
    """Raise UndecodablePayload unless the record's parallel box arrays agree (4 coordinates per box) and the box
    calibration it carries, if any, is valid."""
    boxes = len(record["confidence"])
    if len(record["xyxy"]) != 4 * boxes or len(record["class_id"]) != boxes:
        raise UndecodablePayload(
            f"detections record of {record['camera_id']!r} frame {record['frame_seq']} has {len(record['xyxy'])} box "
            f"coordinates, {boxes} confidences and {len(record['class_id'])} class ids (want 4 per box)")
    calibration_from_record(record)


def detections_from_record(record: dict[str, Any]) -> Detections:
    """The boxes of a ``detections`` record as a Detections struct (frame pixel coordinates)."""
    check_detections_record(record)
    return Detections(
        np.asarray(record["xyxy"], dtype=np.float32).reshape(-1, 4),
        np.asarray(record["confidence"], dtype=np.float32),
        np.asarray(record["class_id"], dtype=np.int32),
    )


def crossing_event_id(p: Provenance, line: str, direction: str, track_id: int, frame_seq: int) -> str:
    """Deterministic id: the same crossing gets the same id however often it is replayed or re-inserted."""
    key = "|".join(map(str, (p.camera_id, p.model_name, p.model_version, p.variant, p.experiment, line, direction,
                             track_id, frame_seq)))
    return hashlib.sha1(key.encode()).hexdigest()



def calibration_to_record(calibration: BoxCalibration | None) -> dict[str, Any] | None:
    """The ``box_calibration`` field of a detections record (v3) for a model version's calibration."""
    if calibration is None:
        return None
    return {"input_width": calibration.input_size[0], "input_height": calibration.input_size[1],
            "heights": list(calibration.heights), "scales": list(calibration.scales)}


def calibration_from_record(record: dict[str, Any]) -> BoxCalibration | None:
    """The box calibration a detections record carries (None: none, or a record written before v3); an invalid
    one is UndecodablePayload (the record is dead-lettered, as for any other unreadable field)."""
    field = record.get("box_calibration")
    if field is None:
        return None
    try:
        return _calibration(field["input_width"], field["input_height"], tuple(field["heights"]),
                            tuple(field["scales"]))
    except ValidationError as exc:
        raise UndecodablePayload(f"detections record of {record['camera_id']!r} frame {record['frame_seq']} carries "
                                 f"an invalid box calibration: {exc.errors()[0]['msg']}") from exc


@functools.lru_cache(maxsize=64)
def _calibration(width: int, height: int, heights: tuple[float, ...], scales: tuple[float, ...]) -> BoxCalibration:
    # Every record of a model version carries the same calibration, and the counting app reads it twice per
    # record (check, then count): validate each distinct one once.
    return BoxCalibration(input_size=(width, height), heights=heights, scales=scales)
