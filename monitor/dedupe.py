"""Story deduplication: fold wire copies of one story into one cluster. Pure, in memory.

How a new item is matched (``StoryIndex.find``), cheapest first:

1. **url** — same canonical link as an item in the window.
2. **title** — same normalised title (wire prefixes/outlet suffixes stripped, case, accents
   and quotes folded). Recurring series titles ("Live updates", "Morning briefing",
   "Latest headlines") only match when their link (or, without links, their day) is equal.
3. **fuzzy** — candidates come from an inverted index of title word stems: only the
   ``probe_tokens`` rarest stems of the new title are looked up and only the newest
   ``posting_cap`` items of each posting list are read, so the cost per item does not grow
   with the window. Candidates are scored on their titles by a small logistic model over
   lexical signals (soft Dice over stems with news synonyms and demonyms folded, the same
   with names and numbers weighted double, how much of each title the other covers, shared
   names, rapidfuzz token-set similarity, ...; ``MODEL``, fitted on the STS train split),
   helped by the summaries when both have one. A merge is vetoed when the titles carry
   different numbers, different weekdays, different names, opposite verbs
   ("open"/"close"), or a negation in one only.

The defaults were chosen by measurement: ``title_threshold`` is the lowest value that
keeps pairwise precision >= 0.97 on the STS headlines *train* split
(``bench/bench_dedup_sts.py``: 78 gives train P 0.973 / R 0.780, dev P 0.976 / R 0.820;
76 gives train P 0.967), since a false merge hides a story; ``summary_threshold`` is the
lowest value with no false merge on the hand-labelled capture pairs
(``bench/bench_dedup_captures.py``).

``add`` is the restart path (run once per stored entry): it computes only the title key
and index stems; summaries are cleaned, and guard features computed, only for the few
candidates ``find`` scores.

Cost (``bench/bench_dedup_speed.py``): a title's features and the pair-independent parts
of its signals (``_Profile``) are computed once and kept in a bounded per-index cache, so a
candidate scored again costs no re-tokenising; soft stem matching compares each pair of
stems once, and rejects most pairs by length and character-set bounds before calling
``fuzz.ratio``. These change no result: ``similarity_signals`` equals the plain
pairwise computation float for float (``tests/test_dedupe.py``).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import itemgetter

from rapidfuzz import fuzz

from monitor.storykey import STOPWORDS as _STOPWORDS
from monitor.storykey import (
    TitleFeatures,
    TitleKey,
    canon,
    clean_summary,
    contrast,
    features,
    raw_tokens,
    title_key,
    update_number,
)

__all__ = [
    "MODEL",
    "SIGNALS",
    "Decision",
    "DedupeConfig",
    "StoryIndex",
    "StoryItem",
    "is_material_change",
    "model_score",
    "pair_score",
    "similarity_signals",
    "veto",
]


@dataclass(frozen=True, slots=True)
class DedupeConfig:
    """Dedupe settings. Scores are 0-100."""

    window_hours: float = 48.0
    # merge on the title alone at or above this score (STS train: lowest with P >= 0.97)
    title_threshold: float = 78.0
    # with both summaries present: merge when the title reaches summary_title_floor and
    # the summaries reach summary_threshold
    summary_title_floor: float = 40.0
    summary_threshold: float = 40.0
    min_title_words: int = 3  # exact-title key needs this many content words
    probe_tokens: int = 4  # rarest title stems looked up in the inverted index
    posting_cap: int = 64  # newest items read per posting list
    max_candidates: int = 8  # candidates scored in full per item
    # candidates whose exact-stem Dice is below this are not scored in full
    prefilter_dice: float = 20.0
    summary_chars: int = 300  # summary prefix kept per item for scoring


@dataclass(frozen=True, slots=True)
class StoryItem:
    key: str  # unique item id (entry id)
    title: str  # plain text; may still carry wire prefixes / outlet suffixes
    summary: str
    published: datetime | None  # aware UTC; None = unknown (treated as "now")
    source: str  # outlet name
    url: str  # canonical URL ("" if none)


@dataclass(frozen=True, slots=True)
class Decision:
    story_id: int | None  # None = start a new story
    reason: str  # "url" | "title" | "fuzzy" | "summary" | "new"
    score: float


# --- scoring ---------------------------------------------------------------------------


def _tokens_match(a: str, b: str) -> bool:
    if a == b:
        return True
    if a[0].isdigit() or b[0].isdigit():
        return False
    short, long_ = (a, b) if len(a) <= len(b) else (b, a)
    if len(short) >= 4 and long_.startswith(short):
        return True  # syria/syrian, reelect/reelection
    if len(short) >= 5 and short[:5] == long_[:5] and len(long_) - len(short) <= 4:
        return True
    return len(short) >= 5 and fuzz.ratio(a, b) >= 85.0  # typos: eygpt/egypt, tian'anmen


def soft_dice(a: tuple[str, ...], b: tuple[str, ...]) -> float:
    """Dice coefficient (0-100) over stem sets, where near-equal stems count as equal."""
    sa, sb = set(a), set(b)
    if not sa or not sb:
        return 0.0
    common = sa & sb
    ra, rb = sa - common, sb - common
    ma = len(common) + sum(1 for x in ra if any(_tokens_match(x, y) for y in rb))
    mb = len(common) + sum(1 for y in rb if any(_tokens_match(x, y) for x in ra))
    return 100.0 * (ma + mb) / (len(sa) + len(sb))


def _covered(token: str, stems: frozenset[str]) -> bool:
    return token in stems or any(_tokens_match(token, s) for s in stems)


def _uncovered(runs: tuple[tuple[str, ...], ...], other: frozenset[str], initials: str) -> bool:
    """Whether some name run shares no word with the other title (nor is an acronym of
    words in it: "USGS" for "US Geological Survey")."""
    for run in runs:
        if any(_covered(tok, other) for tok in run):
            continue
        if len(run) == 1 and len(run[0]) >= 2 and run[0] in initials:
            continue
        return True
    return False


def veto(a: TitleFeatures, b: TitleFeatures) -> str:
    """Why two titles must not be merged ("" = no objection)."""
    if (a.numbers - b.numbers) and (b.numbers - a.numbers):
        return "numbers"
    if (a.days - b.days) and (b.days - a.days):
        return "days"
    if a.negated != b.negated:
        return "negation"
    sa, sb = frozenset(a.stems), frozenset(b.stems)
    na, fa = _uncovered(a.names, sb, b.initials), _uncovered(a.first, sb, b.initials)
    nb, fb = _uncovered(b.names, sa, a.initials), _uncovered(b.first, sa, a.initials)
    if (na or fa) and (nb or fb):
        return "names"
    # Title Case runs count against a sure name on the other side ("Italy Soldiers Die
    # In Afghanistan" / "Two UK soldiers killed in Afghanistan")
    if (na and _uncovered(b.maybe, sa, a.initials)) or (nb and _uncovered(a.maybe, sb, b.initials)):
        return "names"
    if contrast(sa, sb):
        return "contrast"
    return ""


def _weights(f: TitleFeatures) -> dict[str, float]:
    strong = {t for run in f.names + f.first for t in run} | f.numbers
    return {s: (2.0 if s in strong else 1.0) for s in f.stems}


def weighted_dice(a: TitleFeatures, b: TitleFeatures) -> float:
    """Soft Dice (0-100) where names and numbers count double: sharing "Deutsche Bank",
    "Epstein" and "150" says more than sharing "fined"."""
    wa, wb = _weights(a), _weights(b)
    if not wa or not wb:
        return 0.0
    ma = sum(w for x, w in wa.items() if x in wb or any(_tokens_match(x, y) for y in wb))
    mb = sum(w for y, w in wb.items() if y in wa or any(_tokens_match(x, y) for x in wa))
    return 100.0 * (ma + mb) / (sum(wa.values()) + sum(wb.values()))


SIGNALS = (
    "soft_dice", "weighted_dice", "cover_min", "cover_max", "shared_names", "unmatched",
    "token_set", "sorted_ratio", "shared_number", "min_len", "n_matched", "matched_len",
    "cover_prod",
)  # fmt: skip
# Logistic model over SIGNALS: (bias, weights...). Fitted by bench/bench_dedup_sts.py --fit
# on the STS *train* split only (grade >= 4 vs <= 2, pairs no guard vetoes).
MODEL = (
    -5.936, 1.778, 1.782, 1.645, 1.387, -0.599, -0.910, 2.119, 0.738, 0.940, 1.377, 1.859,
    -1.142, 2.020,
)  # fmt: skip


_Stem = tuple[str, int, str, int]  # stem, length, first 4 characters, character mask


@functools.lru_cache(maxsize=1 << 16)
def _stem_info(stem: str) -> _Stem:
    mask = 0
    for c in stem:
        mask |= 1 << (ord(c) & 63)
    return stem, len(stem), stem[:4], mask


class _Profile:
    """Pair-independent parts of one title's signals, computed once per title."""

    __slots__ = ("elig", "f", "names", "sorted_key", "strong", "uniq", "uset", "wsum")

    def __init__(self, f: TitleFeatures) -> None:
        self.f = f
        uniq = tuple(dict.fromkeys(f.stems))
        self.uniq = uniq
        self.uset = frozenset(uniq)
        # stems that can soft-match a different stem: 4+ characters, not a number
        self.elig: tuple[_Stem, ...] = tuple(
            _stem_info(x) for x in uniq if len(x) >= 4 and not x[0].isdigit()
        )
        weights = _weights(f)
        self.wsum = sum(weights.values())
        self.strong = frozenset(x for x, w in weights.items() if w == 2.0)
        self.names = frozenset(t for run in f.names + f.first + f.maybe for t in run)
        self.sorted_key = " ".join(sorted(uniq))


