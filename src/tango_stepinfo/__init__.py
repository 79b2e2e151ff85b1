"""Run records of workflow steps, API-compatible with AI2 Tango 1.3.2's ``tango.step_info``.

Switch ``from tango.step_info import StepInfo, StepState`` to
``from tango_stepinfo import StepInfo, StepState`` and keep working; records round-trip through
JSON and pickle without loss.
"""

from ._probe import clear_cache
from ._version import __version__
from .errors import (
    InvalidStepStateError,
    StepInfoDecodeError,
    StepInfoEncodeError,
    UnsafePickleError,
)
from .metadata import EnvironmentMetadata, GitMetadata, PlatformMetadata, TangoMetadata
from .redact import redact_command, redact_url
from .step_info import StepInfo, StepLike, StepState

__all__ = [
    "EnvironmentMetadata",
    "GitMetadata",
    "InvalidStepStateError",
    "PlatformMetadata",
    "StepInfo",
    "StepInfoDecodeError",
    "StepInfoEncodeError",
    "StepLike",
    "StepState",
    "TangoMetadata",
    "UnsafePickleError",
    "__version__",
    "clear_cache",
    "redact_command",
    "redact_url",
]
