"""Reciprocal rank fusion: combine ranked lists by rank alone, whatever their score scales."""

from __future__ import annotations

from collections.abc import Sequence


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[str]], *, k: int = 60
) -> list[tuple[str, float, list[int | None]]]:
    """Fuse ranked id lists (best first) by ``sum(1 / (k + rank))``, ranks counted from 1.

    Returns ``(id, fused score, [rank in each list or None])``, best first; ties keep the
    order in which ids were first seen (earlier lists and higher ranks first).
    """
    scores: dict[str, float] = {}
    ranks: dict[str, list[int | None]] = {}
    for which, ranking in enumerate(rankings):
        for rank, item in enumerate(ranking, start=1):
            if item in ranks and ranks[item][which] is not None:
                continue  # a repeated id counts once, at its best rank
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
            ranks.setdefault(item, [None] * len(rankings))[which] = rank
    order = sorted(scores, key=lambda item: -scores[item])
    return [(item, scores[item], ranks[item]) for item in order]
