"""All of a stream's distinct filters evaluated against each line in one pass (live fan-out).

Each distinct term is an *atom*: a keyword (exact, or case-folded) or a regex (case
sensitive, or not). A line is scanned once per kind of atom: one Aho-Corasick automaton
for the exact keywords over the text, one for the folded keywords over `text.casefold()`
(folded once per line, as `LineFilter.match` folds it), and one RE2 `Set` per case mode for
the regexes. A filter becomes a `Plan`: the atoms that must all hit (`need`), the atoms
none of which may hit (`veto`), and a predicate on the line for what no atom expresses
(`extra`): a filter's keyword terms and regex are its `need`, its excluded terms its
`veto`, its fields on meta its `extra`.

Invariant: `FilterSet([plan_of(f) for f in filters]).select(lines)[k]` holds exactly the
indices of the lines `filters[k].match` keeps (tests/gateway/fanout/test_onepass.py checks
it for random filters and lines). Where one pass cannot be trusted it is not used: RE2's
`Set` has only the DFA, which may run out of memory where a single regex would go on with
the NFA, and says so only by answering no match. Each set therefore holds a pattern that matches every text;
an answer without it is a failure, and that line's regexes are searched one by one. A set
that does not compile (too large for its memory budget) is always searched one by one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import ahocorasick
import re2

from gateway.fanout.filters import LineFilter, fields_test

log = logging.getLogger(__name__)

# the memory budget of one regex set (RE2's default is 8 MiB); past it, the slow path above
SET_MAX_MEM = 32 << 20

Line = Mapping[str, Any]
Atom = tuple[str, str, bool]  # ("keyword" | "regex", term, ignore_case)


@dataclass(frozen=True, slots=True)
class Plan:
    """One filter as atoms: passes when every `need` atom hits, no `veto` atom does, and
    `extra` (if any) accepts the line."""

    need: tuple[Atom, ...]
    veto: tuple[Atom, ...] = ()
    extra: Callable[[Line], bool] | None = None


def plan_of(line_filter: LineFilter) -> Plan:
    """The plan of a filter that does not pass everything: its keyword terms and regex must
    hit, its excluded terms must not, its fields are the predicate."""
    fold = line_filter.ignore_case
    need: list[Atom] = [("keyword", term, fold) for term in line_filter.keywords]
    if line_filter.regex:
        need.append(("regex", line_filter.regex, fold))
    veto = tuple(("keyword", term, fold) for term in line_filter.exclude)
    return Plan(tuple(need), veto, fields_test(line_filter.fields, fold))


class _Keywords:
    """An Aho-Corasick automaton over some keywords; `hits` names the ones in a text."""

    def __init__(self, words: dict[str, int]) -> None:
        self.automaton = ahocorasick.Automaton()
        for word, atom in words.items():
            self.automaton.add_word(word, atom)
        self.automaton.make_automaton()

    def hits(self, text: str) -> set[int]:
        return {atom for _, atom in self.automaton.iter(text)}


def _options(ignore_case: bool) -> re2.Options:
    options = re2.Options()
    options.log_errors = False
    options.case_sensitive = not ignore_case
    return options


class _Regexes:
    """An RE2 set over the regexes of one case mode, searched one by one when it fails."""

    def __init__(self, patterns: dict[str, int], ignore_case: bool, max_mem: int) -> None:
        self.patterns = patterns
        self.atoms = list(patterns.values())
        self.ignore_case = ignore_case
        self._searches: list[tuple[int, Callable[[str], Any]]] | None = None  # compiled when first needed
        options = _options(ignore_case)
        options.max_mem = max_mem
        self.set: re2.Set | None = re2.Set.SearchSet(options)
        self.set.Add("")  # matches every text: an answer without it (index 0) is a failure
        for pattern in patterns:
            self.set.Add(pattern)
        try:
            self.set.Compile()
        except re2.error:
            self.set = None
            log.warning("%d regexes are too large for one RE2 set; each is searched on its own", len(patterns))

    def hits(self, text: str) -> set[int]:
        if self.set is not None:
            found = self.set.Match(text)
            if found:  # holds index 0 whenever the set did not fail
                atoms = self.atoms
                return {atoms[k - 1] for k in found if k}
        if self._searches is None:
            if self.set is not None:
                log.warning("an RE2 set failed on a line (%d regexes); such lines searched one by one", len(self.atoms))
            options = _options(self.ignore_case)  # as `compile_filter` compiles each regex
            self._searches = [(atom, re2.compile(p, options).search) for p, atom in self.patterns.items()]
        return {atom for atom, search in self._searches if search(text) is not None}


class FilterSet:
    """Distinct filters of one stream (as plans), compiled to decide all their verdicts in one pass."""

    def __init__(self, plans: Sequence[Plan], max_mem: int = SET_MAX_MEM) -> None:
        ids: dict[Atom, int] = {}
        for plan in plans:
            for atom in (*plan.need, *plan.veto):
                ids.setdefault(atom, len(ids))
        words = {term: i for (kind, term, fold), i in ids.items() if kind == "keyword" and not fold}
        folded = {term.casefold(): i for (kind, term, fold), i in ids.items() if kind == "keyword" and fold}
        # two folded atoms can be one word ("STRASSE", "straße"): the word hits both
        self._aliases = {
            i: folded[term.casefold()] for (kind, term, fold), i in ids.items() if kind == "keyword" and fold
        }
        self._exact = _Keywords(words) if words else None
        self._folded = _Keywords(folded) if folded else None
        self._regexes = [
            _Regexes(patterns, fold, max_mem)
            for fold in (False, True)
            if (patterns := {term: i for (kind, term, f), i in ids.items() if kind == "regex" and f == fold})
        ]
        # a plan with a `need` atom is looked at only for lines where that atom hit; one that
        # is that atom alone (the commonest filter) keeps every such line without more ado
        self._size = len(plans)
        self._single: dict[int, list[int]] = {}
        self._triggered: dict[int, list[tuple[int, frozenset[int], frozenset[int], Callable[[Line], bool] | None]]] = {}
        self._always: list[tuple[int, frozenset[int], Callable[[Line], bool] | None]] = []
        for k, plan in enumerate(plans):
            need = [self._word(ids[a]) for a in plan.need]
            veto = frozenset(self._word(ids[a]) for a in plan.veto)
            if len(set(need)) == 1 and not veto and plan.extra is None:
                self._single.setdefault(need[0], []).append(k)
            elif need:
                self._triggered.setdefault(need[0], []).append((k, frozenset(need[1:]), veto, plan.extra))
            else:
                self._always.append((k, veto, plan.extra))

    def _word(self, atom: int) -> int:
        """The atom that stands for `atom` in hits (a folded keyword: its folded word's)."""
        return self._aliases.get(atom, atom)

    def hits(self, text: str) -> set[int]:
        """The atoms that hit `text`."""
        hits: set[int] = set()
        if self._exact is not None:
            hits |= self._exact.hits(text)
        if self._folded is not None:
            hits |= self._folded.hits(text.casefold())
        for regexes in self._regexes:
            hits |= regexes.hits(text)
        return hits

    def select(self, lines: Sequence[Line]) -> list[list[int]]:
        """For each filter, in the order given, the indices of the lines it keeps."""
        kept: list[list[int]] = [[] for _ in range(self._size)]
        single, triggered, always = self._single, self._triggered, self._always
        for i, line in enumerate(lines):
            hits = self.hits(line["text"])
            for atom in hits:
                for k in single.get(atom, ()):
                    kept[k].append(i)
                for k, rest, veto, extra in triggered.get(atom, ()) if triggered else ():
                    if rest <= hits and not veto & hits and (extra is None or extra(line)):
                        kept[k].append(i)
            for k, veto, extra in always:
                if not veto & hits and (extra is None or extra(line)):
                    kept[k].append(i)
        return kept
