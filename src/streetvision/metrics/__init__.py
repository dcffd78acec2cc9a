"""Pure numpy metrics and decision rules: classification metrics, the validator score, calibration, thresholds
and selective prediction. Imports nothing above ``io`` and the validator facts (see ARCHITECTURE.md)."""
