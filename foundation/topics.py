"""The topic catalogue: every stream camcount moves over Kafka, stated once.

Settings namespacing, provisioning and the ClickHouse sink loop over :data:`CATALOGUE`; the codec of each
stream lives in ``schemas`` and its table in ``sinks.clickhouse``, keyed by these entries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Stream:
    """One topic: ``setting`` is the ``kafka`` settings field that holds its name (so it can be renamed)."""

    key: str
    setting: str
    description: str

    def topic(self, kafka: Any) -> str:
        """This stream's topic name in a ``KafkaSettings`` section."""
        return getattr(kafka, self.setting)


FRAMES = Stream("frames", "frames_topic", "JPEG frames keyed by camera id, with a variant header, and each camera's "
                "end-of-stream markers (from its ingest, or from the counting app when it went silent)")
DETECTIONS = Stream("detections", "detections_topic", "one record per inferred frame: boxes, model, variant")
CROSSINGS = Stream("crossings", "crossings_topic", "line crossing events from the counting app")
WINDOW_COUNTS = Stream("window-counts", "window_counts_topic", "per-window line totals")
DEAD_LETTERS = Stream("frames-dlq", "dead_letter_topic", "frames the inference workers could not use, with a code")
SHADOW_PAIRS = Stream("shadow-pairs", "shadow_topic", "production vs shadow model outputs for the same frame")
ZONE_OCCUPANCY = Stream("zone-occupancy", "zone_occupancy_topic", "per-minute zone occupancy and dwell")
DEAD_RECORDS = Stream("records-dlq", "records_dead_letter_topic",
                      "records the counting app or the ClickHouse sink could not decode, with code and source offset")
MODEL_HEALTH = Stream("model-health", "model_health_topic",
                      "model-health events from `camcount monitor`: drift that persists, per camera and model version "
                      "(the retraining trigger)")

CATALOGUE: tuple[Stream, ...] = (FRAMES, DETECTIONS, CROSSINGS, WINDOW_COUNTS, DEAD_LETTERS, SHADOW_PAIRS,
                                 ZONE_OCCUPANCY, DEAD_RECORDS, MODEL_HEALTH)
