"""Pure counting core: tracking, line crossings and zones per camera.

Imports nothing from Kafka, Faust, ClickHouse or Redis, so the same code runs in the stream
processor and offline.
"""

from counting.config import (
    CameraConfig,
    CameraConfigError,
    CameraConfigs,
    LineConfig,
    TrackerConfig,
    ZoneConfig,
    load_camera_configs,
    parse_camera_configs,
)
from counting.engine import CameraCounter, CameraStateError, FrameResult
from counting.lines import CrossingEvent, LineCounter, LineStateError
from counting.tracker import Tracker, TrackerStateError
from counting.zones import ZoneCounter, ZoneEvent, ZoneFrame, ZoneStateError

__all__ = [
    "CameraConfig",
    "CameraConfigError",
    "CameraConfigs",
    "CameraCounter",
    "CameraStateError",
    "CrossingEvent",
    "FrameResult",
    "LineConfig",
    "LineCounter",
    "LineStateError",
    "TrackerConfig",
    "Tracker",
    "TrackerStateError",
    "ZoneConfig",
    "ZoneCounter",
    "ZoneEvent",
    "ZoneFrame",
    "ZoneStateError",
    "load_camera_configs",
    "parse_camera_configs",
]
