"""What ``diff`` compares and prints: the facts of two ``(platform, environment)`` pairs.

Facts come from the fields and their metadata (:mod:`._facts`), so a new field is compared
with no change here. They are listed by group (field metadata ``"group"``), known groups first
in the order below, others after them in field order. A field this library added
(metadata ``"since"``) that one side lacks is not a difference: older records and Tango's say
nothing about it; an entry of such a field that is a dict (a chosen variable) present on one
side only is a difference when the other side recorded the field (shown ``(unset)`` there).
A list of ``(name, version)`` pairs (``packages``) is compared row by row.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from ._facts import Fact, facts
from ._probe import normalize_name
from ._show import Rows, clean, table

__all__ = ["compare", "diff_text", "snapshots"]

# The order groups are printed in; a group not named here comes after these.
_ORDER = ("Python", "Packages", "Git", "Platform", "Command")


def _group_key(title: str) -> str:
    return title.lower().replace(" ", "_")


def _snapshot(pair: Tuple[Any, Any]) -> Dict[Tuple[str, str], Fact]:
    from .step_info import StepInfo

    found = facts(
        StepInfo, {"platform": pair[0], "environment": pair[1]}, only=["platform", "environment"]
    )
    return {(f.group, f.key): f for f in found if not f.record}


def _package_map(packages: Any) -> Dict[str, Tuple[str, str]]:
    """Normalised name -> (name as recorded, version); repeated names keep every version."""
    out: Dict[str, Tuple[str, str]] = {}
    for name, version in packages:
        key = normalize_name(name)
        if key in out:
            out[key] = (out[key][0], f"{out[key][1]}, {version}")
        else:
            out[key] = (name, version)
    return out


def _compare_pairs(pa: Any, pb: Any) -> Dict[str, Any]:
    if pa is None or pb is None:
        if (pa is None) != (pb is None):
            return {"recorded": {"a": pa is not None, "b": pb is not None}}
        return {}
    ma, mb = _package_map(pa), _package_map(pb)
    out: Dict[str, Any] = {}
    added = {mb[k][0]: mb[k][1] for k in sorted(mb.keys() - ma.keys())}
    removed = {ma[k][0]: ma[k][1] for k in sorted(ma.keys() - mb.keys())}
    changed = {
        mb[k][0]: {"a": ma[k][1], "b": mb[k][1]}
        for k in sorted(ma.keys() & mb.keys())
        if ma[k][1] != mb[k][1]
    }
    for kind, items in (("added", added), ("removed", removed), ("changed", changed)):
        if items:
            out[kind] = items
    return out


Snapshots = Tuple[Dict[Tuple[str, str], Fact], Dict[Tuple[str, str], Fact]]


def snapshots(a: Tuple[Any, Any], b: Tuple[Any, Any]) -> Snapshots:
    """The facts of two ``(platform, environment)`` pairs, for :func:`compare` and
    :func:`diff_text` to share (a record with 66,000 variables has as many facts)."""
    return _snapshot(a), _snapshot(b)


def compare(
    a: Tuple[Any, Any], b: Tuple[Any, Any], *, facts: Optional[Snapshots] = None
) -> Dict[str, Any]:
    """What differs between two ``(platform, environment)`` pairs, as ``diff --json`` prints it.

    Only groups and fields that differ are present; an empty dict means no difference.

    :param facts: their :func:`snapshots`, when already made.
    """
    fa, fb = facts or snapshots(a, b)
    groups: Dict[str, Dict[str, Any]] = {}
    for where in [*fa, *(k for k in fb if k not in fa)]:
        one, two = fa.get(where), fb.get(where)
        fact = one or two
        assert fact is not None
        va = None if one is None else one.value
        vb = None if two is None else two.value
        if fact.pairs:
            changed = _compare_pairs(va, vb)
            if changed:
                groups.setdefault(fact.group, {})[fact.key] = changed
            continue
        if fact.since is not None and (va is None or vb is None):
            # The field is missing from one side, unless this is an entry of a dict (a chosen
            # variable) that the other side recorded, empty or without that key.
            other = fa if one is None else fb
            if fact.within is None or _unrecorded(other, fact.group, fact.within):
                continue
        ja = None if one is None else one.json()
        jb = None if two is None else two.json()
        if ja != jb:
            groups.setdefault(fact.group, {})[fact.key] = {"a": ja, "b": jb}
    order = [g for g in _ORDER if g in groups] + [g for g in groups if g not in _ORDER]
    out: Dict[str, Any] = {}
    for group in order:
        changes = groups[group]
        # A group holding only a pair list (packages) is that list's comparison.
        keys = list(changes)
        pair_keys = [k for k in keys if _is_pairs(fa, fb, group, k)]
        if pair_keys == keys == [_group_key(group)]:
            out[_group_key(group)] = changes[keys[0]]
        else:
            out[_group_key(group)] = changes
    return out


def _unrecorded(side: Dict[Tuple[str, str], Fact], group: str, key: str) -> bool:
    """Whether the dict field at ``key`` is ``None`` on ``side`` (a dict with entries has no
    fact of its own, only its entries' facts)."""
    whole = side.get((group, key))
    return whole is not None and whole.value is None


def _is_pairs(fa: Dict[Any, Fact], fb: Dict[Any, Fact], group: str, key: str) -> bool:
    fact = fa.get((group, key)) or fb.get((group, key))
    return fact is not None and fact.pairs


def diff_text(
    name_a: str,
    name_b: str,
    differences: Dict[str, Any],
    a: Any,
    b: Any,
    *,
    facts: Optional[Snapshots] = None,
) -> str:
    """The text ``diff`` prints for the result of :func:`compare` of ``a`` and ``b``.

    :param facts: their :func:`snapshots`, when already made.
    """
    if not differences:
        return "No differences in platform or environment.\n"
    fa, fb = facts or snapshots(a, b)
    groups = {f.group for f in fa.values()} | {f.group for f in fb.values()}
    titles = {_group_key(group): group for group in groups}
    out = [f"--- {clean(name_a)}\n+++ {clean(name_b)}\n"]
    for key, changes in differences.items():
        title = titles[key]
        whole = fa.get((title, key)) or fb.get((title, key))
        if whole is not None and whole.pairs:  # the group is one pair list (packages)
            out.append(_pairs_text(title, changes))
            continue
        rows: Rows = []
        for field_key, ab in changes.items():
            one, two = fa.get((title, field_key)), fb.get((title, field_key))
            fact = one or two
            assert fact is not None
            if fact.pairs:
                out.append(_pairs_text(f"{title} {fact.name}", ab))
                continue
            rows.append(
                (
                    clean(fact.name),
                    f"{_value(one, fact)} -> {_value(two, fact)}",
                )
            )
        if rows:
            out.append(title + "\n" + table(rows, "  "))
    return "".join(out)


def _value(fact: Any, like: Fact) -> str:
    if fact is None:  # the other side has more items, or keys (a variable: unset there)
        return like.none if like.within is None else "(unset)"
    return clean(fact.text())


def _pairs_text(title: str, changes: Dict[str, Any]) -> str:
    if "recorded" in changes:
        side = "A" if not changes["recorded"]["a"] else "B"
        return f"{title}\n  not recorded in {side}\n"
    added = changes.get("added", {})
    removed = changes.get("removed", {})
    changed = changes.get("changed", {})
    counts = [
        f"{len(d)} {kind}"
        for kind, d in (("added", added), ("removed", removed), ("changed", changed))
        if d
    ]
    names = [*added, *removed, *changed]
    width = max(len(clean(n)) for n in names)
    lines: List[str] = [f"{title}: {', '.join(counts)}"]
    lines += [f"  + {clean(n):<{width}}  {clean(v)}" for n, v in added.items()]
    lines += [f"  - {clean(n):<{width}}  {clean(v)}" for n, v in removed.items()]
    lines += [
        f"  ~ {clean(n):<{width}}  {clean(ab['a'])} -> {clean(ab['b'])}"
        for n, ab in changed.items()
    ]
    return "\n".join(line.rstrip() for line in lines) + "\n"
