"""Versioned model registry: ``NAME/VERSION/{model.onnx,manifest.json}`` plus ``NAME/aliases.json``.

Storage sits behind the small ``RegistryStorage`` protocol: a local directory (``LocalRegistryStorage``) or an
S3-compatible bucket (``models.s3_storage``, which caches weights locally in ``local_path``); ``open_registry``
picks one from a location string.
A version directory without ``manifest.json`` is incomplete (an interrupted register) and is invisible.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Protocol
from urllib.parse import urlsplit

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from models.atomic_files import write_atomically
from models.calibration import BoxCalibration
from models.errors import (
    ChecksumMismatch,
    ManifestUnreadable,
    ModelLoadError,
    ModelNotFound,
    ModelVersionExists,
)
from models.manifest import SLUG_PATTERN, ModelManifest, is_semver
from models.postprocess import check_output_shape
from models.preprocess import BatchPreprocessor, synthetic_frame
from models.runtime import CPU, create_session
from models.serving_graph import raw_output, serving_graph

logger = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"
ALIASES_FILE = "aliases.json"
PRODUCTION = "production"
PREVIOUS = "previous"
_SLUG = re.compile(SLUG_PATTERN)
_CHUNK = 1 << 20


class RegistryStorage(Protocol):
    """Key/value storage of registry files; keys are '/'-separated relative paths such as ``yolo/1.0.0/model.onnx``.

    Every write is atomic: readers see the old content or the new one, never a partial file.
    """

    def read_bytes(self, key: str) -> bytes | None:
        """Content of ``key``, or None when it does not exist."""

    def write_bytes(self, key: str, data: bytes) -> None:
        """Create or replace ``key`` with ``data``."""

    def put_file(self, key: str, source: Path) -> None:
        """Copy a local file to ``key``."""

    def list_children(self, prefix: str) -> list[str]:
        """Names directly under ``prefix`` ('' for the root), sorted."""

    def local_path(self, key: str) -> Path:
        """A local filesystem path holding ``key``'s content (what ONNX Runtime opens)."""


class LocalRegistryStorage:
    """``RegistryStorage`` on a local directory; atomic writes via a temp file in the same directory + os.replace."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*key.split("/"))

    def read_bytes(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    def write_bytes(self, key: str, data: bytes) -> None:
        write_atomically(self._path(key), lambda handle: handle.write(data))

    def put_file(self, key: str, source: Path) -> None:
        def copy(handle: BinaryIO) -> None:
            with open(source, "rb") as src:
                shutil.copyfileobj(src, handle, _CHUNK)

        write_atomically(self._path(key), copy)

    def list_children(self, prefix: str) -> list[str]:
        directory = self._path(prefix) if prefix else self.root
        if not directory.is_dir():
            return []
        return sorted(p.name for p in directory.iterdir() if not p.name.startswith("."))

    def local_path(self, key: str) -> Path:
        return self._path(key)


class ModelReference(BaseModel):
    """``name@selector`` where selector is a semantic version or an alias; no ``@`` means ``@production``."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(pattern=SLUG_PATTERN)
    selector: str

    @field_validator("selector")
    @classmethod
    def _version_or_alias(cls, value: str) -> str:
        if not (is_semver(value) or _SLUG.match(value)):
            raise ValueError(f"{value!r} is neither a semantic version nor an alias slug")
        return value

    @classmethod
    def parse(cls, text: str) -> "ModelReference":
        name, at, selector = text.strip().partition("@")
        try:
            return cls(name=name, selector=selector if at else PRODUCTION)
        except ValidationError as exc:
            raise ModelNotFound(
                f"bad model reference {text!r}: use NAME, NAME@VERSION (e.g. yolo@1.2.0) or NAME@ALIAS "
                "(e.g. yolo@production), with lowercase slug names"
            ) from exc

    @property
    def is_version(self) -> bool:
        return is_semver(self.selector)

    def __str__(self) -> str:
        return f"{self.name}@{self.selector}"


@dataclass(frozen=True)
class RegisteredModel:
    """A resolved model: local path of its ONNX file and its manifest."""

    path: Path
    manifest: ModelManifest


class ModelEntry(BaseModel):
    """One model name in the registry: its manifests (ascending by registration time) and aliases."""

    name: str
    versions: list[ModelManifest]
    aliases: dict[str, str]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_checksum(model: RegisteredModel) -> None:
    """Raise ChecksumMismatch unless the file at ``model.path`` has the manifest's sha256."""
    actual = sha256_file(model.path)
    if actual != model.manifest.sha256:
        raise ChecksumMismatch(
            f"{model.manifest.name}@{model.manifest.version}: {model.path} has sha256 {actual}, manifest says "
            f"{model.manifest.sha256}; the file was modified or corrupted: register the model again as a new version"
        )


