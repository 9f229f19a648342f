"""How alike two titles are, and whether they may merge: the lexical title signals
(``MODEL``), the merge model over lexical, embedding cosine and rare-word signals
(``MERGE_MODEL``), the guards that veto a merge (numbers, weekdays, names, opposites,
negation) and the summary score. Pure functions of two titles' features; ``_Profile``
holds the pair-independent part of one title's signals."""

from __future__ import annotations

import math
from operator import mul

from rapidfuzz import fuzz

from monitor.dedupe.embed import embed, quantize
from monitor.dedupe.textkey import WEEKDAYS as _WEEKDAYS
from monitor.dedupe.textkey import (
    FeatureFields,
    TitleFeatures,
    contrast,
    summary_stems,
)

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
    quick = _quick_veto(a, b)
    if quick:
        return quick
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
    -6.271, 1.775, 1.764, 1.634, 1.409, -0.533, -0.849, 2.280, 0.760, 0.828, 1.411, 1.882,
    -1.143, 2.136,
)  # fmt: skip


_Stem = tuple[str, int, str, int]  # stem, length, first 4 characters, character mask


_NOT_SOFT: tuple[()] = ()
_STEM_INFO_MAX = 1 << 16
_stem_infos: dict[str, _Stem | tuple[()]] = {}


def _stem_info(stem: str) -> _Stem | tuple[()]:
    """What ``_cross`` needs of a stem that can soft-match a different stem (4+
    characters, not a number); ``()`` for one that cannot. Cached (bounded)."""
    info: _Stem | tuple[()] = _NOT_SOFT
    if len(stem) >= 4 and not stem[0].isdigit():
        mask = 0
        for c in stem:
            mask |= 1 << (ord(c) & 63)
        info = (stem, len(stem), stem[:4], mask)
    if len(_stem_infos) >= _STEM_INFO_MAX:
        _stem_infos.clear()
    _stem_infos[stem] = info
    return info


_Runs = tuple[tuple[str, ...], ...]
_BYTE_CHARS = "".join(map(chr, range(256)))


