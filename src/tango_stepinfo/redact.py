"""Redaction of secrets from the strings a record captures: remote URLs and the command line.

Records are written to shared places and read by other people, so the two strings in them
that commonly carry credentials are cleaned when they are captured: ``environment.command``
(through :func:`redact_command`) and ``environment.git.remote`` (through :func:`redact_url`).
``config`` and ``metadata`` are the user's own data and are never changed. Engines may apply
both functions to their own strings. Neither function ever raises: a string they cannot make
sense of is returned as it is.

**URLs.** In every ``scheme://user:password@host/...`` (any scheme, e.g. ``https``, ``ssh``,
``git+https``, ``postgres``), the user name and password are removed, leaving
``scheme://host/...``. The authority part ends at the first ``/``, ``?``, ``#`` or whitespace,
and the credentials end at its last ``@``; a password holding one of those characters must be
percent-encoded, as URLs require. Scp-style ``git@host:org/repo.git`` has no secret and stays
as it is.

**Secret-looking names.** A name is split into words at every character that is not an ASCII
letter or digit (``-``, ``_``, ``.`` ...), between letters and digits, and at case changes
(``apiKey`` and ``APIKey`` give ``api`` + ``key``), and the words are lowercased. The name is
secret-looking when one word is ``password``, ``passwd``, ``secret``, ``token``, ``apikey``,
``auth``, ``credential`` or ``credentials``, or two neighbouring words are ``api`` + ``key``,
``access`` + ``key``, ``private`` + ``key`` or ``secret`` + ``key``. Whole words only:
``--tokenizer``, ``--max-tokens``, ``--author`` and ``--keyboard`` are not secret-looking, and
neither is ``PGPASSWORD`` (one word).

**The command line**, argument by argument, in this order:

1. ``--name=VALUE`` (one or two leading dashes; the typographic dashes U+2010 to U+2015 and U+2212
   count too):
   when the name is secret-looking, a non-empty ``VALUE`` becomes ``***``
   (``--api-key=***``); an empty one stays empty.
2. ``--name VALUE``: when the name is secret-looking, the next argument becomes ``***``, unless
   it starts with ``-`` (then the option is taken to be a flag). ``--token`` as the last
   argument has nothing to hide. A secret-looking flag that takes no value hides the argument
   after it: that is the safe direction.
3. ``NAME=VALUE`` (environment assignments such as ``HF_TOKEN=X`` and override syntax such as
   ``wandb.api_key=X`` or ``+db.password=X``; the name starts with a letter or ``_``, then
   letters, digits, ``_``, ``-`` and ``.``): when the name is secret-looking, a non-empty
   ``VALUE`` becomes ``***``.
4. Short options with a one-letter name (``-p X``) are never secret-looking: too ambiguous.
5. Arguments after ``--`` get the same treatment (they are often passed on to another program).
6. An argument holding whitespace is often a whole command line for a shell (``bash -c "..."``,
   ``--wrap "..."``): it is split into words (quotes kept, up to three levels deep) and rules
   1-3 are applied to those words (read without their quotes), and only the words at fault
   are replaced.
7. Credentials in URLs are removed from every argument that was not replaced, wherever the URL
   is (``--repo=https://host/x``, ``DATABASE_URL=postgres://db/x``, ``git clone https://host``).

Arguments that are not strings are converted with :func:`os.fsdecode` (bytes, paths) or
:class:`str`. The result is the arguments shell-quoted and joined with spaces
(:func:`shlex.join`), so ``***`` shows up quoted: ``'--api-key=***'``.
"""

from __future__ import annotations

import os
import re
from typing import Any, List, Optional, Pattern, Sequence, Tuple

__all__ = ["MASK", "redact_command", "redact_url"]

MASK = "***"
"""What a redacted value is replaced with."""

_SECRET_WORDS = frozenset(
    ("password", "passwd", "secret", "token", "apikey", "auth", "credential", "credentials")
)
_SECRET_PAIRS = frozenset(
    (("api", "key"), ("access", "key"), ("private", "key"), ("secret", "key"))
)
_DASHES = "-\u2010\u2011\u2012\u2013\u2014\u2015\u2212"
_DASH_CLASS = "\\-\u2010-\u2015\u2212"  # the same, as the inside of a regex [...]
_MAX_NESTING = 3

# Compiled on first use: importing tango_stepinfo must stay cheap.
_patterns: Optional[Tuple[Pattern[str], ...]] = None


def _compiled() -> Tuple[Pattern[str], ...]:
    global _patterns
    if _patterns is None:
        _patterns = (
            # words of a name: ABC before Def, Capitalised or lower words, ABC, digits
            re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+"),
            # --name=value / --name
            re.compile(rf"([{_DASH_CLASS}]{{1,2}})([^\s={_DASH_CLASS}][^\s=]*)(?:(=)(.*))?", re.S),
            # NAME=value
            re.compile(r"(\+{0,2}[A-Za-z_][\w.-]*)=(.*)", re.S),
            # credentials in a URL: scheme:// then the authority up to its last @
            re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s]*@"),
            # shell words of an embedded command line, quotes kept
            re.compile(r"""(?:[^\s"']+|"[^"]*"|'[^']*')+"""),
        )
    return _patterns


def _is_secret_name(name: str) -> bool:
    words = [w.lower() for w in _compiled()[0].findall(name)]
    if any(w in _SECRET_WORDS for w in words):
        return True
    return any(pair in _SECRET_PAIRS for pair in zip(words, words[1:]))


def _strip_url_credentials(text: str) -> str:
    return _compiled()[3].sub(r"\1", text)


