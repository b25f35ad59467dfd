"""Built-in tools. They register through the ``healtrace.tools`` entry point like plugins do."""

from healtrace.tools.builtin.body_metrics import body_mass_index

TOOLS = [body_mass_index]

__all__ = ["TOOLS", "body_mass_index"]