class _Profile:
    """What scoring and the guards need from one title, computed once per title: the
    pair-independent parts of its signals and its guard features.

    A profile rebuilt from an entry's compact form (``decode``) starts with what the
    first, bounded score needs; the key, sorted key, name runs and initials are read
    (``complete``) only for the candidates that pass it."""

    __slots__ = (
        "days", "elig", "feat", "first", "initials", "key", "maybe", "name_runs", "names",
        "near", "negated", "numbers", "packed", "sorted_key", "strong", "uniq", "uset", "wsum",
    )  # fmt: skip

    def __init__(
        self,
        uniq: tuple[str, ...],
        numbers: frozenset[str],
        days: frozenset[str],
        negated: bool,
        strong: tuple[str, ...],
        names: tuple[str, ...],
        near: tuple[tuple[str, str], ...] | None,
    ) -> None:
        self.uniq = uniq
        self.uset = frozenset(uniq)
        self.numbers = numbers
        self.days = days
        self.negated = negated
        self.strong = strong  # names and numbers: they weigh 2 (``_weights``), others 1
        self.wsum = float(len(uniq) + len(strong))
        self.names = names  # the words of every name run
        # stems that can soft-match a different stem: 4+ characters, not a number
        infos = _stem_infos
        elig: list[_Stem] = []
        for x in uniq:
            info = infos.get(x)
            if info is None:
                info = _stem_info(x)
            if info:
                elig.append(info)
        # (tuples, not sets or lists, where a tuple does: once seen by the garbage
        # collector a tuple of strings is no longer tracked, and profiles are many)
        self.elig = tuple(elig)
        # (x, y) for two stems of this title that soft-match each other, both ways round
        # (rare): whether x is covered by a stem the other title shares with this one
        self.near = _near_pairs(self.elig) if near is None else near
        self.packed: str | None = None  # set while the fields below are still to be read
        self.feat = ""  # the compact form (``encode``) once known
        self.key = ""
        self.sorted_key = ""
        self.name_runs: _Runs = ()
        self.first: _Runs = ()
        self.maybe: _Runs = ()
        self.initials = ""

    @classmethod
    def of(cls, f: TitleFeatures) -> _Profile:
        return cls.of_fields(
            (f.key, f.stems, f.numbers, f.days, f.names, f.first, f.maybe, f.initials,
             f.negated, f.series)
        )  # fmt: skip

    @classmethod
    def of_fields(cls, fields: FeatureFields) -> _Profile:
        """The profile of a title's ``feature_fields``."""
        key, stems, numbers, days, name_runs, first, maybe, initials, negated, _ = fields
        uniq = tuple(dict.fromkeys(stems))
        strong: set[str] = set()
        for run in name_runs + first:
            strong.update(run)
        # (sorted: the compact form is then the same in every process, whatever the hash seed)
        names = tuple(sorted(strong.union(*maybe)))
        strong.update(numbers)
        prof = cls(
            uniq, numbers, days, negated, tuple(sorted(strong.intersection(uniq))), names, None
        )
        prof.key = key
        prof.sorted_key = " ".join(sorted(uniq))
        prof.name_runs, prof.first, prof.maybe = name_runs, first, maybe
        prof.initials = initials
        return prof

    # A compact form of the guard features, kept on each window entry once it has been
    # scored (about 150 bytes): scoring it again rebuilds the profile from this instead of
    # re-tokenising the title. One string: a header (negation and weekday flags, then the
    # lengths of the parts), the indices of the title's number, strong and name stems and
    # of its near pairs, the runs (kind, length, stem indices...), then the key and the
    # initials.

    def encode(self, stems: tuple[str, ...]) -> str:
        """The compact form, relative to the index stems ``stems``; "" when the profile's
        stems are not those (its title strips further: features are not kept then)."""
        if self.uniq != stems or len(stems) > 256:
            return ""  # (or a title of hundreds of words: recomputed each time)
        at = dict(zip(stems, _BYTE_CHARS, strict=False)).__getitem__  # stem -> its index
        runs = "".join(
            f"{chr(kind)}{chr(len(run))}{''.join(map(at, run))}"
            for kind, group in enumerate((self.name_runs, self.first, self.maybe))
            for run in group
        )
        near = "".join(at(x) for pair in self.near for x in pair)
        parts = [
            "".join(map(at, group)) for group in (sorted(self.numbers), self.strong, self.names)
        ]
        parts += (near, runs)
        if max(map(len, parts)) > 255:
            return ""
        head = chr(int(self.negated) | int(bool(self.days)) << 1) + "".join(
            chr(len(part)) for part in parts
        )
        return f"{head}{''.join(parts)}{self.key}\x00{self.initials}"

    @classmethod
    def decode(cls, packed: str, stems: tuple[str, ...]) -> _Profile:
        """The profile of the compact form ``packed`` (``encode``), less what
        ``complete`` reads."""
        flags, n_num, n_strong, n_names, n_near = packed[:5].encode("latin-1")
        at = 6
        body = packed[at : at + n_num + n_strong + n_names + n_near].encode("latin-1")
        numbers = frozenset([stems[i] for i in body[:n_num]]) if n_num else _NOTHING
        at = n_num + n_strong
        strong = tuple([stems[i] for i in body[n_num:at]])
        names = tuple([stems[i] for i in body[at : at + n_names]])
        at += n_names
        near = tuple(zip(*[iter([stems[i] for i in body[at:]])] * 2, strict=True))
        days = _NOTHING
        if flags & 2:  # weekdays: from the key (rare)
            key = packed[6 + len(body) + ord(packed[5]) :].split("\x00")[0]
            days = frozenset([w for w in key.split() if w in _WEEKDAYS])
        prof = cls(stems, numbers, days, bool(flags & 1), strong, names, near)
        prof.packed = packed
        return prof

    def complete(self) -> None:
        """Read the key, sorted key, name runs and initials of a decoded profile."""
        packed = self.packed
        if packed is None:
            return
        self.packed = None
        head = packed[:6].encode("latin-1")
        at = 6 + sum(head[1:5])
        end = at + head[5]
        self.key, self.initials = packed[end:].split("\x00")
        stems = self.uniq
        self.sorted_key = " ".join(sorted(stems))
        code = packed[at:end].encode("latin-1")
        groups: tuple[list[tuple[str, ...]], ...] = ([], [], [])
        i = 0
        while i < len(code):
            n = code[i + 1]
            groups[code[i]].append(tuple([stems[j] for j in code[i + 2 : i + 2 + n]]))
            i += 2 + n
        self.name_runs, self.first, self.maybe = map(tuple, groups)


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


