"""Pure text helpers for story deduplication: wire-copy normalisation and the features
the merge guards compare (numbers, names, negation). No I/O, no state."""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from typing import NamedTuple, TypeVar, cast

from monitor.dedupe import lexicon
from monitor.dedupe.boilerplate import heads, tails
from monitor.normalize import fold_keep_case, html_to_text

# --- folding ---------------------------------------------------------------------------


# --- wire prefixes and outlet suffixes -------------------------------------------------

_PREFIX_LINES = lexicon.lines("wire-prefixes.txt")
_PREFIX_WORDS = "|".join(
    re.escape(line.removesuffix("*").strip()).replace(r"\ ", " ") for line in _PREFIX_LINES
)
_BARE_WORDS = "|".join(
    line.removesuffix("*").strip() for line in _PREFIX_LINES if line.endswith("*")
)
# "UPDATE 2-", "EXCLUSIVE-", "WRAPUP 1-", "Breaking News:", "WATCH |" (repeated)
_PREFIX = re.compile(rf"^\s*(?:(?:{_PREFIX_WORDS})(?:\s*\d+)?\s*(?:-|:|\||/)\s*)+", re.IGNORECASE)
_UPDATE_NO = re.compile(r"^\s*(?:REFILE-)?UPDATE\s*(\d+)?\s*[-:]", re.IGNORECASE)
# bare "WRAPUP " without punctuation, e.g. "WRAPUP Stocks slide ..."
_PREFIX_BARE = re.compile(rf"^\s*(?:{_BARE_WORDS})\s+(?=[A-Z])")

# An agency tag in brackets: "(AFP)", "(Reuters)", "[AP]" — one to three capitalised
# words, the form every wire uses; no outlet is named here (a feed's own recurring tags
# are learned per feed: monitor/dedupe/boilerplate.py).
_TAG = r"[A-Z][A-Za-z.&'-]{1,20}(?: [A-Z][A-Za-z.&'-]{1,20}){0,2}"
_PAREN_OUTLET = re.compile(rf"\s*[(\[](?:{_TAG})[)\]]\s*$|\s*\((?:{_TAG})\)\s*(?=-|:)")
# summary datelines: "LONDON (Reuters) - ", "SEOUL, Sept 13 (AFP) -", "MOSCOW: "
_DATELINE = re.compile(
    rf"^\s*[A-Z][A-Z .,'/-]{{1,40}}(?:,\s*[A-Za-z]{{3,9}}\.?\s+\d{{1,2}})?\s*"
    rf"(?:\((?:{_TAG})\)\s*)?(?:-|:)\s+"
)
_WS = re.compile(r"\s+")


# Cheap necessary condition for _PREFIX on ASCII text, where IGNORECASE is plain
# lower-casing: the text starts with a prefix word. Non-ASCII text always goes to the
# regex ("ı" matches "I" under IGNORECASE).
_PREFIX_STARTS = tuple(line.removesuffix("*").strip().lower() for line in _PREFIX_LINES)


def _strip_once(text: str, source: str) -> str:
    # (``"-" in s or ...`` rather than ``frozenset.isdisjoint(s)``: far cheaper)
    head = text[:40]
    if "-" in head or ":" in head or "|" in head or "/" in head:
        head = text.lstrip()[:16]  # the longest prefix word has 13 characters
        if not head.isascii() or head.lower().startswith(_PREFIX_STARTS):
            text = _PREFIX.sub("", text)
    if text[:1] in "WFEwfe":
        text = _PREFIX_BARE.sub("", text)
    if "(" in text or "[" in text:
        text = _PAREN_OUTLET.sub(" ", text)
    text = text.strip()
    if source:
        src = _source_key(source)
        if src and len(text) > len(src) + 3 and text[-len(src) :].casefold() == src:
            low = text.casefold()
            for sep in (" - ", " | ", " : ", " -- ", " \u2022 "):
                tail = sep + src
                if len(text) > len(tail) and low.endswith(tail):
                    text = text[: -len(tail)].rstrip()
                    break
    return text


