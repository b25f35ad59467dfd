"""Ingestion: every format, idempotent re-runs, edits, deletions, bad files; the CLI."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from healtrace.knowledge import (
    IngestProgress,
    KnowledgeBase,
    KnowledgeConfig,
    ingest,
)
from healtrace.knowledge.cli import knowledge_app
from healtrace.knowledge.errors import KnowledgeError

DATA = Path(__file__).parent / "data" / "knowledge"
CONFIG = KnowledgeConfig(embedder="fake", max_file_bytes=1 << 20)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    target = tmp_path / "library"
    shutil.copytree(DATA / "docs", target)
    return target


@pytest.fixture
def kb(tmp_path: Path) -> Iterator[KnowledgeBase]:
    with KnowledgeBase.open(CONFIG, tmp_path / "data") as opened:
        yield opened


def test_ingest_folder_then_edit_and_delete(kb: KnowledgeBase, folder: Path) -> None:
    seen: list[IngestProgress] = []
    report = ingest(kb, folder, "lib", progress=seen.append)
    assert (report.added, report.updated, report.unchanged, report.removed, report.failed) == (
        6,
        0,
        0,
        0,
        0,
    )
    assert report.chunks == kb.count("lib") == 10
    assert [p.done for p in seen] == [1, 2, 3, 4, 5, 6] and seen[-1].total == 6
    hits = kb.search("salt and amlodipine for blood pressure", k=1, collection="lib")
    assert hits[0].source == str(folder / "hypertension.pdf") and hits[0].section == "p. 1"
    assert kb.search("睡眠不足", k=1, collection="lib")[0].language == "zh-CN"

    again = ingest(kb, folder, "lib")
    assert again.unchanged == 6 and again.chunks == 0 and kb.count("lib") == 10

    # Edit one section of the Markdown file, delete the PDF.
    md = folder / "asthma.md"
    md.write_text(md.read_text().replace("Call 120 or 911", "Phone 120 or 911 at once"))
    (folder / "hypertension.pdf").unlink()
    third = ingest(kb, folder, "lib")
    assert (third.added, third.updated, third.unchanged, third.removed) == (0, 1, 4, 1)
    assert third.chunks == 1  # only the edited section is embedded again
    assert kb.count("lib") == 9
    assert kb.search("Phone 120 at once", k=1, collection="lib", mode="lexical")[0].section == (
        "Asthma attack"
    )
    assert all(
        h.source != str(folder / "hypertension.pdf")
        for h in kb.search("amlodipine blood pressure", k=10, collection="lib")
    )
    assert not kb.search(
        "Call 120", k=10, collection="lib", mode="lexical", filters={"doc_id": "x"}
    )


def test_touching_a_file_without_changing_it_is_not_an_update(
    kb: KnowledgeBase, folder: Path
) -> None:
    ingest(kb, folder, "lib")
    txt = folder / "hydration.txt"
    txt.write_bytes(txt.read_bytes())  # new mtime, same bytes
    report = ingest(kb, folder, "lib")
    assert report.unchanged == 6 and report.chunks == 0


def test_single_file_and_removed_folder(kb: KnowledgeBase, folder: Path) -> None:
    report = ingest(kb, folder / "migraine.docx", "lib")
    assert report.added == 1 and kb.count("lib") == 2
    ingest(kb, folder, "lib")
    shutil.rmtree(folder)
    gone = ingest(kb, folder, "lib")
    assert gone.removed == 6 and kb.count("lib") == 0
    with pytest.raises(KnowledgeError, match="does not exist"):
        ingest(kb, folder, "lib")


def test_bad_files_are_reported_and_the_rest_ingested(kb: KnowledgeBase, folder: Path) -> None:
    for bad in (DATA / "bad").iterdir():
        shutil.copy(bad, folder / bad.name)
    with (folder / "huge.txt").open("wb") as f:
        f.truncate(200 * 2**20)  # sparse: refused by size before anything is read
    (folder / ".hidden.md").write_text("# ignored\n\nhidden files are not documents")
    report = ingest(kb, folder, "lib")
    codes = {Path(f.path).name: f.code for f in report.failures}
    assert codes == {
        "broken.pdf": "corrupt_file",
        "broken.docx": "corrupt_file",
        "empty.txt": "empty_file",
        "blank.md": "empty_file",
        "notes.xyz": "unsupported_type",
        "huge.txt": "file_too_large",
    }
    assert report.added == 6 and report.failed == 6 and kb.count("lib") == 10
    messages = {Path(f.path).name: f.message for f in report.failures}
    assert "HEALTRACE_KNOWLEDGE__MAX_FILE_BYTES" in messages["huge.txt"]
    assert "damaged" in messages["broken.pdf"]


# -- CLI ----------------------------------------------------------------------------------


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    # The conftest already runs each test in tmp_path with no HEALTRACE_* variables.
    env = {"HEALTRACE_DATA_DIR": str(tmp_path / "data"), "HEALTRACE_KNOWLEDGE__EMBEDDER": "fake"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def test_cli_ingest_and_search_json(cli_env: dict[str, str], folder: Path) -> None:
    runner = CliRunner()
    for bad in ("broken.pdf", "notes.xyz"):
        shutil.copy(DATA / "bad" / bad, folder / bad)
    result = runner.invoke(knowledge_app, ["ingest", str(folder), "--collection", "lib"])
    assert result.exit_code == 0, result.output
    assert "corrupt_file" in result.output and "unsupported_type" in result.output
    result = runner.invoke(
        knowledge_app, ["search", "sumatriptan migraine", "-c", "lib", "-k", "2", "--json"]
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert len(rows) == 2
    assert {"id", "title", "source", "score", "text"} <= set(rows[0])
    assert rows[0]["title"] == "Migraine: triggers and treatment"
    assert rows[0]["source"] == str(folder / "migraine.docx")
    assert isinstance(rows[0]["score"], float) and rows[0]["score"] > 0
    plain = runner.invoke(knowledge_app, ["search", "sumatriptan", "-c", "lib", "-k", "1"])
    assert plain.exit_code == 0 and "Migraine: triggers and treatment" in plain.output


def test_cli_ingest_exit_code_when_nothing_could_be_ingested(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(DATA / "bad", bad)
    result = CliRunner().invoke(knowledge_app, ["ingest", str(bad), "-c", "lib"])
    assert result.exit_code == 2
    missing = CliRunner().invoke(knowledge_app, ["ingest", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
