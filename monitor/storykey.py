"""Pure text helpers for story deduplication: wire-copy normalisation and the features
the merge guards compare (numbers, names, negation). No I/O, no state."""

from __future__ import annotations

import functools
import re
import sys
import unicodedata
from dataclasses import dataclass
from typing import NamedTuple

from monitor.normalize import html_to_text

# --- folding ---------------------------------------------------------------------------

_QUOTES = str.maketrans(
    {
        "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'", "`": "'",
        "\u00b4": "'", "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"',
        "\u00ab": '"', "\u00bb": '"', "\u2010": "-", "\u2011": "-", "\u2012": "-",
        "\u2013": "-", "\u2014": "-", "\u2015": "-", "\u2212": "-", "\u00a0": " ",
    }
)  # fmt: skip


def fold_keep_case(value: str) -> str:
    """NFKC, typographic quotes/dashes unified, accents removed; case kept."""
    if value.isascii():
        return value.replace("`", "'")
    value = unicodedata.normalize("NFKC", value).translate(_QUOTES)
    if value.isascii():
        return value
    decomposed = unicodedata.normalize("NFKD", value)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


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


_SEP_CHARS = frozenset("-|:\u2022")
_HEAD_CHARS = frozenset("-:|/")


def _strip_once(text: str, source: str) -> str:
    if not _HEAD_CHARS.isdisjoint(text[:40]):
        text = _PREFIX.sub("", text)
    if text[:1] in "WFEwfe":
        text = _PREFIX_BARE.sub("", text)
    tail = text[-48:]
    if not _SEP_CHARS.isdisjoint(tail):
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
    text = _WS.sub(" ", fold_keep_case(summary)).strip()
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
    if token.endswith("ies") and len(token) > 4:
        token = token[:-3] + "y"
    elif token.endswith("sses"):
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
    for tok in _TOKEN.findall(text.replace("-", " ").replace("'s ", " ")):
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
    "reach reaches reached clinch clinches clinched seal seals sealed",
)
for _group in _GROUPS:
    _words = _group.split()
    _head = _words[0] if not _group.startswith("new york") else "new york"
    for _w in _words if _head != "new york" else ["nyc"]:
        SYNONYMS.setdefault(_w, _head)
        _st = stem(_w)
        if _st != _w:
            SYNONYMS.setdefault(_st, _head)

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
_WEEKDAYS = frozenset(
    ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
)


def is_series_title(folded: str) -> bool:
    """Recurring titles (live blogs, briefings, "Latest headlines") that name a slot,
    not a story."""
    return bool(_SERIES.search(folded))


def _is_titlecase(words: list[str]) -> bool:
    content = [w for w in words if len(w) > 3 and w.lower() not in STOPWORDS and w[0].isalpha()]
    if len(content) < 2:
        return False
    caps = sum(1 for w in content if w[0].isupper())
    return caps >= 0.95 * len(content)


def canon(low: str) -> str:
    """Stem of a folded word with news synonyms folded."""
    return _canon_word(low)


_NON_NAMES = frozenset({"pm", "ceo", "mp", "mps", "tv", "dj", "ii", "iii", "jr", "sr"})


@functools.lru_cache(maxsize=1 << 16)
def _word_info(w: str) -> tuple[str, str | None, tuple[str, ...], bool, bool, bool, bool]:
    """(folded, number, stems, stopword, acronym, capitalised name-like, negation)."""
    low = w.casefold()
    acronym = w.isupper() and len(w) >= 2 and w.isalpha()
    negation = low in NEGATIONS or low.endswith("n't")
    num = _number_token(w)
    stop = low in STOPWORDS and not acronym
    parts = tuple(canon(low).split()) if num is None and not stop else ()
    capital = w[0].isupper() and low not in _MONTHS_DAYS and low not in _NON_NAMES and len(low) >= 2
    return low, num, parts, stop, acronym, capital, negation


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
_KEY_CACHE_MAX = 1 << 17
_key_cache: dict[str, tuple[str, tuple[str, ...]]] = {}