@functools.lru_cache(maxsize=1024)
def _source_key(source: str) -> str:
    return fold_keep_case(source).strip().casefold()


def strip_wire(title: str, source: str = "") -> str:
    """Title without wire prefixes ("UPDATE 2-", "EXCLUSIVE-"), outlet suffixes
    ("- Reuters", "| AP News", " - BBC News", the item's own outlet) and "(AFP)" tags.
    Case is kept."""
    text = fold_keep_case(title)
    if "  " in text or "\n" in text or "\t" in text:
        text = _WS.sub(" ", text)
    text = text.strip()
    for _ in range(3):
        stripped = _strip_once(text, source)
        if stripped == text:
            break
        text = stripped
    return text.strip(" -|:")


def clean_summary(summary: str) -> str:
    """Plain-text summary without HTML, datelines and "(AFP)" tags; case kept."""
    if "<" in summary or "&" in summary:
        summary = html_to_text(summary)
    # (str.split and \s agree on what whitespace is: this is _WS.sub(" ", ...).strip())
    text = " ".join(fold_keep_case(summary).split())
    if "A" <= text[:1] <= "Z":  # a dateline starts with a capital letter
        text = _DATELINE.sub("", text, count=1)
    if "(" in text:
        text = _WS.sub(" ", _PAREN_OUTLET.sub(" ", text))
    return text


def update_number(title: str) -> int:
    """The wire update counter: "UPDATE 2-..." -> 2, "UPDATE-..." -> 1, else 0."""
    m = _UPDATE_NO.match(fold_keep_case(title))
    if not m:
        return 0
    return int(m.group(1)) if m.group(1) else 1


# --- tokens ----------------------------------------------------------------------------

STOPWORDS = lexicon.words("stopwords-en.txt")
_NEGATION_LINES = lexicon.lines("negations-en.txt")
NEGATIONS = frozenset(line for line in _NEGATION_LINES if " " not in line)

# "no" opening a compound ("no-fly zone", "no-confidence vote") negates nothing
_NO_COMPOUND = re.compile(r"\bno-(?=[a-z])", re.IGNORECASE)

_NUMBER_WORDS = dict(lexicon.pairs("numbers-en.txt"))
_MONTHS_DAYS = lexicon.words("calendar-en.txt")

_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")
_TOKEN = re.compile(r"[A-Za-z0-9]+(?:\.[0-9]+)?(?:'[A-Za-z]+)?")
_NUMERIC = re.compile(r"^\d+(?:\.\d+)?")
_ORDINAL = re.compile(r"^(\d+)(st|nd|rd|th)$")
# "2,000" "6.1" "$5bn" "86th" "10%" -> the numeric value as a string
_NUM_IN_TEXT = re.compile(r"\d+(?:\.\d+)?")
_MAGNITUDE = {"k": "e3", "m": "e6", "mn": "e6", "bn": "e9", "b": "e9", "tn": "e12"}


def stem(token: str) -> str:
    """Very light English suffix stripping so "kills"/"killed"/"killing" share a key."""
    if len(token) <= 3 or not token.isalpha():
        return token
    if token.endswith(("ies", "ied")) and len(token) > 4:
        return token[:-3] + "y"  # studies/studied -> study, married -> marry
    if token.endswith("sses"):
        token = token[:-2]
    elif token.endswith("s") and not token.endswith(("ss", "us", "is")):
        token = token[:-1]
    for suffix in ("ing", "ed"):
        if token.endswith(suffix) and len(token) - len(suffix) >= 3:
            token = token[: -len(suffix)]
            if len(token) > 3 and token[-1] == token[-2] and token[-1] not in "lsz":
                token = token[:-1]  # acquitted -> acquit, stopped -> stop
            break
    if token.endswith("e") and len(token) > 3:
        token = token[:-1]
    return token


# Phrasal verbs that negate like "rejects"/"cancels": (stem of the verb, particle)
_PHRASAL_NEGATIONS = frozenset(
    (stem(verb), particle)
    for verb, particle in (line.split() for line in _NEGATION_LINES if " " in line)
)
_PARTICLES = frozenset(p for _, p in _PHRASAL_NEGATIONS)