class ModelRegistry:
    """Register, resolve, promote, roll back and verify ONNX models.

    Invariants: a registered version is immutable; its stored file's sha256 equals its manifest's; aliases only
    point at registered versions; moving ``production`` to a new version leaves the old one as ``previous``.
    Concurrent writers are safe from torn files but not from lost alias updates: promote from one place at a time.
    """

    def __init__(self, root: Path | RegistryStorage) -> None:
        self.storage: RegistryStorage = LocalRegistryStorage(root) if isinstance(root, Path) else root

    def list(self) -> list[ModelEntry]:
        entries = []
        for name in self.storage.list_children(""):
            versions = [
                manifest
                for version in self.storage.list_children(name)
                if is_semver(version) and (manifest := self._manifest(name, version)) is not None
            ]
            if versions:
                versions.sort(key=lambda m: m.created_at)
                entries.append(ModelEntry(name=name, versions=versions, aliases=self.aliases(name)))
        return entries

    def aliases(self, name: str) -> dict[str, str]:
        raw = self.storage.read_bytes(f"{name}/{ALIASES_FILE}")
        return json.loads(raw) if raw else {}

    def resolve(self, ref: str | ModelReference) -> RegisteredModel:
        """Model for ``ref``; raises ModelNotFound for an unknown name, version or alias."""
        reference = ModelReference.parse(ref) if isinstance(ref, str) else ref
        version = reference.selector
        if not reference.is_version:
            aliases = self.aliases(reference.name)
            if version not in aliases:
                known = ", ".join(sorted(aliases)) or "none"
                raise ModelNotFound(
                    f"{reference}: model {reference.name!r} has no alias {version!r} (aliases: {known}); "
                    f"promote a version first, e.g. promote({reference.name!r}, VERSION, {version!r})"
                )
            version = aliases[version]
        manifest = self._manifest(reference.name, version)
        if manifest is None:
            raise ModelNotFound(
                f"{reference}: version {version} of {reference.name!r} is not registered; list() shows what is"
            )
        return RegisteredModel(self.storage.local_path(f"{reference.name}/{version}/{MODEL_FILE}"), manifest)

    def verify(self, ref: str | ModelReference) -> RegisteredModel:
        """Resolve ``ref`` and check the stored file's sha256 against the manifest (ChecksumMismatch if it differs)."""
        model = self.resolve(ref)
        verify_checksum(model)
        return model

    def register(
        self, onnx_path: Path, *, sample_image: np.ndarray | None = None, **manifest_fields: Any
    ) -> ModelManifest:
        """Validate, test-run and store ``onnx_path`` as a new version; returns its manifest.

        ``manifest_fields`` are ModelManifest fields; ``sha256`` is computed (if given, it must match) and
        ``created_at`` defaults to now. The file is run on ``sample_image`` (BGR uint8; a synthetic frame when None)
        and refused with OutputFormatMismatch if its output does not fit the declared format and class count.
        Raises ModelVersionExists if the version is already registered.
        """
        onnx_path = Path(onnx_path)
        digest = sha256_file(onnx_path)
        expected = manifest_fields.pop("sha256", None)
        if expected is not None and expected != digest:
            raise ChecksumMismatch(
                f"{onnx_path} has sha256 {digest}, expected {expected}: check you picked the right file"
            )
        manifest_fields.setdefault("created_at", datetime.now(UTC))
        manifest = ModelManifest(sha256=digest, **manifest_fields)
        if self._manifest(manifest.name, manifest.version) is not None:
            raise ModelVersionExists(
                f"{manifest.name}@{manifest.version} is already registered and versions are immutable: "
                "register under a new version"
            )
        _test_run(onnx_path, manifest, sample_image)
        prefix = f"{manifest.name}/{manifest.version}"
        self.storage.put_file(f"{prefix}/{MODEL_FILE}", onnx_path)
        self.storage.write_bytes(f"{prefix}/{MANIFEST_FILE}", manifest.model_dump_json(indent=2).encode())
        logger.info("registered %s@%s (sha256 %s)", manifest.name, manifest.version, digest[:12])
        return manifest

    def set_box_calibration(self, ref: str | ModelReference, calibration: BoxCalibration | None) -> ModelManifest:
        """Store ``calibration`` in a registered version's manifest (None removes it); returns the new manifest.

        The one manifest field that may change after registration: it describes how to read the model's boxes
        (learnt from labels, ``models.calibration``), not what the model computes, so the file and its sha256
        stay as they are."""
        model = self.resolve(ref)
        manifest = model.manifest.model_copy(update={"box_calibration": calibration})
        manifest = ModelManifest.model_validate(manifest.model_dump())
        prefix = f"{manifest.name}/{manifest.version}"
        self.storage.write_bytes(f"{prefix}/{MANIFEST_FILE}", manifest.model_dump_json(indent=2).encode())
        logger.info("%s@%s: box calibration %s", manifest.name, manifest.version,
                    "removed" if calibration is None else "set")
        return manifest

    def promote(self, name: str, version: str, alias: str = PRODUCTION) -> None:
        """Point ``alias`` at ``version``; moving ``production`` makes the version it left ``previous``."""
        if not _SLUG.match(alias) or is_semver(alias):
            raise ModelNotFound(f"bad alias {alias!r}: use a lowercase slug that is not a version, e.g. production")
        self.resolve(ModelReference.parse(f"{name}@{version}"))
        aliases = self.aliases(name)
        old = aliases.get(alias)
        if old == version:
            return
        aliases[alias] = version
        if alias == PRODUCTION and old is not None:
            aliases[PREVIOUS] = old
        self._write_aliases(name, aliases)
        logger.info("%s@%s -> %s (was %s)", name, alias, version, old)

    def rollback(self, name: str) -> str:
        """Swap ``production`` and ``previous``; returns the version now in production."""
        aliases = self.aliases(name)
        if PRODUCTION not in aliases or PREVIOUS not in aliases:
            raise ModelNotFound(
                f"cannot roll back {name!r}: it needs both 'production' and 'previous' aliases, has {sorted(aliases)}; "
                "promote a specific version instead"
            )
        aliases[PRODUCTION], aliases[PREVIOUS] = aliases[PREVIOUS], aliases[PRODUCTION]
        self._write_aliases(name, aliases)
        logger.info("rolled back %s: production %s -> %s", name, aliases[PREVIOUS], aliases[PRODUCTION])
        return aliases[PRODUCTION]

    def _write_aliases(self, name: str, aliases: dict[str, str]) -> None:
        self.storage.write_bytes(f"{name}/{ALIASES_FILE}", json.dumps(aliases, indent=2, sort_keys=True).encode())

    def _manifest(self, name: str, version: str) -> ModelManifest | None:
        raw = self.storage.read_bytes(f"{name}/{version}/{MANIFEST_FILE}")
        if not raw:
            return None
        try:
            return ModelManifest.model_validate_json(raw)
        except ValidationError as exc:
            problem = exc.errors()[0]
            where = ".".join(str(part) for part in problem["loc"]) or "the file"
            raise ManifestUnreadable(
                f"{name}@{version}: its {MANIFEST_FILE} cannot be read by this release ({where}: {problem['msg']}); "
                "upgrade camcount where it reads this registry, or register the model again") from exc


