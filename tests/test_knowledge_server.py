"""The knowledge base against a real chroma server (``chroma run``) through HttpClient."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from healtrace.knowledge import IndexUnavailable, KnowledgeBase, KnowledgeConfig, ingest

DOCS = Path(__file__).parent / "data" / "knowledge" / "docs"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def chroma_url(tmp_path: Path) -> Iterator[str]:
    binary = Path(sys.executable).parent / "chroma"
    if not binary.exists():
        pytest.skip("the chroma CLI is not installed")
    port = _free_port()
    log = (tmp_path / "chroma.log").open("wb")
    server = subprocess.Popen(
        [
            str(binary),
            "run",
            "--path",
            str(tmp_path / "server"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/api/v2/heartbeat", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"chroma did not start: {(tmp_path / 'chroma.log').read_text()}")
            time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()


def test_ingest_and_search_through_a_chroma_server(chroma_url: str, tmp_path: Path) -> None:
    config = KnowledgeConfig(embedder="fake", chroma_url=chroma_url)
    folder = tmp_path / "docs"
    shutil.copytree(DOCS, folder)
    with KnowledgeBase.open(config, tmp_path / "worker-1") as kb:
        report = ingest(kb, folder, "lib")
        assert report.added == 6 and kb.count("lib") == 10
        hits = kb.search("sumatriptan migraine", k=1, collection="lib")
        assert hits[0].title == "Migraine: triggers and treatment"
    # Another worker with its own local directory sees the same collection and builds its
    # BM25 index from the server's documents.
    with KnowledgeBase.open(config, tmp_path / "worker-2") as other:
        assert other.count("lib") == 10
        lexical = other.search("amlodipine", k=1, collection="lib", mode="lexical")
        assert lexical[0].source.endswith("hypertension.pdf")


def test_an_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    config = KnowledgeConfig(embedder="fake", chroma_url=f"http://127.0.0.1:{_free_port()}")
    with pytest.raises(IndexUnavailable, match="HEALTRACE_KNOWLEDGE__CHROMA_URL"):
        KnowledgeBase.open(config, tmp_path)
    with pytest.raises(IndexUnavailable, match="must be an http"):
        KnowledgeBase.open(KnowledgeConfig(chroma_url="chroma:8000"), tmp_path)
