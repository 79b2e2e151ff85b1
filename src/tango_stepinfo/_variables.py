"""Environment variables chosen by name, for ``EnvironmentMetadata.variables``.

``TANGO_STEPINFO_VARIABLES`` holds comma-separated :mod:`fnmatch` patterns (``CUDA_*,MY_SEED``),
matched case-sensitively against the names of the process's environment variables. Unset, the
patterns are :data:`DEFAULT`; set but empty (or only commas and spaces), nothing is recorded
and ``variables`` is ``None``. Whatever the patterns say, a variable whose name looks secret
(:func:`tango_stepinfo.redact.is_secret_name`: ``HF_TOKEN``, ``PGPASSWORD``), or that
ends in ``_KEY`` or ``_KEYS`` (``SSH_KEY``: in an environment, a key of any kind is more often
a credential than not) or ``_PW``, or is ``SSHPASS``, is never recorded, and every value recorded
passes :func:`tango_stepinfo.redact.redact_text` (credentials in URLs, well-known token
shapes). In an anonymous record, values that are absolute paths keep their last component only,
and names of the user and host are scrubbed from names and values (see :mod:`._privacy`).

The variables are read once per process, at the first record (``clear_cache()`` and
``StepInfo.refresh()`` read them again): a run's settings are fixed when it starts, and a
variable changed by the program later is not what the run was started with.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Dict, Optional

from . import redact

if TYPE_CHECKING:
    from ._hiding import Policy

__all__ = ["DEFAULT", "read"]

DEFAULT = (
    # which GPUs, in which order, and how CUDA reports errors
    "CUDA_VISIBLE_DEVICES",
    "CUDA_DEVICE_ORDER",
    "CUDA_LAUNCH_BLOCKING",
    # deterministic cuBLAS, TF32 matmuls on or off
    "CUBLAS_WORKSPACE_CONFIG",
    "NVIDIA_TF32_OVERRIDE",
    # thread counts of the math libraries: parallel reductions sum in another order
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "MKL_CBWR",  # MKL's conditional numerical reproducibility
    # Python itself: hash order of str keys, asserts on or off
    "PYTHONHASHSEED",
    "PYTHONOPTIMIZE",
    "TOKENIZERS_PARALLELISM",
    # TensorFlow and JAX switches that change results
    "TF_DETERMINISTIC_OPS",
    "TF_CUDNN_DETERMINISTIC",
    "TF_ENABLE_ONEDNN_OPTS",
    "JAX_ENABLE_X64",
    "JAX_DEFAULT_MATMUL_PRECISION",
    # NCCL's choice of all-reduce algorithm and protocol (not NCCL_*: that includes addresses,
    # interface names and file paths)
    "NCCL_ALGO",
    "NCCL_PROTO",
)
"""The variables recorded when ``TANGO_STEPINFO_VARIABLES`` is unset: settings that change a
run's numbers or its use of devices, with short values that are neither secret nor personal."""

_GLOB = frozenset("*?[")


def _credential_name(upper: str) -> bool:
    """Names that hold a credential in an environment but not on a command line (where
    :func:`tango_stepinfo.redact.is_secret_name` keeps ``--key`` and ``--pw``): a key or keys
    of any kind (``SSH_KEY``, ``APP_KEYS``), a short password (``LDAP_BIND_PW``), and
    ``SSHPASS``, which ``sshpass -e`` reads its password from."""
    return upper == "SSHPASS" or upper.endswith(("_KEY", "_KEYS", "_PW"))


def read(policy: Optional[Policy]) -> Optional[Dict[str, str]]:
    """The chosen variables of this process, sorted by name; ``None`` when none are chosen.

    :param policy: the privacy policy; when set, absolute paths in values are shortened.
    """
    setting = os.environ.get("TANGO_STEPINFO_VARIABLES")
    if setting is None:
        patterns = list(DEFAULT)
    else:
        patterns = [p.strip() for p in setting.split(",") if p.strip()]
        if not patterns:
            return None
    names = {p for p in patterns if not _GLOB.intersection(p) and p in os.environ}
    globs = [p for p in patterns if _GLOB.intersection(p)]
    if globs:
        import fnmatch  # imports re: only when a pattern needs it

        names.update(n for n in os.environ if any(fnmatch.fnmatchcase(n, g) for g in globs))
    found: Dict[str, str] = {}
    for name in sorted(names):
        if redact.is_secret_name(name) or _credential_name(name.upper()):
            continue  # never recorded, whatever the patterns say
        value = redact.redact_text(os.environ[name])
        if policy is None:
            found[name] = value
        else:
            shown, value = policy.variable(name, value)
            found[shown] = value
    return found
