"""Slack rendering: escaping of hostile feed text, Slack's limits, digests that lose nothing."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from monitor.deliver.slack import (
    render_messages,
    render_slack,
    render_slack_digest,
    render_update,
    safe_url,
)
from monitor.models import AlertMessage, SourceRef

HOSTILE = "<!channel> <https://evil|click> & co <@U123> <#C999> <!subteam^S1>"


def alert(i: int = 1, **kw: Any) -> AlertMessage:
    fields: dict[str, Any] = {
        "alert_id": i,
        "story_id": i,
        "watchlist": "korea",
        "channel": "#alerts",
        "severity": "info",
        "title": f"Kim Jong Un oversees ballistic missile launch {i}",
        "link": f"https://news.example/story/{i}?a=1&b=2",
        "source": "BBC World",
        "published": datetime(2024, 5, 1, 12, 30, tzinfo=UTC),
        "summary": "North Korea fired a missile into the sea.",
        "matched_terms": ("Kim Jong Un", "ballistic missile"),
        "matched_words": ("Kim Jong-un", "ballistic missiles"),
        "sources": [SourceRef("BBC World", f"https://news.example/story/{i}?a=1&b=2")],
    }
    fields.update(kw)
    return AlertMessage(**fields)


def texts(blocks: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "text" and isinstance(value, str):
                    out.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(blocks)
    return out


def angle_tokens(s: str) -> list[str]:
    return re.findall(r"<([^<>]*)>", s)


def assert_within_limits(text: str, blocks: list[dict[str, Any]]) -> None:
    assert text.strip(), "fallback text missing"
    assert len(text) <= 3000
    assert 0 < len(blocks) <= 50
    for b in blocks:
        if b["type"] == "header":
            assert b["text"]["type"] == "plain_text"
            assert len(b["text"]["text"]) <= 150
        elif b["type"] == "section":
            if "text" in b:
                assert len(b["text"]["text"]) <= 3000
            for f in b.get("fields", []):
                assert len(f["text"]) <= 2000
            assert len(b.get("fields", [])) <= 10
        elif b["type"] == "context":
            assert 0 < len(b["elements"]) <= 10
            for e in b["elements"]:
                assert len(e["text"]) <= 3000


def test_hostile_title_cannot_ping_or_disguise_links() -> None:
    msg = alert(title=HOSTILE, summary=HOSTILE, source="Evil <!here> News", severity="info")
    text, blocks = render_slack(msg)
    for s in [text, *texts(blocks)]:
        assert "<!channel>" not in s and "<!here>" not in s and "<@U123>" not in s
        assert "<https://evil" not in s
        for token in angle_tokens(s):
            # only links we built: our (sanitised) story/outlet URL, never a feed-supplied target
            assert token.startswith("https://news.example/story/1"), token
    joined = "\n".join(texts(blocks))
    assert "&lt;!channel&gt; &lt;https://evil|click&gt; &amp; co" in joined
    assert "&lt;!channel&gt;" in text


def test_only_severity_mentions_are_added() -> None:
    for severity, mention in (("info", None), ("high", "<!here>"), ("critical", "<!channel>")):
        text, blocks = render_slack(alert(title=HOSTILE, severity=severity))
        every = [text, *texts(blocks)]
        mentions = [t for s in every for t in angle_tokens(s) if t.startswith(("!", "@", "#"))]
        if mention is None:
            assert mentions == []
        else:
            assert set(mentions) == {mention[1:-1]}
            assert text.startswith(mention)


def test_headline_is_linked_with_outlet_time_watchlist_terms_and_summary() -> None:
    msg = alert(published=datetime(2024, 5, 1, 21, 30, tzinfo=timezone(timedelta(hours=9))))
    text, blocks = render_slack(msg)
    joined = "\n".join(texts(blocks))
    assert (
        "<https://news.example/story/1?a=1&amp;b=2|Kim Jong Un oversees ballistic missile launch 1>"
        in joined
    )
    assert "BBC World" in joined
    assert "2024-05-01 12:30 UTC" in joined  # converted from +09:00
    assert "korea" in joined
    assert "*Kim Jong Un*" in joined and "*ballistic missile*" in joined
    assert "Kim Jong-un" in joined
    assert "North Korea fired a missile" in joined
    assert "Kim Jong Un oversees" in text and "BBC World" in text


def test_unsafe_link_targets_are_not_linked() -> None:
    assert safe_url("javascript:alert(1)") is None
    assert safe_url("data:text/html,hi") is None
    assert safe_url("/relative/path") is None
    assert safe_url("https://ex.com/a|b<c>d e") == "https://ex.com/a%7Cb%3Cc%3Ed%20e"
    text, blocks = render_slack(alert(link="javascript:alert(1)", title="Click me"))
    joined = "\n".join(texts(blocks))
    assert "javascript:" not in joined and "javascript:" not in text
    assert "Click me" in joined
    _, blocks = render_slack(alert(link="https://ex.com/x|<!channel>"))
    tokens = [t for s in texts(blocks) for t in angle_tokens(s)]
    assert tokens == [
        "https://ex.com/x%7C%3C!channel%3E|Kim Jong Un oversees ballistic missile launch 1"
    ]


def test_long_text_is_truncated_with_ellipsis_not_rejected() -> None:
    long_summary = "word " * 2000  # 10,000 characters
    msg = alert(
        title="T" * 5000,
        summary=long_summary,
        matched_terms=tuple(f"term {i}" for i in range(400)),
        matched_words=tuple(f"word & {i}" for i in range(400)),
        sources=[SourceRef(f"Outlet {i} <&>", f"https://o{i}.example/x") for i in range(300)],
    )
    for text, blocks in [render_slack(msg), render_update(msg)]:
        assert_within_limits(text, blocks)
        joined = "\n".join(texts(blocks))
        assert "…" in joined
        assert "word word" in joined
    # escaping cannot push a field over its limit either
    text, blocks = render_slack(alert(summary="&" * 10000, title="<" * 5000))
    assert_within_limits(text, blocks)


def test_several_outlets_are_linked_and_update_counts_them() -> None:
    srcs = [
        SourceRef("BBC World", "https://bbc.example/1"),
        SourceRef("Al Jazeera", "https://aj.example/2"),
        SourceRef("NHK World", "https://nhk.example/3"),
    ]
    _, blocks = render_slack(alert(sources=srcs))
    joined = "\n".join(texts(blocks))
    assert "<https://aj.example/2|Al Jazeera>" in joined
    text, blocks = render_update(alert(sources=srcs))
    joined = "\n".join(texts(blocks))
    assert "Carried by 3 outlets" in joined
    for ref in srcs:
        assert f"<{ref.link}|{ref.source}>" in joined
    assert_within_limits(text, blocks)
    _, single = render_slack(alert())
    assert "Carried by" not in "\n".join(texts(single))


def test_followup_is_a_short_also_reported_by_line() -> None:
    text, blocks = render_slack(
        alert(kind="followup", source="NHK <World>", link="https://nhk.example/9")
    )
    assert len(blocks) == 1
    assert "Also reported by *NHK &lt;World&gt;*" in blocks[0]["text"]["text"]
    assert "<https://nhk.example/9|" in blocks[0]["text"]["text"]
    assert text.startswith("Also reported by")
    batched = alert(
        kind="followup",
        sources=[
            SourceRef("NHK", "https://nhk.example/9"),
            SourceRef("DW", "https://dw.example/1"),
        ],
    )
    text, blocks = render_slack(batched)
    line = blocks[0]["text"]["text"]
    assert "<https://nhk.example/9|NHK>" in line and "<https://dw.example/1|DW>" in line
    assert text == "Also reported by NHK, DW"


def test_digest_of_60_lists_every_story_within_limits() -> None:
    items = [
        alert(i, title=f"Story {i} " + ("<!channel> " if i == 7 else "") + "x" * (50 * (i % 7)))
        for i in range(60)
    ]
    items[3] = alert(3, title="Y" * 10_000, summary="Z" * 10_000)
    parts = render_slack_digest(items)
    assert len(parts) >= 2
    seen: list[str] = []
    for text, blocks in parts:
        assert_within_limits(text, blocks)
        for s in texts(blocks):
            seen += [t.split("|")[0] for t in angle_tokens(s) if t.startswith("https://")]
            assert "<!channel>" not in s
    expected = [f"https://news.example/story/{i}?a=1&amp;b=2" for i in range(60)]
    assert sorted(seen) == sorted(expected)  # every item once, none dropped or doubled
    assert "BBC World" in "\n".join(texts(parts[-1][1]))
    assert "part 1/" in parts[0][1][0]["text"]["text"]


def test_digest_message_renders_all_parts_and_mentions_highest_severity_once() -> None:
    items = [alert(i, severity="critical" if i == 30 else "info") for i in range(45)]
    parts = render_messages(alert(999, digest=items))
    assert len(parts) == 3
    mentions = [t for _, b in parts for s in texts(b) for t in angle_tokens(s) if t[0] == "!"]
    assert mentions == ["!channel"]
    assert render_slack(alert(999, digest=items)) == parts[0]


def test_sixty_matched_terms_and_outlets_stay_within_limits() -> None:
    terms = tuple(f"term number {i} " + "x" * 80 for i in range(60))
    srcs = [
        SourceRef(f"Outlet {i} " + "y" * 60, f"https://o{i}.example/" + "z" * 200)
        for i in range(60)
    ]
    msg = alert(summary="S" * 10_000, matched_terms=terms, matched_words=terms, sources=srcs)
    for text, blocks in [render_slack(msg), render_update(msg)]:
        assert_within_limits(text, blocks)
        joined = "\n".join(texts(blocks))
        assert "term number 0" in joined and "Outlet 0" in joined
