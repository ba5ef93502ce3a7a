"""Parsing ``COORDINATOR_LEASES`` (which leases exist) and ``COORDINATOR_LEASE_SELECTOR``
(which of them a daemon may hold).

``COORDINATOR_LEASES``: comma-separated lease names, each of which may carry one brace range
``{A..B}`` (decimal, A <= B) that expands in place, as a shell does: ``shard-{0..63}`` is
``shard-0 .. shard-63``; an endpoint written with a leading zero pads every number to the
wider endpoint's width (``shard-{00..63}`` is ``shard-00 .. shard-63``, so names sort the way
they count). Every expanded name must follow the rule of a lease name today
(``coordinator.protocol.keys.check_name``); a name given twice, an empty item, a second range in one
item and more than ``MAX_LEASES`` names are refused, naming the setting.

``COORDINATOR_LEASE_SELECTOR``: comma-separated glob patterns matched against the whole lease
name, case-sensitively; ``*`` matches any run of characters, ``?`` one character, nothing else
is special (``eu-*`` is "every lease whose name starts with eu-", ``shard-?`` is shard-0 ..
shard-9). A lease is eligible when any pattern matches; unset or empty means every lease.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

from coordinator.errors import InvalidArgumentError
from coordinator.protocol import keys
from coordinator.settings import SettingsError, env_name

# a namespace's registry is read whole by every node each renew interval and one node may
# renew all of them in one script: a few thousand keeps both to milliseconds
MAX_LEASES = 4096
MAX_SELECTOR_PATTERNS = 64

LEASES_SETTING = env_name("leases")
SELECTOR_SETTING = env_name("lease_selector")

_RANGE = re.compile(r"\{([0-9]+)\.\.([0-9]+)\}")  # ASCII digits: \d would take any script's
_GLOB_CHARACTERS = "*?"


class LeaseSettingError(SettingsError):
    """A bad ``COORDINATOR_LEASES`` or ``COORDINATOR_LEASE_SELECTOR``; ``rule`` is the message
    without the variable and the value (what ``load_settings`` puts between them)."""

    def __init__(self, setting: str, rule: str, text: str) -> None:
        # the same shape as load_settings' messages: "invalid settings: VARIABLE: rule (got ...)"
        super().__init__(f"invalid settings: {setting}: {rule} (got {text!r})")
        self.rule = rule


def _refuse(setting: str, rule: str, text: str) -> SettingsError:
    return LeaseSettingError(setting, rule, text)


def parse_lease_names(text: str) -> tuple[str, ...]:
    """The lease names ``COORDINATOR_LEASES`` lists, in the order given; () when unset."""
    if not text.strip():
        return ()
    names: list[str] = []
    seen: set[str] = set()
    for item in (part.strip() for part in text.split(",")):
        if not item:
            raise _refuse(LEASES_SETTING, "an empty name between commas", text)
        for name in _expand(item, text, budget=MAX_LEASES - len(names)):
            if name in seen:
                raise _refuse(LEASES_SETTING, f"lease {name!r} is listed twice", text)
            seen.add(name)
            names.append(name)
    return tuple(names)


def _expand(item: str, text: str, *, budget: int) -> list[str]:
    """One item: a name, or a name with one ``{A..B}`` range; checked before it is expanded,
    so ``{0..999999999}`` is refused without building a billion strings."""
    ranges = list(_RANGE.finditer(item))
    if budget < 1:
        raise _refuse(LEASES_SETTING, f"more than {MAX_LEASES} leases", text)
    if len(ranges) > 1:
        raise _refuse(LEASES_SETTING, f"{item!r} has more than one {{A..B}} range", text)
    if not ranges:
        if "{" in item or "}" in item:
            raise _refuse(LEASES_SETTING, f"{item!r}: a brace must be a range {{A..B}} of decimal "
                          "numbers, e.g. shard-{0..63}", text)
        return [_checked_name(item, text)]
    match = ranges[0]
    low_text, high_text = match.group(1), match.group(2)
    low, high = int(low_text), int(high_text)
    if low > high:
        raise _refuse(LEASES_SETTING, f"{item!r}: the range must count up ({low} > {high})", text)
    if high - low + 1 > budget:
        raise _refuse(LEASES_SETTING, f"more than {MAX_LEASES} leases", text)
    padded = any(len(t) > 1 and t.startswith("0") for t in (low_text, high_text))
    width = max(len(low_text), len(high_text)) if padded else 0
    head, tail = item[:match.start()], item[match.end():]
    if "{" in head + tail or "}" in head + tail:
        raise _refuse(LEASES_SETTING, f"{item!r}: a brace must be a range {{A..B}} of decimal "
                      "numbers, e.g. shard-{0..63}", text)
    names = [f"{head}{number:0{width}d}{tail}" for number in range(low, high + 1)]
    return [_checked_name(name, text) for name in names]


def _checked_name(name: str, text: str) -> str:
    if not name:
        raise _refuse(LEASES_SETTING, "an empty lease name", text)
    try:
        return keys.check_name("lease name", name)
    except InvalidArgumentError as e:
        raise _refuse(LEASES_SETTING, str(e), text) from None


@dataclass(frozen=True)
class LeaseSelector:
    """Which leases a daemon may hold: glob patterns, any of which may match (none = all)."""

    patterns: tuple[str, ...] = ()

    def matches(self, lease: str) -> bool:
        """Whether a daemon with this selector may hold ``lease``."""
        return not self.patterns or any(fnmatch.fnmatchcase(lease, p) for p in self.patterns)

    @property
    def text(self) -> str:
        """The selector as the setting writes it (what a controller record would publish)."""
        return ",".join(self.patterns)


ALL_LEASES = LeaseSelector()


def parse_lease_selector(text: str) -> LeaseSelector:
    """The selector ``COORDINATOR_LEASE_SELECTOR`` describes; every lease when unset."""
    if not text.strip():
        return ALL_LEASES
    patterns: list[str] = []
    for pattern in (part.strip() for part in text.split(",")):
        if not pattern:
            raise _refuse(SELECTOR_SETTING, "an empty pattern between commas", text)
        # a pattern is a lease name in which * and ? stand for characters: the name rule,
        # applied with each wildcard read as one allowed character, checks the rest
        as_name = "".join("x" if c in _GLOB_CHARACTERS else c for c in pattern)
        try:
            keys.check_name("lease pattern", as_name)
        except InvalidArgumentError:
            raise _refuse(SELECTOR_SETTING, f"pattern {pattern!r} must be a lease name in which * "
                          "matches any characters and ? one (letters, digits, '_', '.', '-', "
                          "at most 64 characters), e.g. eu-*", text) from None
        if pattern not in patterns:
            patterns.append(pattern)
    if len(patterns) > MAX_SELECTOR_PATTERNS:
        raise _refuse(SELECTOR_SETTING, f"more than {MAX_SELECTOR_PATTERNS} patterns", text)
    return LeaseSelector(tuple(patterns))
