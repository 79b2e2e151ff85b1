"""Redaction of secrets from the strings a record captures: remote URLs and the command line.

Records are written to shared places and read by other people, so the two strings in them
that commonly carry credentials are cleaned when they are captured: ``environment.command``
(through :func:`redact_command`) and ``environment.git.remote`` (through :func:`redact_url`).
``config`` and ``metadata`` are the user's own data and are never changed. Engines may apply
the functions to their own strings (:func:`redact_text` for free text such as a traceback or an
environment variable's value; :func:`is_secret_name` to decide whether a variable may be
recorded at all). None of them ever raises. A redacted value becomes ``***`` (``MASK``).
The rules, with examples of what is redacted and what is kept, are one table in the security
page of the documentation; in brief:

**Secret-looking names** (:func:`is_secret_name`). A name is split into lowercase words at
every ASCII character that is not a letter or digit, between letters and digits, and at case
changes (``apiKey`` and ``APIKey`` give ``api`` + ``key``). It is secret-looking when a word is
one of ``_SECRET_WORDS`` (``token``, ``auth``, ``credentials`` ...), or holds ``password``,
``passwd`` or ``secret``, or ends with ``token``, or is ``pass`` / ``pwd`` as the last word
(``DB_PASS``, ``MYSQL_PWD``; ``PWD`` alone is the working directory), or is ``key`` after a
word that does not name a data field (``--wandb-key``, ``AZURE_STORAGE_KEY``; not ``--key``,
``--sort-key``, ``--ssh-key``, ``--text-key``), or two neighbouring words are ``pass`` +
``word``, ``pass`` + ``phrase`` or ``pass`` + ``code``. It is not secret-looking when its last
word names something about the secret rather than the secret itself (``--password-file``,
``--api-key-env``, ``--secret-name``, ``--auth-type``, ``--token-limit``), when its first word
negates (``--no-auth``), or when ``token`` follows a tokenizer word (``--pad-token``,
``--eos_token``). Whole words only: ``--tokenizer``, ``--max-tokens``, ``--author`` and
``--keyboard`` are not secret-looking.

**Free text** (:func:`redact_text`, applied to every argument of a command line too):
credentials in URLs (``scheme://user:password@host`` becomes ``scheme://host``; scp-style
``git@host:org/repo.git`` holds no secret), ``user:***@host`` without a scheme when the host
is a host name with a top-level domain, ``localhost`` or an IPv4 address, or has a numeric
port (not ``image:tag@sha256:...``, ``mailto:x@host``), and the secret paths of Slack,
Discord and Teams webhooks, options with a secret-looking name and their value
(``run with --token ***``), Python's ``os.environ["TOKEN"] = "***"``,
``os.putenv("TOKEN", "***")`` and ``['x', '--token', '***']`` with a secret-looking quoted
name, ``NAME=value``, ``NAME: value`` and ``"NAME": "value"`` pairs with a secret-looking
name (query strings ``?token=...&sig=...``, in which ``key``, ``pwd`` and ``pw`` count as
secret-looking too when the query string follows a URL or is a form's body:
``https://h/x?key=***``, path parameters ``https://h/api;key=***``, not
``sed 's/?key=//'``; a parameter's name is percent-decoded to decide, ``?%6Bey=***``, and an
array's name is secret-looking when its name or a part in brackets is, ``?key[]=***``,
``?auth[token]=***``; ``key=value;`` connection strings, JSON, HTTP headers such as
``Authorization: Bearer ***``),
well-known key shapes (GitHub, GitLab, Slack, AWS, OpenAI, Hugging Face, Google, JWTs ...) and
the bodies of PEM private key blocks.

**The command line** (:func:`redact_command`), argument by argument: ``--name=VALUE`` and
``--name VALUE`` with a secret-looking name (one or two dashes, typographic dashes too) hide
the value, unless the next argument starts with ``-`` or is a boolean (``True``, ``no`` ...;
any other argument after a secret-looking switch is hidden: the safe direction);
``NAME=VALUE`` with a secret-looking name hides the value, also inside an option
(``--env=DB_PASS=***``); the password options of well-known tools are hidden
(``mysql -p***``, ``sshpass -p ***``, ``curl -u user:***``, ``sqlplus user/***@db``,
``gh secret set X --body ***``, ``npm config set NAME ***``, ``htpasswd -b FILE USER ***``),
other one-letter options never
are (``-p 8080``); a credentials file given as a path is kept
(``GOOGLE_APPLICATION_CREDENTIALS=/path``); an argument holding whitespace is read as an
embedded command line (``bash -c "..."``, up to three levels deep) and only its words at
fault are replaced (``NAME=two words`` is one value, unless it reads as a command line:
`` -``, ``;``, ``&&``, ``|`` or a newline in it). Arguments that are not strings are converted
with :func:`os.fsdecode` (bytes, paths) or :class:`str`. The result is the arguments
shell-quoted and joined with spaces, as :func:`shlex.join` gives them.

All of it runs in time linear in the input: the few regular expressions are compiled on
first use, start only at token boundaries and never rescan a run of characters they failed on.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Match, Optional, Pattern, Sequence, Tuple

__all__ = ["MASK", "is_secret_name", "redact_command", "redact_text", "redact_url"]

MASK = "***"
"""What a redacted value is replaced with."""

# --- secret-looking names ------------------------------------------------------------------------

_SECRET_WORDS = frozenset(
    (
        "password", "passwd", "passphrase", "passcode", "secret", "secrets", "token", "auth",
        "authorization", "credential", "credentials", "creds", "bearer", "sig", "signature",
        "apikey", "accesskey", "secretkey", "privatekey", "authkey", "masterkey", "accountkey",
        "encryptionkey", "licensekey", "passkey", "storepass", "keypass", "passin", "passout",
        "cookie", "jwt",
        "contrasena", "contraseña",
    )
)  # fmt: skip
_SECRET_PAIRS = frozenset((("pass", "word"), ("pass", "phrase"), ("pass", "code")))
# Words whose only meaning is "a file of credentials": a path as their value is kept.
_CREDENTIAL_WORDS = frozenset(("credential", "credentials", "creds"))
# A last word that names something about the secret, not the secret.
_HARMLESS_TAILS = frozenset(
    (
        "file", "files", "path", "paths", "dir", "folder", "name", "names", "env", "var", "type",
        "kind", "limit", "limits", "count", "length", "len", "size", "mode", "method", "methods",
        "scheme", "url", "uri", "endpoint", "host", "port", "format", "ttl", "timeout", "expiry",
        "expires", "expiration", "lifetime", "version", "level", "helper", "store", "provider",
        "prefix", "algorithm", "error", "exception", "warning", "enabled", "disabled", "field",
        "fields", "column", "columns", "col", "jar", "issuer", "audience", "budget", "ids",
        "dropout", "dim", "dims", "heads", "norm", "figs",
    )
)  # fmt: skip
# A first word that makes the option a switch.
_NEGATIONS = frozenset(("no", "skip", "disable", "without", "ignore"))
# ``token`` after one of these is a tokenizer's special token (``--pad-token [PAD]``).
_TOKENIZER_WORDS = frozenset(
    (
        "pad", "eos", "bos", "unk", "sep", "cls", "mask", "start", "end", "begin", "stop",
        "special", "image", "audio", "video", "placeholder", "eot", "decoder",
    )
)  # fmt: skip
# ``key`` after one of these names a field, a column or a public key, not a secret.
_FIELD_WORDS = frozenset(
    (
        "sort", "order", "primary", "foreign", "unique", "partition", "cluster", "composite",
        "cache", "group", "hash", "dict", "join", "lookup", "map", "index", "object", "row",
        "range", "shard", "routing", "dedup", "idempotency", "public", "pub", "ssh", "gpg", "pgp",
        "host", "hot", "shortcut", "input", "output", "text", "label", "labels", "image", "audio",
        "video", "prompt", "target", "metric", "split", "data", "field", "column", "feature",
        "id", "answer", "question", "context", "response", "instruction", "reward", "score",
        "batch", "sample", "example", "source", "result", "state", "config", "model", "param",
        "node", "step", "run", "task", "time", "event", "message", "value", "name", "s3", "no",
    )
)  # fmt: skip
# Cheap first test: a name holding none of these (lowercased) is never secret-looking.
_STEMS = (
    "pass", "pw", "secret", "token", "auth", "key", "cred", "bearer", "sig", "contrase", "cookie",
    "jwt",
)  # fmt: skip
_NOT_SECRET, _SECRET, _CREDENTIALS = 0, 1, 2
_LONG_NAME = 200  # longer names holding a stem are taken as secret-looking without splitting

_kinds: Dict[str, int] = {}  # name -> kind, bounded (cleared when full)
_separators: Dict[int, str] = {}  # ASCII punctuation -> space, built on first use


def _words(name: str) -> List[str]:
    """The lowercase words of a short name (see the module documentation)."""
    if not _separators:
        _separators.update({c: " " for c in range(128) if not chr(c).isalnum()})
    words: List[str] = []
    for chunk in name.translate(_separators).split():
        if chunk.isalpha() and (chunk.islower() or chunk.isupper() or chunk[1:].islower()):
            words.append(chunk.lower())
        elif chunk.isdigit():
            words.append(chunk)
        else:  # mixed: split at letter/digit changes and case changes
            start, n = 0, len(chunk)
            for i in range(1, n):
                a, b = chunk[i - 1], chunk[i]
                if (
                    a.isdigit() != b.isdigit()
                    or (a.islower() and b.isupper())
                    or (a.isupper() and b.isupper() and i + 1 < n and chunk[i + 1].islower())
                ):
                    words.append(chunk[start:i].lower())
                    start = i
            words.append(chunk[start:].lower())
    return words


def _kind_of_words(words: List[str]) -> int:
    if not words:
        return _NOT_SECRET
    if len(words) > 1 and (words[0] in _NEGATIONS or words[-1] in _HARMLESS_TAILS):
        return _NOT_SECRET
    found = _NOT_SECRET
    last = len(words) - 1
    for i, word in enumerate(words):
        prev = words[i - 1] if i else ""
        if word in _SECRET_WORDS:
            if word == "token" and prev in _TOKENIZER_WORDS:
                continue
            if word not in _CREDENTIAL_WORDS:
                return _SECRET
            found = _CREDENTIALS
        elif (
            "password" in word
            or "passwd" in word
            or ("secret" in word and "secretar" not in word)  # not --secretary
            or (word.endswith("token") and len(word) > 5)  # authtoken, apitoken
            or (word == "pass" and i == last)  # DB_PASS, --pass
            or (word == "pwd" and i == last and i > 0)  # MYSQL_PWD, not PWD
            or (word == "key" and i > 0 and prev not in _FIELD_WORDS)  # --wandb-key
            or (prev, word) in _SECRET_PAIRS
        ):
            return _SECRET
    return found


def _secret_kind(name: str) -> int:
    """``_SECRET``, ``_CREDENTIALS`` (secret-looking, but a path as its value is kept) or 0."""
    kind = _kinds.get(name)
    if kind is None:
        low = name.lower()
        if not any(stem in low for stem in _STEMS):
            kind = _NOT_SECRET
        elif len(name) > _LONG_NAME:
            kind = _SECRET
        else:
            kind = _kind_of_words(_words(name))
        if len(_kinds) > 4096:
            _kinds.clear()
        _kinds[name] = kind
    return kind


def is_secret_name(name: str) -> bool:
    """Whether ``name`` (an option, a variable, a key) looks like it names a secret.

    ``HF_TOKEN``, ``--db-password``, ``wandb.api_key``, ``MYSQL_PWD``, ``NGROK_AUTHTOKEN`` and
    ``AZURE_STORAGE_KEY`` do; ``--tokenizer``, ``--max-tokens``, ``--password-file``,
    ``--pad-token``, ``PWD`` and ``KEY`` do not. The rule is in the module documentation.
    Never raises: anything that is not a string gives ``False``.

    :param name: the name, with or without leading dashes.
    :returns: ``True`` when values under this name should not be recorded.
    """
    if not isinstance(name, str):
        return False
    try:
        return _secret_kind(name.lstrip("-+")) != _NOT_SECRET
    except Exception:  # pragma: no cover - a bug must not stop a record; be safe
        return True


# --- free text -----------------------------------------------------------------------------------

# Compiled on first use (importing tango_stepinfo must stay cheap; a typical command line needs
# none of them): about 0.1 to 1 ms each on a 2-CPU VM (the pair expression 0.7 ms, 0.5 before
# it took auth schemes and tested key and pw apart; median of 21, CPU time, loaded VM).
_patterns: Dict[str, Pattern[str]] = {}
# Whether a name may be secret-looking, tested where it starts (after its dashes): it holds a
# stem (as _STEMS), but "key" and "pw" count only after its first letter ("--key", "KEY1" and
# "keys" are never secret-looking: "key" is, after another word, and "pwd" as a last word),
# or as a URL parameter's whole name after "?", "&" or ";" (a path parameter, or "&amp;" in
# HTML); "pw" then only as "pwd" (MYSQL_PWD).
# So the shortest names that hold a stem and are not secret-looking ("key=", "pw=", "key1=",
# "apw=" repeated) are not matched at all: those left ("sigs=") hold 4 letters at least.
# Case-insensitive with (?ai:...): character classes ([Pp][Aa]...) let the matcher skip a
# branch by its first character, but compile 2.5 times slower (2.2 ms instead of 0.9 for the
# pair expression), and a first call must stay cheap. The first letter tested on its own
# (rather than by a lookahead excluding key and pw) keeps names that are secret-looking as
# fast as before ("sig=a&" repeated: 13.6 ms instead of 15.3 for the expression alone).
_STEMS_FIRST = r"(?ai:pass|s(?:ecret|ig)|token|auth|c(?:red|o(?:okie|ntrase))|bearer|jwt)"
_STEMS_LATER = r"(?ai:pass|pwd|s(?:ecret|ig)|token|auth|key|c(?:red|o(?:okie|ntrase))|bearer|jwt)"
_STEM_CHECK = (
    r"(?=-{0,2}(?:" + _STEMS_FIRST + r"|(?<=[?&;])(?ai:key|pw)"
    r"|[A-Za-z_][A-Za-z0-9_.\-]*?" + _STEMS_LATER + "))"
)
# In an embedded command line, "--pwd" is a password too (see _option_kind).
_OPTION_STEM_CHECK = (
    r"(?=" + _STEMS_FIRST + r"|(?ai:pwd)|[A-Za-z_][A-Za-z0-9_.\-]*?" + _STEMS_LATER + ")"
)
# An auth scheme and its token as one value (as the "token" expression's first branch, but
# without "=", ":", "{", "[" or a backslash, like any value the pair expression takes); the
# first test lets any other value skip it at once
_SCHEME_VALUE = r"""(?=[BbDdTt])(?ai:basic|bearer|token|digest)[ \t]+[^\s;&"'<>=:{\[\\]+"""
# A URL without a scheme, up to its parameters: a host name with a top-level domain, an
# IPv4 address or localhost, a one-word host name with a port (a service: api-svc:8080) or an
# IPv6 address in brackets, then a port and a path; or an absolute path. The path ends at the
# first "?" or ";" (path parameters: /api;key=x).
_URL_HOST = (
    r"""(?:(?:[A-Za-z0-9][A-Za-z0-9.\-]*\.[A-Za-z]{2,}|[0-9]{1,3}(?:\.[0-9]{1,3}){3}|localhost"""
    r"""|[A-Za-z][A-Za-z0-9\-]*(?=:[0-9])|\[[0-9A-Fa-f:.]+\])"""
    r"""(?::[0-9]+)?(?:/[^\s"'<>`?;]*)?|/[A-Za-z0-9_~%\-][^\s"'<>`?;]*)"""
)
_SOURCES = {
    # credentials in a URL: "://", then the authority up to its last "@" (the authority cannot
    # hold "/", so the runs scanned from two "://" never overlap)
    "credentials": r"""://[^/?#\s"'<>\\]*@""",
    # a NAME holding a stem, followed by = or : (quoted or not, after up to two dashes). Starts
    # only where a name cannot continue, so a run of name characters is scanned from one start.
    # A value that cannot hold a pair (no "=" or ":", and its end is not a name before a quote
    # or spaces and "=" or ":"), that is not an auth scheme followed by a space, and that ends
    # where a token ends, is matched too (group 4): the common case of a
    # query string then costs one match. Any other value is read after the match, so that the
    # value of a name that is not secret-looking is searched for pairs too (each character is
    # read at most twice). The first lookahead lets the search skip characters that cannot start
    # a name. "?token=a&" repeated: 1.4 us a pair instead of 2.6; a value the group cannot take
    # ("key=" repeated) costs about 0.15 us more a pair (Python 3.11, loaded 2-CPU VM, A/B).
    # An auth scheme and its token (token=Bearer x) are taken too: 3.5 us a pair less.
    "pair": r"""(?<![A-Za-z0-9_.\-])(?=[A-Za-z_\-])"""
    + _STEM_CHECK
    + r"""(-{0,2}[A-Za-z_][A-Za-z0-9_.\-]*)(?:\\?["'])?[ \t]*([=:])([ \t]*)"""
    r"""(?:(?=("""
    + _SCHEME_VALUE
    + r"""|[^\s;&"'<>=:{\[\\]+))\4(?=[;&<>]|\Z|[^\S \t]|["'](?![ \t]*[=:])"""
    r"""|[ \t](?![ \t]*[=:])(?<!(?i:basic|token)[ \t])(?<!(?i:bearer|digest)[ \t])))?""",
    # the query strings of a text (see _query_strings): from a URL's first "?" or ";" (group
    # q) or a form's first name, to the token's end. A token starts after whitespace, a
    # quote, "<", ">" or a backquote; the expression starts only there (with that character),
    # and from each start it reads the token a few times at most (runs are taken whole by
    # atomic groups, (?=(?P<a>...))(?P=a), so a failed search gives nothing back character by
    # character), and only once when it holds neither "?" nor "=" (most tokens). A URL
    # without a scheme is tried first (after a form, which fails at once on a URL):
    # "h.io/?key=a " repeated, 0.55 us a token instead of 0.9 (Python 3.11, A/B)
    "query": r"""[\s"'<>`](?=[^\s"'<>`?=]*[?=])"""
    r"""(?:[A-Za-z0-9_.%\-\[\]]+=[^\s"'<>`?]*(?![^\s"'<>`])|(?:"""
    + _URL_HOST
    + r"""|(?=(?P<a>[^\s"'<>`?:]*))(?P=a)(?::(?!//)(?=(?P<b>[^\s"'<>`?:]*))(?P=b))*://"""
    r"""[^\s"'<>`?;]*|(?=(?P<c>[^\s"'<>`?]*[=(]))(?P=c)"""
    + _URL_HOST
    + r""")(?P<q>[?;]))[^\s"'<>`]*""",
    # credentials without a scheme, "user:password@host": from the ":" after a user name
    # (not a URI scheme that takes "user@host", as mailto:, nor a search field, as from:;
    # grouped by length: a lookbehind has one width), a password without "/", ":", "@"
    # or whitespace, then "@" and a host name with a top-level domain, localhost, an IPv4
    # address or a one-word host with a numeric port (git@github.com:org/x.git holds no ":"
    # before its "@"; in image:tag@sha256:<hex> the host is neither). The match is ":" and the
    # password, so that the replacement is a plain string (no Python call a match: " a:b@h.io"
    # repeated, 9 ms at 128 KiB instead of 28 with the user in a group); passwords run from
    # one ":" to the next at most, so each character is read from one start.
    "userinfo": r""":(?<=[A-Za-z0-9_.~%+\-]:)(?<!:[0-9][0-9]:)"""  # not 12:30:45@host
    + "".join(
        rf"(?<!(?<![A-Za-z0-9_.~%+\-])(?i:{words}):)"  # the word where a token starts
        for words in (
            "mailto|author",
            "email",
            "from|mail|xmpp|acct|pres|news|sips",
            "bcc|sip|tel",
            "to|cc|im",
        )
    )
    + r"""[^\s"'<>`/:@]+(?=@(?:[A-Za-z0-9][A-Za-z0-9\-]*"""
    r"""(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z][A-Za-z0-9\-]*(?::[0-9]{1,5})?|localhost(?::[0-9]{1,5})?"""
    r"""|[0-9]{1,3}(?:\.[0-9]{1,3}){3}(?::[0-9]{1,5})?|[A-Za-z0-9][A-Za-z0-9\-]*:[0-9]{1,5})"""
    r"""(?![A-Za-z0-9_.%@\-]))""",
    # a Python subscript assignment or call with a quoted name holding a stem, and a string
    # literal as its value: os.environ["TOKEN"] = "x" (group 2: the name) or a call of
    # setdefault, putenv, getenv, setenv, get, pop or set, os.putenv("TOKEN", "x") (group 4;
    # not logger.info("auth", "ok"); looked for behind the "(", so that every alternative
    # starts with a character the search skips to: "['TOKEN']=" repeated, 11 ms at 128 KiB
    # with the names first, 5 after), or an option and its value in a list of arguments, as
    # Python prints a command line (['x', '--token', 'v'] in a CalledProcessError; group 6),
    # then the value between its quotes (group 7 or 8). A
    # value ends at its closing quote (an escaped quote is skipped) on the same line; it is
    # read once, as a whole (a lookahead then a backreference: "['TOKEN']='" then "a"
    # repeated without an end cost 54 ms at 128 KiB as a repeated group, 3 times 64 KiB's).
    "subscript": r"""(?:\[[ \t]*[rRbBuU]{0,2}(["'])"""
    + _OPTION_STEM_CHECK
    + r"""([A-Za-z_][A-Za-z0-9_.\-]*)\1[ \t]*\][ \t]*=(?!=)"""
    r"""|\((?:(?<=(?<![A-Za-z0-9_])(?:get|pop|set)\()|(?<=(?<![A-Za-z0-9_])setdefault\()"""
    r"""|(?<=(?<![A-Za-z0-9_])(?:putenv|getenv|setenv)\())[ \t]*[rRbBuU]{0,2}(["'])"""
    + _OPTION_STEM_CHECK
    + r"""([A-Za-z_][A-Za-z0-9_.\-]*)\3[ \t]*,"""
    r"""|[\[,][ \t]*(["'])--?"""
    + _OPTION_STEM_CHECK
    + r"""([A-Za-z_][A-Za-z0-9_.\-]*)\5[ \t]*,)[ \t]*[rRbBuUfF]{0,2}"""
    r"""(?:"(?=([^"\\\n]*(?:\\.[^"\\\n]*)*))\7"|'(?=([^'\\\n]*(?:\\.[^'\\\n]*)*))\8')""",
    # a parameter name that the pair expression cannot read, one holding "%" (percent-encoded:
    # ?%6Bey=x, ?api%5Fkey=x) or "[" (an array: ?key[]=x, ?auth[token]=x), after "?", "&",
    # ";" or where a token starts (group 1; a space is put before the text), with its value
    # (group 3). A name ends at the next "?", "&", ";", "=", "#" or token separator, so the
    # names read from two starts never overlap.
    "param": r"""([?&;\s"'<>`])(?=[^\s"'<>`?&;=#%\[]*[%\[])([^\s"'<>`?&;=#]+)="""
    r"""([^\s;&"'<>`]*)""",
    # a value after ": " (to the end of the line), or a scheme and a token, or a token
    "line": r"""[^\r\n"'}]*""",
    "token": r"""(?i:basic|bearer|token|digest)[ \t]+[^\s;&"'<>]+|[^\s;&"'<>]*""",
    # an option whose name holds a stem, in an embedded command line, with its value
    "option": r"""(?<![^\s"'`(;&|])([\-\u2010-\u2015\u2212]{1,2})"""
    + _OPTION_STEM_CHECK
    + r"""([A-Za-z_][A-Za-z0-9_.\-]*)"""
    r"""(?:=(\\?"[^"]*"|\\?'[^']*'|[^\s"';&|]+)"""
    r"""|[ \t]+(\\?"[^"]*"|\\?'[^']*'|[^\s"';&|\-\u2010-\u2015\u2212][^\s"';&|]*))?""",
    # a shell word of an embedded command line (quotes kept), or a lone quote
    "word": r"""((?:[^\s"']+|"[^"]*"|'[^']*')+|["'])""",
    "space": r"(\s+)",
    "segment": r"""([^"']+)|"([^"]*)"|'([^']*)'|(["'])""",
    # webhook URLs whose path is the secret (gitleaks' slack-webhook-url, discord webhooks,
    # Microsoft Teams): the host and the fixed part of the path are kept
    "webhook": r"""(hooks\.slack\.com/(?:services|workflows|triggers)/"""
    r"""|discord(?:app)?\.com/api/webhooks/[0-9]+/|webhook\.office\.com/webhookb2/)"""
    r"""[A-Za-z0-9_\-+/@%.]+""",
}
# Well-known key shapes (from the gitleaks and detect-secrets rule sets): a literal prefix, then
# the rest. Each is one pattern starting with its literal (found by a fast search), run only when
# the prefix is in the text, and matching only where the prefix does not continue a token.
_KEY_SHAPES = {
    "gh": r"[pousr]_[A-Za-z0-9]{30,}",  # GitHub tokens: ghp_, gho_, ghu_, ghs_, ghr_
    "github_pat_": r"[A-Za-z0-9_]{30,}",
    "gl": r"(?:pat|ptt|rt|dt)-[A-Za-z0-9_\-]{20,}",  # GitLab
    "xox": r"[abposre]-[A-Za-z0-9\-]{10,}",  # Slack
    "xapp-": r"[A-Za-z0-9\-]{10,}",
    "AKIA": r"[A-Z0-9]{16}(?![A-Za-z0-9])",  # AWS access key ids
    "ASIA": r"[A-Z0-9]{16}(?![A-Za-z0-9])",
    "ABIA": r"[A-Z0-9]{16}(?![A-Za-z0-9])",
    "ACCA": r"[A-Z0-9]{16}(?![A-Za-z0-9])",
    "AIza": r"[A-Za-z0-9_\-]{35}",  # Google API keys
    "sk-": r"[A-Za-z0-9_\-]{20,}",  # OpenAI, Anthropic
    "sk_": r"(?:live|test)_[A-Za-z0-9]{16,}",  # Stripe
    "rk_": r"(?:live|test)_[A-Za-z0-9]{16,}",
    "hf_": r"[A-Za-z0-9]{30,}",  # Hugging Face
    "npm_": r"[A-Za-z0-9]{36}",
    "pypi-": r"[A-Za-z0-9_\-]{50,}",
    "dop_v1_": r"[a-f0-9]{64}",  # DigitalOcean
    "shp": r"(?:at|ca|pa|ss)_[a-fA-F0-9]{32}",  # Shopify
    "hvs.": r"[A-Za-z0-9_\-]{24,}",  # HashiCorp Vault
    "dapi": r"[a-f0-9]{32}",  # Databricks
    "AGE-SECRET-KEY-1": r"[A-Z0-9]{58}",
    "ya29.": r"[A-Za-z0-9_\-]{20,}",  # Google OAuth access tokens
    "LTAI": r"[A-Za-z0-9]{20}(?![A-Za-z0-9])",  # Alibaba Cloud access key ids
    "glsa_": r"[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}",  # Grafana service accounts
    "glc_eyJ": r"[A-Za-z0-9+/]{30,}={0,2}",  # Grafana Cloud (base64 of JSON)
    "lin_api_": r"[A-Za-z0-9]{40}",  # Linear
    "dckr_": r"(?:pat|oat)_[A-Za-z0-9_\-]{24,}",  # Docker Hub
    "rubygems_": r"[a-f0-9]{48}",
    "doo_v1_": r"[a-f0-9]{64}",  # DigitalOcean OAuth and refresh tokens
    "dor_v1_": r"[a-f0-9]{64}",
    # a run then a dot: the prefix must not continue a run of the same characters either
    "eyJ": r"[A-Za-z0-9_\-]{7,}\.eyJ[A-Za-z0-9_\-]{7,}\.[A-Za-z0-9_\-]*",  # JWTs
    "SG.": r"[A-Za-z0-9_\-]{16,}\.[A-Za-z0-9_\-]{16,}",  # SendGrid
}
_MIN_KEY = 15  # no key shape is shorter (xoxb- and xapp- with 10 characters)
_AUTH_SCHEMES = frozenset(
    ("basic", "bearer", "token", "digest", "negotiate", "ntlm", "oauth", "bot", "aws4-hmac-sha256")
)


def _pattern(name: str) -> Pattern[str]:
    pattern = _patterns.get(name)
    if pattern is None:
        import re

        if name in _KEY_SHAPES:
            before = "A-Za-z0-9_\\-" if name in ("eyJ", "SG.") else "A-Za-z0-9"
            prefix = re.escape(name)
            source = f"{prefix}(?<![{before}]{prefix}){_KEY_SHAPES[name]}"
        else:
            source = _SOURCES[name]
        pattern = _patterns[name] = re.compile(source)
    return pattern


def _is_path(value: str) -> bool:
    return value.startswith(("/", "./", "../", "~")) or value[1:3] in (":\\", ":/")


def _strip_url_credentials(text: str) -> str:
    return _pattern("credentials").sub("://", text)


def _redact_pem(text: str) -> str:
    pieces: List[str] = []
    last = 0
    i = text.find("-----BEGIN ")
    while i != -1:
        header_end = text.find("-----", i + 11, i + 80)
        if header_end == -1:
            i = text.find("-----BEGIN ", i + 11)
            continue
        if "PRIVATE KEY" not in text[i + 11 : header_end]:
            i = text.find("-----BEGIN ", header_end)
            continue
        body = header_end + 5
        end = text.find("-----END", body)
        if end == -1:
            end = len(text)
        pieces.append(text[last:body])
        pieces.append(MASK)
        last = end
        i = text.find("-----BEGIN ", end)
    if not pieces:
        return text
    pieces.append(text[last:])
    return "".join(pieces)


# Names that are secret-looking only as a query parameter (``?key=``, ``&pwd=``, ``&pw=``): as
# a variable, an option or a field, KEY and PWD name other things. The pair expression matches
# them bare only after "?" or "&".
_QUERY_NAMES = frozenset(("key", "pwd", "pw"))
_QUERY_SECRET = 3
_pair_kinds: Dict[str, int] = {}  # name as matched (dashes included) -> kind, bounded


def _pair_kind(name: str) -> int:
    """The kind of a pair's name, or ``_QUERY_SECRET``: secret-looking in a query string."""
    kind = _secret_kind(name.lstrip("-"))
    if not kind and name.lower() in _QUERY_NAMES:
        kind = _QUERY_SECRET
    if len(_pair_kinds) > 4096:
        _pair_kinds.clear()
    _pair_kinds[name] = kind
    return kind


def _query_strings(text: str) -> List[Tuple[int, int]]:
    """The query strings of ``text``: ``(start, end)`` of each, in order, where ``key``,
    ``pwd`` and ``pw`` after ``?``, ``&`` or ``;`` are secret-looking.

    A token (a run of characters other than whitespace, quotes, ``<``, ``>`` and backquotes)
    holds a query string after its first ``?`` or ``;`` (path parameters, ``/api;key=x``) when
    what comes before it is a URL: it holds ``://``, or it (or what follows its last ``=`` or
    ``(``) is a host name with a top-level domain, an IPv4 address, ``localhost``, a one-word
    host name with a port or an IPv6 address in brackets (then a port and a path), or an
    absolute path (``GET /cgi?pwd=x``). A token without ``?`` that starts with ``name=`` is a
    form's body (``user=ada&pwd=x``).
    ``sed 's/?key=//'``, ``grep 'a?key=b'`` hold none.
    """
    # The expression starts with the separator before a token (a space is put before the
    # text): the search then skips to the next separator in C, not trying each character
    # ("/" repeated, then "?key=1": 8 ms instead of 11).
    return [
        (m.start() if m.start(4) == -1 else m.start(4) - 1, m.end() - 1)  # 4: the "?" or ";"
        for m in _pattern("query").finditer(" " + text)
    ]


class _Queries:
    """The query strings of a text (:func:`_query_strings`, found when first asked for), walked
    in order by :meth:`move`."""

    __slots__ = ("_left", "_text")

    def __init__(self, text: str) -> None:
        self._text = text
        self._left: Optional[List[Tuple[int, int]]] = None

    def move(self, at: int) -> Tuple[int, int]:
        """``(start, end)`` of the first query string that ends after ``at`` (``at`` only grows
        from call to call); past the last one, the end of the text twice."""
        if self._left is None:
            self._left = _query_strings(self._text)[::-1]
        left = self._left
        while left and left[-1][1] <= at:
            left.pop()
        return left[-1] if left else (len(self._text), len(self._text))


def _kept(value: str, kind: int) -> bool:
    """Whether the value of a secret-looking pair, parameter or Python call of ``kind`` stays:
    empty, hidden already, a boolean, or a credentials file's path."""
    return (
        not value
        or value == MASK
        or (len(value) < 6 and value.lower() in _BOOLEANS)
        or (kind == _CREDENTIALS and _is_path(value))
    )


_QUOTES = frozenset(('"', "'", "\\"))  # what may open a quoted value
_QUOTE_MARKS = frozenset(('"', "'", '\\"', "\\'"))


def _value_span(text: str, m: Match[str], name: str) -> Optional[Tuple[int, int]]:
    """Where the value of a pair starts and ends when the pair expression did not take it (a
    quoted value, a value holding spaces, ``Name: value`` to the end of the line), or None
    when there is nothing to hide (an object, a lone backslash)."""
    separator, spaces, value = m.group(2, 3, 4)
    end = m.end()
    start = end if value is None else end - len(value)
    first = text[start : start + 1]
    if first in _QUOTES:
        quote = text[start : start + 2] if first == "\\" else first
        if quote not in _QUOTE_MARKS:
            return None  # a backslash, not an escaped quote
        start += len(quote)
        end = text.find(quote, start)
        if end == -1:
            end = text.find("\n", start)
            end = len(text) if end == -1 else end
        return start, end
    if first in ("{", "["):
        return None  # an object: its own pairs are found on their own
    by_line = spaces and separator == ":"  # "Name: value", as in a header or YAML
    end = _pattern("line" if by_line else "token").match(text, start).end()  # type: ignore[union-attr]
    value = text[start:end]
    if by_line or " " in value or "\t" in value:
        value = value.rstrip()
        end = start + len(value)
        scheme, space, _ = value.replace("\t", " ").partition(" ")
        if space and scheme.lower() in _AUTH_SCHEMES and "auth" in name.lower():
            start += len(scheme) + 1  # Authorization: Bearer ***
    return start, end


def _percent_decoded(name: str) -> str:
    """``name`` with its ``%XX`` escapes decoded (as UTF-8; a bad escape is kept)."""
    first, *rest = name.split("%")
    out = bytearray(first.encode("utf-8", "surrogatepass"))
    for piece in rest:
        code = piece[:2]
        hexadecimal = len(code) == 2 and all(c in "0123456789abcdefABCDEF" for c in code)
        out.append(int(code, 16) if hexadecimal else 37)  # 37: "%", a bad escape kept
        out += piece[2 if hexadecimal else 0 :].encode("utf-8", "surrogatepass")
    return out.decode("utf-8", "replace")


_param_kinds: Dict[str, int] = {}  # a parameter's name as written -> kind, bounded


def _param_kind(name: str) -> int:
    """The kind of a parameter's name holding ``%`` or ``[``, as :func:`_pair_kind` gives it:
    decoded, then the kind of the name before its brackets or of a part in brackets,
    whichever hides most (``auth[token]``, ``key[]``, ``api%5Fkey``)."""
    kind = _param_kinds.get(name)
    if kind is None:
        decoded = _percent_decoded(name) if "%" in name else name
        base, _, brackets = decoded.partition("[")
        kinds = {
            _pair_kind(part) for part in (base, *brackets.replace("]", "[").split("[")) if part
        }
        kind = next((k for k in (_SECRET, _CREDENTIALS, _QUERY_SECRET) if k in kinds), _NOT_SECRET)
        if len(_param_kinds) > 4096:
            _param_kinds.clear()
        _param_kinds[name] = kind
    return kind


def _redact_params(text: str) -> str:
    """Hide the values of parameters whose name holds ``%`` or ``[`` (see "param")."""
    # As _redact_pairs: one pass, the query strings read once, when first needed, in order.
    pieces: List[str] = []
    last = 0
    kinds = _param_kinds
    queries = _Queries(text)
    query = query_end = 0  # the query string moved to last (or none)
    for m in _pattern("param").finditer(" " + text):  # positions one more than in text
        before, name, value = m.groups()
        kind = kinds.get(name)
        if kind is None:
            kind = _param_kind(name)
        if not kind:
            continue
        at = m.start(2) - 1
        if kind == _QUERY_SECRET:  # key[]=, %6Bey=: after "?", "&" or ";" in a query string
            if before not in "?&;" or text[at - 2 : at] == "&&":
                continue
            if at >= query_end:
                query, query_end = queries.move(at)
            if at <= query:
                continue
        if _kept(value, kind):
            continue
        start = m.start(3) - 1
        pieces += (text[last:start], MASK)
        last = start + len(value)
    if not pieces:
        return text
    pieces.append(text[last:])
    return "".join(pieces)


def _redact_pairs(text: str) -> str:
    """Hide the values of ``NAME=value``, ``NAME: value`` and ``"NAME": "value"`` pairs."""
    # The loop body runs once per pair whose name holds a stem: a query string of such pairs
    # only (``?token=a&token=a&...``) runs it once per 9 characters, so it does the least work
    # it can (one call per match for the span, a name cache keyed by the name as matched).
    pieces: List[str] = []
    last = 0
    kinds = _pair_kinds
    queries = _Queries(text)
    query = query_end = 0  # the query string moved to last (or none)
    for m in _pattern("pair").finditer(text):
        at = m.start()
        if at < last:
            continue  # inside a value already hidden
        name, separator, spaces, value = m.groups()
        kind = kinds.get(name)
        if kind is None:
            kind = _pair_kind(name)
        if not kind:
            continue
        if kind == _QUERY_SECRET:  # after "?", "&" or "&amp;" (the expression takes no other)
            if at >= query_end:
                query, query_end = queries.move(at)
            if separator != "=" or at <= query or text[at - 2 : at] == "&&":
                continue  # key: x, sed 's/?key=//', cd x&&key=x: not in a query string
        if value is not None and not (spaces and separator == ":"):
            end = m.end()  # a token, matched already
            start = end - len(value)
            if (" " in value or "\t" in value) and "auth" in name.lower():
                scheme = value.replace("\t", " ").partition(" ")[0]
                start += len(scheme) + 1  # Authorization=Bearer ***
                value = text[start:end]
        else:
            span = _value_span(text, m, name)
            if span is None:
                continue
            start, end = span
            value = text[start:end]
        if _kept(value, kind):
            continue
        pieces += (text[last:start], MASK)
        last = end
    if not pieces:
        return text
    pieces.append(text[last:])
    return "".join(pieces)


def _hide_userinfo(text: str) -> str:
    """Hide the password of every ``user:password@host`` without a scheme."""
    return _pattern("userinfo").sub(":" + MASK, text)


def _hide_python_value(m: Match[str]) -> str:
    """The replacement of a subscript assignment or a call (the "subscript" expression)."""
    # Called for each such shape whose name holds a stem: one groups() call ("('TOKEN', 'x') "
    # repeated: a call every 15 characters; 8 ms at 128 KiB instead of 19 with a helper).
    _, subscript, _, call, _, option, double, single = m.groups()
    value = single if double is None else double
    kind = _option_kind(option) if option else _secret_kind(subscript or call)
    if not kind or _kept(value, kind) or (option and value[0] == "-"):  # ['--token', '--x']
        return m.group(0)
    whole = m.group(0)
    return whole[: len(whole) - len(value) - 1] + MASK + whole[-1]


def _redact_text(text: str, options: bool = True) -> str:
    """The free-text rules; ``options=False`` when the options of ``text`` (a command line's
    argument holding whitespace) have been read as an embedded command line already."""
    if "PRIVATE KEY" in text:
        text = _redact_pem(text)
    if "://" in text and "@" in text:  # the expression needs both: a git remote seldom has "@"
        text = _strip_url_credentials(text)  # (its first use compiles it: 0.2 to 0.3 ms, 3.11)
    at = text.rfind("@")
    if at > 0 and text.find(":", 0, at) != -1:  # not git@host:x.git (1 ms to compile)
        text = _hide_userinfo(text)
    if "hooks.slack.com/" in text or "webhook" in text:  # with or without a scheme
        text = _pattern("webhook").sub(r"\1" + MASK, text)
    if len(text) >= _MIN_KEY:
        for prefix in _KEY_SHAPES:
            if prefix in text:
                text = _pattern(prefix).sub(MASK, text)
    python = ("'" in text or '"' in text) and (  # x["TOKEN"] = "v", f("TOKEN", "v")
        ("]" in text and "=" in text) or ("," in text and ("(" in text or "[" in text))
    )
    options = options and ("-" in text or not text.isascii()) and _has_space(text)
    pairs = "=" in text or ":" in text
    if python or options or pairs:
        low = text.lower()
        if any(stem in low for stem in _STEMS):
            if python:  # 1.2 ms to compile: only for text that may hold such a shape
                text = _pattern("subscript").sub(_hide_python_value, text)
            if options:  # run with --token x
                text = _pattern("option").sub(_hide_option, text)
            if pairs:
                text = _redact_pairs(text)
    if "=" in text and ("%" in text or "]=" in text):  # ?%6Bey=x, ?key[]=x: no stem needed
        text = _redact_params(text)
    return text


def redact_text(text: str) -> str:
    """Return free text (a traceback, an environment variable's value) with secrets replaced.

    Replaces credentials in URLs and secret query parameters, the values of ``password=...``,
    ``"password": "..."`` and ``Authorization: ...`` pairs with a secret-looking name,
    well-known key shapes (GitHub, GitLab, Slack, AWS, OpenAI, Hugging Face, Google, JWTs ...)
    and the bodies of PEM private key blocks with ``***``. Linear in the length of
    ``text``. Never raises: anything that is not a string is returned unchanged, and should a
    rule fail, the result is ``***`` alone.

    :param text: any text.
    :returns: the text with every secret found replaced.
    """
    if not isinstance(text, str):
        return text
    try:
        return _redact_text(text)
    except Exception:  # pragma: no cover - a bug must not leak the text
        return MASK


def redact_url(url: str) -> str:
    """Return ``url`` with the user name and password removed from every URL in it.

    ``https://user:token@host/x.git`` becomes ``https://host/x.git``; scp-style
    ``git@host:org/x.git`` is returned as it is (it names a user but holds no secret). Secret
    query parameters (``?token=***``, ``&sig=***``, ``X-Amz-Signature=***``) and key shapes are
    hidden as :func:`~tango_stepinfo.redact.redact_text` hides them. Never raises; anything
    that is not a string is returned unchanged.

    :param url: a URL, such as a git remote.
    :returns: the URL without credentials.
    """
    return redact_text(url)


# --- the command line ----------------------------------------------------------------------------

_DASHES = "-\u2010\u2011\u2012\u2013\u2014\u2015\u2212"
_MAX_NESTING = 3
_SHELL_SEPARATORS = frozenset((";", "&&", "||", "|", "&", "(", ")", "{", "}", "do", "then"))

# What the value of an option is, when hidden: all of it, all but a path, or the part after the
# user name (``user:***``, smbclient's ``user%***``). A value only attached (``-pX``) is _ATTACHED.
_HIDE, _HIDE_UNLESS_PATH, _HIDE_PASSWORD, _HIDE_SMB_PASSWORD, _ATTACHED = 1, 2, 3, 4, 5
_END = 0  # the tool's options end at its first positional argument (sshpass PASSWORD COMMAND)
_LOGON = "logon"  # a key of a tool's table: its first argument holding "/" is user/password@db


def _tools() -> Dict[str, Dict[str, int]]:
    tools: Dict[str, Dict[str, int]] = {}

    def add(names: str, options: Dict[str, int]) -> None:
        for name in names.split():
            tools[name] = options

    add(
        "mysql mysqldump mysqladmin mysqlimport mysqlcheck mysqlshow mysqlpump mysqlslap "
        "mariadb mariadb-dump mariadb-admin mariadb-import mariadb-check",
        {"-p": _ATTACHED},
    )
    add("sshpass", {"-p": _HIDE, "": _END})
    add("curl", {"-u": _HIDE_PASSWORD, "-U": _HIDE_PASSWORD, "--user": _HIDE_PASSWORD,
                 "--proxy-user": _HIDE_PASSWORD, "-b": _HIDE_UNLESS_PATH})  # fmt: skip
    add("redis-cli", {"-a": _HIDE})
    add("mongo mongosh mongodump mongorestore mongoexport mongoimport mongostat mongotop "
        "mongofiles", {"-p": _HIDE})  # fmt: skip
    add("sqlcmd bcp", {"-P": _HIDE})
    add("ldapsearch ldapmodify ldapadd ldapdelete ldapwhoami ldappasswd ldapcompare ldapmodrdn",
        {"-w": _HIDE})  # fmt: skip
    add("zip unzip zipcloak", {"-P": _HIDE})
    add("7z 7za 7zr 7zz", {"-p": _ATTACHED})
    add("smbclient rpcclient smbcacls smbget", {"-U": _HIDE_SMB_PASSWORD,
                                                "--user": _HIDE_SMB_PASSWORD})  # fmt: skip
    add("openssl", {"-k": _HIDE})
    add("twine", {"-p": _HIDE})
    add("ssh-keygen", {"-N": _HIDE, "-P": _HIDE})
    add("sqlplus rman expdp impdp dgmgrl", {_LOGON: _HIDE})
    return tools


_tool_table: Dict[str, Dict[str, int]] = {}
_LOGIN_PROGRAMS = frozenset(
    ("docker", "podman", "nerdctl", "buildah", "skopeo", "helm", "oras", "az", "wandb", "aws",
     "vault", "gh", "git", "npm", "yarn", "pnpm", "poetry")
)  # fmt: skip
_LOGIN_OPTIONS = {"-p": _HIDE}
_GH_SECRET_OPTIONS = {"-b": _HIDE, "--body": _HIDE}  # gh secret set NAME --body VALUE


def _how(kind: int) -> int:
    """How to hide the value of a name of this kind."""
    return _HIDE_UNLESS_PATH if kind == _CREDENTIALS else _HIDE


# The value of a switch (``--use_auth_token True``), never a secret.
_BOOLEANS = frozenset(("true", "false", "yes", "no", "on", "off", "none", "null"))


def _hidden(value: str, how: int) -> str:
    """``value`` as the value of a secret option hides it."""
    if (how == _HIDE_UNLESS_PATH and _is_path(value)) or value.lower() in _BOOLEANS:
        return value
    if how in (_HIDE_PASSWORD, _HIDE_SMB_PASSWORD):
        user, sep, password = value.partition(":" if how == _HIDE_PASSWORD else "%")
        return f"{user}{sep}{MASK}" if sep and password else value
    return MASK


def _option(word: str) -> Optional[Tuple[str, str, str, str]]:
    """``(dashes, name, "=" or "", value)`` of an option, or None."""
    n = 2 if len(word) > 1 and word[1] in _DASHES else 1
    rest = word[n:]
    if not rest or rest[0] in _DASHES:
        return None
    name, equals, value = rest.partition("=")
    if " " in name or not name.isprintable():
        return None
    return word[:n], name, equals, value


def _is_name(name: str) -> bool:
    """``[A-Za-z_][A-Za-z0-9_.-]*``, without a regular expression."""
    if not name or not name.isascii() or not (name[0].isalpha() or name[0] == "_"):
        return False
    rest = name.replace("_", "").replace(".", "").replace("-", "")
    return not rest or rest.isalnum()


def _assignment(word: str) -> Optional[str]:
    """``NAME=***`` when ``word`` is ``NAME=value`` with a secret-looking name, else None."""
    name, _, value = word.partition("=")
    if not value:
        return None
    bare = name.lstrip("+")
    if len(name) - len(bare) > 2 or not _is_name(bare):
        return None
    kind = _secret_kind(bare)
    if kind == _NOT_SECRET or (kind == _CREDENTIALS and _is_path(value)):
        return None
    return f"{name}={MASK}"


def _looks_like_command(text: str) -> bool:
    """Whether text holding whitespace reads as a command line rather than one value."""
    return " -" in text or ";" in text or "&&" in text or "|" in text or "\n" in text


def _has_space(text: str) -> bool:
    return " " in text or "\n" in text or "\t" in text or "\r" in text


def _redact_value(value: str, depth: int) -> str:
    """The value of an option that is not secret-looking (``--env=NAME=value``)."""
    if "=" in value:
        assigned = _assignment(value)
        if assigned is not None:
            return assigned
    if depth < _MAX_NESTING and _has_space(value):
        return _redact_embedded(value, depth + 1)
    return value


_HTPASSWD = frozenset("bcinmdspDvBC25r")  # the option letters of htpasswd (Apache 2.4)


class _Htpasswd:
    """The arguments of ``htpasswd`` read so far: with ``-b`` (batch mode), its third argument
    (``FILE USER PASSWORD``), or its second with ``-n`` (``USER PASSWORD``), is the password.

    Options come first, as single letters that may be grouped (``-bc``, ``-nbB``); ``-C`` and
    ``-r`` take the next argument as their value (a cost, a number of rounds).
    """

    __slots__ = ("flags", "seen", "skip")

    def __init__(self) -> None:
        self.flags = ""  # the option letters so far
        self.seen = 0  # the arguments that are not options so far
        self.skip = False  # the next word is the value of -C or -r

    def word(self, word: str) -> Optional[str]:
        """``word`` with the password hidden when it is one of htpasswd's own arguments; None
        for any other word (a separator, an option htpasswd has not, a word after its
        arguments, any word without ``-b``), which is read as in any command line: a file
        named ``htpasswd`` is no htpasswd command."""
        if word in _SHELL_SEPARATORS or word.endswith(";"):
            return None
        if word[:1] == "-":
            self.skip = False
            if self.seen or len(word) < 2 or not set(word[1:]) <= _HTPASSWD:
                return None
            letters = word[1:]
            self.flags += letters
            self.skip = "C" in letters or "r" in letters
            return word
        if self.skip:  # the cost of -C, the rounds of -r
            self.skip = False
            return word if word.isdigit() else None
        self.seen += 1
        password = 2 if "n" in self.flags else 3
        if "b" not in self.flags or self.seen > password:
            return None
        return MASK if self.seen == password else word


class _Context:
    """What the words read so far of one command line say about the next one."""

    __slots__ = ("before", "hide", "htpasswd", "last", "program", "tool")

    def __init__(self) -> None:
        self.hide = 0  # how to hide the next word (0: it is not hidden)
        self.program: Optional[str] = None
        self.tool: Optional[Dict[str, int]] = None  # the password options of a known program
        self.last = self.before = ""  # the last two words that were not options
        self.htpasswd: Optional[_Htpasswd] = None  # set while program is htpasswd

    def hidden(self) -> None:
        """Note a hidden value: as ``positional("")``, without its tests."""
        if self.tool is not None and "" in self.tool:  # sshpass -p X COMMAND ...
            self.tool = None
        self.before, self.last = self.last, ""

    def positional(self, word: str) -> None:
        """Note a word that is not an option."""
        if word in _tool_table:
            self.program, self.tool = word, _tool_table[word]
        elif word == "htpasswd":
            self.program, self.tool, self.htpasswd = word, None, _Htpasswd()
        elif word in _LOGIN_PROGRAMS:
            self.program, self.tool = word, None
        elif word == "login" and self.program in _LOGIN_PROGRAMS:
            self.tool = _LOGIN_OPTIONS
            if self.program in ("wandb", "vault"):  # wandb login KEY, vault login TOKEN
                self.hide = _HIDE
        elif word == "set" and self.last == "secret" and self.program == "gh":
            self.tool = _GH_SECRET_OPTIONS
        elif word in _SHELL_SEPARATORS or word.endswith(";"):
            self.program = self.tool = None
        elif self.tool is not None and "" in self.tool:  # sshpass -p X COMMAND ...
            self.tool = None
        elif (
            (
                (self.last == "set" and self.before in ("config", "configure"))
                or (self.last == "config" and self.program in ("git", "poetry"))
            )
            and self.program is not None
            and _secret_kind(word) != _NOT_SECRET
        ):  # aws configure set NAME VALUE, npm config set NAME VALUE, git config NAME VALUE
            self.hide = _HIDE
        self.before, self.last = self.last, word


def _redact_tool_option(word: str, dashes: str, name: str, ctx: _Context) -> Optional[str]:
    """``word`` with a well-known tool's password hidden, or None when it is not one."""
    tool = ctx.tool
    if tool is None:
        return None
    if dashes == "-":
        how = tool.get(word[:2])
        if how is None:
            return None
        if len(word) > 2:  # -pSECRET
            return word[:2] + _hidden(word[2:], _HIDE if how == _ATTACHED else how)
        ctx.hide = 0 if how == _ATTACHED else how
        return word
    how = tool.get(dashes + name)
    if how is None:
        return None
    option, equals, value = word.partition("=")
    if equals:
        return f"{option}={_hidden(value, how)}"
    ctx.hide = how
    return word


def _option_kind(name: str) -> int:
    """The kind of an option's name: ``--pwd`` is a password too, one letter never is."""
    if len(name) < 2:
        return _NOT_SECRET
    kind = _kinds.get(name)
    if kind is None:
        kind = _secret_kind(name)
    return _SECRET if kind == _NOT_SECRET and name.lower() == "pwd" else kind


def _redact_option(word: str, depth: int, ctx: _Context) -> Optional[str]:
    """``word`` with its secret hidden when it is an option (``ctx`` notes a value to hide)."""
    tool = ctx.tool
    if tool is not None and word[0] == "-":  # fast path: mysql -pX, curl -u (as below)
        how = tool.get(word[:2])
        if how is not None and " " not in word and word.isprintable():
            if len(word) > 2:
                return word[:2] + _hidden(word[2:], _HIDE if how == _ATTACHED else how)
            ctx.hide = 0 if how == _ATTACHED else how
            return word
    option = _option(word)
    if option is None:
        return None
    dashes, name, equals, value = option
    done = _redact_tool_option(word, dashes, name, ctx)
    if done is not None:
        return done
    kind = _option_kind(name)
    if kind == _NOT_SECRET:
        return f"{dashes}{name}={_redact_value(value, depth)}" if value else word
    if not equals:
        ctx.hide = _how(kind)
        return word
    if value and _hidden(value, _how(kind)) != value:
        return f"{dashes}{name}={MASK}"
    return word


def _redact_word(word: str, depth: int, ctx: _Context) -> str:
    """One word of a command line, read in the context of the words before it."""
    if ctx.hide:
        how, ctx.hide = ctx.hide, 0
        if not (word and word[0] in _DASHES):
            ctx.hidden()
            return _hidden(word, how)
    if ctx.program == "htpasswd" and ctx.htpasswd is not None:
        new = ctx.htpasswd.word(word)
        if new is not None:
            return _redact_text(new) if depth == 0 else new
    if len(word) < _MIN_KEY and word.isalnum():  # the common case: nothing to look at
        ctx.positional(word)
        return word
    new = _redact_option(word, depth, ctx) if word and word[0] in _DASHES else None
    if new is None and ctx.tool is not None and _LOGON in ctx.tool and "/" in word[1:]:
        ctx.tool = None
        if word[0] != "/" and word[0] != "@":  # not /nolog, / as sysdba, @script.sql
            new = _logon(word)
            return _redact_text(new) if depth == 0 else new
    if new is None:
        # /usr/bin/mysql, $(mysql; not a URL whose path ends in a tool's name
        ctx.positional(word if "://" in word else word.rpartition("/")[2].lstrip("$(`"))
        new = _assignment(word) if "=" in word else None
        if new is not None and not (_has_space(word) and _looks_like_command(word)):
            return new  # NAME=***, also when the value holds spaces
        if depth < _MAX_NESTING and _has_space(word):  # NAME=x cmd -o ...: a command line
            new = _redact_embedded(word, depth + 1)
        else:
            new = word
    return _redact_text(new, options=False) if depth == 0 else new


def _logon(word: str) -> str:
    """An Oracle logon ``user/password@database`` with its password hidden."""
    user, _, rest = word.partition("/")
    if rest.startswith('"'):  # "pass@word"@db: the quotes hold the password
        end = rest.find('"', 1)
        at = -1 if end == -1 else rest.find("@", end)
    else:
        at = rest.find("@")
    return f"{user}/{MASK}" + (rest[at:] if at != -1 else "")


def _redact_words(words: List[str], depth: int) -> List[str]:
    """Apply the command-line rules to a list of words, returning the new words.

    At depth 0 (the arguments themselves) the free-text rules are applied to each argument
    too; deeper, the caller applies them to the whole embedded command line, where a word's
    trailing ``;``, ``&``, ``|`` or ``)`` ends a command and is kept as it is.
    """
    if not _tool_table:
        _tool_table.update(_tools())
    out: List[str] = []
    ctx = _Context()
    for word in words:
        if depth and word[-1:] in (";", "&", "|", ")"):
            core = word.rstrip(";&|)")
            if core:
                out.append(_redact_word(core, depth, ctx) + word[len(core) :])
                ctx.program = ctx.tool = None
                ctx.hide = 0
                continue
        out.append(_redact_word(word, depth, ctx))
    return out


def _unquote(word: str) -> str:
    """A shell word without its quotes (``'--api-key=x'`` gives ``--api-key=x``)."""
    if "'" not in word and '"' not in word:
        return word
    return "".join(a + b + c + d for a, b, c, d in _pattern("segment").findall(word))


def _hide_option(m: Match[str]) -> str:
    """The replacement of an option with a stem in an embedded command line or free text.

    A value that is the option's name in capitals (argparse), ``TEXT`` (click) or in angle
    brackets is a placeholder in a help text, not a secret (``--api-key API_KEY``).
    """
    # Called once per option: "--token x " repeated calls it every 10 characters, so the common
    # case (a secret option, a plain value) takes the fewest calls.
    group = m.lastindex  # 3 (after "=") or 4 (after spaces): alternatives
    if group is None or group < 3:
        return m.group(0)
    value = m.group(group)
    if value == MASK:
        return m.group(0)
    name = m.group(2)
    kind = _option_kind(name)
    if not kind:
        return m.group(0)
    bare = value.strip("\\\"'")
    if kind == _SECRET:
        if bare == MASK or (len(bare) < 6 and bare.lower() in _BOOLEANS):
            return m.group(0)
        if bare.isupper() and bare.rstrip(")]") in (name.upper().replace("-", "_"), "TEXT"):
            return m.group(0)  # a metavar: --password PASSWORD, click's --token TEXT
        if bare[0] == "<" and bare[-1] == ">":
            return m.group(0)  # a placeholder: --token <token>
    elif _hidden(bare, _how(kind)) == bare:
        return m.group(0)
    return m.string[m.start() : m.start(group)] + MASK


# A word holding one of these may be a well-known tool (or docker ... login): such a command
# line is read word by word.
_TOOL_HINTS = ("mysql", "maria", "sshpass", "curl", "redis-cli", "mongo", "sqlcmd", "bcp",
               "ldap", "zip", "7z", "smb", "rpcclient", "openssl", "login", "twine", "keygen",
               "sqlplus", "rman", "expdp", "impdp", "dgmgrl", "secret set", "config",
               "htpasswd")  # fmt: skip


def _redact_embedded(text: str, depth: int) -> str:
    """Redact a command line embedded in one argument, changing only the words at fault.

    Options with a secret-looking name are found by one regular expression over the whole
    text (no per-word work); a text naming a well-known tool is split into shell words and
    read word by word, as the arguments are. ``NAME=value`` pairs, URLs and key shapes are left
    to the free-text rules, which the caller applies to the whole argument.
    """
    if any(hint in text for hint in _TOOL_HINTS):
        return _redact_shell_words(text, depth)
    low = text.lower()
    if not any(stem in low for stem in _STEMS):
        return text
    return _pattern("option").sub(_hide_option, text)


def _single_spaced(text: str) -> bool:
    """Whether the words of ``text`` are separated by single spaces only."""
    return not ("  " in text or "\t" in text or "\n" in text or "\r" in text)


def _redact_shell_words(text: str, depth: int) -> str:
    if "'" in text or '"' in text:  # separators at even indexes, words at odd ones
        pieces = _pattern("word").split(text)
        raw = pieces[1::2]
        words = [_unquote(w) for w in raw]
    elif _single_spaced(text.strip(" ")):  # the common case, split in C ten times faster
        core = text.strip(" ")
        start = text.index(core) if core else 0
        new = " ".join(_redact_words(core.split(" "), depth))
        return text[:start] + new + text[start + len(core) :]
    else:  # words at even indexes (empty at either end), separators at odd ones
        pieces = _pattern("space").split(text)
        words = raw = pieces[0::2]
    changed = False
    first = 1 if raw is not words else 0
    for i, after in enumerate(_redact_words(words, depth)):
        word = words[i]
        if after is not word and after != word:
            pieces[2 * i + first] = _quote(after) if raw[i] != word else after
            changed = True
    return "".join(pieces) if changed else text


# --- shell quoting (shlex.quote and shlex.join without importing shlex: 0.4 ms) -----------------

_safe: Dict[int, None] = {}


def _quote(word: str) -> str:
    if not word:
        return "''"
    if word.isascii():
        if not _safe:
            _safe.update({ord(c): None for c in "@%+=:,./-_"})
        rest = word.translate(_safe)
        if not rest or rest.isalnum():
            return word
    return "'" + word.replace("'", "'\"'\"'") + "'"


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
    for the rules. Linear in the length of the command line. Never raises: anything that cannot
    be read gives ``""``.

    :param argv: the command line, such as :data:`sys.argv`.
    :returns: the redacted command line, as :func:`shlex.join` would quote it.
    """
    try:
        words = [_as_text(arg) for arg in argv]
        return " ".join([_quote(word) for word in _redact_words(words, 0)])
    except Exception:
        return ""
