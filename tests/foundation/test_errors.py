"""One error root: every camcount exception carries a documented code and prints as one line."""

import importlib
import pkgutil
import re
from pathlib import Path

from foundation.errors import CamcountError, UsageError

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("camcount", "api", "producers", "stream_apps", "sinks", "counting", "experiments", "monitoring", "models",
            "schemas", "foundation")


def _all_error_classes() -> set[type[CamcountError]]:
    for name in PACKAGES:
        package = importlib.import_module(name)
        for module in pkgutil.walk_packages(package.__path__, prefix=f"{name}."):
            importlib.import_module(module.name)
    found, pending = set(), [CamcountError]
    while pending:
        for sub in pending.pop().__subclasses__():
            if sub.__module__.split(".")[0] in PACKAGES and sub not in found:
                found.add(sub)
                pending.append(sub)
    return found


def test_every_camcount_error_has_its_own_family_code():
    missing = [cls.__qualname__ for cls in _all_error_classes()
               if not re.fullmatch(r"[A-Z]+_\d{3}", cls.code) or cls.code == CamcountError.code]

    assert not missing, f"give these a code: {missing}"


def test_every_code_and_detail_is_listed_in_the_error_docs():
    from stream_apps.inference.frames import FrameProblem

    documented = set(re.findall(r"^\| ([A-Z]+_\d{3}) \| ([a-z-]+) \|", (REPO / "docs" / "errors.md").read_text(),
                                re.M))
    raised = {(cls.code, cls.detail) for cls in _all_error_classes()} | {(p.code, p.value) for p in FrameProblem}

    assert not raised - documented, f"add these to docs/errors.md: {sorted(raised - documented)}"


def test_every_error_has_a_kebab_case_detail():
    assert [cls.__qualname__ for cls in _all_error_classes() if not re.fullmatch(r"[a-z]+(-[a-z0-9]+)*",
                                                                                cls.detail)] == []


def test_one_line_joins_message_and_remedy_and_flattens_newlines():
    error = UsageError("bad value\n  for --fps", remedy="give a number")

    assert error.one_line() == "bad value for --fps; give a number"


def test_a_remedy_already_in_the_message_is_not_repeated():
    assert UsageError("x failed: run `make footage`", remedy="run `make footage`").one_line() == (
        "x failed: run `make footage`")