def _key_info(tok: str) -> tuple[str, tuple[str, ...]]:
    """(folded word, index stems) of one raw token (possessive "'s" still attached)."""
    w = tok[:-2] if tok.endswith(("'s", "'S")) else tok
    if not w:
        return "", ()
    low, num, parts = _word_info(w)[:3]
    out = (low, (sys.intern(num),) if num is not None else tuple(sys.intern(p) for p in parts))
    if len(_key_cache) >= _KEY_CACHE_MAX:
        _key_cache.clear()  # bounded: a restart streams many rare words once
    _key_cache[tok] = out
    return out


def title_key(title: str, source: str = "") -> TitleKey:
    """Stripped title, exact key and index stems (no guard features). The hot path of a
    restart (run once per stored entry): one regex pass and a per-word cache."""
    stripped = strip_wire(title, source)
    text = stripped
    if "." in text:
        text = _ACRONYM_DOTS.sub(lambda m: m.group(1).replace(".", ""), text)
    if "," in text:
        text = _THOUSANDS.sub("", text)
    cache = _key_cache
    stems: list[str] = []
    folded: list[str] = []
    for tok in _TOKEN.findall(text.replace("-", " ").replace("'s ", " ")):
        info = cache.get(tok)
        if info is None:
            info = _key_info(tok)
        if info[0]:
            folded.append(info[0])
            stems += info[1]
    series = not _SERIES_WORDS.isdisjoint(folded) and is_series_title(" ".join(folded))
    return TitleKey(stripped, " ".join(folded), tuple(dict.fromkeys(stems)), series)


def features(title: str, source: str = "") -> TitleFeatures:
    """Features of a title after wire prefixes and outlet suffixes are stripped."""
    stripped = strip_wire(title, source)
    stripped = _ACRONYM_DOTS.sub(lambda m: m.group(1).replace(".", ""), stripped)
    words = raw_tokens(stripped)
    titlecase = _is_titlecase(words)
    all_caps = titlecase_all_caps(words)
    stems: list[str] = []
    numbers: set[str] = set()
    names: list[tuple[str, ...]] = []
    first: list[tuple[str, ...]] = []
    maybe: list[tuple[str, ...]] = []
    run: list[str] = []
    run_start = -1
    run_acronym = False
    negated = False
    initials = []

    def close_run() -> None:
        if not run:
            return
        if all_caps:
            pass
        elif run_acronym or (not titlecase and (run_start > 0 or len(run) > 1)):
            names.append(tuple(run))
        elif not titlecase:
            first.append(tuple(run))
        else:
            maybe.append(tuple(run))
        run.clear()

    for i, w in enumerate(words):
        low, num, parts, stop, acronym, capital, negation = _word_info(w)
        initials.append(low if acronym and not all_caps else low[:1])
        negated = negated or negation
        if num is not None:
            numbers.add(num)
            stems.append(num)
            close_run()
            run_acronym = False
            continue
        if stop:
            close_run()
            run_acronym = False
            continue
        stems.extend(parts)
        if not capital:
            close_run()
            run_acronym = False
            continue
        if not run:
            run_start = i
        run.extend(parts)
        run_acronym = run_acronym or (acronym and not all_caps)
    close_run()
    folded_words = [w.casefold() for w in words]
    key = " ".join(folded_words)
    return TitleFeatures(
        key=key,
        stems=tuple(stems),
        numbers=frozenset(numbers),
        days=frozenset(w for w in folded_words if w in _WEEKDAYS),
        names=tuple(names),
        first=tuple(first),
        maybe=tuple(maybe),
        initials="".join(initials),
        negated=negated,
        series=is_series_title(key),
    )


def titlecase_all_caps(words: list[str]) -> bool:
    """True when the whole headline is in capitals (then capitals mark nothing)."""
    letters = [w for w in words if w[0].isalpha()]
    return len(letters) >= 3 and all(w.isupper() for w in letters)


def contrast(a: frozenset[str], b: frozenset[str]) -> bool:
    """One title says "open"/"rise"/"acquitted" where the other says the opposite."""
    for x in a - b:
        opposite = _CONTRAST_MAP.get(x)
        if opposite and any(y in b and y not in a for y in opposite):
            return True
    return False