def _soft_pair(x: str, y: str) -> bool:
    """``_tokens_match(x, y)`` for two different stems of 4+ characters, not numbers."""
    lx, ly = len(x), len(y)
    if lx <= ly:
        short, long_, ls, ll = x, y, lx, ly
    else:
        short, long_, ls, ll = y, x, ly, lx
    if long_.startswith(short):
        return True
    if ls < 5:
        return False
    if ll - ls <= 4 and short[:5] == long_[:5]:
        return True
    # fuzz.ratio = 100 * (1 - indel / (lx + ly)) and indel >= ll - ls: no chance of 85
    if 20 * (ll - ls) > 3 * (ls + ll):
        return False
    return fuzz.ratio(x, y) >= 85.0


def _cross(xs: list[_Stem], ys: list[_Stem], first: bool) -> tuple[set[str], set[str]]:
    """Which stems of ``xs`` and of ``ys`` soft-match (``_tokens_match``) some stem of the
    other list; the lists share no stem. With ``first`` the ``ys`` side is left
    incomplete: each x stops at its first match.

    Cheap rejections come first. Different first four characters leave only the
    ``fuzz.ratio >= 85`` rule, which needs an indel distance of at most 15% of the combined
    length; the length difference is a lower bound on that distance, and so is the number
    of character classes one stem has and the other lacks (popcount of the masks' XOR)."""
    hit_x: set[str] = set()
    hit_y: set[str] = set()
    ratio = fuzz.ratio
    for x0, lx, x4, mx in xs:
        x5 = lx >= 5
        for y in ys:
            if x4 == y[2]:
                if not _soft_pair(x0, y[0]):
                    continue
            else:
                ly = y[1]
                if not x5 or ly < 5:
                    continue
                total3 = 3 * (lx + ly)
                if 20 * (lx - ly if lx > ly else ly - lx) > total3:
                    continue
                if 20 * (mx ^ y[3]).bit_count() > total3:
                    continue
                if ratio(x0, y[0]) < 85.0:
                    continue
            hit_x.add(x0)
            hit_y.add(y[0])
            if first:
                break
    return hit_x, hit_y


