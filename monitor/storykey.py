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

from monitor.normalize import fold_keep_case, html_to_text

# --- folding ---------------------------------------------------------------------------


# --- wire prefixes and outlet suffixes -------------------------------------------------

_PREFIX_WORDS = (
    r"UPDATE|UPDATED|REFILE|CORRECTED|CORRECTION|CORRECTS|EXCLUSIVE|WRAPUP|WRAP|ANALYSIS|"
    r"FACTBOX|INSTANT VIEW|BREAKING(?: NEWS)?|RPT|REPEAT|URGENT|FLASH|ALERT|WATCH|VIDEO|"
    r"PHOTOS?|EXPLAINER|BRIEF|BRIEFLY|GRAPHIC|INSIGHT|FOCUS|PREVIEW|REFILE-UPDATE"
)
# "UPDATE 2-", "EXCLUSIVE-", "WRAPUP 1-", "Breaking News:", "WATCH |" (repeated)
_PREFIX = re.compile(rf"^\s*(?:(?:{_PREFIX_WORDS})(?:\s*\d+)?\s*(?:-|:|\||/)\s*)+", re.IGNORECASE)
_UPDATE_NO = re.compile(r"^\s*(?:REFILE-)?UPDATE\s*(\d+)?\s*[-:]", re.IGNORECASE)
# bare "WRAPUP " without punctuation, e.g. "WRAPUP Stocks slide ..."
_PREFIX_BARE = re.compile(r"^\s*(?:WRAPUP|FACTBOX|EXCLUSIVE)\s+(?=[A-Z])")

_OUTLETS = (
    r"Reuters|AP|AP News|Associated Press|AFP|Agence France-Presse|BBC|BBC News|"
    r"BBC World Service|CNN|CNN\.com|Al Jazeera|Al Jazeera English|The Guardian|Guardian|"
    r"The New York Times|NYT|New York Times|Washington Post|The Washington Post|WSJ|"
    r"Wall Street Journal|Fox News|Daily Mail|Mail Online|Sky News|NBC News|CBS News|"
    r"ABC News|NPR|Bloomberg|CNA|Channel NewsAsia|The Straits Times|Straits Times|"
    r"NZ Herald|The New Zealand Herald|RNZ|1 NEWS|1News|SMH|The Sydney Morning Herald|"
    r"Sydney Morning Herald|GMA News|GMA News Online|ABS-CBN News|ABS-CBN|Philstar\.com|"
    r"Philstar|The Daily Telegraph|Daily Telegraph|The Telegraph|LA Times|Los Angeles Times|"
    r"DW|Deutsche Welle|France 24|FRANCE 24|NHK|NHK World|NHK WORLD-JAPAN|Euronews|"
    r"The Independent|Independent|Yonhap|Kyodo|Xinhua|TASS|The Korea Times|Korea Times|"
    r"The Hindu|Times of India|UPI|Axios|Politico|The Hill|Newsweek|Forbes"
)
_SUFFIX = re.compile(rf"\s*(?:[-|:]|\u2022)\s*(?:{_OUTLETS})(?:\s*\.com)?\s*$", re.IGNORECASE)
_PAREN_OUTLET = re.compile(rf"\s*\((?:{_OUTLETS})\)\s*", re.IGNORECASE)
# summary datelines: "LONDON (Reuters) - ", "SEOUL, Sept 13 (AFP) -", "MOSCOW: "
_DATELINE = re.compile(
    rf"^\s*[A-Z][A-Z .,'/-]{{1,40}}(?:,\s*[A-Za-z]{{3,9}}\.?\s+\d{{1,2}})?\s*"
    rf"(?:\((?:{_OUTLETS})\)\s*)?(?:-|:)\s+"
)
_WS = re.compile(r"\s+")


# Cheap necessary conditions for _PREFIX and _SUFFIX on ASCII text, where IGNORECASE is
# plain lower-casing: the text starts with a prefix word ("PHOTOS?" -> "photo") or ends
# with an outlet name or ".com". Non-ASCII text always goes to the regex ("ı" matches "I"
# under IGNORECASE).
_PREFIX_STARTS = tuple(
    re.sub(r"\(\?:[^)]*\)\?|\w\?", "", w).lower() for w in _PREFIX_WORDS.split("|")
)
_OUTLET_ENDS = (*(o.replace("\\.", ".").lower() for o in _OUTLETS.split("|")), ".com")
_OUTLET_END2 = frozenset(o[-2:] for o in _OUTLET_ENDS)  # a set look-up before endswith


