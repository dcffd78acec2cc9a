"""The pipeline: every artifact path of a run (artifacts), the phase registry, and the runner that orders phases,
skips up-to-date ones, locks the run directory and commits each phase with its manifest."""
