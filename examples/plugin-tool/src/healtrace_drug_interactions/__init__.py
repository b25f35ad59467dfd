"""A HealTrace tool plugin: a drug-drug interaction checker.

HealTrace finds it through the ``healtrace.tools`` entry point in this package's
pyproject.toml, which names :data:`TOOLS`.
"""

from healtrace_drug_interactions.tool import (
    NOT_PROOF_OF_SAFETY,
    Interaction,
    InteractionReport,
    Medication,
    check_drug_interactions,
)

#: What the entry point registers: every tool this package offers.
TOOLS = [check_drug_interactions]

__all__ = [
    "NOT_PROOF_OF_SAFETY",
    "TOOLS",
    "Interaction",
    "InteractionReport",
    "Medication",
    "check_drug_interactions",
]