def raw_tokens(text: str) -> list[str]:
    """Case-kept word tokens of folded text; possessive "'s" dropped, hyphens split."""
    if "," in text:
        text = _THOUSANDS.sub("", text)
    out: list[str] = []
    for tok in _tokens(text):
        if tok.endswith("'s") or tok.endswith("'S"):
            tok = tok[:-2]
        if tok:
            out.append(tok)
    return out


def _number_token(tok: str) -> str | None:
    low = tok.lower()
    if low in _NUMBER_WORDS:
        return _NUMBER_WORDS[low]
    m = _ORDINAL.match(low)
    if m:
        return m.group(1) + m.group(2)
    m = _NUMERIC.match(low)
    if not m:
        return None
    rest = low[m.end() :]
    if rest in _MAGNITUDE or rest in ("", "pc", "pct"):
        value = m.group(0)
        if "." in value:
            value = value.rstrip("0").rstrip(".")
        return value
    return None  # "g7", "covid19", "f35" are names, handled as words


# Headline vocabulary that outlets use interchangeably; folded to one key for matching
# (lexicon/synonyms-en.txt). Each word and its stem fold to the group's head.
SYNONYMS: dict[str, str] = {}
_ACRONYM_DOTS = re.compile(r"\b((?:[A-Za-z]\.){2,})")
for _head, _words in lexicon.groups("synonyms-en.txt"):
    for _w in _words:
        SYNONYMS.setdefault(_w, _head)
        _st = stem(_w)
        if _st != _w:
            SYNONYMS.setdefault(_st, _head)

# Synonym targets are keys too: "vote" itself must fold to "vote", not to its stem "vot"
# (which "votes" -> "vote" would then miss).
for _target in sorted(set(SYNONYMS.values())):
    for _w in _target.split():
        SYNONYMS.setdefault(stem(_w), _w)

# A merge is vetoed when one title has one side of a pair and the other the other side
# (lexicon/contrasts-en.txt).
_CONTRASTS = lexicon.pairs("contrasts-en.txt")
_CONTRAST_MAP: dict[str, set[str]] = {}


def _canon_word(word: str) -> str:
    syn = SYNONYMS.get(word)
    if syn is not None:
        return syn
    st = stem(word)
    return SYNONYMS.get(st, st)


for _x, _y in _CONTRASTS:
    _cx, _cy = _canon_word(_x), _canon_word(_y)
    _CONTRAST_MAP.setdefault(_cx, set()).add(_cy)
    _CONTRAST_MAP.setdefault(_cy, set()).add(_cx)


@dataclass(frozen=True, slots=True)
class TitleFeatures:
    """What the scorer and guards need from one title."""

    key: str  # exact-title key: folded, stripped, punctuation-free
    stems: tuple[str, ...]  # content-word stems, synonyms folded (blocking and set scores)
    numbers: frozenset[str]
    days: frozenset[str]  # weekdays named
    # runs of consecutive capitalised words, as stems: surely names (mid-sentence capitals
    # in a sentence-case headline, acronyms, a multi-word run opening the headline) ...
    names: tuple[tuple[str, ...], ...]
    # ... a single capitalised word opening a sentence-case headline (often a name) ...
    first: tuple[tuple[str, ...], ...]
    # ... and runs in Title Case headlines, where capitals say little
    maybe: tuple[tuple[str, ...], ...]
    initials: str  # first letters of the words (acronyms spelled out): "USGS" check
    negated: bool
    series: bool


_SERIES_PHRASES = lexicon.lines("series-en.txt")
_SERIES = re.compile(r"\b(?:" + "|".join(map(re.escape, _SERIES_PHRASES)) + r")\b")
WEEKDAYS = frozenset(["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"])


SERIES_MAX_WORDS = 4  # a slot's name is short: "Live updates", "The latest headlines"
_ALNUM = re.compile(r"[^\W_]+")


def maybe_series(title: str) -> bool:
    """A cheap necessary condition for ``is_series_title``: a series word is in it."""
    return not _SERIES_WORDS.isdisjoint(_ALNUM.findall(title.casefold()))