def open_registry(location: str, cache_dir: Path) -> ModelRegistry:
    """Registry at ``location``: ``s3://BUCKET[/PREFIX]`` is an S3-compatible bucket whose model files are cached
    under ``cache_dir``; anything else is a local directory (``cache_dir`` is then unused).
    """
    if urlsplit(location).scheme == "s3":
        # Imported here so that local registries do not pay for importing boto3.
        from models.s3_storage import S3RegistryStorage

        return ModelRegistry(S3RegistryStorage.from_url(location, cache_dir))
    return ModelRegistry(Path(location))


def _test_run(onnx_path: Path, manifest: ModelManifest, sample_image: np.ndarray | None) -> None:
    """Run the model once on CPU and refuse it (OutputFormatMismatch) if its I/O contradicts the manifest."""
    info = create_session(onnx_path, [CPU], graph=serving_graph(onnx_path, manifest))
    preprocessor = BatchPreprocessor(manifest, max_batch=1)
    preprocessor.fill(0, synthetic_frame() if sample_image is None else sample_image)
    try:
        outputs = info.session.run([raw_output(info.output_names)], {info.input_name: preprocessor.batch(1)})
    except Exception as exc:  # onnxruntime raises several unrelated exception types
        raise ModelLoadError(
            f"{onnx_path} fails on a {manifest.input_width}x{manifest.input_height} sample frame: {exc}; "
            "check input_width/input_height and the export"
        ) from exc
    check_output_shape(outputs[0], manifest.format, manifest.num_classes, batch_size=1)