def _near_pairs(elig: tuple[_Stem, ...]) -> tuple[tuple[str, str], ...]:
    """(x, y) and (y, x) for each two stems of one title that soft-match each other
    (``_tokens_match``; the rejections of ``_cross``). Rare."""
    out: list[tuple[str, str]] = []
    for i, (x0, lx, x4, mx) in enumerate(elig):
        for y0, ly, y4, my in elig[i + 1 :]:
            if x4 == y4:
                if not _soft_pair(x0, y0):
                    continue
            else:
                total3 = 3 * (lx + ly)
                if lx < 5 or ly < 5 or 20 * abs(lx - ly) > total3:
                    continue
                if 20 * (mx ^ my).bit_count() > total3 or fuzz.ratio(x0, y0) < 85.0:
                    continue
            out += ((x0, y0), (y0, x0))
    return tuple(out)


_ZERO_SIGNALS = (0.0,) * len(SIGNALS)
_NOTHING: frozenset[str] = frozenset()


def _match(
    pa: _Profile, pb: _Profile, exact: bool = True
) -> tuple[tuple[float, ...], frozenset[str], frozenset[str]]:
    """``similarity_signals`` on profiles, each soft comparison made once, and the stems of
    each title that the other covers (``_covered``): what the names guard needs. Not
    ``exact``: the two string-similarity signals (token_set, sorted_ratio) are left at the
    bounds that maximise the score, and the profiles need not be ``complete``."""
    sa, sb = pa.uniq, pb.uniq
    if not sa or not sb:
        return _ZERO_SIGNALS, _NOTHING, _NOTHING
    seta, setb = pa.uset, pb.uset
    common = seta & setb
    ncommon = len(common)
    # soft matches between the stems only one side has (soft_dice counts these) ...
    ra = [x for x in pa.elig if x[0] not in setb]
    rb = [y for y in pb.elig if y[0] not in seta]
    if ra and rb:
        hit_a, hit_b = _cross(ra, rb, False)
        ma = common | hit_a
        mb = common | hit_b
    else:
        hit_a = hit_b = _NOTHING  # type: ignore[assignment]
        ma = mb = common
    soft = 100.0 * (ncommon + len(hit_a) + ncommon + len(hit_b)) / (len(seta) + len(setb))
    # ... and, for the coverage signals, soft matches with the shared stems too: a stem x
    # only one side has, near a stem c of its own title that the other side has as well
    if common:
        if pa.near:
            ma = ma | {x for x, c in pa.near if c in setb and x not in setb}
        if pb.near:
            mb = mb | {y for y, c in pb.near if c in seta and y not in seta}
    nma, nmb = len(ma), len(mb)
    ca, cb = nma / len(sa), nmb / len(sb)
    # weights are 1.0 or 2.0 (names and numbers): these integer sums are exact
    inter = frozenset.intersection
    wdice = (nma + len(inter(ma, pa.strong)) + nmb + len(inter(mb, pb.strong))) / (
        pa.wsum + pb.wsum
    )
    shared_names = len(inter(ma, pa.names)) + len(inter(mb, pb.names))
    unmatched = len(sa) - nma + len(sb) - nmb
    # (conditional expressions for min and max: the same values, without the calls)
    signals = (
        soft / 100.0,
        wdice,
        cb if cb < ca else ca,
        cb if cb > ca else ca,
        (shared_names if shared_names < 4 else 4) / 4.0,
        (unmatched if unmatched < 10 else 10) / 10.0,
        fuzz.token_set_ratio(pa.key, pb.key) / 100.0 if exact else _TOKEN_SET_BOUND,
        fuzz.ratio(pa.sorted_key, pb.sorted_key) / 100.0 if exact else _SORTED_BOUND,
        0.0 if pa.numbers.isdisjoint(pb.numbers) else 1.0,
        (len(sa) if len(sa) < len(sb) else len(sb)) / 10.0,
        nma / 10.0,
        sum(map(len, ma)) / nma / 8.0 if nma else 0.0,
        ca * cb,
    )
    return signals, ma, mb


