"""Story deduplication: fold wire copies of one story into one cluster. Pure, in memory.

How a new item is matched (``StoryIndex.find``), cheapest first:

1. **boilerplate** — the item's feed's learned affixes and frequent words are taken out
   of its title first (``boilerplate``: programme names, section labels, dates, the
   outlet's own tag, a feed language's function words), so two items of one programme do
   not meet on the programme's name.
2. **url** — same canonical link as an item in the window, when the titles share a word
   (a site's front page, or a section page given to unrelated titles, is no article's link).
3. **title** — same normalised title (wire prefixes stripped, case, accents and quotes
   folded). Series titles ("Live updates: ...", "Morning briefing") only match when their
   link (or, without links, their day) is equal.
4. **fuzzy** — candidates come from an inverted index of title word stems: only the
   ``probe_tokens`` rarest stems of the new title are looked up and only the newest
   ``posting_cap`` items of each posting list are read, so the cost per item does not grow
   with the window. A candidate not vetoed by the guards (different numbers, weekdays,
   names, opposite verbs, a negation in one title only) is weighed by the merge model
   (``MERGE_MODEL``): a logistic model over four signals, each a one-sentence idea —
   how alike the words are (the lexical title model ``MODEL``), how alike the meaning is
   (cosine of static word embeddings, ``embed``), how much of the titles' rare-word mass
   they share, and how rare the rarest shared word is (word rarity is counted in the
   window itself, so it holds for any language). Summaries help when both items have one.

Both models were fitted, and ``title_threshold`` chosen, on the tune split only
(``bench/tune_dedup.py``; ``bench/DEDUP_LABELLING.md`` names the splits); held-out
figures are in ``bench/RESULTS.md``.

Memory per window entry is bounded: a plain tuple of the title, its stems and keys, a
summary prefix, and, once the entry has been weighed as a candidate, the compact form of
its guard features (``_Profile.encode``) and its title's embedding quantized to 256 bytes
(``embed.quantize``); per feed, the boilerplate statistics of its last ``boilerplate.RECENT``
titles (memory per feed: bench/RESULTS.md).

``add`` (and ``add_stored``, what ``load_index`` calls per stored row) is the restart
path: it computes only the title key and index stems; summaries are cleaned, guard
features and embeddings computed, only for the candidates ``find`` weighs.

Cost: a title's features and the pair-independent parts of its signals (``_Profile``) are
computed once; a bounded cache keeps recent profiles and each window entry, once scored,
keeps a compact form of them. Candidates are scored first with the two string-similarity
signals at their upper bounds; the cheap guards run before any scoring, the names guard
reads the stems that scoring found covered. Window entries are plain tuples, which the
garbage collector stops tracking. None of these shortcuts changes a result: each is
checked against the computation it replaces (``tests/test_dedupe_fast.py``).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from rapidfuzz import fuzz

from monitor.dedupe.boilerplate import Boilerplate, tail_cut, tails
from monitor.dedupe.embed import cosine
from monitor.dedupe.embed import loaded as embed_loaded
from monitor.dedupe.scoring import (
    _NO_STEMS,
    _RARITY_PRIOR,
    _RAW_KEY_CHARS,
    _SEPARATORS,
    _SORTED,
    _TAG_WORDS,
    _TOKEN_SET,
    _dice,
    _late_veto,
    _lost_names,
    _match,
    _model_score,
    _Profile,
    _quick_veto,
    _stem_tuple,
    _vector,
    merge_score,
    veto,
)
from monitor.dedupe.textkey import (
    STOPWORDS,
    TitleKey,
    canon,
    clean_summary,
    feature_fields,
    features,
    maybe_series,
    title_key,
    update_number,
)

__all__ = [
    "Decision",
    "DedupeConfig",
    "Prepared",
    "StoryIndex",
    "StoryItem",
    "article_url",
    "is_material_change",
    "prepare",
]


@dataclass(frozen=True, slots=True)
class DedupeConfig:
    """Dedupe settings. Scores are 0-100."""

    window_hours: float = 48.0
    # merge when the merge model's probability (0-100) reaches this: the lowest threshold
    # with STS train precision >= 0.96 (bench/tune_dedup.py, tune split only)
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
    # candidates whose lexical title score (the title model alone) is below this are not
    # weighed further; above it the merge model (MERGE_MODEL) decides
    lexical_floor: float = 40.0


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


# One window entry, as a plain tuple. About 1M of these live in memory at scale: a tuple
# is smaller than an object, and one holding only strings, numbers and tuples of strings is
# no longer tracked by the garbage collector once it has been seen once, so the window
# adds nothing to each full collection. A field changes by replacing the tuple.
_Rec = tuple[
    int,
    float,
    str,
    tuple[str, ...],
    "str | tuple[str, ...]",
    bool,
    int,
    int,
    "str | None",
    "bytes | None",
    int,
    tuple[str, ...],
]
_STORY: Final = 0
_TS: Final = 1  # POSIX seconds
_TITLE: Final = 2  # stripped title (case kept): guard features are computed from it on demand
_STEMS: Final = 3  # unique title stems (interned), for a cheap first score
_SUMMARY: Final = 4  # raw prefix, cleaned text or (once compared) its stems
_RAW: Final = 5  # summary not cleaned yet (done on first use: most never are)
_TKEY: Final = 6  # hash of exact-title key (0 = none)
_UKEY: Final = 7  # hash of canonical url (0 = none)
_FEAT: Final = 8  # compact guard features (_Profile.encode) once scored, or None
_VEC: Final = 9  # the title's quantized embedding (embed.quantize) once compared, or None
_SIG: Final = 10  # hash of the digits of the feed affixes stripped from the title (0 = none)
_NAMES: Final = 11  # stems of capitalised frequent words the feed's boilerplate took out


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


def article_url(url: str) -> str:
    """``url`` when it can name one article; "" for a site's front page (no path, no
    query): feeds that link every item to their home page carry many stories on it."""
    start = url.find("//")
    slash = url.find("/", start + 2) if start >= 0 else -1
    return url if slash >= 0 and url[slash:] != "/" else ""


def _title_key(url: str, tk: TitleKey, ts: float, min_words: int, sig: int = 0) -> int:
    if sig:
        # two episodes of one programme ("Show (20 August)", "Show (21 August)")
        return hash(("episode", tk.key, sig))
    if tk.series:
        # recurring titles: the same story only on the same link, or the same day unlinked
        day = int(ts // 86400)
        return hash(("series", tk.key, url, day))
    if not tk.stems and len(tk.stripped) >= _RAW_KEY_CHARS:
        # a title in a script the word keys do not read (Cyrillic, Greek, CJK, ...): its
        # identical copies still meet, on the title itself, case and spacing folded
        return hash(("raw", " ".join(tk.stripped.casefold().split())))
    if len(tk.stems) < min_words:
        return 0
    return hash(("title", tk.key))


_PROFILE_CACHE = 1 << 13  # titles whose profile is kept (at most 2 KB each: 16 MB at most)


# (title key, cleaned summary prefix, compact guard features or "", quantized title
# embedding or b"")
Prepared = tuple[TitleKey, str, str, bytes]


def prepare(
    title: str, summary: str, source: str, summary_chars: int, features: bool = False
) -> Prepared:
    """What ``find`` computes first for a new item: its title key and cleaned summary
    prefix; with ``features``, also the compact form of its guard features
    (``_Profile.encode``), which scoring needs once a candidate is close enough. Pure, so
    it can run in another process: the ``monitor.parse`` workers compute all three, which
    takes the costliest per-title step off the process that dedupes. Without
    ``features`` the index computes them only for titles that get that far. With
    ``features`` the title's embedding is computed too (``embed``), for the same reason."""
    cleaned = clean_summary(summary[: summary_chars * 3])[:summary_chars] if summary else ""
    tk = title_key(title, source)
    feat = ""
    vec = b""
    if features and tk.stems and not tk.series:
        feat = _compact_features(tk)
        # (while the model is still loading, the index computes the vector when it needs
        # it: the same vector, so the same decisions)
        vec = _vector(tk.stripped) if embed_loaded() else b""
    return tk, cleaned, feat, vec


