"""One root for every camcount error: each carries a stable ``code`` and says what to do.

Every package's exceptions derive from :class:`CamcountError`, so an entry point needs no list of "user errors":
the CLI prints any of them as one ``error:`` line and exits 2. Subclasses that are also a builtin kind
(``ValueError``, ``ConnectionError``, ...) keep that base too, so existing ``except ValueError`` code still works.
"""

from __future__ import annotations

from typing import ClassVar


class CamcountError(Exception):
    """Base of every camcount error.

    ``code`` is the system's error taxonomy for logs, metrics, dead letters and APIs (e.g. ``MODEL_001``), ``detail``
    the finer reason beside it (docs/errors.md lists both); ``remedy``, when
    given, is the what-to-do sentence appended to the message by :meth:`one_line`.
    """

    code: ClassVar[str] = "CAMCOUNT_000"
    detail: ClassVar[str] = ""
    """The finer reason beside the code, kebab-case (e.g. ``INF_001`` + ``oversized-payload``)."""

    def __init__(self, message: str = "", *, remedy: str | None = None) -> None:
        super().__init__(message)
        self.remedy = remedy

    def one_line(self) -> str:
        """The message and remedy on one line, as the CLI prints them."""
        text = " ".join(str(self).split())
        if self.remedy and self.remedy not in text:
            text = f"{text}; {self.remedy}"
        return text


class ConfigError(CamcountError, ValueError):
    """Settings that cannot be used: a bad value, an unknown key, a file that is missing or malformed."""

    code = "CFG_001"
    detail = "invalid-settings"


class ServiceUnavailable(CamcountError, ConnectionError):
    """A service camcount depends on (broker, ClickHouse, Redis, a local stack process) cannot be reached."""

    code = "SYS_001"
    detail = "service-unavailable"


class UsageError(CamcountError):
    """A command was given arguments or input it cannot act on; the message says which and what to do."""

    code = "CLI_001"
    detail = "usage"