def is_series_title(stripped: str) -> bool:
    """Recurring titles (live blogs, briefings, "Latest headlines") that name a slot, not
    a story: the whole title, or the part before or after its first separator, is a short
    phrase (at most ``SERIES_MAX_WORDS`` words) holding a series phrase. "Live updates:
    Ukraine war" is one; "Quiz show whistle-blower dies at 93" is a story."""
    parts = [stripped]
    for seg, rest in heads(stripped)[:1]:
        parts += [seg, rest]
    for seg, rest in tails(stripped)[:1]:
        parts += [seg, rest]
    for part in parts:
        words = _ALNUM.findall(part.casefold())
        if (
            words
            and len(words) <= SERIES_MAX_WORDS
            and not _SERIES_WORDS.isdisjoint(words)
            and _SERIES.search(" ".join(words))
        ):
            return True
    return False


def canon(low: str) -> str:
    """Stem of a folded word with news synonyms folded."""
    return _canon_word(low)


_NON_NAMES = lexicon.words("not-names-en.txt")


_WordInfo = tuple[
    str,
    str | None,
    tuple[str, ...],
    bool,
    bool,
    bool,
    bool,
    bool,
    bool,
    bool,
    bool,
    bool,
    tuple[str, ...],
]


@functools.lru_cache(maxsize=1 << 16)
def _word_info(w: str) -> _WordInfo:
    """(folded, number, stems, stopword, acronym, capitalised name-like, negation, content
    word, starts with a capital, starts with a letter, all capitals, weekday, index stems)
    of one token (tokens are ASCII). The index stems are the number or the stems,
    interned: every window entry holding a word shares one string."""
    low = w.casefold()
    acronym = w.isupper() and len(w) >= 2 and w.isalpha()
    negation = low in NEGATIONS or low.endswith("n't")
    num = _number_token(w)
    stop = low in STOPWORDS and not acronym
    parts = tuple(canon(low).split()) if num is None and not stop else ()
    capital = w[0].isupper() and low not in _MONTHS_DAYS and low not in _NON_NAMES and len(low) >= 2
    content = len(w) > 3 and w.lower() not in STOPWORDS and w[0].isalpha()
    index = (sys.intern(num),) if num is not None else tuple(sys.intern(p) for p in parts)
    return (
        low, num, parts, stop, acronym, capital, negation, content, w[0].isupper(),
        w[0].isalpha(), w.isupper(), low in WEEKDAYS, index,
    )  # fmt: skip


class TitleKey(NamedTuple):
    """The cheap part of a title's features: enough to index it."""

    stripped: str  # wire prefixes/outlet suffixes removed, case kept
    key: str  # exact-title key
    stems: tuple[str, ...]  # unique content-word stems, in order
    series: bool


# Every alternative of _SERIES contains one of these words: the regex runs only then.
_SERIES_WORDS = frozenset(w for phrase in _SERIES_PHRASES for w in phrase.split())
_TOKEN_CACHE_MAX = 1 << 17
_token_cache: dict[str, _WordInfo] = {}


def _token_info(tok: str) -> _WordInfo:
    """``_word_info`` of one raw token, possessive "'s" dropped, cached by the raw token.
    (A token starts with a letter or digit: something is always left.)"""
    w = tok[:-2] if tok.endswith(("'s", "'S")) else tok
    info = _word_info(w)
    if len(_token_cache) >= _TOKEN_CACHE_MAX:
        _token_cache.clear()  # bounded: a restart streams many rare words once
    _token_cache[tok] = info
    return info


def _tokens(text: str) -> list[str]:
    """The word tokens of a title or summary (hyphens split, possessive "'s" dropped)."""
    return _TOKEN.findall(text.replace("-", " ").replace("'s ", " "))


_T = TypeVar("_T")


def _cached_each(tokens: list[str], cache: dict[str, _T], make: Callable[[str], _T]) -> list[_T]:
    """``make(token)`` for each token, from ``cache`` where it is there (``make`` fills the
    cache); no Python-level loop when every token is known."""
    found = list(map(cache.get, tokens))
    if None not in found:
        return cast(list[_T], found)
    return [got if got is not None else make(tok) for got, tok in zip(found, tokens, strict=True)]


