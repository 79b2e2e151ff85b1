"""Run records of workflow steps, API-compatible with AI2 Tango 1.3.2's ``tango.step_info``.

Switch ``from tango.step_info import StepInfo, StepState`` to
``from tango_stepinfo import StepInfo, StepState`` and keep working; records round-trip through
JSON and pickle without loss.
"""

# The version, in one place (read by pyproject.toml too). Set before the imports below:
# metadata.py reads it while this module is still being imported. A module of its own cost
# 0.08 ms of the import (3.11: finding, reading and running one more file).
__version__ = "0.2.0"

from typing import TYPE_CHECKING, Any

from ._privacy import anonymize
from ._probe import clear_cache
from .errors import (
    InvalidSettingError,
    InvalidStepStateError,
    StepInfoDecodeError,
    StepInfoEncodeError,
)
from .metadata import (
    EnvironmentMetadata,
    GitMetadata,
    GpuMetadata,
    JobMetadata,
    PlatformMetadata,
    TangoMetadata,
)
from .step_info import StepInfo, StepLike, StepState

if TYPE_CHECKING:
    from .pickling import CorruptPickleError, UnsafePickleError, load, loads
    from .redact import redact_command, redact_url

__all__ = [
    "CorruptPickleError",
    "EnvironmentMetadata",
    "GitMetadata",
    "GpuMetadata",
    "InvalidSettingError",
    "InvalidStepStateError",
    "JobMetadata",
    "PlatformMetadata",
    "StepInfo",
    "StepInfoDecodeError",
    "StepInfoEncodeError",
    "StepLike",
    "StepState",
    "TangoMetadata",
    "UnsafePickleError",
    "__version__",
    "anonymize",
    "clear_cache",
    "load",
    "loads",
    "redact_command",
    "redact_url",
]


def __getattr__(name: str) -> Any:
    # The safe loader (and pickle) is imported on first use: most processes only write records.
    if name in ("CorruptPickleError", "UnsafePickleError", "load", "loads"):
        from . import pickling

        return getattr(pickling, name)
    # The redaction tables (0.3 ms to import) load with the first record's probes, not the import.
    if name in ("redact_command", "redact_url"):
        from . import redact

        return getattr(redact, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