_ZERO_SIGNALS = (0.0,) * len(SIGNALS)


def _signals(pa: _Profile, pb: _Profile) -> tuple[float, ...]:
    """``similarity_signals`` on profiles: each soft comparison is made once."""
    sa, sb = pa.uniq, pb.uniq
    if not sa or not sb:
        return _ZERO_SIGNALS
    seta, setb = pa.uset, pb.uset
    common = seta & setb
    ncommon = len(common)
    # soft matches between the stems only one side has (soft_dice counts these) ...
    ra = [x for x in pa.elig if x[0] not in setb]
    rb = [y for y in pb.elig if y[0] not in seta]
    if ra and rb:
        hit_a, hit_b = _cross(ra, rb, False)
    else:
        hit_a, hit_b = set(), set()
    soft = 100.0 * (ncommon + len(hit_a) + ncommon + len(hit_b)) / (len(seta) + len(setb))
    # ... and, for the coverage signals, soft matches with the shared stems too
    ma = set(common)
    ma |= hit_a
    mb = set(common)
    mb |= hit_b
    if common:
        ce = [c for c in pa.elig if c[0] in setb]
        if ce:
            ma |= _cross([x for x in ra if x[0] not in hit_a], ce, True)[0]
            mb |= _cross([y for y in rb if y[0] not in hit_b], ce, True)[0]
    nma, nmb = len(ma), len(mb)
    ca, cb = nma / len(sa), nmb / len(sb)
    # weights are 1.0 or 2.0 (names and numbers): these integer sums are exact
    wdice = (nma + len(ma & pa.strong) + nmb + len(mb & pb.strong)) / (pa.wsum + pb.wsum)
    shared_names = len(ma & pa.names) + len(mb & pb.names)
    unmatched = len(sa) - nma + len(sb) - nmb
    return (
        soft / 100.0,
        wdice,
        min(ca, cb),
        max(ca, cb),
        min(shared_names, 4) / 4.0,
        min(unmatched, 10) / 10.0,
        fuzz.token_set_ratio(pa.f.key, pb.f.key) / 100.0,
        fuzz.ratio(pa.sorted_key, pb.sorted_key) / 100.0,
        1.0 if pa.f.numbers & pb.f.numbers else 0.0,
        min(len(sa), len(sb)) / 10.0,
        nma / 10.0,
        sum(map(len, ma)) / nma / 8.0 if nma else 0.0,
        ca * cb,
    )


