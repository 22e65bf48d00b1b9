"""Metrics, thresholds, calibration, evaluation summaries and reports."""
