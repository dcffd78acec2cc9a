"""Phase implementations; importing this package registers every phase that exists."""

from streetvision.pipeline.phases import splits  # noqa: F401
from streetvision.pipeline.phases import evaluation, phase1, phase2, phase4, phase5, phase6  # noqa: F401
