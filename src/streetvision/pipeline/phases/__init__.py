"""Phase implementations; importing this package registers every phase that exists."""

from streetvision.pipeline.phases import splits  # noqa: F401
from streetvision.pipeline.phases import phase1, phase4  # noqa: F401