def _outlet_end(low: str) -> bool:
    return low[-2:] in _OUTLET_END2 and low.endswith(_OUTLET_ENDS)


def _strip_once(text: str, source: str) -> str:
    # (``"-" in s or ...`` rather than ``frozenset.isdisjoint(s)``: a tenth of the cost)
    head = text[:40]
    if "-" in head or ":" in head or "|" in head or "/" in head:
        head = text.lstrip()[:16]  # the longest prefix word has 13 characters
        if not head.isascii() or head.lower().startswith(_PREFIX_STARTS):
            text = _PREFIX.sub("", text)
    if text[:1] in "WFEwfe":
        text = _PREFIX_BARE.sub("", text)
    tail = text[-48:]
    if ("-" in tail or "|" in tail or ":" in tail or "\u2022" in tail) and (
        not tail.isascii() or _outlet_end(tail.rstrip().lower())
    ):
        text = text[: len(text) - len(tail)] + _SUFFIX.sub("", tail)
    if "(" in text:
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

STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "and",
        "or",
        "but",
        "of",
        "to",
        "in",
        "on",
        "at",
        "by",
        "for",
        "from",
        "with",
        "as",
        "into",
        "onto",
        "over",
        "under",
        "up",
        "down",
        "out",
        "off",
        "about",
        "after",
        "before",
        "amid",
        "among",
        "between",
        "during",
        "since",
        "until",
        "via",
        "vs",
        "v",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "am",
        "has",
        "have",
        "had",
        "having",
        "do",
        "does",
        "did",
        "will",
        "would",
        "shall",
        "should",
        "can",
        "could",
        "may",
        "might",
        "must",
        "it",
        "its",
        "it's",
        "this",
        "that",
        "these",
        "those",
        "there",
        "here",
        "he",
        "she",
        "they",
        "we",
        "you",
        "i",
        "his",
        "her",
        "their",
        "our",
        "your",
        "my",
        "him",
        "them",
        "us",
        "who",
        "whom",
        "whose",
        "which",
        "what",
        "when",
        "where",
        "why",
        "how",
        "than",
        "then",
        "so",
        "if",
        "not",
        "no",
        "nor",
        "too",
        "very",
        "just",
        "also",
        "still",
        "yet",
        "again",
        "more",
        "most",
        "less",
        "least",
        "much",
        "many",
        "some",
        "any",
        "all",
        "each",
        "every",
        "both",
        "few",
        "other",
        "such",
        "own",
        "same",
        "s",
        "t",
        "says",
        "said",
        "say",
        "tells",
        "told",
        "report",
        "reports",
        "reported",
        "new",
        "news",
        "latest",
        "update",
        "live",
        "video",
        "watch",
        "photos",
        "amid",
        "against",
        "through",
        "per",
        "while",
        "upon",
        "within",
        "without",
        "across",
        "behind",
        "near",
        "like",
        "says'",
        "ahead",
        "set",
        "gets",
        "get",
        "got",
        "make",
        "makes",
        "himself",
        "herself",
        "itself",
        "themselves",
        "inside",
        "outside",
        "toward",
        "towards",
        "despite",
        "around",
    ]
)

NEGATIONS = frozenset(
    [
        "not",
        "no",
        "never",
        "nobody",
        "nothing",
        "none",
        "neither",
        "nor",
        "cannot",
        "can't",
        "won't",
        "don't",
        "doesn't",
        "didn't",
        "isn't",
        "aren't",
        "wasn't",
        "weren't",
        "hasn't",
        "haven't",
        "hadn't",
        "shouldn't",
        "wouldn't",
        "couldn't",
        "without",
        "rejects",
        "rejected",
        "denies",
        "denied",
        "refuses",
        "refused",
        "fails",
        "failed",
        "scraps",
        "scrapped",
        "halts",
        "halted",
        "cancels",
        "cancelled",
        "canceled",
        "calls-off",
    ]
)

