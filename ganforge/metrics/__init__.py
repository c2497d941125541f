"""Metrics: mode counts on toy data (more in later modules)."""
from ganforge.metrics.modes import mode_metrics

__all__ = ["mode_metrics"]
