"""Measure redaction: hostile arguments (linear time) and the first call of a process.

Usage::

    python benchmarks/redact.py [--repeat N] [--runs N] [--src DIR] [--first-call-only]
    python benchmarks/redact.py --against OLD_SRC_DIR [--repeat N]

Figures:

- for each hostile shape (a run of one unit, e.g. ``'a://' * 32768``, or a run between a head
  and a tail, e.g. ``'token a=' + 'x' * ...``), at 32, 64 and 128 KiB (Linux's limit for one
  argument): the best of ``--repeat`` runs (default 5), in CPU time (``time.process_time``:
  other jobs on a shared machine do not count), of ``redact_command(["x", arg])``,
  ``redact_command(["bash", "-c", arg])``, ``redact_url(arg)`` and ``redact_text(arg)`` in one
  warm process, and the slowest of the four. Target: under 50 ms at 128 KiB (aim: 25), and
  about four times the 32 KiB figure (linear; the largest ratio is printed);
- the first ``redact_command(argv)`` of a fresh process, on a typical short command line and on
  one holding secrets, regular expressions compiled on demand included (``import`` excluded):
  the median over ``--runs`` processes (default 21). Target: well under 1 ms.

``--src`` measures another checkout's ``src`` folder instead of this one (for before/after
figures). ``--against DIR`` measures the hostile shapes as an interleaved A/B instead: this
checkout's ``redact.py`` and ``DIR/tango_stepinfo/redact.py`` (a ``src`` folder, such as
``/work/main/src`` or a copy of the old one) loaded side by side in one process, the two
timed in turn at every repeat so that the load of a shared machine hits both alike. Only the
standard library is used.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple, Union

SRC = Path(__file__).resolve().parent.parent / "src"
Shape = Union[str, Tuple[str, str, str]]

# One unit of each rule's shape, repeated to the size measured; or (head, unit, tail): the unit
# repeated between a head and a tail, so that a long run meets what makes a rule look at it.
SHAPES: List[Shape] = [
    "a://", "@", "-", "=", '"', "'", " ", "a", "a ", "-a ", "a=b ", '"a ', "'a\" ", "a-", "a.",
    ":", "key=", "--token x ", "password=x ", "x=password=", "?token=a&", "https://u:p@h ",
    "Authorization: ", "pass:", "-----BEGIN ", "-----BEGIN PRIVATE KEY-----", "ghp_", "eyJ",
    "eyJ-", "sk-", "AKIA", "mysql -pX ", "sshpass -p x ", "curl -u a:b ", "?key=a&", "sig=a&",
    "htpasswd -b f u p ", "password=a b ", "token=Bearer a ",
    # names that hold a stem but are not secret-looking (near misses of the pair expression)
    "pw=", "key1=", "apw=", "sigs=", "kkey=", "no_key=", "Key: ", "--key x ", "-pw x ",
    # long runs of what the stem test, a name and a value eat
    ("token a=", "x", ""), ("token a=", "a", ""), ("key=", "x", ""), ("", "a", "key=x"),
    ("", "a_", "key=x"), ("token=", "x", " "), ("token: ", "x", ""),
    # query strings: in URLs, in forms, and near misses (no URL before the "?")
    "h.io/?key=a ", "https://h/x?key=a ", "x=1&key=a ", "s/?key=a ", "&pw= ", "?&=", "&&key=",
    ("https://h/x?", "key=a&", ""), ("", "a.", "?key=1"), ("", "a.", "!?key=1"),
    ("", "a=", "h.io/?key=1"), ("", "/", "?key=1"), ("", "a:", "?key=1"), ("", "a ", "?key=1"),
    ("", "a/", "?key=1"), ("?key=1 ", "a ", ""),
    # auth schemes as values
    "Authorization=Bearer a ", "token=Basic a ", ("token=", "Bearer ", "a"),
    # embedded command lines (bash -c in bash -c)
    "bash -c '--token x ", 'sh -c "x --password=a ', "bash -c 'key=a ",
    # path parameters (;key=), in URLs and not
    ";key=", "h.io/a;key=a ", "x;key=a ", ("https://h/x;", "key=a;", ""), ("", "a/", ";key=1"),
    # parameter names holding "%" or "[" (percent-encoded, arrays), in URLs and not
    "%6B", "&%6B", "%6Bey=a&", "&key[]=a", "[]", "&a[0]=1", "&token[0]=a", "x?%6Bey=a ",
    ("https://h/x?", "%6Bey=a&", ""), ("https://h/x?", "key[]=a&", ""), ("&", "%6B", "=1"),
    ("", "a[", "=1"), ("https://h/x?", "%6Beyword=a&", ""), "h.io/?key[]=a ", "h.io/?%6Bey=a ",
    # credentials without a scheme (user:password@host), near misses of the host
    "a:b@", " a:b@h.io", "=a:", "a:b@c.", " a:b@c:1", ("a:b@", "c.", ""), ("", "a:", "b@h.io"),
    # Python subscripts and calls with a quoted name, values without an end
    "['TOKEN']=", "['TOKEN']='x' ", "('TOKEN', 'x') ", "get('TOKEN', 'x') ", "['TOKEN']=\"",
    ("['TOKEN']='", "a", ""), "[\"TOKEN']='", ("get('TOKEN', \"", "a", ""), "['--token', 'x', ",
    ", '--token', ", ("['--token', '", "a", ""),
    # options with a secret-looking name in free text (redact_text, redact_url)
    "run --token x ", "--password-file /p ",
]  # fmt: skip
SIZES = (32768, 65536, 131072)


def _argument(shape: Shape, size: int) -> str:
    """``shape`` at ``size`` characters (the unit repeated, between the head and the tail)."""
    head, unit, tail = ("", shape, "") if isinstance(shape, str) else shape
    return head + unit * ((size - len(head) - len(tail)) // len(unit)) + tail


def _label(shape: Shape) -> str:
    return repr(shape) if isinstance(shape, str) else f"{shape[0]!r}+{shape[1]!r}*+{shape[2]!r}"


TYPICAL = [
    "/usr/bin/python", "train.py", "--config", "experiment.jsonnet", "--lr", "3e-4", "-w",
    "/data/workspace", "--seed", "1",
]  # fmt: skip
WITH_SECRETS = [*TYPICAL, "--api-key", "sk-1", "HF_TOKEN=hf_2", "--tokenizer", "bert"]

FIRST_CALL = """
import sys, time
sys.path.insert(0, {src!r})
import tango_stepinfo.redact as r
argv = {argv!r}
t = time.perf_counter()
r.redact_command(argv)
print(time.perf_counter() - t)
"""


def _best(function: Callable[[Any], Any], argument: Any, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        function(argument)
        best = min(best, time.process_time() - start)
    return best


def hostile(repeat: int, src: Path) -> List[Dict[Any, Any]]:
    sys.path.insert(0, str(src))
    from tango_stepinfo import redact

    redact.redact_command(["warm", "--token", "x", "a b", "mysql -px", "https://u:p@h/?t=1"])
    redact.redact_text("password=x " + "ghp_" + "a" * 40 + " eyJ" + "a" * 20)
    rows = []
    for shape in SHAPES:
        row: Dict[Any, Any] = {"shape": _label(shape)}
        for size in SIZES:
            arg = _argument(shape, size)
            figures = {
                "argument": _best(lambda a: redact.redact_command(["x", a]), arg, repeat),
                "bash -c": _best(lambda a: redact.redact_command(["bash", "-c", a]), arg, repeat),
                "url": _best(redact.redact_url, arg, repeat),
                "text": _best(redact.redact_text, arg, repeat),
            }
            row[size] = figures
        rows.append(row)
    return rows


def _load(path: Path, name: str) -> Any:
    """``redact.py`` at ``path`` as a module of its own (it imports the standard library only)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def against(repeat: int, src: Path, old_src: Path) -> None:
    """Print the slowest of the four calls at 128 KiB for each shape, old and new, interleaved."""
    modules = [
        _load(old_src / "tango_stepinfo" / "redact.py", "redact_old"),
        _load(src / "tango_stepinfo" / "redact.py", "redact_new"),
    ]
    for module in modules:
        module.redact_command(["warm", "--token", "x", "a b", "mysql -px", "https://u:p@h/?t=1"])
        module.redact_text("password=x " + "ghp_" + "a" * 40 + " eyJ" + "a" * 20)
    print("hostile arguments at 128 KiB, slowest of the four calls, best of runs, ms (A/B):")
    print(f"  {'shape':32} {'old':>8} {'new':>8} {'new/old':>8}   new at 64 KiB")
    worst = [0.0, 0.0]
    for shape in SHAPES:
        slowest: List[List[float]] = [[0.0, 0.0], [0.0, 0.0]]  # [module][size]
        for k, size in enumerate((65536, 131072)):
            arg = _argument(shape, size)
            calls = [
                lambda m, a: m.redact_command(["x", a]),
                lambda m, a: m.redact_command(["bash", "-c", a]),
                lambda m, a: m.redact_url(a),
                lambda m, a: m.redact_text(a),
            ]
            for call in calls:
                best = [float("inf"), float("inf")]
                for _ in range(repeat):
                    for j, module in enumerate(modules):
                        start = time.process_time()
                        call(module, arg)
                        best[j] = min(best[j], time.process_time() - start)
                for j in (0, 1):
                    slowest[j][k] = max(slowest[j][k], best[j] * 1e3)
        old, new = slowest[0][1], slowest[1][1]
        worst = [max(worst[0], old), max(worst[1], new)]
        ratio = new / old if old else float("nan")
        print(f"  {_label(shape):32} {old:8.1f} {new:8.1f} {ratio:8.2f}   {slowest[1][0]:.1f}")
    print(f"slowest at 128 KiB: old {worst[0]:.1f} ms, new {worst[1]:.1f} ms")


