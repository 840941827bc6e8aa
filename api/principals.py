"""Between the API's callers and the management actions: the audit :class:`~sinks.audit.Actor` of a
:class:`~api.auth.Principal`, and the API key store seen as the key ring's :class:`~api.auth.KeyLookup`."""

from __future__ import annotations

import logging

from api.auth import Principal, Role, StoredKey
from sinks.api_keys import KeyCache
from sinks.audit import Actor

log = logging.getLogger(__name__)


def actor_of(principal: Principal) -> Actor:
    """The audit trail's actor for a call: the key's name and id, kind ``api-key``, source ``api``, the caller's
    address as the client."""
    return Actor(name=principal.name, kind="api-key", source="api", client=principal.client, id=principal.key_id)


class StoredKeyLookup:
    """``api.auth.KeyLookup`` over the in-process :class:`~sinks.api_keys.KeyCache` of the ``api_keys`` table.

    A stored key whose role this API does not know (written by a newer release) is treated as unknown.
    """

    def __init__(self, cache: KeyCache) -> None:
        self.cache = cache

    def find(self, key_sha256: str) -> StoredKey | None:
        stored = self.cache.find(key_sha256)
        if stored is None:
            return None
        try:
            role = Role(stored.role)
        except ValueError:
            log.warning("API key %s has role %r, which this API does not know; refusing it", stored.key_id,
                        stored.role)
            return None
        return StoredKey(stored.key_id, stored.name, role, stored.key_sha256, stored.revoked)