# Phrasal verbs that negate like "rejects"/"cancels": (stem of the verb, particle)
_PHRASAL_NEGATIONS = frozenset({("turn", "down"), ("rul", "out"), ("call", "off")})
_PARTICLES = frozenset(p for _, p in _PHRASAL_NEGATIONS)
# "no" opening a compound ("no-fly zone", "no-confidence vote") negates nothing
_NO_COMPOUND = re.compile(r"\bno-(?=[a-z])", re.IGNORECASE)

_NUMBER_WORDS = {
    "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7",
    "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12",
    "thirteen": "13", "fourteen": "14", "fifteen": "15", "sixteen": "16",
    "seventeen": "17", "eighteen": "18", "nineteen": "19", "twenty": "20", "thirty": "30",
    "forty": "40", "fifty": "50", "hundred": "100", "dozen": "12", "dozens": "dozens",
    "hundreds": "hundreds", "thousands": "thousands", "millions": "millions",
    "first": "1st", "second": "2nd", "third": "3rd", "fourth": "4th", "fifth": "5th",
}  # fmt: skip
_MONTHS_DAYS = frozenset(
    [
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
        "jan",
        "feb",
        "mar",
        "apr",
        "jun",
        "jul",
        "aug",
        "sep",
        "sept",
        "oct",
        "nov",
        "dec",
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
        "today",
        "tonight",
        "yesterday",
        "tomorrow",
    ]
)

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


# Headline vocabulary that outlets use interchangeably; folded to one key for matching.
SYNONYMS = {
    "u.s.": "us", "usa": "us", "america": "us", "american": "us", "americans": "us",
    "u.k.": "uk", "britain": "uk", "british": "uk", "brit": "uk", "u.n.": "un",
    "greek": "greece", "spanish": "spain", "turkish": "turkey", "french": "france",
    "german": "germany", "dutch": "netherlands", "swiss": "switzerland", "thai": "thailand",
    "chinese": "china", "japanese": "japan", "philippine": "philippines",
    "filipino": "philippines", "filipinos": "philippines", "pakistani": "pakistan",
    "afghan": "afghanistan", "iraqi": "iraq", "iranian": "iran", "israeli": "israel",
    "saudi": "saudi", "yemeni": "yemen", "egyptian": "egypt", "egyptians": "egypt",
    "kiwi": "nz", "aussie": "australia", "australian": "australia", "aust": "australia",
    "n.korea": "north korea", "s.korea": "south korea", "korean": "korea",
    "pm": "prime minister", "gop": "republican", "republicans": "republican",
    "premier": "prime minister", "defence": "defense",
    "ex": "former", "quake": "earthquake", "blast": "explosion", "explosions": "explosion",
    "bail-out": "bailout", "polls": "vote", "election": "vote", "elections": "vote",
    "votes": "vote", "voting": "vote", "voters": "vote", "dies": "dead", "die": "dead",
    "died": "dead", "death": "dead", "deaths": "dead", "killed": "dead", "kills": "dead",
    "kill": "dead", "killing": "dead", "slain": "dead", "jail": "prison", "jailed": "prison",
    "prisoners": "inmate", "prisoner": "inmate", "inmates": "inmate", "centre": "center",
    "facility": "center", "unveils": "launch", "unveil": "launch", "launches": "launch",
    "attempt": "bid", "try": "bid", "seizes": "seize", "captures": "seize",
    "biggest": "largest", "huge": "large", "giant": "large", "quits": "resign",
    "resigns": "resign", "steps": "step", "airstrike": "strike", "airstrikes": "strike",
    "strikes": "strike", "troops": "soldier", "soldiers": "soldier", "forces": "soldier",
    "militants": "militant", "rebels": "rebel", "coronavirus": "covid", "covid-19": "covid",
    "covid19": "covid", "virus": "covid", "sars-cov-2": "covid", "pandemic": "covid",
    "football": "soccer", "kid": "child", "kids": "child", "children": "child",
    "teen": "teenager", "teenage": "teenager", "teens": "teenager", "cop": "police",
    "cops": "police", "policeman": "police", "officers": "police", "vows": "vow",
    "pledges": "vow", "pledge": "vow", "promises": "vow", "meets": "meet", "meeting": "meet",
    "talks": "meet", "summit": "meet", "nuke": "nuclear", "nukes": "nuclear",
}  # fmt: skip
_ACRONYM_DOTS = re.compile(r"\b((?:[A-Za-z]\.){2,})")

