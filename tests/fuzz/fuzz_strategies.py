"""Hypothesis strategies for what an outside producer can put on a topic: message values (random bytes, valid
records and JPEGs, mutated), and Kafka headers (valid, missing, garbage, huge). Shared by the fuzz tests.

No text strategies (their Unicode tables would be cached in a ``.hypothesis`` folder): strings come from bytes.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import cv2
import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from schemas import SCHEMA_HEADER, SCHEMA_VERSION_HEADER, AvroCodec

FUZZ = settings(database=None, derandomize=False, deadline=timedelta(seconds=1),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
"""Shared by every fuzz test: no example database (nothing written to the repository), a per-example deadline
(a hang or a huge allocation fails the example); each test sets its own ``max_examples``."""


def examples(count: int) -> int:
    """``count`` examples, times ``CAMCOUNT_FUZZ_SCALE`` (default 1): set it to fuzz for longer by hand."""
    return count * int(os.environ.get("CAMCOUNT_FUZZ_SCALE", "1"))

# -- generic byte mutations ------------------------------------------------------------------------------------------

INTERESTING_BYTES = [0x00, 0x01, 0x02, 0x7F, 0x80, 0x81, 0xC0, 0xD8, 0xD9, 0xDA, 0xFE, 0xFF]
INTERESTING_U16 = [0, 1, 2, 7, 8, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFC0, 0xFFC2, 0xFFD8, 0xFFDA, 0xFFFE, 0xFFFF]
"""Boundaries, and values whose bytes look like JPEG markers (FF C0: a frame header, FF DA: start of scan)."""
INSERTS = [b"\xff\x00", b"\xff\xff", b"\xff", b"\x00\x00", b"\x80" * 10, b"\xff" * 9 + b"\x01", b"\x01",
           b"\x81\x80\x80\x80\x80\x80\x80\x80\x80\x01"]
"""Stuffed zeros, fill bytes, a varint that never ends, varints past 64 bits, a length of -1 (zigzag)."""


def _zigzag(value: int) -> bytes:
    n = (value << 1) ^ (value >> 63)
    n &= (1 << 64) - 1
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


VARINTS = [_zigzag(v) for v in (-1, -2, 0, 2**31 - 1, 2**31, -(2**31) - 1, 2**62, 2**63 - 1, -(2**63))]
"""Avro lengths and counts that are negative, past an int, or past what any payload holds."""


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` after one to four mutations: truncation, bit flips, junk inserted or appended, slices deleted or
    repeated, 16-bit fields overwritten, varints replaced, and length fields pointed at a later 0xFF byte."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["truncate", "flip", "byte", "append", "insert", "delete", "repeat", "u16",
                                     "varint", "retarget"]))
        size = len(out)
        at = draw(st.integers(0, size)) if kind in ("truncate", "insert") else draw(st.integers(0, max(size - 1, 0)))
        if kind == "truncate":
            del out[at:]
        elif kind == "append":
            out += draw(st.binary(min_size=1, max_size=64) | st.sampled_from(INSERTS))
        elif kind == "insert":
            out[at:at] = draw(st.sampled_from(INSERTS) | st.binary(min_size=1, max_size=16))
        elif not out:
            continue
        elif kind == "flip":
            out[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "byte":
            out[at] = draw(st.sampled_from(INTERESTING_BYTES) | st.integers(0, 255))
        elif kind == "delete":
            del out[at:at + draw(st.integers(1, 16))]
        elif kind == "repeat":
            out[at:at] = out[at:at + draw(st.integers(1, 32))] * draw(st.integers(1, 4))
        elif kind == "u16":
            out[at:at + 2] = draw(st.sampled_from(INTERESTING_U16) | st.integers(0, 0xFFFF)).to_bytes(2, "big")
        elif kind == "varint":
            out[at:at + draw(st.integers(0, 3))] = draw(st.sampled_from(VARINTS))
        else:  # retarget: a length at ``at`` that ends exactly on a later 0xFF (a marker, to a JPEG reader)
            later = [i for i in range(at + 2, size) if out[i] == 0xFF]
            if later:
                out[at:at + 2] = ((draw(st.sampled_from(later)) - at) & 0xFFFF).to_bytes(2, "big")
    return bytes(out)


def strings() -> st.SearchStrategy[str]:
    return st.sampled_from(["", "cam-1", "é", "\U0001f600", "\x00"]) | st.binary(max_size=24).map(
        lambda raw: raw.decode("latin-1"))


# -- Kafka headers ---------------------------------------------------------------------------------------------------

VERSIONS = [b"", b"0", b"1", b"2", b"3", b"-1", b"+1", b" 1", b"1 ", b"01", b"1.0", b"1e0", b"0x1", b"\xd9\xa1",
            "²".encode(), "١".encode(), b"\xff\xfe", b"\x00", str(2**63).encode(), b"9" * 4300, b"9" * 5000,
            b"0" * 4999 + b"1", b"1" * 100_000]
"""Versions a producer could write: empty, signed, padded, non-ASCII digits, non-UTF-8, past any int, and
digit strings past Python's 4300-digit limit on int()."""


