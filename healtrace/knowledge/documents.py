"""Files to documents: Markdown (with the pack's front matter), HTML, PDF, DOCX and text.

Each loader yields a :class:`Document` whose body is cut into :class:`Section` s along its
headings, so chunks can carry the heading path as context.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from healtrace.knowledge.errors import DocumentError

Language = Literal["en", "zh-CN"]
DocumentKind = Literal["markdown", "html", "pdf", "docx", "text"]

#: File suffix -> loader kind; anything else is ``unsupported_type``.
SUFFIXES: dict[str, DocumentKind] = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
    ".docx": "docx",
    ".txt": "text",
    ".text": "text",
}

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*(?:\n|\Z)", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Section:
    """A run of text under one heading path (headings below the document title)."""

    path: tuple[str, ...]
    text: str


@dataclass(frozen=True, slots=True)
class Document:
    """One source file's text and what is known about it."""

    doc_id: str
    title: str
    language: Language
    source: str
    checksum: str
    sections: tuple[Section, ...]
    kind: DocumentKind = "text"
    source_url: str = ""
    source_title: str = ""
    category: str = ""
    #: The Markdown front matter as parsed (empty for other kinds).
    front_matter: Mapping[str, Any] = field(default_factory=dict)


def detect_language(text: str) -> Language:
    """``zh-CN`` when Chinese characters carry most of the text, else ``en``.

    A Chinese character carries about as much as a short English word, so each counts for
    three Latin letters.
    """
    cjk = len(_CJK.findall(text))
    latin = len(_LATIN.findall(text))
    return "zh-CN" if cjk and cjk * 3 >= latin else "en"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def path_doc_id(path: Path) -> str:
    """A stable id for an ingested file: its name as a slug plus a hash of its full path."""
    resolved = str(path.resolve())
    slug = re.sub(r"[^a-z0-9]+", "-", path.stem.lower()).strip("-")[:40] or "doc"
    return f"{slug}-{hashlib.sha256(resolved.encode()).hexdigest()[:10]}"


def split_front_matter(text: str) -> tuple[dict[str, Any], str]:
    """The YAML front matter (``{}`` if none) and the body after it."""
    match = _FRONT_MATTER.match(text)
    if not match:
        return {}, text
    try:
        data = yaml.safe_load(match.group(1))
    except yaml.YAMLError as exc:
        raise ValueError(f"front matter is not valid YAML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError("front matter must be a YAML mapping")
    return data, text[match.end() :]


def split_markdown(body: str) -> tuple[str, list[Section]]:
    """The first ``#`` heading (or "") and the sections under the other headings.

    Headings inside code fences are text. The first level-1 heading is the title and not
    part of the section paths; text before any heading forms a section with an empty path.
    """
    title = ""
    stack: list[tuple[int, str]] = []
    sections: list[Section] = []
    lines: list[str] = []
    fenced = False

    def flush() -> None:
        text = _tidy("\n".join(lines))
        if text:
            sections.append(Section(tuple(h for _, h in stack), text))
        lines.clear()

    for line in body.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
        match = None if fenced else _HEADING.match(line)
        if match is None:
            lines.append(line)
            continue
        flush()
        level, heading = len(match.group(1)), match.group(2).strip()
        if level == 1 and not title and not stack:
            title = heading
            continue
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, heading))
    flush()
    return title, sections


def _tidy(text: str) -> str:
    """Trim lines and squeeze runs of blank lines, keeping paragraph breaks."""
    out: list[str] = []
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line.strip():
            if out and out[-1] != "":
                out.append("")
            continue
        out.append(line)
    while out and out[-1] == "":
        out.pop()
    return "\n".join(out).strip("\n")


def _decode(data: bytes, name: str) -> str:
    if b"\x00" in data[:8192]:
        raise DocumentError(f"{name} looks binary", code="corrupt_file", name=name, kind="text")
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise DocumentError(
        f"{name} is neither UTF-8 nor GB18030 text", code="corrupt_file", name=name, kind="text"
    )


def _first_source(front: Mapping[str, Any]) -> tuple[str, str]:
    sources = front.get("sources")
    if isinstance(sources, list) and sources and isinstance(sources[0], dict):
        return str(sources[0].get("url", "")), str(sources[0].get("title", ""))
    return "", ""


def _markdown(data: bytes, path: Path) -> tuple[str, list[Section], dict[str, Any]]:
    text = _decode(data, path.name)
    try:
        front, body = split_front_matter(text)
    except ValueError as exc:
        raise DocumentError(
            str(exc), code="corrupt_file", name=path.name, kind="Markdown with front matter"
        ) from exc
    title, sections = split_markdown(body)
    return str(front.get("title") or title), sections, front


def _html(data: bytes, path: Path) -> tuple[str, list[Section], dict[str, Any]]:
    from bs4 import BeautifulSoup
    from bs4.element import Tag

    soup = BeautifulSoup(_decode(data, path.name), "html.parser")
    page_title = soup.title.get_text(" ", strip=True) if soup.title else ""
    for tag in soup(["script", "style", "noscript", "template", "nav", "footer", "aside", "form"]):
        tag.decompose()
    root = soup.find("main") or soup.find("article") or soup.body or soup
    assert isinstance(root, Tag)
    # Headings become Markdown headings and blocks become paragraphs, so HTML goes through
    # the same section splitter as Markdown.
    for tag in root.find_all(re.compile(r"^h[1-6]$")):
        level = int(tag.name[1])
        tag.replace_with(f"\n\n{'#' * level} {tag.get_text(' ', strip=True)}\n\n")
    for tag in root.find_all("li"):
        tag.insert_before("\n- ")
    for tag in root.find_all(["p", "div", "section", "article", "ul", "ol", "table", "tr", "br"]):
        tag.insert_after("\n\n" if tag.name != "tr" else "\n")
    for tag in root.find_all(["td", "th"]):
        tag.insert_after(" | ")
    raw = root.get_text()
    body = "\n".join(re.sub(r"[ \t\u00a0]+", " ", line).strip() for line in raw.splitlines())
    title, sections = split_markdown(body)
    return page_title or title, sections, {}


