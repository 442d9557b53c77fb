"""Host behaviour rules: YAML data that makes the reference host answer as a test demands.

A rule file is a list of `match` -> `action` pairs, first match wins (docs/host-rules.md).
Runtime overrides (`force_next`, `pause`) sit on top for the control API.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = ["MATCH_KEYS", "Action", "Rule", "RuleError", "RuleSet", "load_default"]

DEFAULT_RULES = Path(__file__).with_name("data") / "default-rules.yaml"

MATCH_KEYS = (
    "pan_prefix",
    "profile",
    "mti",
    "processing_code",
    "terminal_id",
    "amount",
    "amount_min",
    "amount_max",
    "amount_ends_with",
)
ACTION_KEYS = ("rc", "delay_ms", "no_answer", "drop_connection", "malformed")
RULE_KEYS = ("name", "match", "action")
TOP_KEYS = ("version", "description", "rules")
MAX_DELAY_MS = 600_000


class RuleError(ValueError):
    """A rule file that cannot be used: names the file, rule index, key path and the fix."""

    def __init__(
        self, problem: str, *, file: str, index: int | None = None, key: str = "", fix: str = ""
    ) -> None:
        self.file = file
        self.index = index
        self.key = key
        self.problem = problem
        self.fix = fix
        where = file
        if index is not None:
            where += f": rules[{index}]" + (f".{key}" if key else "")
        elif key:
            where += f": {key}"
        super().__init__(f"{where}: {problem}" + (f"; {fix}" if fix else ""))


@dataclass
class Action:
    """What the host does instead of (or on top of) its issuer decision."""

    rc: str | None = None
    delay_ms: int = 0
    no_answer: bool = False
    drop_connection: bool = False
    malformed: bool = False


@dataclass(frozen=True)
class Rule:
    """One validated rule; tuple criteria match when any member matches (None = any)."""

    name: str
    action: Action
    pan_prefix: tuple[str, ...] | None = None
    profile: tuple[str, ...] | None = None
    mti: tuple[str, ...] | None = None
    processing_code: tuple[str, ...] | None = None
    terminal_id: tuple[str, ...] | None = None
    amount: int | None = None
    amount_min: int | None = None
    amount_max: int | None = None
    amount_ends_with: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "_checks", _compile(self))

    def matches(self, doc: Mapping[str, str], profile_id: str | None) -> bool:
        """True when every criterion the rule sets holds for the request."""
        return self.check(doc, profile_id, _amount_of(doc))

    def check(
        self, doc: Mapping[str, str], profile_id: str | None, amount: tuple[int, str] | None
    ) -> bool:
        """`matches` with the request's amount already parsed (`_amount_of`)."""
        for test in self._checks:  # type: ignore[attr-defined]  # noqa: SIM110
            if not test(doc, profile_id, amount):
                return False
        return True


_Check = Callable[[Mapping[str, str], "str | None", "tuple[int, str] | None"], bool]


def _amount_of(doc: Mapping[str, str]) -> tuple[int, str] | None:
    """(value, 12-digit text) of DE4, None when absent or not digits."""
    text = doc.get("4", "")
    if not text.isdecimal():
        return None
    value = int(text)
    return value, str(value).zfill(12)


def _compile(rule: Rule) -> tuple[_Check, ...]:
    """The rule's criteria as predicates, cheapest first; absent criteria cost nothing."""
    checks: list[_Check] = []
    if rule.mti is not None:
        mtis = frozenset(rule.mti)
        checks.append(lambda d, p, a: d.get("t") in mtis)
    if rule.profile is not None:
        profiles = frozenset(rule.profile)
        checks.append(lambda d, p, a: p in profiles)
    if rule.terminal_id is not None:
        tids = frozenset(rule.terminal_id)
        checks.append(lambda d, p, a: d.get("41", "").strip() in tids)
    if rule.pan_prefix is not None:
        prefixes = rule.pan_prefix

        def pan_ok(d: Mapping[str, str], p: str | None, a: tuple[int, str] | None) -> bool:
            pan = _pan_of(d)
            return bool(pan) and pan.startswith(prefixes)

        checks.append(pan_ok)
    if rule.processing_code is not None:
        codes = rule.processing_code
        checks.append(lambda d, p, a: d.get("3", "").startswith(codes) and bool(d.get("3")))
    limits = (rule.amount, rule.amount_min, rule.amount_max, rule.amount_ends_with)
    if any(x is not None for x in limits):
        exact, lo, hi, ends = limits
        checks.append(lambda d, p, a: a is not None)
        if exact is not None:
            checks.append(lambda d, p, a: a[0] == exact)  # type: ignore[index]
        if lo is not None:
            checks.append(lambda d, p, a: a[0] >= lo)  # type: ignore[index]
        if hi is not None:
            checks.append(lambda d, p, a: a[0] <= hi)  # type: ignore[index]
        if ends is not None:
            checks.append(lambda d, p, a: a[1].endswith(ends))  # type: ignore[index]
    return tuple(checks)


