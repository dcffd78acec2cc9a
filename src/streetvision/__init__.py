"""StreetVision: train, calibrate, verify and bundle roadwork image classifiers for NATIX StreetVision."""

__version__ = "0.1.0"