_TOKEN_SET = SIGNALS.index("token_set")
_SORTED = SIGNALS.index("sorted_ratio")


def _signals(pa: _Profile, pb: _Profile) -> tuple[float, ...]:
    return _match(pa, pb)[0]


def similarity_signals(a: TitleFeatures, b: TitleFeatures) -> tuple[float, ...]:
    """The lexical signals the title model weighs, each scaled to about 0-1."""
    return _signals(_Profile.of(a), _Profile.of(b))


def model_score(signals: tuple[float, ...], model: tuple[float, ...] = MODEL) -> float:
    """0-100: the model's probability that two titles report the same story."""
    z = model[0] + sum(w * x for w, x in zip(model[1:], signals, strict=True))
    if z < -30.0:
        return 0.0
    return 100.0 / (1.0 + math.exp(-z))


_BIAS, _WEIGHTS = MODEL[0], MODEL[1:]
# token_set and sorted_ratio lie in [0, 1]: the values that make the score largest
_TOKEN_SET_BOUND = 1.0 if _WEIGHTS[_TOKEN_SET] >= 0.0 else 0.0
_SORTED_BOUND = 1.0 if _WEIGHTS[_SORTED] >= 0.0 else 0.0


def _model_score(signals: tuple[float, ...]) -> float:
    """``model_score(signals)``, the same sum in the same order, without a generator."""
    z = _BIAS + sum(map(mul, _WEIGHTS, signals))
    if z < -30.0:
        return 0.0
    return 100.0 / (1.0 + math.exp(-z))


# The merge model: a logistic model over (the title model's score / 100, the titles'
# embedding cosine, the share of word rarity the titles share, the rarest shared word's
# rarity). Fitted by bench/tune_dedup.py --fit on the tune split only.
MERGE_FEATURES = ("lexical", "cosine", "rare_cover", "rarest")
MERGE_MODEL = (-8.318, 3.538, 3.132, 1.880, 3.491)
_RARITY_PRIOR = 1000  # titles a window counts as at least, for word rarity
_RAW_KEY_CHARS = 12  # the shortest title without word keys that an exact copy may match
_TAG_WORDS = 4  # the longest tail after a separator read as a tag ("- AP News Wire")
_SEPARATORS = frozenset("|-\u2013\u2014\u2022")


def merge_score(features: tuple[float, ...], model: tuple[float, ...] = MERGE_MODEL) -> float:
    """0-100: the merge model's probability that two titles report the same story."""
    z = model[0] + sum(w * x for w, x in zip(model[1:], features, strict=True))
    if z < -30.0:
        return 0.0
    return 100.0 / (1.0 + math.exp(-z))


def pair_score(a: TitleFeatures, b: TitleFeatures) -> float:
    """Title similarity 0-100 (guards not applied): the title model's probability."""
    return model_score(similarity_signals(a, b))


