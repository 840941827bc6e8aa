"""What every ``frames`` record carries besides its Avro value, and the end-of-stream marker, built in one place for
the two that send frames records: ``camcount ingest`` (its frames, and its marker when a run ends) and the counting
app (the marker of a camera that went silent, ``counting.silent_camera_end_s``).

The headers repeat the camera, seq, capture time, variant and experiment, so a reader can route or filter a record
without decoding it. A marker has no image: it repeats its camera's last frame (seq, capture time, size, variant,
experiment), after which counting ends every track.
"""

from __future__ import annotations

from typing import Any

from schemas import FRAME

# On a marker that no ingest sent: the counting app's, for a camera silent too long. The worker copies it from the
# ``frames`` marker onto the ``detections`` END record.
END_REASON_HEADER, SILENCE = "camcount-end", b"silence"


def frame_headers(record: dict[str, Any]) -> list[tuple[str, bytes]]:
    """The headers of the ``frames`` record ``record`` (a frame or a marker)."""
    return FRAME.headers() + [
        ("camera-id", record["camera_id"].encode()),
        ("frame-seq", str(record["frame_seq"]).encode()),
        ("capture-ts-ms", str(record["capture_ts_ms"]).encode()),
        ("variant", record["variant"].encode()),
        ("experiment", record["experiment"].encode()),
    ]


def end_of_stream_marker(last: dict[str, Any]) -> dict[str, Any]:
    """The ``frames`` record saying the camera's source ended after frame ``last`` (any mapping with its camera_id,
    frame_seq, capture_ts_ms, width, height, variant and experiment)."""
    return {"camera_id": last["camera_id"], "frame_seq": last["frame_seq"], "capture_ts_ms": last["capture_ts_ms"],
            "width": last["width"], "height": last["height"], "encoding": "jpeg", "image": b"",
            "variant": last["variant"], "experiment": last["experiment"], "end_of_stream": True}