# Headline verbs and nouns that wire rewrites swap for each other ("escapes assassination
# try" / "survives assassination attempt"). Each group folds to its first word; every
# inflection listed is folded, and so is its stem.
_GROUPS = (
    "survive survives survived escape escapes escaped",
    "release releases released free frees freed",
    "arrest arrests arrested detain detains detained nab nabs nabbed",
    "injure injures injured wound wounds wounded hurt",
    "approve approves approved endorse endorses endorsed back backs backed ok oks okd",
    "fall falls fell drop drops dropped slide slides slid slip slips slipped tumble "
    "tumbles tumbled sink sinks sank plunge plunges plunged dip dips dipped",
    "rise rises rose climb climbs climbed jump jumps jumped surge surges surged soar soars soared",
    "raise raises raised hike hikes hiked increase increases increased boost boosts boosted",
    "explosion bomb bombs bombing bombings blast blasts",
    "deal deals pact pacts accord accords agreement agreements treaty",
    "plane planes jet jets aircraft airliner airliners",
    "company companies firm firms",
    "stock stocks share shares equities",
    "urge urges urged",
    "large massive huge",
    "strong powerful",
    "unemployment jobless",
    "visit visits visited travel travels travelled traveled",
    "rescue rescues rescued save saves saved",
    "fire fires blaze blazes",
    "sack sacks sacked dismiss dismisses dismissed oust ousts ousted fired",
    "probe probes investigate investigates investigation inquiry",
    "pakistan pak",
    "new york nyc",
    "reach reaches reached clinch clinches clinched seal seals sealed arrive arrives arrived",
    "praise praises praised hail hails hailed laud lauds lauded",
    "condemn condemns condemned denounce denounces denounced slam slams slammed "
    "criticise criticises criticised criticize criticizes criticized",
    "impose imposes imposed slap slaps slapped",
    "resign resigns resigned quit quits abdicate abdicates abdicated",
    "dead murder murders murdered",
    "steal steals stole stolen snatch snatches snatched",
    "kidnap kidnaps kidnapped abduct abducts abducted",
    "marry marries married wed weds",
    "sick ill",
    "soldier army military",
    "government govt regime",
    "authorise authorises authorised authorize authorizes authorized",
    "ceasefire truce",
    "envoy envoys ambassador ambassadors diplomat diplomats",
)
for _group in _GROUPS:
    _words = _group.split()
    _head = _words[0] if not _group.startswith("new york") else "new york"
    for _w in _words if _head != "new york" else ["nyc"]:
        SYNONYMS.setdefault(_w, _head)
        _st = stem(_w)
        if _st != _w:
            SYNONYMS.setdefault(_st, _head)

# Synonym targets are keys too: "vote" itself must fold to "vote", not to its stem "vot"
# (which "votes" -> "vote" would then miss).
for _target in sorted(set(SYNONYMS.values())):
    for _w in _target.split():
        SYNONYMS.setdefault(stem(_w), _w)