def _word_infos(stripped: str) -> list[_WordInfo]:
    """``_word_info`` of each of ``raw_tokens`` of a stripped title, acronym dots
    removed: one regex pass and a look-up per token. The last result is kept: a new item's
    features follow its key (the caller does not change the list)."""
    global _last_infos
    last = _last_infos
    if last[0] == stripped:
        return last[1]
    text = stripped
    if "." in text:
        text = _ACRONYM_DOTS.sub(lambda m: m.group(1).replace(".", ""), text)
    if "," in text:
        text = _THOUSANDS.sub("", text)
    infos = _cached_each(_tokens(text), _token_cache, _token_info)
    _last_infos = (stripped, infos)
    return infos


_last_infos: tuple[str, list[_WordInfo]] = ("", [])


def title_key(title: str, source: str = "") -> TitleKey:
    """Stripped title, exact key and index stems (no guard features). The hot path of a
    restart (run once per stored entry): one regex pass and a per-word cache; wire copies
    share their stripped title, so its key and stems are kept in a bounded cache too."""
    global _titles, _titles_old
    stripped = strip_wire(title, source)
    parts = _titles.get(stripped) or _titles_old.get(stripped)
    if parts is None:
        parts = _title_parts(stripped)
        _titles[stripped] = parts
        if len(_titles) >= _TITLE_CACHE_MAX // 2:  # two generations, the older dropped
            _titles, _titles_old = {}, _titles
    return TitleKey(stripped, *parts)


_TITLE_CACHE_MAX = 1 << 12
_titles: dict[str, tuple[str, tuple[str, ...], bool]] = {}
_titles_old: dict[str, tuple[str, tuple[str, ...], bool]] = {}


def _title_parts(stripped: str) -> tuple[str, tuple[str, ...], bool]:
    """(exact key, unique index stems, series?) of a stripped title."""
    infos = _word_infos(stripped)
    folded = list(map(_FOLDED, infos))
    stems = dict.fromkeys(chain.from_iterable(map(_INDEX_STEMS, infos)))
    series = not _SERIES_WORDS.isdisjoint(folded) and is_series_title(stripped)
    return " ".join(folded), tuple(stems), series


_FOLDED, _INDEX_STEMS = itemgetter(0), itemgetter(12)  # (of a _WordInfo)


def features(title: str, source: str = "") -> TitleFeatures:
    """Features of a title after wire prefixes and outlet suffixes are stripped."""
    return TitleFeatures(*feature_fields(title, source))


_Runs = tuple[tuple[str, ...], ...]
FeatureFields = tuple[
    str, tuple[str, ...], frozenset[str], frozenset[str], _Runs, _Runs, _Runs, str, bool, bool
]


_NO_BREAKS: frozenset[int] = frozenset()
_CLAUSE = re.compile(r"[,;]\s")


def _comma_breaks(stripped: str) -> frozenset[int]:
    """Indices (in ``_word_infos(stripped)``) of the tokens that open a comma- or
    semicolon-separated part: a name run does not cross one."""
    text = stripped
    if "." in text:
        text = _ACRONYM_DOTS.sub(lambda m: m.group(1).replace(".", ""), text)
    text = _THOUSANDS.sub("", text)
    out = set()
    n = 0
    for part in _CLAUSE.split(text):
        if n:
            out.add(n)
        n += len(_tokens(part))
    return frozenset(out)


