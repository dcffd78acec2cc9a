"""The deployable bundle: export (phase 6), verification, and the Predictor a miner runs."""
