"""Keys, roles and the auth-failure budget, as units."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from api.auth import (
    ROLE_MATRIX,
    FailureBudget,
    KeyRing,
    KeysFile,
    Role,
    StoredKey,
    TooManyAuthFailures,
    acts_as,
    hash_key,
)
from foundation.errors import CamcountError


class MemoryKeys:
    """An in-memory KeyLookup."""

    def __init__(self, *keys: StoredKey) -> None:
        self.keys = {key.key_sha256: key for key in keys}

    def find(self, key_sha256: str) -> StoredKey | None:
        return self.keys.get(key_sha256)


def ring(*keys: StoredKey, admin: str | None = "root-secret", limit: int = 5) -> KeyRing:
    return KeyRing(admin, [MemoryKeys(*keys)], FailureBudget(limit, 60.0))


def failure(call) -> CamcountError:
    with pytest.raises(CamcountError) as failed:
        call()
    return failed.value


def test_the_admin_key_from_the_environment_is_an_admin() -> None:
    assert ring().authenticate("root-secret", "1.2.3.4").role is Role.ADMIN


def test_a_stored_key_authenticates_as_its_role_and_client() -> None:
    key = StoredKey("k1", "dashboard", Role.VIEWER, hash_key("viewer-secret"), revoked=False)

    principal = ring(key).authenticate("viewer-secret", "10.0.0.5")

    assert (principal.key_id, principal.name, principal.role, principal.client) == (
        "k1", "dashboard", Role.VIEWER, "10.0.0.5")


@pytest.mark.parametrize(("secret", "code"), [(None, "AUTH_001"), ("", "AUTH_001"), ("guess", "AUTH_002"),
                                              ("revoked-secret", "AUTH_002")])
def test_missing_unknown_and_revoked_keys_are_refused(secret: str | None, code: str) -> None:
    revoked = StoredKey("k2", "old", Role.ADMIN, hash_key("revoked-secret"), revoked=True)

    assert failure(lambda: ring(revoked).authenticate(secret, "1.2.3.4")).code == code


def test_without_an_admin_key_nothing_matches_an_empty_secret() -> None:
    assert failure(lambda: ring(admin=None).authenticate("x", "1.2.3.4")).code == "AUTH_002"


def test_the_failure_budget_refuses_an_address_after_the_limit_and_refills_with_time() -> None:
    now = [0.0]
    budget = FailureBudget(limit=2, window_s=60.0, clock=lambda: now[0])
    budget.failed("a")
    budget.failed("a")

    with pytest.raises(TooManyAuthFailures) as refused:
        budget.check("a")
    budget.check("b")
    now[0] = 31.0
    budget.check("a")

    assert refused.value.code == "AUTH_004" and refused.value.retry_after_s >= 1


def test_admin_acts_as_every_role_and_ml_engineer_as_viewer_and_system() -> None:
    assert all(acts_as(Role.ADMIN, role) for role in Role)
    assert {r for r in Role if acts_as(Role.ML_ENGINEER, r)} == {Role.ML_ENGINEER, Role.SYSTEM, Role.VIEWER}
    assert {r for r in Role if acts_as(Role.VIEWER, r)} == {Role.VIEWER}
    assert {r for r in Role if acts_as(Role.SYSTEM, r)} == {Role.SYSTEM}
    assert set(ROLE_MATRIX) == set(Role)


def test_a_keys_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    entry = {"key_id": "k3", "name": "ci", "role": "system", "key_sha256": hash_key("ci-secret")}
    path.write_text(json.dumps([entry]))
    keys = ring(admin=None)
    keys.lookups = [KeysFile(path)]
    assert keys.authenticate("ci-secret", "h").role is Role.SYSTEM

    path.write_text(json.dumps([{**entry, "revoked": True}]))
    os.utime(path, (time.time() + 5, time.time() + 5))

    assert failure(lambda: keys.authenticate("ci-secret", "h")).code == "AUTH_002"


def test_an_unreadable_keys_file_is_a_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text('[{"key_id": "x"}]')

    assert failure(lambda: KeysFile(path).find("0" * 64)).code == "CFG_001"