@st.composite
def kafka_headers(draw: st.DrawFn, codec: AvroCodec, version: int | None = None) -> list[tuple[str, bytes | None]]:
    """Headers as a Kafka client returns them (a list of pairs, values possibly None): the codec's own headers
    (at ``version``, default its current one) with up to three of: a header dropped, a value replaced by garbage or
    another schema's name, a key repeated (the last one wins), an unknown header added."""
    pairs: list[tuple[str, bytes | None]] = [(SCHEMA_HEADER, codec.name.encode()),
                                             (SCHEMA_VERSION_HEADER, str(version or codec.version).encode())]
    keys = st.sampled_from([SCHEMA_HEADER, SCHEMA_VERSION_HEADER, "camcount-timing", "Camcount-Schema", "", "x"])
    values = (st.sampled_from(VERSIONS) | st.binary(max_size=16) | st.none()
              | st.sampled_from([b"frame", b"detections", b"crossing", b"window-count", b"zone-occupancy",
                                 b"shadow-pair", codec.name.upper().encode(), codec.name.encode() + b"\xff"])
              | st.integers(-5, 10**30).map(lambda n: str(n).encode()))
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2, 3]))):  # half of them as the producer wrote them
        kind = draw(st.sampled_from(["drop", "replace", "repeat", "add"]))
        if kind == "drop" and pairs:
            del pairs[draw(st.integers(0, len(pairs) - 1))]
        elif kind == "replace" and pairs:
            at = draw(st.integers(0, len(pairs) - 1))
            pairs[at] = (pairs[at][0], draw(values))
        elif kind in ("repeat", "add"):
            key = draw(st.sampled_from([SCHEMA_HEADER, SCHEMA_VERSION_HEADER])) if kind == "repeat" else draw(keys)
            pairs.insert(draw(st.integers(0, len(pairs))), (key, draw(values)))
    return pairs


# -- Avro records ----------------------------------------------------------------------------------------------------

def _value(avro_type: Any) -> st.SearchStrategy[Any]:
    if isinstance(avro_type, list):  # a union, e.g. ["null", {record}]
        return st.one_of([_value(branch) for branch in avro_type])
    if isinstance(avro_type, dict) and avro_type["type"] == "record":
        return records(avro_type)
    if isinstance(avro_type, dict) and avro_type["type"] == "enum":
        return st.sampled_from(avro_type["symbols"])
    if isinstance(avro_type, dict) and avro_type["type"] == "array":
        return st.lists(_value(avro_type["items"]), max_size=6)
    return {
        "string": strings(),
        "bytes": st.binary(max_size=32),
        "int": st.integers(-(2**31), 2**31 - 1),
        "long": st.integers(-(2**63), 2**63 - 1),
        "float": st.floats(width=32),
        "double": st.floats(),
        "boolean": st.booleans(),
        "null": st.none(),
    }[avro_type]


