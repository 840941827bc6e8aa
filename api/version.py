"""The version the API reports (OpenAPI document, OIP server metadata): the installed camcount distribution's."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def camcount_version() -> str:
    try:
        return version("camcount")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0"