def redact_url(url: str) -> str:
    """Return ``url`` with the user name and password removed from every URL in it.

    ``https://user:token@host/x.git`` becomes ``https://host/x.git``; scp-style
    ``git@host:org/x.git`` is returned as it is (it names a user but holds no secret). Never
    raises; anything that is not a string is returned unchanged.
    """
    if not isinstance(url, str):
        return url
    return _strip_url_credentials(url)


def _redact_words(words: List[str], depth: int) -> List[str]:
    """Apply the rules to a list of command-line words, returning the new words."""
    _, option, assignment, _, _ = _compiled()
    out: List[str] = []
    hide_next = False
    for arg in words:
        word = arg
        if hide_next:
            hide_next = False
            if not word.startswith(tuple(_DASHES)):
                out.append(MASK)
                continue
        m = option.fullmatch(word)
        if m is not None:
            dashes, name, equals, value = m.groups()
            if _is_secret_name(name):
                if equals is None:
                    hide_next = True
                elif value:
                    out.append(f"{dashes}{name}={MASK}")
                    continue
        else:
            m = assignment.fullmatch(word)
            if m is not None and m.group(2) and _is_secret_name(m.group(1)):
                out.append(f"{m.group(1)}={MASK}")
                continue
        if depth < _MAX_NESTING and any(c.isspace() for c in word):
            word = _redact_embedded(word, depth + 1)
        out.append(_strip_url_credentials(word))
    return out


def _redact_embedded(text: str, depth: int) -> str:
    """Redact a command line embedded in one argument, changing only the words at fault."""
    import shlex

    spans = [m.span() for m in _compiled()[4].finditer(text)]
    raw = [text[a:b] for a, b in spans]
    words = [_unquote(word) for word in raw]
    pieces = []
    last = 0
    for (a, b), before, word, after in zip(spans, raw, words, _redact_words(words, depth)):
        pieces.append(text[last:a])
        if after == word:
            pieces.append(before)
        else:
            pieces.append(shlex.quote(after) if before != word else after)
        last = b
    pieces.append(text[last:])
    return "".join(pieces)


def _unquote(word: str) -> str:
    """A shell word without its quotes (``'--api-key=x'`` gives ``--api-key=x``), if it has any."""
    if "'" not in word and '"' not in word:
        return word
    import shlex

    try:
        parts = shlex.split(word)
    except ValueError:  # no closing quotation
        return word
    return parts[0] if len(parts) == 1 else word


def _as_text(arg: Any) -> str:
    if isinstance(arg, str):
        return arg
    try:
        if isinstance(arg, (bytes, bytearray)):
            return os.fsdecode(bytes(arg))
        if isinstance(arg, os.PathLike):
            return os.fsdecode(arg)
        return str(arg)
    except Exception:
        return f"<{type(arg).__name__}>"


def redact_command(argv: Sequence[str]) -> str:
    """Return ``argv`` shell-quoted as one string, with secrets redacted.

    ``["train.py", "--api-key", "sk-1", "HF_TOKEN=hf_2", "--tokenizer", "bert"]`` becomes
    ``train.py --api-key '***' 'HF_TOKEN=***' --tokenizer bert``. See the module documentation
    for the full list of rules. Never raises: anything that cannot be read gives ``""``.

    :param argv: the command line, such as :data:`sys.argv`.
    """
    import shlex  # not at module import: importing tango_stepinfo stays cheap

    try:
        words = [_as_text(arg) for arg in argv]
        return shlex.join(_redact_words(words, 0))
    except Exception:
        return ""


# minimal versions; replaced by the redaction work

_SECRET_PARTS = ("password", "passwd", "passphrase", "secret", "credential")
_TOKEN_SHAPES: Optional[Pattern[str]] = None


def is_secret_name(name: str) -> bool:
    """Whether the name of an option or an environment variable looks like it holds a secret.

    The word rules of the module documentation, plus names glued into one word or ending in
    a key: a word holding ``password``, ``passwd``, ``passphrase``, ``secret`` or
    ``credential`` (``PGPASSWORD``), a word ending in ``token`` (``HFTOKEN``, not
    ``TOKENIZERS``), or a last word ``key`` or ``pwd`` after another word (``SSH_KEY``,
    ``MYSQL_PWD``).
    """
    if _is_secret_name(name):
        return True
    words = [w.lower() for w in _compiled()[0].findall(name)]
    if any(part in word for word in words for part in _SECRET_PARTS):
        return True
    if any(word.endswith("token") for word in words):
        return True
    return len(words) > 1 and words[-1] in ("key", "pwd")


def redact_text(text: str) -> str:
    """``text`` with credentials in URLs removed and well-known token shapes masked.

    Token shapes: GitHub (``ghp_...``, ``github_pat_...``), GitLab (``glpat-...``), Slack
    (``xoxb-...``), OpenAI-style ``sk-...``, Hugging Face ``hf_...`` and AWS access key ids
    (``AKIA...``) become ``***``. Never raises; anything that is not a string is returned as is.
    """
    global _TOKEN_SHAPES
    if not isinstance(text, str):
        return text
    if _TOKEN_SHAPES is None:
        _TOKEN_SHAPES = re.compile(
            r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_\w{20,}|glpat-[\w-]{20,}"
            r"|xox[abprs]-[\w-]{10,}|sk-[\w-]{20,}|hf_[A-Za-z0-9]{20,}|AKIA[0-9A-Z]{16})\b"
        )
    return _TOKEN_SHAPES.sub(MASK, _strip_url_credentials(text))