def records(schema: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Any record of a parsed (fastavro) record schema of the primitive, enum, array, record and union types
    camcount uses."""
    return st.fixed_dictionaries({field["name"]: _value(field["type"]) for field in schema["fields"]})


def writer(codec: AvroCodec, version: int) -> AvroCodec:
    """``codec`` as a producer of ``version`` wrote it (see the evolution rule in ``schemas``)."""
    file = codec.file if version == codec.version else codec.file.replace(".avsc", f".v{version}.avsc")
    return AvroCodec(codec.name, version, file)


# -- images ----------------------------------------------------------------------------------------------------------

@st.composite
def pictures(draw: st.DrawFn) -> np.ndarray:
    """A small BGR picture: flat, noisy, or striped, 1 to 48 pixels a side."""
    height, width = draw(st.integers(1, 48)), draw(st.integers(1, 48))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["flat", "noise", "stripes"]))
    if kind == "flat":
        return np.full((height, width, 3), draw(st.integers(0, 255)), np.uint8)
    if kind == "noise":
        return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    picture = np.zeros((height, width, 3), np.uint8)
    picture[::2] = 255
    return picture


@st.composite
def jpegs(draw: st.DrawFn) -> bytes:
    params = [cv2.IMWRITE_JPEG_QUALITY, draw(st.sampled_from([10, 50, 90, 100])),
              cv2.IMWRITE_JPEG_PROGRESSIVE, int(draw(st.booleans())),
              cv2.IMWRITE_JPEG_OPTIMIZE, int(draw(st.booleans()))]
    return cv2.imencode(".jpg", draw(pictures()), params)[1].tobytes()


def split_jpeg(jpeg: bytes) -> tuple[list[bytes], bytes]:
    """A well-formed JPEG as its segments after SOI up to SOS, and the rest (SOS, entropy-coded data, EOI)."""
    segments, position = [], 2
    while jpeg[position + 1] != 0xDA:
        end = position + 2 + int.from_bytes(jpeg[position + 2:position + 4], "big")
        segments.append(jpeg[position:end])
        position = end
    return segments, jpeg[position:]


SOF_MARKERS = [0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC9, 0xCA, 0xCF, 0xC4, 0xC8, 0xCC]
"""Frame headers, and the three markers in their range that are not (DHT, JPG, DAC)."""
SOF_1X1 = b"\xff\xc0\x00\x11\x08\x00\x01\x00\x01\x03" + b"\x01\x11\x00" * 3
"""A baseline frame header of one pixel, three components."""
DIMENSIONS = st.sampled_from([0, 1, 2, 8, 255, 256, 4096, 16_000, 20_000, 40_000, 65_000, 0xFF00, 0xFFC0, 0xFFC2,
                              0xFFD8, 0xFFDA, 0xFFFF]) | st.integers(0, 0xFFFF)


def _with_size(segment: bytes, width: int, height: int) -> bytes:
    return segment[:5] + height.to_bytes(2, "big") + width.to_bytes(2, "big") + segment[9:]


@st.composite
def jpeg_structures(draw: st.DrawFn) -> bytes:
    """A real JPEG rebuilt from its segments after structural mutations: the frame header (SOF) claiming another
    size, stuffed zeros, fill or junk bytes between segments, a segment hidden inside an APPn or COM, a decoy frame
    header, segments removed, repeated or swapped, and length fields rewritten."""
    segments, scan = split_jpeg(draw(jpegs()))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["size", "stuff", "hide", "decoy", "remove", "repeat", "swap", "length"]))
        at = draw(st.integers(0, len(segments)))
        sof = next((i for i, s in enumerate(segments) if s[:2] in (b"\xff\xc0", b"\xff\xc2")), None)
        if kind == "size" and sof is not None:
            segments[sof] = _with_size(segments[sof], draw(DIMENSIONS), draw(DIMENSIONS))
        elif kind == "stuff":
            if draw(st.booleans()) and sof is not None:
                at = sof  # right before the frame header: what a stuffed zero must not hide
            stuff = draw(st.sampled_from([b"\xff\x00", b"\xff\xff", b"\xff\x01", b"\xff\xd3", b"\x00"]))
            tail = draw(st.binary(max_size=4) | st.integers(0, 32).map(lambda n: n.to_bytes(2, "big")))
            segments.insert(at, stuff + tail)
        elif kind == "hide" and segments:
            at = min(at, len(segments) - 1)
            hidden = segments[at]
            marker = draw(st.sampled_from([0xE0, 0xE1, 0xED, 0xEE, 0xEF, 0xFE]))
            segments[at] = bytes([0xFF, marker]) + (len(hidden) + 2).to_bytes(2, "big") + hidden
        elif kind == "decoy":
            base = segments[sof] if sof is not None else SOF_1X1
            decoy = bytes([0xFF, draw(st.sampled_from(SOF_MARKERS))]) + _with_size(base, draw(DIMENSIONS),
                                                                             draw(DIMENSIONS))[2:]
            segments.insert(at, decoy)
        elif kind == "remove" and segments:
            del segments[min(at, len(segments) - 1)]
        elif kind == "repeat" and segments:
            segments.insert(at, segments[min(at, len(segments) - 1)])
        elif kind == "swap" and len(segments) > 1:
            other = draw(st.integers(0, len(segments) - 1))
            at = min(at, len(segments) - 1)
            segments[at], segments[other] = segments[other], segments[at]
        elif kind == "length" and segments:
            at = min(at, len(segments) - 1)
            real = int.from_bytes(segments[at][2:4], "big")
            length = draw(st.sampled_from([0, 1, 2, real - 1, real + 1, 0xFFFF]) | st.integers(0, 0xFFFF))
            segments[at] = segments[at][:2] + (length & 0xFFFF).to_bytes(2, "big") + segments[at][4:]
    return b"\xff\xd8" + b"".join(segments) + scan


@st.composite
def other_images(draw: st.DrawFn) -> bytes:
    """A picture in a format OpenCV decodes besides JPEG (PNG, BMP, PPM, TIFF, WebP), or a PPM or PNG header
    claiming a huge size: what ``decode_frame`` must not decode, since only a JPEG's size is read before."""
    kind = draw(st.sampled_from([".png", ".bmp", ".ppm", ".tiff", ".webp", "ppm-header", "png-header"]))
    if kind == "ppm-header":
        return f"P6\n{draw(DIMENSIONS)} {draw(DIMENSIONS)}\n255\n".encode() + draw(st.binary(max_size=64))
    if kind == "png-header":
        png = bytearray(cv2.imencode(".png", draw(pictures()))[1].tobytes())
        png[16:24] = draw(DIMENSIONS).to_bytes(4, "big") + draw(DIMENSIONS).to_bytes(4, "big")
        return bytes(png)
    return cv2.imencode(kind, draw(pictures()))[1].tobytes()


def images() -> st.SearchStrategy[bytes]:
    """What a frame's ``image`` field can hold: a JPEG as it is, mutated byte-wise or structurally, another
    format, or bytes that only start like a JPEG, or not at all."""
    return st.one_of(
        jpegs(),
        jpegs().flatmap(mutated),
        jpeg_structures(),
        jpeg_structures().flatmap(mutated),
        other_images(),
        st.binary(max_size=64).map(lambda tail: b"\xff\xd8" + tail),
        st.binary(max_size=256),
    )