# A merge is vetoed when one title has one side of a pair and the other the other side.
_CONTRASTS = (
    ("open", "close"), ("rise", "fall"), ("rises", "falls"), ("up", "down"),
    ("higher", "lower"), ("gain", "loss"), ("gains", "losses"), ("win", "lose"),
    ("wins", "loses"), ("win", "defeat"), ("beat", "lose"), ("lifts", "continues"),
    ("lifts", "extends"), ("lifts", "imposes"), ("acquitted", "convicted"),
    ("arrested", "released"), ("admitted", "released"), ("taken", "released"),
    ("approves", "rejects"), ("agrees", "rejects"), ("agrees", "quit"),
    ("agrees", "threatens"), ("accepts", "rejects"), ("appointed", "resigns"),
    ("appointed", "fired"), ("hired", "fired"), ("confirms", "denies"), ("starts", "ends"),
    ("begins", "ends"), ("surges", "plunges"), ("jumps", "drops"), ("jumps", "slides"),
    ("rallies", "slides"), ("rallies", "drops"), ("increases", "cuts"), ("raises", "cuts"),
    ("hikes", "cuts"), ("boosts", "cuts"), ("leads", "trails"), ("guilty", "innocent"),
    ("buys", "sells"), ("north", "south"), ("east", "west"), ("men", "women"),
    ("bans", "allows"), ("bans", "lifts"), ("suspends", "resumes"), ("enters", "leaves"),
    ("joins", "leaves"), ("joins", "quits"), ("arrives", "leaves"), ("arrives", "departs"),
    ("signs", "rejects"), ("before", "after"), ("weakens", "strengthens"),
    ("ends", "signs"), ("ends", "extends"), ("dies", "survives"), ("wins", "concedes"),
    ("first", "last"), ("wins", "trails"), ("acquits", "convicts"),
)  # fmt: skip
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


_SERIES = re.compile(
    r"\b(?:live(?: updates?| blog| coverage| news| results)?|as it happened|"
    r"(?:morning|evening|daily|weekly|midday|afternoon|news|press) (?:briefing|brief|digest|"
    r"update|wrap|roundup|newsletter)|briefing|latest headlines|top (?:stories|headlines)|"
    r"headlines|news in brief|the latest|podcast|newsletter|quiz|crossword|horoscopes?|"
    r"weather forecast|in pictures|photos of the day|pictures of the day|"
    r"week in pictures|what we know|letters|cartoon|editorial|things to know)\b"
)
WEEKDAYS = frozenset(["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"])


def is_series_title(folded: str) -> bool:
    """Recurring titles (live blogs, briefings, "Latest headlines") that name a slot,
    not a story."""
    return bool(_SERIES.search(folded))


def canon(low: str) -> str:
    """Stem of a folded word with news synonyms folded."""
    return _canon_word(low)


_NON_NAMES = frozenset({"pm", "ceo", "mp", "mps", "tv", "dj", "ii", "iii", "jr", "sr"})


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
_SERIES_WORDS = frozenset(
    {
        "live", "happened", "briefing", "brief", "digest", "update", "updates", "wrap",
        "roundup", "newsletter", "headlines", "latest", "stories", "podcast", "quiz",
        "crossword", "horoscope", "horoscopes", "forecast", "pictures", "photos", "know",
        "letters", "cartoon", "editorial", "things",
    }
)  # fmt: skip
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
    series = not _SERIES_WORDS.isdisjoint(folded) and is_series_title(" ".join(folded))
    return " ".join(folded), tuple(stems), series


_FOLDED, _INDEX_STEMS = itemgetter(0), itemgetter(12)  # (of a _WordInfo)


def features(title: str, source: str = "") -> TitleFeatures:
    """Features of a title after wire prefixes and outlet suffixes are stripped."""
    return TitleFeatures(*feature_fields(title, source))


_Runs = tuple[tuple[str, ...], ...]
FeatureFields = tuple[
    str, tuple[str, ...], frozenset[str], frozenset[str], _Runs, _Runs, _Runs, str, bool, bool
]


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
                if capital:  # a capitalised word: the run goes on
                    if not run:
                        run_start = i
                    run.extend(parts)
                    run_acronym = run_acronym or (acronym and not all_caps)
                    continue
        if run:  # the run ends here
            if all_caps:
                pass
            elif run_acronym or (not titlecase and (run_start > 0 or len(run) > 1)):
                names.append(tuple(run))
            elif not titlecase:
                first.append(tuple(run))
            else:
                maybe.append(tuple(run))
            run.clear()
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
        _SERIES_HINT.search(key) is not None and is_series_title(key),
    )


# Every alternative of _SERIES contains one of these strings: the regex runs only then.
_SERIES_HINT = re.compile(
    "live|happened|brief|digest|update|wrap|roundup|newsletter|latest|stories|headlines|"
    "podcast|quiz|crossword|horoscope|forecast|pictures|photos|know|letters|cartoon|editorial"
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
