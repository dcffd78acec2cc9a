"""StreetVision: train, calibrate, verify and bundle roadwork image classifiers for NATIX StreetVision."""

__version__ = "0.1.0"

__all__ = ["Predictor", "__version__"]


def __getattr__(name: str):
    if name == "Predictor":  # lazy: importing streetvision stays cheap for the CLI
        from streetvision.bundle.predictor import Predictor

        return Predictor
    raise AttributeError(name)
