"""Conversions between topic records and the pure core's types. Pure: no Kafka clients or Faust here."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

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
    """Raise UndecodablePayload unless the record's parallel box arrays agree (4 coordinates per box)."""
    boxes = len(record["confidence"])
    if len(record["xyxy"]) != 4 * boxes or len(record["class_id"]) != boxes:
        raise UndecodablePayload(
            f"detections record of {record['camera_id']!r} frame {record['frame_seq']} has {len(record['xyxy'])} box "
            f"coordinates, {boxes} confidences and {len(record['class_id'])} class ids (want 4 per box)")


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

