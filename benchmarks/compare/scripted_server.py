"""The scripted OpenAI-compatible server every variant talks to, as its own process.

    python benchmarks/compare/scripted_server.py --port 8011

Replies come from :func:`workloads.scripted_reply` at the fixed token rate of
``workloads.FIRST_TOKEN_MS`` / ``TOKEN_INTERVAL_MS``.
"""

from __future__ import annotations

import argparse
import logging

from workloads import FIRST_TOKEN_MS, MODEL, TOKEN_INTERVAL_MS, scripted_reply

from healtrace.agent.models.testing_server import ScriptedOpenAIServer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--first-token-ms", type=float, default=FIRST_TOKEN_MS)
    parser.add_argument("--token-interval-ms", type=float, default=TOKEN_INTERVAL_MS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    ScriptedOpenAIServer(
        default=scripted_reply,
        first_token_ms=args.first_token_ms,
        token_interval_ms=args.token_interval_ms,
        model=MODEL,
        port=args.port,
    ).serve_forever()


if __name__ == "__main__":
    main()
