"""Image intake and analysis (issue #7)."""