def _quick_veto(a: TitleFeatures | _Profile, b: TitleFeatures | _Profile) -> str:
    """The guards that need no stem matching (``veto`` runs them first; scoring runs them
    on profiles before any stem is matched)."""
    if (a.numbers - b.numbers) and (b.numbers - a.numbers):
        return "numbers"
    if (a.days - b.days) and (b.days - a.days):
        return "days"
    if a.negated != b.negated:
        return "negation"
    return ""


def _left_out(runs: _Runs, covered: frozenset[str], initials: str) -> bool:
    """``_uncovered`` with the covered stems known: some run has no covered word (and is
    no acronym of the other title's words)."""
    for run in runs:
        if not covered.isdisjoint(run):
            continue
        if len(run) == 1 and len(run[0]) >= 2 and run[0] in initials:
            continue
        return True
    return False


def _late_veto(a: _Profile, b: _Profile, ma: frozenset[str], mb: frozenset[str]) -> str:
    """``veto``'s names and contrast guards, given the stems of ``a`` that ``b`` covers
    (``ma``) and the other way round (``mb``), as ``_match`` found them."""
    na, fa = _left_out(a.name_runs, ma, b.initials), _left_out(a.first, ma, b.initials)
    nb, fb = _left_out(b.name_runs, mb, a.initials), _left_out(b.first, mb, a.initials)
    if (na or fa) and (nb or fb):
        return "names"
    if (na and _left_out(b.maybe, mb, a.initials)) or (nb and _left_out(a.maybe, ma, b.initials)):
        return "names"
    if contrast(a.uset, b.uset):
        return "contrast"
    return ""


def _lost_names(
    names_a: tuple[str, ...],
    stems_a: set[str],
    pa: _Profile,
    ma: frozenset[str],
    names_b: tuple[str, ...],
    stems_b: tuple[str, ...],
    pb: _Profile,
    mb: frozenset[str],
) -> bool:
    """The names guard for names a feed's boilerplate took out of a title (a name the
    feed writes often): a name one title lost that the other does not hold, against a
    name of the other's that this one does not hold, vetoes the merge."""
    held_b = set(stems_b).union(names_b)
    held_a = stems_a.union(names_a)
    lost_a = any(n not in held_b for n in names_a)
    lost_b = any(n not in held_a for n in names_b)
    other_b = _left_out(pb.name_runs, mb, pa.initials) or _left_out(pb.first, mb, pa.initials)
    other_a = _left_out(pa.name_runs, ma, pb.initials) or _left_out(pa.first, ma, pb.initials)
    return (lost_a and (lost_b or other_b)) or (lost_b and other_a)


def summary_score(a: str, b: str) -> float:
    """Summary similarity 0-100: Dice over content-word stems (synonyms folded)."""
    if not a or not b:
        return 0.0
    return _dice(summary_stems(a), tuple(summary_stems(b)))


def _dice(sa: frozenset[str], sb: tuple[str, ...]) -> float:
    """Dice (0-100) of two sets of stems, the second given as a tuple of unique stems."""
    if not sa or not sb or sb is _NO_STEMS:
        return 0.0
    return 200.0 * len(sa.intersection(sb)) / (len(sa) + len(sb))


# --- the index -------------------------------------------------------------------------

# A summary stands for itself until it is first compared: a raw prefix (``_RAW``) or
# the cleaned text. Compared once, it is kept as its unique stems (smaller than the text):
# ``_BLANK`` when it cleans to nothing, ``_NO_STEMS`` when it cleans to text without
# content words (which still counts as a summary, scoring 0).
_BLANK: tuple[str, ...] = ()
_NO_STEMS: tuple[str, ...] = ("",)


def _vector(title: str) -> bytes:
    return quantize(embed(title))


def _stem_tuple(clean: str) -> tuple[str, ...]:
    if not clean:
        return _BLANK
    stems = summary_stems(clean)
    return tuple(stems) if stems else _NO_STEMS
