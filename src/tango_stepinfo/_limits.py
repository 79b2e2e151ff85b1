"""The bounds every reader of records shares: the safe pickle loader now, the JSON codec later.

One home, so that what one reader accepts the other accepts too (what decodes, encodes again).
"""

from __future__ import annotations

MAX_INT_DIGITS = 4300
"""The most decimal digits an int in a record may have: Python's own default limit for
converting between int and str (``sys.get_int_max_str_digits()``), so the largest int that
``json.loads`` reads and ``json.dumps`` writes on every supported Python."""

MAX_INT = 10**MAX_INT_DIGITS
"""Ints in a record are strictly between :data:`MIN_INT` and ``MAX_INT``."""

MIN_INT = -MAX_INT
"""``-MAX_INT``, computed once: writing ``-MAX_INT`` in a test builds a 1.9 KB int each time
(about 0.1 us)."""

MAX_DEPTH = 200
"""How deep a free JSON value (``config``, ``metadata``) may nest: the ``config`` object itself
is level 1, a list in it level 2, and so on."""

JSON_BYTES_PER_PICKLE_BYTE = 8
"""With :data:`JSON_BYTES_FLOOR`, how large the JSON of a loaded value may be, estimated from a
pickle before anything in it is built: at most ``JSON_BYTES_PER_PICKLE_BYTE * len(pickle) +
JSON_BYTES_FLOOR`` bytes. Shared references count each time they are used (so a small pickle
cannot unfold into a huge document). See :mod:`tango_stepinfo.pickling` for how it is estimated."""

JSON_BYTES_FLOOR = 1 << 20
"""See :data:`JSON_BYTES_PER_PICKLE_BYTE` (1 MiB)."""

CONTAINER_BYTES = 64
"""What each list, dict, set or tuple counts in the estimated JSON size: more than its brackets,
so that the bound also bounds how many containers the loader makes and the checks after loading
walk (each costs about as much time as 64 bytes of string)."""
