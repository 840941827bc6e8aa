"""``/api/v1/keys``: API key management (role ``admin``), the same actions as ``camcount api keys``
(``management.keys``).

``POST`` creates a key and answers its secret, once: only its SHA-256 is stored. ``GET`` lists keys without secrets.
``DELETE /api/v1/keys/{keyId}`` revokes a key for good. The replica that served the call applies a change at once,
every other API replica within ``api.key_refresh_s`` (the same holds for keys made with ``camcount api keys``).
Creating and revoking write one audit row each, with the calling key as the actor.
"""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, Depends, Path, status
from pydantic import BaseModel, ConfigDict, Field

from api.auth import Principal, Role, requires
from api.errors import error_responses
from api.principals import actor_of
from api.services import ApiServices, services_of
from management import keys as manage
from sinks.api_keys import StoredApiKey

router = APIRouter(tags=["API keys"])

ERRORS = error_responses(400, 401, 403, 404, 422, 429, 503)
KeyRole = Literal["viewer", "ml_engineer", "admin", "system"]


class CreateKeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, description="who or what the key is for", examples=["grafana"])
    role: KeyRole = Field(description="what the key may do")


class ApiKey(BaseModel):
    keyId: str  # noqa: N815 - the API's JSON names
    name: str
    role: str
    createdAt: str  # noqa: N815
    createdBy: str  # noqa: N815
    revoked: bool
    revokedAt: str | None  # noqa: N815
    revokedBy: str | None  # noqa: N815


class NewApiKey(ApiKey):
    secret: str = Field(description="the key itself: send it as `Authorization: Bearer <secret>`; shown only now")


class ApiKeyList(BaseModel):
    keys: list[ApiKey]


def _key(key: StoredApiKey) -> dict[str, object]:
    return {"keyId": key.key_id, "name": key.name, "role": key.role, "createdAt": key.created_at.isoformat(),
            "createdBy": key.created_by, "revoked": key.revoked,
            "revokedAt": key.revoked_at.isoformat() if key.revoked_at else None,
            "revokedBy": key.revoked_by or None}


async def _refresh(services: ApiServices) -> None:
    """This replica applies its own change at once; the others within ``api.key_refresh_s``."""
    if services.key_cache is not None:
        await asyncio.to_thread(services.key_cache.refresh)


@router.post("/api/v1/keys", response_model=NewApiKey, status_code=status.HTTP_201_CREATED, responses=ERRORS,
             summary="Create an API key; its secret is in this answer only; audited")
async def create_key(body: CreateKeyRequest, principal: Principal = Depends(requires(Role.ADMIN)),
                     services: ApiServices = Depends(services_of)) -> dict[str, object]:
    new = await asyncio.to_thread(manage.create, services.key_store, services.audit, actor_of(principal), body.name,
                                  body.role)
    await _refresh(services)
    return {**_key(new.key), "secret": new.secret}


@router.get("/api/v1/keys", response_model=ApiKeyList, responses=ERRORS,
            summary="Every API key, revoked ones included, without secrets")
async def list_keys(_: Principal = Depends(requires(Role.ADMIN)),
                    services: ApiServices = Depends(services_of)) -> dict[str, object]:
    keys = await asyncio.to_thread(manage.list_keys, services.key_store)
    return {"keys": [_key(key) for key in keys]}


@router.delete("/api/v1/keys/{keyId}", response_model=ApiKey, responses=ERRORS,
               summary="Revoke an API key for good; audited")
async def revoke_key(keyId: str = Path(description="the key's id, e.g. key_0123456789abcdef"),  # noqa: N803
                     principal: Principal = Depends(requires(Role.ADMIN)),
                     services: ApiServices = Depends(services_of)) -> dict[str, object]:
    key = await asyncio.to_thread(manage.revoke, services.key_store, services.audit, actor_of(principal), keyId)
    await _refresh(services)
    return _key(key)
