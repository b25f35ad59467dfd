"""The prompt-injection and abuse suite behind ``healtrace eval security``.

Attacks (``data/attacks.jsonl``) run against the real service with an adversarial model
that obeys them; outcome checks decide, from data, whether patient records, consent-gated
records, tokens, secrets or the system prompt reached the attacker, whether the answer
claimed to be a clinician, and whether a citation was made up. See ``docs/security.md``.
"""

from healtrace.security.adversary import AdversarialModel, RecordingModel
from healtrace.security.attacks import (
    CATEGORIES,
    CRITICAL_GOALS,
    GOALS,
    Attack,
    AttackFileError,
    load_attacks,
)
from healtrace.security.evaluation import (
    AbuseCheck,
    AttackResult,
    SecurityReport,
    Tally,
    format_report,
    run_security_eval,
)

__all__ = [
    "CATEGORIES",
    "CRITICAL_GOALS",
    "GOALS",
    "AbuseCheck",
    "AdversarialModel",
    "Attack",
    "AttackFileError",
    "AttackResult",
    "RecordingModel",
    "SecurityReport",
    "Tally",
    "format_report",
    "load_attacks",
    "run_security_eval",
]
