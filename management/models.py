"""Model registry actions shared by ``camcount models`` / ``camcount ab promote`` and the API's ``/api/v1/models``.

Reads (list, show, verify) change nothing and are not audited. Changes (promote, rollback, register) run through
:func:`management.auditing.run_audited`: one audit row each, with the model's alias map (promote, rollback) or the
new version's manifest (register) as before/after. The audit target is always the model's name.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from management.auditing import run_audited
from models.errors import ModelNotFound
from models.manifest import ModelManifest
from models.registry import PRODUCTION, ModelEntry, ModelReference, ModelRegistry, RegisteredModel
from sinks.audit import Actor, AuditAction, AuditLog


@dataclass(frozen=True)
class AliasChange:
    """What a promote or rollback did to one model's aliases: ``alias`` now points at ``version``."""

    model: str
    alias: str
    version: str
    before: dict[str, str]
    after: dict[str, str]


def list_models(registry: ModelRegistry) -> list[ModelEntry]:
    """Every registered model with its versions (oldest first) and aliases."""
    return registry.list()


def show_model(registry: ModelRegistry, ref: str) -> RegisteredModel:
    """The model ``ref`` (NAME, NAME@VERSION, NAME@ALIAS) resolves to; ModelNotFound (MODEL_001) if none."""
    return registry.resolve(ref)


def verify_model(registry: ModelRegistry, ref: str) -> RegisteredModel:
    """Resolve ``ref`` and check its weights' sha256 against the manifest (ChecksumMismatch, MODEL_002)."""
    return registry.verify(ref)


def _model_name(name: str) -> str:
    """``name`` if it is a model name (a slug); ModelNotFound (MODEL_001) otherwise, before any storage is read."""
    if "@" in name:
        raise ModelNotFound(f"{name!r} is not a model name: give NAME, without @VERSION or @ALIAS")
    return ModelReference.parse(name).name


def promote(registry: ModelRegistry, audit: AuditLog, actor: Actor, name: str, version: str,
            alias: str = PRODUCTION, reason: str = "") -> AliasChange:
    """Point ``name@alias`` at ``version`` (moving ``production`` leaves the old version as ``previous``).

    Promoting the version an alias already holds changes nothing but is still recorded (before equals after).
    """
    aliases_before: dict[str, str] = {}

    def before() -> dict[str, Any]:
        aliases_before.update(registry.aliases(_model_name(name)))
        return {"aliases": dict(aliases_before)}

    def change() -> AliasChange:
        registry.promote(name, version, alias)
        return AliasChange(name, alias, version, aliases_before, registry.aliases(name))

    return run_audited(audit, actor, AuditAction.MODEL_PROMOTE, name, change, before=before,
                       after=lambda done: {"aliases": done.after}, reason=reason)


def rollback(registry: ModelRegistry, audit: AuditLog, actor: Actor, name: str, reason: str = "") -> AliasChange:
    """Swap ``production`` and ``previous`` of ``name``; ModelNotFound when it lacks either alias."""
    aliases_before: dict[str, str] = {}

    def before() -> dict[str, Any]:
        aliases_before.update(registry.aliases(_model_name(name)))
        return {"aliases": dict(aliases_before)}

    def change() -> AliasChange:
        version = registry.rollback(name)
        return AliasChange(name, PRODUCTION, version, aliases_before, registry.aliases(name))

    return run_audited(audit, actor, AuditAction.MODEL_ROLLBACK, name, change, before=before,
                       after=lambda done: {"aliases": done.after}, reason=reason)


class AuditedModelRegistry(ModelRegistry):
    """A registry whose ``register`` is audited as ``model.register`` by ``actor``: hand it to code that registers
    versions itself (darknet import, int8 quantization), so those registrations are recorded like ``register``.

    Shares ``storage`` with the registry it was made from; everything but ``register`` behaves the same.
    """

    def __init__(self, registry: ModelRegistry, audit: AuditLog, actor: Actor, reason: str = "") -> None:
        super().__init__(registry.storage)
        self.audit = audit
        self.actor = actor
        self.reason = reason

    def register(self, onnx_path: Path, *, sample_image: np.ndarray | None = None,
                 **manifest_fields: Any) -> ModelManifest:
        """``ModelRegistry.register``, audited. Manifest fields that do not validate are refused first, with pydantic's
        ValidationError, before the audit log is consulted: a request that is never attempted is not recorded."""
        ModelManifest.model_validate({"created_at": datetime.now(UTC), **manifest_fields, "sha256": "0" * 64})
        name = str(manifest_fields.get("name", ""))
        return run_audited(
            self.audit, self.actor, AuditAction.MODEL_REGISTER, name,
            lambda: super(AuditedModelRegistry, self).register(onnx_path, sample_image=sample_image,
                                                               **manifest_fields),
            before=lambda: {"versions": [m.version for e in self.list() if e.name == name for m in e.versions]},
            after=lambda manifest: {"manifest": manifest.model_dump(mode="json")}, reason=self.reason)


def register(registry: ModelRegistry, audit: AuditLog, actor: Actor, onnx_path: Path,
             manifest_fields: dict[str, Any], reason: str = "") -> ModelManifest:
    """Validate, test-run and store ``onnx_path`` as a new version (see ``ModelRegistry.register``), audited."""
    return AuditedModelRegistry(registry, audit, actor, reason).register(onnx_path, **manifest_fields)
