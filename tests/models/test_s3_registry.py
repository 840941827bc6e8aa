"""The model registry on an S3-compatible bucket, against a real S3 HTTP server (moto's, on a free port)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.client import BaseClient
from moto import settings as moto_settings
from moto.server import ThreadedMotoServer

from models.detector import Detector
from models.errors import ChecksumMismatch
from models.registry import LocalRegistryStorage, ModelRegistry, open_registry
from models.runtime import CPU
from models.s3_storage import S3RegistryError, S3RegistryStorage
from tests.onnx_models import model_fields, write_constant_model

INPUT = 64
BOX = np.array([[[32, 32, 16, 16, 0.9, 1]]], np.float32)  # yolov5 layout, one class: cx, cy, w, h, obj, prob


def write_model(path: Path, output: np.ndarray = BOX) -> Path:
    """yolov5-format ONNX file whose output is the constant ``output`` [1, A, 5 + classes] for every image."""
    return write_constant_model(path, output, (INPUT, INPUT))


def fields(**overrides: Any) -> dict[str, Any]:
    return model_fields("toy", INPUT, ["person"], letterbox_fill=0, confidence_threshold=0.1) | overrides


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> BaseClient:
    """An S3 client configured only through the standard AWS environment, as camcount's would be."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return boto3.session.Session().client("s3")


@pytest.fixture
def bucket(s3: BaseClient) -> str:
    name = f"models-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def registry(bucket: str, tmp_path: Path) -> ModelRegistry:
    return open_registry(f"s3://{bucket}/camcount/models", tmp_path / "cache")


def register(registry: ModelRegistry, tmp_path: Path, version: str) -> None:
    registry.register(write_model(tmp_path / f"toy-{version}.onnx"), **fields(version=version))


def test_a_registered_model_is_stored_as_objects_under_the_prefix(
    registry: ModelRegistry, s3: BaseClient, bucket: str, tmp_path: Path
) -> None:
    register(registry, tmp_path, "1.0.0")

    keys = [entry["Key"] for entry in s3.list_objects_v2(Bucket=bucket)["Contents"]]

    assert sorted(keys) == ["camcount/models/toy/1.0.0/manifest.json", "camcount/models/toy/1.0.0/model.onnx"]


def test_resolve_downloads_the_model_file_into_the_cache_with_its_registered_sha256(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    register(registry, tmp_path, "1.0.0")

    model = registry.verify("toy@1.0.0")

    assert model.path.is_relative_to(tmp_path / "cache")
    assert model.path.read_bytes() == (tmp_path / "toy-1.0.0.onnx").read_bytes()


def test_resolving_again_reuses_the_cached_copy_of_an_unchanged_object(registry: ModelRegistry, tmp_path: Path) -> None:
    register(registry, tmp_path, "1.0.0")
    first = registry.resolve("toy@1.0.0").path
    marker = first.stat().st_mtime_ns

    second = registry.resolve("toy@1.0.0").path

    assert second == first
    assert second.stat().st_mtime_ns == marker


def test_list_shows_every_version_and_alias_in_the_bucket(registry: ModelRegistry, tmp_path: Path) -> None:
    register(registry, tmp_path, "1.0.0")
    register(registry, tmp_path, "1.1.0")
    registry.promote("toy", "1.1.0")

    [entry] = registry.list()

    assert entry.name == "toy"
    assert [m.version for m in entry.versions] == ["1.0.0", "1.1.0"]
    assert entry.aliases == {"production": "1.1.0"}


def test_promote_and_rollback_move_aliases_stored_in_the_bucket(
    registry: ModelRegistry, bucket: str, tmp_path: Path
) -> None:
    register(registry, tmp_path, "1.0.0")
    register(registry, tmp_path, "1.1.0")
    registry.promote("toy", "1.0.0")
    registry.promote("toy", "1.1.0")

    assert registry.resolve("toy").manifest.version == "1.1.0"
    assert registry.rollback("toy") == "1.0.0"
    reopened = open_registry(f"s3://{bucket}/camcount/models", tmp_path / "other-cache")
    assert reopened.resolve("toy@production").manifest.version == "1.0.0"
    assert reopened.resolve("toy@previous").manifest.version == "1.1.0"


def test_verify_refuses_a_model_whose_object_was_overwritten_in_the_bucket(
    registry: ModelRegistry, s3: BaseClient, bucket: str, tmp_path: Path
) -> None:
    register(registry, tmp_path, "1.0.0")
    registry.resolve("toy@1.0.0")  # a cached copy of the genuine file must not hide the tampering
    tampered = write_model(tmp_path / "other.onnx", np.zeros((1, 1, 6), np.float32)).read_bytes()
    s3.put_object(Bucket=bucket, Key="camcount/models/toy/1.0.0/model.onnx", Body=tampered)

    with pytest.raises(ChecksumMismatch):
        registry.verify("toy@1.0.0")


def test_a_detector_runs_on_the_model_downloaded_from_the_bucket(registry: ModelRegistry, tmp_path: Path) -> None:
    register(registry, tmp_path, "1.0.0")
    registry.promote("toy", "1.0.0")

    detector = Detector.from_model(registry.resolve("toy"), providers=[CPU])
    [detections] = detector.detect([np.full((INPUT, INPUT, 3), 128, np.uint8)])

    np.testing.assert_allclose(detections.xyxy, [[24, 24, 40, 40]], atol=1e-4)


def test_a_missing_file_reads_as_none(s3: BaseClient, bucket: str, tmp_path: Path) -> None:
    storage = S3RegistryStorage(bucket, "", tmp_path / "cache")

    assert storage.read_bytes("toy/aliases.json") is None


def test_a_missing_bucket_is_an_error_saying_to_create_it(s3: BaseClient, tmp_path: Path) -> None:
    registry = open_registry("s3://no-such-bucket", tmp_path / "cache")

    with pytest.raises(S3RegistryError, match="MODEL_002.*bucket 'no-such-bucket' does not exist.*create it"):
        registry.list()


def test_credentials_the_service_refuses_are_an_error_naming_the_variables_to_set(
    bucket: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(moto_settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)  # make the server check credentials
    registry = open_registry(f"s3://{bucket}", tmp_path / "cache")

    with pytest.raises(S3RegistryError, match="refused the credentials.*AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        registry.aliases("toy")


def test_missing_credentials_are_an_error_naming_the_variables_to_set(
    s3: BaseClient, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    registry = open_registry("s3://models", tmp_path / "cache")

    with pytest.raises(S3RegistryError, match="no AWS credentials found; set AWS_ACCESS_KEY_ID"):
        registry.aliases("toy")


def test_open_registry_reads_an_s3_url_as_bucket_and_prefix(s3: BaseClient, tmp_path: Path) -> None:
    storage = open_registry("s3://models/team/camcount/", tmp_path / "cache").storage

    assert isinstance(storage, S3RegistryStorage)
    assert (storage.bucket, storage.prefix) == ("models", "team/camcount")


def test_open_registry_reads_anything_else_as_a_local_directory(tmp_path: Path) -> None:
    storage = open_registry(str(tmp_path / "registry"), tmp_path / "cache").storage

    assert isinstance(storage, LocalRegistryStorage)
    assert storage.root == tmp_path / "registry"


def test_an_s3_url_without_a_bucket_is_refused_with_the_expected_form(tmp_path: Path) -> None:
    with pytest.raises(S3RegistryError, match=r"use s3://BUCKET\[/PREFIX\]"):
        open_registry("s3:///models", tmp_path / "cache")
