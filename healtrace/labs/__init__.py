"""Laboratory results: the analyte catalogue, units and conversions, derived values."""