def feature_fields(title: str, source: str = "") -> FeatureFields:
    """``features`` as a plain tuple, in ``TitleFeatures`` field order."""
    stripped = strip_wire(title, source)
    infos = _word_infos(stripped)
    # Title Case (capitals say little) and all-caps headlines (capitals say nothing)
    n_content = n_caps = n_letters = 0
    upper = True
    for info in infos:
        if info[7]:
            n_content += 1
            n_caps += info[8]
        if info[9]:
            n_letters += 1
            upper = upper and info[10]
    titlecase = n_content >= 2 and n_caps >= 0.95 * n_content
    all_caps = n_letters >= 3 and upper
    breaks = _comma_breaks(stripped) if ", " in stripped or "; " in stripped else _NO_BREAKS
    stems: list[str] = []
    numbers: set[str] = set()
    names: list[tuple[str, ...]] = []
    first: list[tuple[str, ...]] = []
    maybe: list[tuple[str, ...]] = []
    run: list[str] = []
    run_start = -1
    run_acronym = False
    negated = False
    n_no = 0  # plain "no"s: counted, then compared with the "no-" compounds
    initials: list[str] = []
    # i == len(infos) closes the last run
    for i in range(len(infos) + 1):
        if i < len(infos):
            low, num, parts, stop, acronym, capital, negation = infos[i][:7]
            initials.append(low if acronym and not all_caps else low[:1])
            if low == "no":
                n_no += 1
            else:
                negated = negated or negation
            if i + 1 < len(infos) and infos[i + 1][0] in _PARTICLES:
                negated = negated or (stem(low), infos[i + 1][0]) in _PHRASAL_NEGATIONS
            if num is not None:
                numbers.add(num)
                stems.append(num)
            elif not stop:
                stems.extend(parts)
                if capital and not (run and i in breaks):  # a capitalised word: the run goes on
                    if not run:
                        run_start = i
                    run.extend(parts)
                    run_acronym = run_acronym or (acronym and not all_caps)
                    continue
        if run:  # the run ends here (at a lower-case word, or at a comma: "Ridgecrest, Calif")
            if all_caps:
                pass
            elif run_acronym or (not titlecase and (run_start > 0 or len(run) > 1)):
                names.append(tuple(run))
            elif not titlecase:
                first.append(tuple(run))
            else:
                maybe.append(tuple(run))
            run.clear()
            if i < len(infos) and i in breaks and infos[i][5] and not infos[i][3]:
                # the capitalised word after the comma opens the next run
                run_start = i
                run.extend(infos[i][2])
                run_acronym = infos[i][4] and not all_caps
                continue
        run_acronym = False
    # "no-fly zone", "no-frills": a "no" that opens a compound negates nothing
    if n_no > (len(_NO_COMPOUND.findall(stripped)) if "-" in stripped else 0):
        negated = True
    key = " ".join([info[0] for info in infos])
    return (
        key,
        tuple(stems),
        frozenset(numbers),
        frozenset([info[0] for info in infos if info[11]]),
        tuple(names),
        tuple(first),
        tuple(maybe),
        "".join(initials),
        negated,
        not _SERIES_WORDS.isdisjoint(key.split()) and is_series_title(stripped),
    )


_SUMMARY_CACHE_MAX = 1 << 17
_summary_cache: dict[str, tuple[str, ...]] = {}


def _summary_word(tok: str) -> tuple[str, ...]:
    """Stems of one raw summary token (possessive "'s" still attached): none for
    stopwords and one-letter words."""
    w = tok[:-2] if tok.endswith(("'s", "'S")) else tok
    low = w.casefold()
    out: tuple[str, ...] = ()
    if w and low not in STOPWORDS and len(low) >= 2:
        out = tuple(sys.intern(p) for p in canon(low).split())
    if len(_summary_cache) >= _SUMMARY_CACHE_MAX:
        _summary_cache.clear()  # bounded: summaries bring many rare words
    _summary_cache[tok] = out
    return out


def summary_stems(text: str) -> frozenset[str]:
    """Content-word stems of a (cleaned) summary, synonyms folded: what summaries are
    compared on. A per-word cache, as for titles."""
    if "," in text:
        text = _THOUSANDS.sub("", text)
    stems = _cached_each(_tokens(text), _summary_cache, _summary_word)
    return frozenset(chain.from_iterable(stems))


def contrast(a: frozenset[str], b: frozenset[str]) -> bool:
    """One title says "open"/"rise"/"acquitted" where the other says the opposite."""
    for x in a - b:
        opposite = _CONTRAST_MAP.get(x)
        if opposite and any(y in b and y not in a for y in opposite):
            return True
    return False
