"""Built-in tools. They register through the ``healtrace.tools`` entry point like plugins do."""

from healtrace.tools.builtin.body_metrics import body_mass_index
from healtrace.tools.builtin.images import analyze_image
from healtrace.tools.builtin.knowledge import search_knowledge
from healtrace.tools.builtin.labs import interpret_labs
from healtrace.tools.builtin.records import lookup_records
from healtrace.tools.builtin.rewards import reward

TOOLS = [body_mass_index, search_knowledge, interpret_labs, analyze_image, lookup_records, reward]

__all__ = [
    "TOOLS",
    "analyze_image",
    "body_mass_index",
    "interpret_labs",
    "lookup_records",
    "reward",
    "search_knowledge",
]