def first_call(argv: List[str], runs: int, src: Path) -> float:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    code = FIRST_CALL.format(src=str(src), argv=argv)
    subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True)
    times = []
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-c", code], check=True, env=env, capture_output=True, text=True
        )
        times.append(float(done.stdout))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--src", type=Path, default=SRC)
    parser.add_argument("--first-call-only", action="store_true")
    parser.add_argument("--against", type=Path, default=None, metavar="DIR")
    args = parser.parse_args()
    if args.against is not None:
        print(f"Python {sys.version.split()[0]}, os.getloadavg() {os.getloadavg()}")
        against(args.repeat, args.src, args.against)
        print(f"os.getloadavg() {os.getloadavg()}")
        return

    where = "this checkout" if args.src == SRC else args.src
    print(f"Python {sys.version.split()[0]}, src: {where}")
    print("first redact_command() of a process (median of fresh processes):")
    for label, argv in (("typical", TYPICAL), ("with secrets", WITH_SECRETS)):
        print(f"  {label:13} {first_call(argv, args.runs, args.src) * 1e3:6.3f} ms")
    if args.first_call_only:
        return

    print("hostile arguments, best of runs, ms (argument / bash -c / url / text; slowest):")
    print(f"  {'shape':32} {'32 KiB':>7} {'64 KiB':>7} {'128 KiB':>7}   128 KiB detail")
    worst = growth = 0.0
    for row in hostile(args.repeat, args.src):
        slowest = {size: max(row[size].values()) * 1e3 for size in SIZES}
        worst = max(worst, slowest[131072])
        if slowest[32768] >= 1.0:  # below 1 ms, the ratio is noise
            growth = max(growth, slowest[131072] / slowest[32768])
        sizes = " ".join(f"{slowest[size]:7.1f}" for size in SIZES)
        detail = " / ".join(f"{v * 1e3:.1f}" for v in row[131072].values())
        print(f"  {row['shape']:32} {sizes}   {detail}")
    print(f"slowest at 128 KiB: {worst:.1f} ms; largest 128 KiB / 32 KiB ratio: {growth:.1f}")


if __name__ == "__main__":
    main()