_FEAT_CACHE = 1 << 12  # stripped titles whose compact features are kept (per process)
_feats: dict[str, str] = {}
_feats_old: dict[str, str] = {}


def _compact_features(tk: TitleKey) -> str:
    """The compact guard features of a title (``_Profile.encode``), of the stripped title
    as ``StoryIndex._profile`` computes them. Wire copies share their stripped title, so
    the last few thousand are kept (two generations, the older dropped)."""
    global _feats, _feats_old
    feat = _feats.get(tk.stripped)
    if feat is None:
        feat = _feats_old.get(tk.stripped)
        if feat is None:
            feat = _Profile.of_fields(feature_fields(tk.stripped)).encode(tk.stems)
        _feats[tk.stripped] = feat
        if len(_feats) >= _FEAT_CACHE // 2:
            _feats, _feats_old = {}, _feats
    return feat


class _Fresh:
    """The item last passed to ``find``: its key and cleaned summary, the summary's stems
    once a candidate needs them; ``add`` reuses them."""

    __slots__ = ("feat", "item", "names", "sig", "stem_set", "stems", "summary", "tk", "vec")

    def __init__(self, item: StoryItem, tk: TitleKey, summary: str, feat: str) -> None:
        self.item = item
        self.tk = tk
        self.summary = summary  # cleaned
        self.feat = feat  # compact guard features when prepared elsewhere, else ""
        self.stems: tuple[str, ...] | None = None
        self.stem_set: frozenset[str] = frozenset()
        self.vec: bytes | None = None  # the title's quantized embedding, once needed
        self.sig = 0  # hash of the digits of the stripped feed affixes (0 = none)
        self.names: tuple[str, ...] = ()  # names taken out with the feed's frequent words

    def vector(self) -> bytes:
        if self.vec is None:
            self.vec = _vector(self.tk.stripped)
        return self.vec

    def summary_set(self) -> frozenset[str]:
        if self.stems is None:
            self.stems = _stem_tuple(self.summary)
            # (_NO_STEMS, a text without content words, compares as no stems)
            self.stem_set = frozenset(self.stems) if self.stems is not _NO_STEMS else frozenset()
        return self.stem_set