def similarity_signals(a: TitleFeatures, b: TitleFeatures) -> tuple[float, ...]:
    """The lexical signals the title model weighs, each scaled to about 0-1."""
    return _signals(_Profile(a), _Profile(b))


def model_score(signals: tuple[float, ...], model: tuple[float, ...] = MODEL) -> float:
    """0-100: the model's probability that two titles report the same story."""
    z = model[0] + sum(w * x for w, x in zip(model[1:], signals, strict=True))
    if z < -30.0:
        return 0.0
    return 100.0 / (1.0 + math.exp(-z))


def pair_score(a: TitleFeatures, b: TitleFeatures) -> float:
    """Title similarity 0-100 (guards not applied): the title model's probability."""
    return model_score(similarity_signals(a, b))


def _summary_stems(text: str) -> tuple[str, ...]:
    out = []
    for w in raw_tokens(text):
        low = w.casefold()
        if low in _STOPWORDS or len(low) < 2:
            continue
        out.extend(canon(low).split())
    return tuple(out)


def summary_score(a: str, b: str) -> float:
    """Summary similarity 0-100: Dice over content-word stems (synonyms folded)."""
    if not a or not b:
        return 0.0
    sa, sb = set(_summary_stems(a)), set(_summary_stems(b))
    if not sa or not sb:
        return 0.0
    return 200.0 * len(sa & sb) / (len(sa) + len(sb))


# --- the index -------------------------------------------------------------------------


class _Rec:
    """One window entry. Kept small: about 1M of these live in memory at scale."""

    __slots__ = ("raw", "stems", "story", "summary", "title", "tkey", "ts", "ukey")

    def __init__(
        self,
        story: int,
        ts: float,
        title: str,
        stems: tuple[str, ...],
        summary: str,
        raw: bool,
        tkey: int,
        ukey: int,
    ) -> None:
        self.story = story
        self.ts = ts
        self.title = title  # stripped title (case kept) — guard features recomputed on demand
        self.stems = stems  # unique title stems (interned), for a cheap first score
        self.summary = summary
        self.raw = raw  # summary not cleaned yet (done on first use: most never are)
        self.tkey = tkey  # hash of exact-title key (0 = none)
        self.ukey = ukey  # hash of canonical url (0 = none)

    def clean_summary(self, limit: int) -> str:
        if self.raw:
            self.summary = clean_summary(self.summary)[:limit]
            self.raw = False
        return self.summary


