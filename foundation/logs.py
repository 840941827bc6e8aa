"""Logging set-up shared by every camcount process."""

from __future__ import annotations

import logging

QUIET_LIBRARY_LOGGERS = {"clickhouse_driver.connection": logging.ERROR}
"""Library loggers held above WARNING: clickhouse-driver logs every failed connect as a WARNING with a traceback,
while camcount's own retries and errors already say, in one line, which address failed and what to do."""


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for name, floor in QUIET_LIBRARY_LOGGERS.items():
        logging.getLogger(name).setLevel(max(floor, logging.getLogger().level))