class StoryIndex:
    """In-memory window of recent items, blocked by rare title stems."""

    def __init__(self, config: DedupeConfig) -> None:
        self.config = config
        self._boiler = Boilerplate(ignored=STOPWORDS)
        self._recs: dict[int, _Rec] = {}
        self._next = 0
        self._postings: dict[str, list[int]] = {}
        self._by_url: dict[int, int] = {}
        self._by_title: dict[int, int] = {}
        # "… - Tag" titles under the key of their untagged part, and the key by slot (for
        # prune); matched only against full keys: a copy with a tag meets the same
        # title without one, never another title with a different tag
        self._by_untagged: dict[int, int] = {}
        self._untagged_of: dict[int, int] = {}
        self._fresh: _Fresh | None = None
        # title -> (profile, compact form); a pure function of the title, bounded, so it
        # only saves work (entries also keep the compact form once scored). Two
        # generations: a full young one becomes the old one, and the old one is dropped.
        self._young: dict[str, _Profile] = {}
        self._old: dict[str, _Profile] = {}
        self._trim_at = 2 * config.posting_cap
        self._window_s = config.window_hours * 3600.0
        # (new item key, candidate slot, merge features) of every candidate weighed, when
        # a list is set here (bench/tune_dedup.py fits MERGE_MODEL from it)
        self.trace: list[tuple[str, int, tuple[float, ...]]] | None = None
        self.trace_keys: dict[int, str] = {}  # slot -> item key, while tracing

    def __len__(self) -> int:
        return len(self._recs)

    def _learn(self, source: str, title: str) -> tuple[str, int, tuple[str, ...]]:
        """Count ``title`` in its feed's boilerplate; the title with that boilerplate out
        (a series title, "Live updates: ...", stays whole: it names a slot), and the hash
        of the digits the stripped affixes held (0 for none): two episodes of one
        programme differ only there, so entries whose digits differ never merge; and the
        stems of the names taken out with the feed's frequent words, for the names guard."""
        stripped, digits, names = self._boiler.learn(source, title)
        if stripped != title.strip() and maybe_series(title) and title_key(title, source).series:
            return title, 0, ()
        stems = tuple(sys.intern(canon(n)) for n in names) if names else ()
        return stripped, hash(digits) if digits else 0, stems

    # key of the item last passed to find(), reused by add()
    def _prepare(self, item: StoryItem, prepared: Prepared | None = None) -> _Fresh:
        fresh = self._fresh
        if fresh is not None and fresh.item is item:
            return fresh
        title, sig, names = self._learn(item.source, item.title)
        if title != item.title.strip():
            # the feed's boilerplate changes the title: the title key, features and
            # embedding prepared elsewhere (from the whole title) do not apply; the
            # cleaned summary does
            if prepared is not None:
                prepared = (title_key(title, item.source), prepared[1], "", b"")
            else:
                prepared = prepare(title, item.summary, item.source, self.config.summary_chars)
        if prepared is not None:
            # computed in another process: intern the stems, as title_key does, so every
            # window entry holding a word shares one string
            tk, summary, feat, vec = prepared
            tk = tk._replace(stems=tuple(map(sys.intern, tk.stems)))
        else:
            tk, summary, feat, vec = prepare(
                title, item.summary, item.source, self.config.summary_chars
            )
        fresh = self._fresh = _Fresh(item, tk, summary, feat)
        fresh.sig = sig
        fresh.names = names
        fresh.vec = vec or None
        return fresh

    def _untagged_key(self, tk: TitleKey) -> int:
        """The exact-title key of the title without a short tag after its last separator
        ("… - Wire", "… | Section"): up to ``_TAG_WORDS`` words and no digit, which a feed
        has not repeated often enough for its boilerplate to be learned. 0 when there is
        none, or when too little is left to be a headline."""
        if tk.series or not _SEPARATORS.intersection(tk.stripped):
            return 0
        cut = tail_cut(tk.stripped)
        if cut is None:
            return 0
        tag, rest = cut
        if len(tag.split()) > _TAG_WORDS or any(ch.isdigit() for ch in tag):
            return 0
        head = title_key(rest)
        if head.series or len(head.stems) < self.config.min_title_words:
            return 0
        return hash(("title", head.key))

    def _live(self, slot: int, ts: float) -> _Rec | None:
        rec = self._recs.get(slot)
        if rec is None or abs(rec[_TS] - ts) > self._window_s:
            return None
        return rec

    def find(
        self, item: StoryItem, now: datetime | None = None, prepared: Prepared | None = None
    ) -> Decision:
        """The story ``item`` belongs to, or ``Decision(None, "new", score)``.

        ``prepared``: ``prepare(item.title, item.summary, item.source, summary_chars)``
        when it was already computed elsewhere (the parse workers do it beside the parse)."""
        cfg = self.config
        fresh = self._prepare(item, prepared)
        tk = fresh.tk
        ts = _ts(item.published, now)
        url = article_url(item.url)
        if url:
            slot = self._by_url.get(hash(url))
            rec = self._live(slot, ts) if slot is not None else None
            # one link, one article: unless the titles share no word at all (a section or
            # collection page that a feed gives to several stories is no article's link)
            if rec is not None and (
                not tk.stems or not rec[_STEMS] or not set(tk.stems).isdisjoint(rec[_STEMS])
            ):
                return Decision(rec[_STORY], "url", 100.0)
        tkey = _title_key(url, tk, ts, cfg.min_title_words, fresh.sig)
        if tkey:
            slot = self._by_title.get(tkey)
            if slot is None and not fresh.sig:
                slot = self._by_untagged.get(tkey)  # a tagged copy of this title
                if slot is None:
                    untagged = self._untagged_key(tk)
                    slot = self._by_title.get(untagged) if untagged else None
            rec = self._live(slot, ts) if slot is not None else None
            if rec is not None:
                return Decision(rec[_STORY], "title", 100.0)
        if tk.series or not tk.stems:
            return Decision(None, "new", 0.0)
        return self._fuzzy(fresh, ts)

    def _profile(self, title: str, stems: tuple[str, ...], feat: str | None) -> _Profile:
        """The profile of a title (its ``feat`` set to its compact form), from the cache,
        from the compact form ``feat`` when the caller has it, or computed."""
        prof = self._young.get(title)
        if prof is not None:
            return prof
        prof = self._old.get(title)
        if prof is None:
            if feat:
                prof = _Profile.decode(feat, stems)
                prof.feat = feat
            else:
                prof = _Profile.of_fields(feature_fields(title))
                prof.feat = prof.encode(stems)
        young = self._young
        young[title] = prof
        if len(young) >= _PROFILE_CACHE // 2:
            self._old, self._young = young, {}
        return prof

    def _candidates(self, stems: tuple[str, ...], ts: float) -> list[tuple[int, _Rec]]:
        cfg = self.config
        cap = cfg.posting_cap
        postings = self._postings
        probes = sorted({s for s in stems if s in postings}, key=lambda s: (len(postings[s]), s))
        hits: dict[int, float] = {}
        get = hits.get
        for tok in probes[: cfg.probe_tokens]:
            plist = postings[tok]
            weight = 1.0 / (1.0 + min(len(plist), cap) / 50.0)
            for slot in plist[-cap:]:
                hits[slot] = get(slot, 0.0) + weight
        # (what heapq.nlargest documents itself equal to, a stable sort by weight; faster on
        # a few hundred hits)
        ranked = sorted(hits, key=hits.__getitem__, reverse=True)[: cfg.max_candidates * 2]
        out: list[tuple[int, _Rec]] = []
        recs = self._recs
        window = self._window_s
        for slot in ranked:
            rec = recs.get(slot)
            if rec is not None and abs(rec[_TS] - ts) <= window:  # (_live)
                out.append((slot, rec))
                if len(out) >= cfg.max_candidates:
                    break
        return out

    def _fuzzy(self, fresh: _Fresh, ts: float) -> Decision:
        cfg = self.config
        tk = fresh.tk
        best: Decision = Decision(None, "new", 0.0)
        low_floor = min(cfg.summary_title_floor, cfg.lexical_floor)
        mine = set(tk.stems)
        mine_p: _Profile | None = None
        for slot, rec in self._candidates(tk.stems, ts):
            # exact-stem Dice first: soft matching rarely adds more than a third
            if fresh.sig and rec[_SIG] and fresh.sig != rec[_SIG]:
                continue  # two episodes: the digits of their feed's affixes differ
            stems = rec[_STEMS]
            shared = mine.intersection(stems)  # the stems are unique
            if 200.0 * len(shared) / (len(mine) + len(stems)) < cfg.prefilter_dice:
                continue
            if mine_p is None:
                mine_p = self._profile(tk.stripped, tk.stems, fresh.feat or None)
            other = self._profile(rec[_TITLE], stems, rec[_FEAT])
            if rec[_FEAT] is None:
                rec = self._recs[slot] = (*rec[:_FEAT], other.feat, *rec[_VEC:])
            # a vetoed candidate is skipped whatever it scores: the cheap guards first
            if _quick_veto(mine_p, other):
                continue
            # the two string similarities (the costliest signals) at their bounds first:
            # most candidates stay below the floor even so (the same sum in the same order
            # with larger terms: never less than the true score)
            signals, ma, mb = _match(mine_p, other, False)
            if _model_score(signals) < low_floor:
                continue
            mine_p.complete()  # (decoded when prepared elsewhere)
            other.complete()
            exact = list(signals)
            exact[_TOKEN_SET] = fuzz.token_set_ratio(mine_p.key, other.key) / 100.0
            exact[_SORTED] = fuzz.ratio(mine_p.sorted_key, other.sorted_key) / 100.0
            signals = tuple(exact)
            score = _model_score(signals)
            if score < low_floor or _late_veto(mine_p, other, ma, mb):
                continue
            if (fresh.names or rec[_NAMES]) and _lost_names(
                fresh.names, mine, mine_p, ma, rec[_NAMES], stems, other, mb
            ):
                continue
            cos = cosine(fresh.vector(), self._vector(slot, rec))
            cover, rarest = self._rarity(mine, stems, shared)
            features = (score / 100.0, cos, cover, rarest)
            merge = merge_score(features)
            if self.trace is not None:
                self.trace.append((fresh.item.key, slot, features))
            if merge >= cfg.title_threshold:
                if best.reason != "fuzzy" or merge > best.score:
                    best = Decision(rec[_STORY], "fuzzy", merge)
            elif (
                best.reason != "fuzzy"
                and score >= cfg.summary_title_floor
                and fresh.summary
                and rec[_SUMMARY]
            ):
                sscore = _dice(fresh.summary_set(), self._summary_stems(slot, rec))
                if sscore >= cfg.summary_threshold:
                    combined = (score + sscore) / 2.0
                    if combined > best.score:
                        best = Decision(rec[_STORY], "summary", combined)
        return best

    def _rarity(
        self, mine: set[str], theirs: tuple[str, ...], shared: set[str]
    ) -> tuple[float, float]:
        """(the share of the rarer title's word rarity that the two titles share, the
        rarity of the rarest shared word). A word's rarity is how few window titles hold
        it, on a log scale: 1.0 for a word no other title has, 0.0 for one every title
        has. The window counts as at least ``_RARITY_PRIOR`` titles, so in a small
        window (a `cluster` file of two lines) every word is rare."""
        postings = self._postings
        n = max(len(self._recs), _RARITY_PRIOR)
        scale = 1.0 / math.log(n)

        def rarity(stem: str) -> float:
            df = len(postings.get(stem, ()))
            return 1.0 - math.log(df) * scale if df > 1 else 1.0

        if not shared:
            return 0.0, 0.0
        shared_r = [rarity(x) for x in shared]
        mass_a = sum(rarity(x) for x in mine)
        mass_b = sum(rarity(x) for x in theirs)
        denom = min(mass_a, mass_b)
        return (sum(shared_r) / denom if denom > 0 else 0.0), max(shared_r)

    def _vector(self, slot: int, rec: _Rec) -> bytes:
        """An entry's quantized title embedding, computed on first use (kept)."""
        vec = rec[_VEC]
        if vec is None:
            vec = _vector(rec[_TITLE])
            self._recs[slot] = (*rec[:_VEC], vec, rec[_SIG], rec[_NAMES])
        return vec

    def _summary_stems(self, slot: int, rec: _Rec) -> tuple[str, ...]:
        """The stems of an entry's summary, cleaned and stemmed on first use (kept)."""
        summary = rec[_SUMMARY]
        if isinstance(summary, tuple):
            return summary
        if rec[_RAW]:
            summary = clean_summary(summary)[: self.config.summary_chars]
        stems = _stem_tuple(summary)
        self._recs[slot] = (*rec[:_SUMMARY], stems, False, *rec[_TKEY:])
        return stems

    def add(self, item: StoryItem, story_id: int, now: datetime | None = None) -> None:
        """Register ``item`` as a member of story ``story_id``.

        This is the restart path (once per stored entry), so it does only what the index
        needs: the title key and stems. The summary is cleaned when a candidate needs it.
        """
        fresh = self._fresh
        if fresh is not None and fresh.item is item:
            tk = fresh.tk
            summary: str | tuple[str, ...] = (
                fresh.stems if fresh.stems is not None else fresh.summary
            )
            prof = self._young.get(tk.stripped) or self._old.get(tk.stripped)
            feat = prof.feat if prof is not None else fresh.feat or None
            ts = _ts(item.published, now)
            self._insert(
                tk, summary, False, ts, item.url, story_id, feat, fresh.sig, fresh.vec, fresh.names
            )
        else:
            title, sig, names = self._learn(item.source, item.title)
            tk = title_key(title, item.source)
            raw = _raw_summary(item.summary, self.config.summary_chars)
            ts = _ts(item.published, now)
            self._insert(tk, raw, True, ts, item.url, story_id, None, sig, None, names)
        if self.trace is not None:
            self.trace_keys[self._next - 1] = item.key

    def add_stored(
        self, title: str, summary: str, when: datetime | str, source: str, url: str, story_id: int
    ) -> None:
        """``add`` for a stored entry given as plain values (``load_index``: no
        ``StoryItem`` per row). ``when`` is its time (published, else seen) as the store
        returns it: an aware datetime, or SQLite's text for a UTC time
        ("2024-01-01 12:00:00.000000"), read here without SQLAlchemy's per-row processing."""
        if isinstance(when, str):
            when = datetime.fromisoformat(when)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        title, sig, names = self._learn(source, title)
        tk = title_key(title, source)
        raw = _raw_summary(summary, self.config.summary_chars)
        self._insert(tk, raw, True, when.timestamp(), url, story_id, None, sig, None, names)

    def _insert(
        self,
        tk: TitleKey,
        summary: str | tuple[str, ...],
        raw: bool,
        ts: float,
        url: str,
        story_id: int,
        feat: str | None,
        sig: int = 0,
        vec: bytes | None = None,
        names: tuple[str, ...] = (),
    ) -> None:
        cfg = self.config
        url = article_url(url)
        ukey = hash(url) if url else 0
        tkey = _title_key(url, tk, ts, cfg.min_title_words, sig)
        slot = self._next
        self._next = slot + 1
        stems = tk.stems
        self._recs[slot] = (
            story_id, ts, tk.stripped, stems, summary, raw, tkey, ukey, feat, vec, sig, names
        )  # fmt: skip
        if ukey:
            self._by_url[ukey] = slot
        if tkey:
            self._by_title[tkey] = slot
            untagged = self._untagged_key(tk) if not sig else 0
            if untagged:
                self._by_untagged[untagged] = slot
                self._untagged_of[slot] = untagged
        if tk.series:
            return  # series titles are matched by key only
        postings = self._postings
        trim_at = self._trim_at
        for tok in stems:
            plist = postings.get(tok)
            if plist is None:
                postings[tok] = [slot]
            else:
                plist.append(slot)
                if len(plist) > trim_at:
                    del plist[: -cfg.posting_cap]

    def prune(self, now: datetime) -> int:
        """Drop items published more than ``window_hours`` before ``now``."""
        cutoff = _ts(now, now) - self._window_s
        dead = [slot for slot, rec in self._recs.items() if rec[_TS] < cutoff]
        if not dead:
            return 0
        for slot in dead:
            rec = self._recs.pop(slot)
            ukey, tkey = rec[_UKEY], rec[_TKEY]
            if ukey and self._by_url.get(ukey) == slot:
                del self._by_url[ukey]
            if tkey and self._by_title.get(tkey) == slot:
                del self._by_title[tkey]
            untagged = self._untagged_of.pop(slot, 0)
            if untagged and self._by_untagged.get(untagged) == slot:
                del self._by_untagged[untagged]
        recs = self._recs
        empty = []
        for tok, plist in self._postings.items():
            plist[:] = [s for s in plist if s in recs]
            if not plist:
                empty.append(tok)
        for tok in empty:
            del self._postings[tok]
        self._fresh = None
        return len(dead)