def _pan_of(doc: Mapping[str, str]) -> str:
    pan = doc.get("2")
    if pan:
        return pan
    return doc.get("35", "").partition("D")[0]


# ---- validation ------------------------------------------------------------------------------


class _Checker:
    """Validates one rule mapping, raising RuleError with file, index and key path."""

    def __init__(self, file: str, index: int) -> None:
        self.file, self.index = file, index

    def fail(self, key: str, problem: str, fix: str) -> RuleError:
        return RuleError(problem, file=self.file, index=self.index, key=key, fix=fix)

    def strings(
        self, key: str, value: Any, digits: int | tuple[int, int] | None
    ) -> tuple[str, ...]:
        items = value if isinstance(value, list) else [value]
        if not items:
            raise self.fail(key, "empty list", "give at least one value or drop the key")
        out = []
        for i, item in enumerate(items):
            path = f"{key}[{i}]" if isinstance(value, list) else key
            if isinstance(item, bool) or not isinstance(item, str):
                raise self.fail(
                    path,
                    f"{item!r} is {type(item).__name__}, not a quoted string",
                    "quote it (YAML drops leading zeros of bare numbers): e.g. '0200'",
                )
            if digits is not None:
                lo, hi = (digits, digits) if isinstance(digits, int) else digits
                if not (item.isascii() and item.isdecimal() and lo <= len(item) <= hi):
                    size = f"{lo}" if lo == hi else f"{lo} to {hi}"
                    raise self.fail(path, f"{item!r} is not {size} digits", f"use {size} digits")
            elif not item:
                raise self.fail(path, "empty string", "give a non-empty value")
            out.append(item)
        return tuple(out)

    def amount(self, key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 10**12:
            raise self.fail(
                key, f"{value!r} is not an amount", "amounts are integers in minor units, >= 0"
            )
        return value

    def action(self, value: Any) -> Action:
        if not isinstance(value, dict) or not value:
            raise self.fail(
                "action",
                "must be a non-empty mapping",
                "e.g. action: {rc: '51'} or {no_answer: true}",
            )
        out = Action()
        for key, item in value.items():
            path = f"action.{key}"
            if key == "rc":
                out.rc = self._rc(path, item)
            elif key == "delay_ms":
                if isinstance(item, bool) or not isinstance(item, int):
                    raise self.fail(path, f"{item!r} is not an integer", "milliseconds, e.g. 2500")
                if not 0 <= item <= MAX_DELAY_MS:
                    raise self.fail(path, f"{item} out of range", f"0 to {MAX_DELAY_MS} ms")
                out.delay_ms = item
            elif key in ("no_answer", "drop_connection", "malformed"):
                if not isinstance(item, bool):
                    raise self.fail(path, f"{item!r} is not true/false", "use true or false")
                setattr(out, key, item)
            else:
                raise self.fail(
                    path, "unknown action key", "action keys: " + ", ".join(ACTION_KEYS)
                )
        return out

    def _rc(self, path: str, item: Any) -> str:
        if isinstance(item, int) and not isinstance(item, bool) and 0 <= item <= 99:
            return f"{item:02d}"
        if isinstance(item, str) and len(item) == 2 and item.isascii() and item.isalnum():
            return item.upper()
        raise self.fail(path, f"{item!r} is not a response code", "two characters, quoted: '05'")

    def rule(self, value: Any) -> Rule:
        if not isinstance(value, dict):
            raise self.fail("", "a rule is a mapping", "give name, match and action")
        for key in value:
            if key not in RULE_KEYS:
                raise self.fail(str(key), "unknown rule key", "rule keys: " + ", ".join(RULE_KEYS))
        if "action" not in value:
            raise self.fail("action", "missing", "every rule needs an action, e.g. {rc: '05'}")
        name = value.get("name", f"rule {self.index}")
        if not isinstance(name, str):
            raise self.fail("name", f"{name!r} is not text", "quote the name")
        match = value.get("match") or {}
        if not isinstance(match, dict):
            raise self.fail("match", "must be a mapping", "e.g. match: {mti: '0200'}")
        crit: dict[str, Any] = {}
        for key, item in match.items():
            path = f"match.{key}"
            if key == "pan_prefix":
                crit[key] = self.strings(path, item, (1, 19))
            elif key == "mti":
                crit[key] = self.strings(path, item, 4)
            elif key == "processing_code":
                crit[key] = self.strings(path, item, (2, 6))
            elif key == "amount_ends_with":
                crit[key] = self.strings(path, item, (1, 4))
            elif key in ("profile", "terminal_id"):
                crit[key] = self.strings(path, item, None)
            elif key in ("amount", "amount_min", "amount_max"):
                crit[key] = self.amount(path, item)
            else:
                raise self.fail(path, "unknown match key", "match keys: " + ", ".join(MATCH_KEYS))
        lo, hi = crit.get("amount_min"), crit.get("amount_max")
        if lo is not None and hi is not None and lo > hi:
            raise self.fail("match.amount_min", f"{lo} > amount_max {hi}", "swap the bounds")
        return Rule(name=name, action=self.action(value["action"]), **crit)


def parse_rules(data: Any, file: str) -> list[Rule]:
    """Validate the loaded YAML of a rule file; RuleError on the first fault."""
    if data is None:
        return []
    if not isinstance(data, dict):
        raise RuleError(
            "a rule file is a mapping", file=file, key="(top level)", fix="start with rules:"
        )
    for key in data:
        if key not in TOP_KEYS:
            raise RuleError(
                "unknown top-level key", file=file, key=str(key), fix="keys: " + ", ".join(TOP_KEYS)
            )
    if data.get("version", 1) != 1:
        raise RuleError("unsupported version", file=file, key="version", fix="use version: 1")
    rules = data.get("rules") or []
    if not isinstance(rules, list):
        raise RuleError("must be a list", file=file, key="rules", fix="rules: [- match: ...]")
    return [_Checker(file, i).rule(item) for i, item in enumerate(rules)]


class RuleSet:
    """Validated rules plus the runtime overrides of the control API."""

    def __init__(self, rules: list[Rule] | None = None, *, source: str = "<rules>") -> None:
        self.rules: list[Rule] = list(rules or [])
        self.source = source
        self._forced: list[tuple[Action, str | None]] = []
        self.paused = False
        self._index: dict[str | None, _Bucket] = {}
        self._src: list[Rule] | None = None
        self._snap: list[Rule] = []

    @classmethod
    def from_text(cls, text: str, source: str = "<text>") -> RuleSet:
        """Parse and validate rule YAML text."""
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"line {mark.line + 1} column {mark.column + 1}" if mark else "(YAML)"
            raise RuleError(
                "not valid YAML", file=source, key=where, fix="check the YAML syntax"
            ) from None
        return cls(parse_rules(data, source), source=source)

    @classmethod
    def from_yaml(cls, path: str | Path) -> RuleSet:
        """Read and validate a rule file."""
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise RuleError(
                f"cannot read ({exc.strerror})", file=str(p), fix="check the path"
            ) from None
        except UnicodeDecodeError:
            raise RuleError("not UTF-8 text", file=str(p), fix="save the file as UTF-8") from None
        return cls.from_text(text, str(p))

    def match(self, doc: Mapping[str, str], profile_id: str | None) -> Action | None:
        """The forced action if one is pending, else the first matching rule's action."""
        forced = self._forced
        if forced:
            for i, (action, mti) in enumerate(forced):
                if mti is None or doc.get("t") == mti:
                    del forced[i]
                    return action
        rules = self.rules
        if rules is not self._src or rules != self._snap:
            self._reindex()
        mti = doc.get("t")
        bucket = self._index.get(mti)
        if bucket is None:
            bucket = self._bucket(mti)
        hits = bucket.plain
        value = None
        if bucket.keyed:
            text = doc.get("4", "")
            if text.isdecimal():
                value = int(text)
                extra = bucket.exact.get(value, ())
                merge = bool(hits)
                for mod, table in bucket.suffix:
                    got = table.get(value % mod)
                    if got:
                        merge = merge or bool(extra)
                        extra += got
                if extra:
                    hits = sorted({*hits, *extra}) if merge else extra
        if not hits:
            return None
        amount = _amount_of(doc) if value is None else (value, str(value).zfill(12))
        for pos in hits:
            rule = rules[pos]
            if rule.check(doc, profile_id, amount):
                return rule.action
        return None

    def _reindex(self) -> None:
        """Drop the per-MTI buckets: `rules` is another list or its content changed."""
        self._index.clear()
        self._src = self.rules
        self._snap = list(self.rules)

    def _bucket(self, mti: str | None) -> _Bucket:
        """The rules that can match MTI `mti`, split by amount key (cached for up to 64 MTIs)."""
        bucket = _Bucket(
            [
                (pos, rule)
                for pos, rule in enumerate(self._snap)
                if rule.mti is None or mti in frozenset(rule.mti)
            ]
        )
        if len(self._index) < _MAX_BUCKETS:
            self._index[mti] = bucket
        return bucket

    def force_next(self, action: Action, count: int = 1, *, mti: str | None = None) -> None:
        """Answer the next `count` requests (of MTI `mti` when given) with `action`."""
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        self._forced.extend([(action, mti)] * count)

    def clear_forced(self) -> None:
        """Drop every pending forced action."""
        self._forced.clear()

    @property
    def forced_pending(self) -> int:
        """How many forced actions are still waiting."""
        return len(self._forced)

    def pause(self, on: bool) -> None:
        """While paused the server answers nothing (it reads `paused`)."""
        self.paused = bool(on)


_MAX_BUCKETS = 64


class _Bucket:
    """Positions of one MTI's candidate rules: checked always, by exact amount, by amount suffix.

    An index only narrows the candidates: each candidate still runs `Rule.check`, in file order.
    """

    __slots__ = ("exact", "keyed", "plain", "suffix")

    def __init__(self, rules: list[tuple[int, Rule]]) -> None:
        plain: list[int] = []
        exact: dict[int, tuple[int, ...]] = {}
        by_len: dict[int, dict[int, tuple[int, ...]]] = {}
        for pos, rule in rules:
            value, ends = rule.amount, rule.amount_ends_with
            if type(value) is int:
                exact[value] = (*exact.get(value, ()), pos)
            elif value is None and _digit_suffixes(ends):
                for size, key in {(len(s), int(s)) for s in ends}:  # type: ignore[union-attr]
                    table = by_len.setdefault(size, {})
                    table[key] = (*table.get(key, ()), pos)
            else:
                plain.append(pos)
        self.plain: tuple[int, ...] = tuple(plain)
        self.exact = exact
        self.suffix = tuple((10**size, table) for size, table in sorted(by_len.items()))
        self.keyed = bool(exact or by_len)


def _digit_suffixes(ends: Any) -> bool:
    """True when `amount_ends_with` is a tuple of 1-12 ASCII digit strings (indexable by value)."""
    return (
        type(ends) is tuple
        and bool(ends)
        and all(type(s) is str and 1 <= len(s) <= 12 and s.isascii() and s.isdigit() for s in ends)
    )


def load_default() -> RuleSet:
    """The rule file shipped with the host (amount triggers, docs/host-rules.md)."""
    return RuleSet.from_yaml(DEFAULT_RULES)
