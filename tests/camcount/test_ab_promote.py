"""Which variant `camcount ab promote` moves to production, and when it needs --force."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from camcount.commands.ab import variant_to_promote
from foundation.errors import UsageError

VARIANTS = ["control", "fast", "faster"]


def _report(decision: str = "promote", promote: str | None = "fast"):
    return SimpleNamespace(experiment="exp", decision=decision, promote=promote, reason="because")


def test_without_variant_the_reports_winner_is_promoted():
    assert variant_to_promote(_report(), VARIANTS, None, force=False) == "fast"


def test_naming_the_reports_winner_needs_no_force():
    assert variant_to_promote(_report(), VARIANTS, "fast", force=False) == "fast"


def test_a_variant_other_than_the_reports_winner_needs_force():
    with pytest.raises(UsageError, match="winner is 'fast', not 'faster'.*--force"):
        variant_to_promote(_report(), VARIANTS, "faster", force=False)


def test_force_promotes_the_named_variant_over_the_reports_winner():
    assert variant_to_promote(_report(), VARIANTS, "faster", force=True) == "faster"


def test_a_report_that_does_not_say_promote_needs_force():
    with pytest.raises(UsageError, match="the report says 'not enough data'"):
        variant_to_promote(_report("not enough data", None), VARIANTS, "fast", force=False)


def test_force_without_a_variant_or_a_winner_asks_for_a_variant():
    with pytest.raises(UsageError, match="--variant NAME --force"):
        variant_to_promote(_report("not enough data", None), VARIANTS, None, force=True)


def test_an_unknown_variant_is_a_user_error_listing_the_variants():
    with pytest.raises(UsageError, match="no variant 'fats'; it has control, fast, faster"):
        variant_to_promote(_report(), VARIANTS, "fats", force=True)