def _only_tail_differs(a: str, b: str) -> bool:
    """One title is the other with a separator-delimited tail added ("- Outlet", "| Section"):
    a label, not news."""
    short, long = (a, b) if len(a) <= len(b) else (b, a)
    key = features(short).key
    return any(features(rest).key == key for _, rest in tails(long))


def is_development(headline: str, title: str, *, update_numbers: bool = True) -> bool:
    """Whether a copy's ``title`` reports a development of the story ``headline``
    announced: a higher "UPDATE n" (with ``update_numbers``: an outlet's numbering is
    its own, so only its own later copy counts), figures that changed (a new casualty
    count), or a negation that flipped. Rewording, a different outlet's style, or a
    copy that leaves the figures out is not one."""
    if update_numbers and update_number(title) > update_number(headline):
        return True
    a, b = features(headline), features(title)
    return bool(b.numbers and b.numbers != a.numbers) or a.negated != b.negated


def is_material_change(old_title: str, new_title: str) -> bool:
    """Whether a seen entry's retitling is news: a higher "UPDATE n", changed numbers
    (a new casualty figure), a negation or different names — not case, quotes or an
    outlet suffix."""
    if update_number(new_title) > update_number(old_title):
        return True
    a, b = features(old_title), features(new_title)
    if a.key == b.key or _only_tail_differs(old_title, new_title):
        return False
    if a.numbers != b.numbers or a.negated != b.negated or veto(a, b):
        return True
    return fuzz.token_sort_ratio(a.key, b.key) < 90.0