def _ts(value: datetime | None, now: datetime | None) -> float:
    if value is None:
        value = now if now is not None else datetime.now(UTC)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def _raw_summary(summary: str, limit: int) -> str:
    """The prefix of a raw summary that cleans to (about) its first ``limit`` characters:
    markup and a dateline take room that the cleaned text does not."""
    if not summary:
        return ""
    head = summary[: limit * 3]
    if "<" in head or "&" in head or "  " in head:
        return head
    return summary[: limit + 80]  # a dateline ("SEOUL, Sept 13 (AFP) - ") is shorter


def _title_key(item: StoryItem, tk: TitleKey, ts: float, min_words: int) -> int:
    if tk.series:
        # recurring titles: the same story only on the same link, or the same day unlinked
        day = int(ts // 86400)
        return hash(("series", tk.key, item.url, day))
    if len(tk.stems) < min_words:
        return 0
    return hash(("title", tk.key))


_PROFILE_CACHE = 1 << 13  # titles whose profile is kept (about 2.5 KB each: 20 MB at most)


class StoryIndex:
    """In-memory window of recent items, blocked by rare title stems."""

    def __init__(self, config: DedupeConfig) -> None:
        self.config = config
        self._recs: dict[int, _Rec] = {}
        self._next = 0
        self._postings: dict[str, list[int]] = {}
        self._by_url: dict[int, int] = {}
        self._by_title: dict[int, int] = {}
        self._cache: tuple[StoryItem, TitleKey, str] | None = None
        # title -> profile (features and pair-independent signal parts); a pure function
        # of the title, bounded, so it only saves work
        self._profiles: dict[str, _Profile] = {}
        self._trim_at = 2 * config.posting_cap

    def __len__(self) -> int:
        return len(self._recs)

    # key of the item last passed to find(), reused by add()
    def _prepare(self, item: StoryItem) -> tuple[TitleKey, str]:
        cached = self._cache
        if cached is not None and cached[0] is item:
            return cached[1], cached[2]
        tk = title_key(item.title, item.source)
        limit = self.config.summary_chars
        summary = clean_summary(item.summary[: limit * 3])[:limit] if item.summary else ""
        self._cache = (item, tk, summary)
        return tk, summary

    def _live(self, slot: int, ts: float) -> _Rec | None:
        rec = self._recs.get(slot)
        if rec is None or abs(rec.ts - ts) > self.config.window_hours * 3600.0:
            return None
        return rec

    def find(self, item: StoryItem, now: datetime | None = None) -> Decision:
        """The story ``item`` belongs to, or ``Decision(None, "new", score)``."""
        cfg = self.config
        tk, summary = self._prepare(item)
        ts = _ts(item.published, now)
        if item.url:
            slot = self._by_url.get(hash(item.url))
            rec = self._live(slot, ts) if slot is not None else None
            if rec is not None:
                return Decision(rec.story, "url", 100.0)
        tkey = _title_key(item, tk, ts, cfg.min_title_words)
        if tkey:
            slot = self._by_title.get(tkey)
            rec = self._live(slot, ts) if slot is not None else None
            if rec is not None:
                return Decision(rec.story, "title", 100.0)
        if tk.series or not tk.stems:
            return Decision(None, "new", 0.0)
        return self._fuzzy(tk, summary, ts)

    def _profile(self, title: str) -> _Profile:
        cache = self._profiles
        prof = cache.get(title)
        if prof is None:
            if len(cache) >= _PROFILE_CACHE:
                del cache[next(iter(cache))]  # oldest first
            prof = cache[title] = _Profile(features(title))
        return prof

    def _candidates(self, feats: TitleKey, ts: float) -> list[_Rec]:
        cfg = self.config
        postings = self._postings
        probes = sorted(
            {s for s in feats.stems if s in postings}, key=lambda s: (len(postings[s]), s)
        )[: cfg.probe_tokens]
        hits: dict[int, float] = {}
        for tok in probes:
            plist = postings[tok]
            weight = 1.0 / (1.0 + min(len(plist), cfg.posting_cap) / 50.0)
            for slot in plist[-cfg.posting_cap :]:
                hits[slot] = hits.get(slot, 0.0) + weight
        # (what heapq.nlargest documents itself equal to; faster on a few hundred hits)
        ranked = sorted(hits.items(), key=itemgetter(1), reverse=True)[: cfg.max_candidates * 2]
        out: list[_Rec] = []
        for slot, _w in ranked:
            rec = self._live(slot, ts)
            if rec is not None:
                out.append(rec)
                if len(out) >= cfg.max_candidates:
                    break
        return out

    def _fuzzy(self, tk: TitleKey, summary: str, ts: float) -> Decision:
        cfg = self.config
        best: Decision = Decision(None, "new", 0.0)
        low_floor = min(cfg.summary_title_floor, cfg.title_threshold)
        mine = set(tk.stems)
        mine_p: _Profile | None = None
        for rec in self._candidates(tk, ts):
            # exact-stem Dice first: soft matching rarely adds more than a third
            shared = len(mine.intersection(rec.stems))  # rec.stems are unique
            if 200.0 * shared / (len(mine) + len(rec.stems)) < cfg.prefilter_dice:
                continue
            if mine_p is None:
                mine_p = self._profile(tk.stripped)
            other = self._profile(rec.title)
            score = model_score(_signals(mine_p, other))
            if score < low_floor or veto(mine_p.f, other.f):
                continue
            if score >= cfg.title_threshold:
                if score > best.score or best.reason != "fuzzy":
                    best = Decision(rec.story, "fuzzy", score)
            elif summary and rec.summary and best.reason != "fuzzy":
                sscore = summary_score(summary, rec.clean_summary(cfg.summary_chars))
                if sscore >= cfg.summary_threshold:
                    combined = (score + sscore) / 2.0
                    if combined > best.score:
                        best = Decision(rec.story, "summary", combined)
        return best

    def add(self, item: StoryItem, story_id: int, now: datetime | None = None) -> None:
        """Register ``item`` as a member of story ``story_id``.

        This is the restart path (once per stored entry), so it does only what the index
        needs: the title key and stems. The summary is cleaned when a candidate needs it.
        """
        cfg = self.config
        cached = self._cache
        if cached is not None and cached[0] is item:
            tk, summary, raw = cached[1], cached[2], False
        else:
            tk = title_key(item.title, item.source)
            summary, raw = _raw_summary(item.summary, cfg.summary_chars), True
        ts = _ts(item.published, now)
        ukey = hash(item.url) if item.url else 0
        tkey = _title_key(item, tk, ts, cfg.min_title_words)
        slot = self._next
        self._next = slot + 1
        stems = tk.stems
        self._recs[slot] = _Rec(story_id, ts, tk.stripped, stems, summary, raw, tkey, ukey)
        if ukey:
            self._by_url[ukey] = slot
        if tkey:
            self._by_title[tkey] = slot
        if tk.series:
            return  # series titles are matched by key only
        postings = self._postings
        for tok in stems:
            plist = postings.get(tok)
            if plist is None:
                postings[tok] = [slot]
            else:
                plist.append(slot)
                if len(plist) > self._trim_at:
                    del plist[: -cfg.posting_cap]

    def prune(self, now: datetime) -> int:
        """Drop items published more than ``window_hours`` before ``now``."""
        cutoff = _ts(now, now) - self.config.window_hours * 3600.0
        dead = [slot for slot, rec in self._recs.items() if rec.ts < cutoff]
        if not dead:
            return 0
        for slot in dead:
            rec = self._recs.pop(slot)
            if rec.ukey and self._by_url.get(rec.ukey) == slot:
                del self._by_url[rec.ukey]
            if rec.tkey and self._by_title.get(rec.tkey) == slot:
                del self._by_title[rec.tkey]
        recs = self._recs
        empty = []
        for tok, plist in self._postings.items():
            plist[:] = [s for s in plist if s in recs]
            if not plist:
                empty.append(tok)
        for tok in empty:
            del self._postings[tok]
        self._cache = None
        return len(dead)


def is_material_change(old_title: str, new_title: str) -> bool:
    """Whether a seen entry's retitling is news: a higher "UPDATE n", changed numbers
    (a new casualty figure), a negation or different names — not case, quotes or an
    outlet suffix."""
    if update_number(new_title) > update_number(old_title):
        return True
    a, b = features(old_title), features(new_title)
    if a.key == b.key:
        return False
    if a.numbers != b.numbers or a.negated != b.negated or veto(a, b):
        return True
    return fuzz.token_sort_ratio(a.key, b.key) < 90.0
