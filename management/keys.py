"""API key actions shared by ``camcount api keys`` and the API's ``/api/v1/keys``.

``create`` and ``revoke`` run through :func:`management.auditing.run_audited`: one audit row each, target the key's
id, before/after the key as stored without its hash (the secret is never recorded anywhere but in the answer to
``create``).
"""

from __future__ import annotations

from management.auditing import actor_label, run_audited
from sinks.api_keys import ApiKeyStore, NewApiKey, StoredApiKey, new_key_id
from sinks.audit import Actor, AuditAction, AuditLog


def list_keys(store: ApiKeyStore) -> list[StoredApiKey]:
    """Every key, revoked ones included, oldest first (no secrets: they are not stored)."""
    return store.list()


def create(store: ApiKeyStore, audit: AuditLog, actor: Actor, name: str, role: str) -> NewApiKey:
    """A new key with ``role``; its secret is in the result and nowhere else: show it once."""
    key_id = new_key_id()
    return run_audited(audit, actor, AuditAction.KEY_CREATE, key_id,
                       lambda: store.create(name, role, actor_label(actor), key_id=key_id),
                       after=lambda new: new.key.public())


def revoke(store: ApiKeyStore, audit: AuditLog, actor: Actor, key_id: str) -> StoredApiKey:
    """Revoke ``key_id`` (ApiKeyNotFound, KEY_001, if no key has it); final. API replicas refuse it once their key
    cache refreshed (``api.key_refresh_s``)."""
    return run_audited(audit, actor, AuditAction.KEY_REVOKE, key_id,
                       lambda: store.revoke(key_id, actor_label(actor)),
                       before=lambda: store.get(key_id).public(), after=lambda key: key.public())
