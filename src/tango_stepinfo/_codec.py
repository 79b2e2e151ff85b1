"""The codec's names as earlier code imports them; the codec itself lives in small modules.

- :mod:`._kinds`: the registry of field-type kinds (encode, decode, describe, schema, pickle
  state and post-load check of each kind);
- :mod:`._plans`: each record class read into fields and compiled into one encoder and one
  decoder; :func:`encode` / :func:`decode`;
- :mod:`._record`: the :class:`Record` base, its pickled state, the safe loader's check of a
  loaded record, and the registry of record classes;
- :mod:`._times`, :mod:`._free`: times, and free-form JSON values;
- :mod:`._errors`: how a bad value's path and description travel.
"""

from __future__ import annotations

from ._errors import Bad as _Bad  # noqa: F401 (earlier name)
from ._errors import show as _show  # noqa: F401 (earlier name)
from ._plans import decode, encode
from ._record import Record
from ._times import TIME_PATTERN, parse_time
from ._times import as_utc as _as_utc  # noqa: F401 (earlier name)

__all__ = ["TIME_PATTERN", "Record", "decode", "encode", "parse_time"]
