"""Evaluation: the one metrics module, thresholds, calibration, selective prediction, bootstrap and reports."""
