"""Manifest validation and the versioned registry: register, resolve, promote, roll back, verify."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from models.errors import ChecksumMismatch, ModelNotFound, ModelVersionExists, OutputFormatMismatch
from models.manifest import ModelManifest
from models.registry import ModelReference, ModelRegistry
from tests.onnx_models import model_fields, write_constant_model

INPUT = 64


def yolov5_model(path: Path, num_classes: int = 2) -> Path:
    return write_constant_model(path, np.zeros((1, 6, 5 + num_classes), np.float32), (INPUT, INPUT))


def fields(**overrides: Any) -> dict[str, Any]:
    return model_fields("toy", INPUT, ["person", "car"], precision="fp32") | overrides


def manifest_fields(**overrides: Any) -> dict[str, Any]:
    return fields(sha256="a" * 64, created_at=datetime(2025, 1, 1, tzinfo=UTC)) | overrides


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "registry")


@pytest.fixture
def onnx_file(tmp_path: Path) -> Path:
    return yolov5_model(tmp_path / "toy.onnx")


def error_fields(exc: ValidationError) -> set[str]:
    return {str(error["loc"][0]) for error in exc.errors()}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("version", "1.0"),
        ("version", "v1.0.0"),
        ("format", "yolov7"),
        ("class_names", []),
        ("name", "Bad Name"),
        ("sha256", "xyz"),
        ("std", (1.0, 0.0, 1.0)),
        ("created_at", datetime(2025, 1, 1)),
    ],
)
def test_invalid_manifest_field_is_named_in_the_error(field: str, value: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        ModelManifest(**manifest_fields(**{field: value}))

    assert error_fields(caught.value) == {field}


@pytest.mark.parametrize("version", ["0.1.0", "1.2.3", "2.0.0-rc.1", "10.20.30-alpha"])
def test_manifest_accepts_semantic_versions(version: str) -> None:
    assert ModelManifest(**manifest_fields(version=version)).version == version


def test_reference_without_selector_means_production() -> None:
    assert ModelReference.parse("toy") == ModelReference(name="toy", selector="production")


@pytest.mark.parametrize("text", ["", "toy@", "Toy@1.0.0", "../etc@1.0.0", "toy@1.0"])
def test_malformed_reference_is_refused_as_not_found(text: str) -> None:
    with pytest.raises(ModelNotFound, match="bad model reference"):
        ModelReference.parse(text)


def test_registered_model_resolves_by_version_with_the_file_and_its_checksum(
    registry: ModelRegistry, onnx_file: Path
) -> None:
    manifest = registry.register(onnx_file, **fields())

    model = registry.resolve("toy@1.0.0")

    assert model.manifest == manifest
    assert model.path.read_bytes() == onnx_file.read_bytes()
    assert manifest.sha256 == hashlib.sha256(onnx_file.read_bytes()).hexdigest()


def test_register_accepts_a_provided_sample_image(registry: ModelRegistry, onnx_file: Path) -> None:
    sample = np.full((360, 640, 3), 90, np.uint8)

    assert registry.register(onnx_file, sample_image=sample, **fields()).version == "1.0.0"


def test_resolving_an_alias_nobody_promoted_names_the_fix(registry: ModelRegistry, onnx_file: Path) -> None:
    registry.register(onnx_file, **fields())

    with pytest.raises(ModelNotFound, match="promote"):
        registry.resolve("toy")


def test_resolving_an_unknown_version_is_not_found(registry: ModelRegistry, onnx_file: Path) -> None:
    registry.register(onnx_file, **fields())

    with pytest.raises(ModelNotFound, match="2.0.0"):
        registry.resolve("toy@2.0.0")


def test_registering_an_existing_version_again_is_refused(registry: ModelRegistry, onnx_file: Path) -> None:
    registry.register(onnx_file, **fields())

    with pytest.raises(ModelVersionExists, match="new version"):
        registry.register(onnx_file, **fields())


def test_promoting_over_production_keeps_the_old_version_as_previous(
    registry: ModelRegistry, onnx_file: Path
) -> None:
    registry.register(onnx_file, **fields(version="1.0.0"))
    registry.register(onnx_file, **fields(version="1.1.0"))
    registry.promote("toy", "1.0.0")

    registry.promote("toy", "1.1.0")

    assert registry.aliases("toy") == {"production": "1.1.0", "previous": "1.0.0"}
    assert registry.resolve("toy").manifest.version == "1.1.0"


def test_promoting_a_custom_alias_leaves_production_alone(registry: ModelRegistry, onnx_file: Path) -> None:
    registry.register(onnx_file, **fields(version="1.0.0"))
    registry.register(onnx_file, **fields(version="1.1.0"))
    registry.promote("toy", "1.0.0")

    registry.promote("toy", "1.1.0", alias="candidate")

    assert registry.aliases("toy") == {"production": "1.0.0", "candidate": "1.1.0"}


def test_promoting_an_unregistered_version_is_refused(registry: ModelRegistry, onnx_file: Path) -> None:
    registry.register(onnx_file, **fields())

    with pytest.raises(ModelNotFound):
        registry.promote("toy", "9.9.9")
    assert registry.aliases("toy") == {}


def test_rollback_swaps_production_and_previous(registry: ModelRegistry, onnx_file: Path) -> None:
    registry.register(onnx_file, **fields(version="1.0.0"))
    registry.register(onnx_file, **fields(version="1.1.0"))
    registry.promote("toy", "1.0.0")
    registry.promote("toy", "1.1.0")

    assert registry.rollback("toy") == "1.0.0"

    assert registry.aliases("toy") == {"production": "1.0.0", "previous": "1.1.0"}


def test_rollback_without_previous_says_to_promote_instead(registry: ModelRegistry, onnx_file: Path) -> None:
    registry.register(onnx_file, **fields())
    registry.promote("toy", "1.0.0")

    with pytest.raises(ModelNotFound, match="promote"):
        registry.rollback("toy")


def test_verify_refuses_a_tampered_file(registry: ModelRegistry, onnx_file: Path) -> None:
    registry.register(onnx_file, **fields())
    stored = registry.resolve("toy@1.0.0").path
    stored.write_bytes(stored.read_bytes() + b"\0")

    with pytest.raises(ChecksumMismatch, match="sha256"):
        registry.verify("toy@1.0.0")


def test_verify_accepts_an_untouched_file(registry: ModelRegistry, onnx_file: Path) -> None:
    registry.register(onnx_file, **fields())

    assert registry.verify("toy@1.0.0").manifest.version == "1.0.0"


def test_register_refuses_a_declared_sha256_that_the_file_does_not_have(
    registry: ModelRegistry, onnx_file: Path
) -> None:
    with pytest.raises(ChecksumMismatch):
        registry.register(onnx_file, **fields(sha256="b" * 64))


@pytest.mark.parametrize(
    ("declared", "output_shape"),
    [
        ("yolov8", (1, 10, 7)),  # yolov5 layout declared as yolov8
        ("yolov5", (1, 6, 8)),  # three classes, two declared
        ("end2end", (1, 6, 7)),
    ],
)
def test_register_refuses_a_file_whose_output_contradicts_the_declared_format(
    registry: ModelRegistry, tmp_path: Path, declared: str, output_shape: tuple[int, ...]
) -> None:
    path = write_constant_model(tmp_path / "wrong.onnx", np.zeros(output_shape, np.float32), (INPUT, INPUT))

    with pytest.raises(OutputFormatMismatch):
        registry.register(path, **fields(format=declared))

    assert registry.list() == []


def test_register_refuses_a_file_whose_static_input_size_differs_from_the_manifest(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    path = write_constant_model(tmp_path / "big.onnx", np.zeros((1, 6, 7), np.float32), (96, 96))

    with pytest.raises(OutputFormatMismatch, match="input_width"):
        registry.register(path, **fields())


def test_list_shows_each_models_versions_and_aliases(registry: ModelRegistry, onnx_file: Path) -> None:
    registry.register(onnx_file, **fields(version="1.0.0", created_at=datetime(2025, 1, 1, tzinfo=UTC)))
    registry.register(onnx_file, **fields(version="0.9.0", created_at=datetime(2025, 2, 1, tzinfo=UTC)))
    registry.promote("toy", "1.0.0")

    (entry,) = registry.list()

    assert [m.version for m in entry.versions] == ["1.0.0", "0.9.0"]
    assert entry.aliases == {"production": "1.0.0"}


def test_writes_leave_no_temporary_files(registry: ModelRegistry, onnx_file: Path) -> None:
    registry.register(onnx_file, **fields())
    registry.promote("toy", "1.0.0")

    root = registry.storage.local_path("")
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())

    assert files == ["toy/1.0.0/manifest.json", "toy/1.0.0/model.onnx", "toy/aliases.json"]
    assert json.loads((registry.storage.local_path("toy/aliases.json")).read_text()) == {"production": "1.0.0"}


@pytest.mark.parametrize("license_id", ["AGPL-3.0", "Apache-2.0", "GPL-3.0-or-later", "MIT OR Apache-2.0",
                                        "LicenseRef-YOLO", "GPL-2.0 WITH Classpath-exception-2.0"])
def test_manifest_records_an_spdx_license(license_id: str) -> None:
    assert ModelManifest(**manifest_fields(license=license_id)).license == license_id


@pytest.mark.parametrize("license_id", ["", "AGPL 3.0", "MIT or Apache-2.0", "-MIT", "MIT\nApache-2.0", "x" * 101])
def test_a_malformed_license_is_named_in_the_error(license_id: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ModelManifest(**manifest_fields(license=license_id))

    assert error_fields(caught.value) == {"license"}


def test_license_is_optional_and_kept_by_the_registry(registry: ModelRegistry, onnx_file: Path) -> None:
    assert ModelManifest(**manifest_fields()).license is None

    registry.register(onnx_file, **fields(license="AGPL-3.0"))

    assert registry.resolve("toy@1.0.0").manifest.license == "AGPL-3.0"
