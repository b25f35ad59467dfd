"""On-chain evidence anchoring, token and consent contracts (issue #8)."""
