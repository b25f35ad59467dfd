"""HealTrace as the benchmark runs it: settings, and the WebSocket server process.

Both HealTrace variants use the service's own assembly (``build_services``): SQLite
store, triage and the output guard, handoff check, audit log, evidence records (built,
hashed and written with each answer; anchoring off, so no chain node is started), with the
workload tools and the fixed knowledge base passed in. Up-front retrieval is off
(``retrieval_k=0``): retrieval happens only when the model calls ``search_knowledge``, as
in the other variants.

    python benchmarks/compare/healtrace_side.py --base-url URL --port N --data-dir DIR
"""

from __future__ import annotations

import argparse
from pathlib import Path

from workloads import FixedKnowledge, registry

from healtrace.config import ChainConfig, OpenAIBackendConfig, Settings
from healtrace.knowledge.config import KnowledgeConfig


def bench_settings(
    base_url: str, data_dir: Path, *, model: str, max_tokens: int, temperature: float, port: int = 0
) -> Settings:
    backend = OpenAIBackendConfig(
        name="bench",
        base_url=base_url,
        model=model,
        max_retries=0,
        temperature=temperature,
        max_tokens=max_tokens,
        timeout_s=300.0,
    )
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=data_dir,
        port=port or 8000,
        llm_backends=[backend],
        knowledge=KnowledgeConfig(enabled=False),
        retrieval_k=0,
        chain=ChainConfig(anchoring=False),
        log_level="warning",
    )


def main() -> None:
    import uvicorn

    from healtrace.api.app import create_app
    from healtrace.logs import configure_logging

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--max-tokens", type=int, required=True)
    parser.add_argument("--temperature", type=float, required=True)
    parser.add_argument("--no-tools", action="store_true")
    args = parser.parse_args()
    settings = bench_settings(
        args.base_url,
        args.data_dir,
        model=args.model,
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        port=args.port,
    )
    configure_logging(settings.log_level, settings=settings)
    tools = registry().where(lambda t: False) if args.no_tools else registry()
    app = create_app(settings, tools=tools, knowledge=FixedKnowledge())
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        log_config=None,
        ws_max_size=1 << 20,
    )


if __name__ == "__main__":
    main()