def _pdf(data: bytes, path: Path) -> tuple[str, list[Section], dict[str, Any]]:
    import io

    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise DocumentError(
                f"{path.name} is encrypted",
                code="unreadable_file",
                name=path.name,
                reason="the PDF is password-protected",
            )
        pages = [page.extract_text() or "" for page in reader.pages]
        meta_title = (reader.metadata.title if reader.metadata else None) or ""
    # pypdf raises its own errors for most damage, and plain ValueError/KeyError/TypeError/
    # IndexError from deep in the object parser for the rest.
    except (PyPdfError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise DocumentError(
            f"{path.name}: {exc}", code="corrupt_file", name=path.name, kind="PDF"
        ) from exc
    sections = [
        Section((f"p. {number}",), _tidy(text))
        for number, text in enumerate(pages, start=1)
        if text.strip()
    ]
    return str(meta_title), sections, {}


def _docx(data: bytes, path: Path) -> tuple[str, list[Section], dict[str, Any]]:
    import io

    import docx
    from docx.opc.exceptions import PackageNotFoundError
    from docx.table import Table

    try:
        document = docx.Document(io.BytesIO(data))
        lines: list[str] = []
        title = document.core_properties.title or ""
        for block in document.iter_inner_content():
            if isinstance(block, Table):
                for row in block.rows:
                    lines.append(" | ".join(cell.text.strip() for cell in row.cells))
                lines.append("")
                continue
            style = block.style.name if block.style is not None else ""
            text = block.text.strip()
            if not text:
                continue
            heading = re.fullmatch(r"Heading (\d)", style or "")
            if style == "Title":
                lines.append(f"# {text}")
            elif heading:
                lines.append(f"{'#' * (int(heading.group(1)) + 1)} {text}")
            elif style and style.startswith("List"):
                lines.append(f"- {text}")
            else:
                lines.extend([text, ""])
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise DocumentError(
            f"{path.name}: {exc}", code="corrupt_file", name=path.name, kind="DOCX"
        ) from exc
    heading_title, sections = split_markdown("\n".join(lines))
    return title or heading_title, sections, {}


def _text(data: bytes, path: Path) -> tuple[str, list[Section], dict[str, Any]]:
    text = _tidy(_decode(data, path.name))
    first, _, rest = text.partition("\n\n")
    # A short first line standing alone reads as the title.
    if rest and "\n" not in first and len(first) <= 80 and not first.endswith((".", "。")):
        return first.strip(), [Section((), rest)], {}
    return "", [Section((), text)] if text else [], {}


_LOADERS: dict[DocumentKind, Callable[[bytes, Path], tuple[str, list[Section], dict[str, Any]]]] = {
    "markdown": _markdown,
    "html": _html,
    "pdf": _pdf,
    "docx": _docx,
    "text": _text,
}


def document_kind(path: Path) -> DocumentKind:
    """The loader for ``path`` by its suffix; :class:`DocumentError` if there is none."""
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise DocumentError(
            f"{path.name}: unsupported file type", code="unsupported_type", name=path.name
        )
    return kind


def load_bytes(data: bytes, path: Path, *, doc_id: str | None = None) -> Document:
    """Parse a file's bytes (already read and size-checked) into a :class:`Document`.

    Raises :class:`DocumentError` with code ``unsupported_type``, ``corrupt_file`` or
    ``empty_file``.
    """
    kind = document_kind(path)
    if not data.strip():
        raise DocumentError(f"{path.name} is empty", code="empty_file", name=path.name)
    title, sections, front = _LOADERS[kind](data, path)
    if not sections:
        raise DocumentError(f"{path.name} has no text", code="empty_file", name=path.name)
    title = title.strip() or path.stem
    lang = front.get("lang")
    language: Language = (
        lang if lang in ("en", "zh-CN") else detect_language(" ".join(s.text for s in sections))
    )
    url, source_title = _first_source(front)
    resolved_id = str(front.get("id") or "") or doc_id or path_doc_id(path)
    return Document(
        doc_id=resolved_id,
        title=title,
        language=language,
        source=str(path),
        checksum=sha256_bytes(data),
        sections=tuple(sections),
        kind=kind,
        source_url=url,
        source_title=source_title,
        category=str(front.get("category") or ""),
        front_matter={k: _plain(v) for k, v in front.items()},
    )


def _plain(value: Any) -> Any:
    # YAML turns `last_reviewed: 2026-11-01` into a date; keep front matter JSON-friendly.
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def load_document(
    path: Path, *, max_bytes: int | None = None, doc_id: str | None = None
) -> Document:
    """Read and parse one file, refusing it before reading if it is over ``max_bytes``."""
    document_kind(path)
    try:
        size = path.stat().st_size
        if max_bytes is not None and size > max_bytes:
            raise DocumentError(
                f"{path.name} is too large",
                code="file_too_large",
                name=path.name,
                size=size,
                limit=max_bytes,
            )
        data = path.read_bytes()
    except OSError as exc:
        raise DocumentError(
            f"{path.name}: {exc}", code="unreadable_file", name=path.name, reason=exc.strerror
        ) from exc
    return load_bytes(data, path, doc_id=doc_id)
