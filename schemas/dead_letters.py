"""What a dead letter carries besides the original record: the same three headers on every dead-letter topic.

A dead letter keeps the original key, value and headers (so it can be replayed once the cause is fixed) and adds
``dlq-error-code`` and ``dlq-error-detail`` (the code and finer reason of docs/errors.md), ``dlq-reason`` (what
happened, in words), ``dlq-source`` (``topic/partition/offset``) and
``dlq-stage`` (which consumer set it aside: ``infer``, ``count`` or ``sink``; a record several consumers cannot read
is set aside once by each, so each can replay it).
"""

from __future__ import annotations

ERROR_CODE_HEADER = "dlq-error-code"
ERROR_DETAIL_HEADER = "dlq-error-detail"
REASON_HEADER = "dlq-reason"
SOURCE_HEADER = "dlq-source"
STAGE_HEADER = "dlq-stage"


def dead_letter_headers(original: list[tuple[str, bytes | None]] | None, stage: str, code: str, detail: str,
                        reason: str, topic: str, partition: int, offset: int) -> list[tuple[str, bytes]]:
    """The original headers (any earlier ``dlq-*`` ones replaced) plus this dead letter's code, reason, source."""
    ours = (ERROR_CODE_HEADER, ERROR_DETAIL_HEADER, REASON_HEADER, SOURCE_HEADER, STAGE_HEADER)
    kept = [(key, value or b"") for key, value in (original or []) if key not in ours]
    return kept + [(ERROR_CODE_HEADER, code.encode()), (ERROR_DETAIL_HEADER, detail.encode()),
                   (REASON_HEADER, reason.encode(errors="replace")),
                   (SOURCE_HEADER, f"{topic}/{partition}/{offset}".encode()), (STAGE_HEADER, stage.encode())]
