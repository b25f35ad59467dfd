"""Medical knowledge: corpus packs, ingestion, hybrid retrieval (issue #3)."""
