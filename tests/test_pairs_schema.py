"""Posts reading and validation: formats, missing columns, rejects with reasons, caption SQL."""

from __future__ import annotations

import json

import duckdb
import pandas as pd
import pytest

from iipa.errors import IIPAError
from iipa.pairs import rules, schema


def good_rows(n: int = 3) -> list[dict]:
    return [{"post_id": f"p{i}", "user_id": "u1", "taken_at": f"2020-01-0{i + 1}T10:00:00Z",
             "crawled_at": "2020-06-01T00:00:00Z", "media_type": "image", "likes": 100 + i, "comments": 1,
             "caption": f"hello #tag{i}"} for i in range(n)]


def load(posts, **kw):
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    summary = schema.load_checked_posts(con, posts, **kw)
    return con, summary


def test_missing_required_columns_are_named(tmp_path):
    path = tmp_path / "posts.csv"
    pd.DataFrame(good_rows()).drop(columns=["likes", "caption"]).to_csv(path, index=False)
    with pytest.raises(IIPAError, match=r"posts\.csv.*likes, caption"):
        load([path])


def test_global_crawled_at_replaces_the_column(tmp_path):
    path = tmp_path / "posts.csv"
    pd.DataFrame(good_rows()).drop(columns=["crawled_at"]).to_csv(path, index=False)
    with pytest.raises(IIPAError, match="crawled_at"):
        load([path])
    con, summary = load([path], crawled_at="2020-07-01")
    assert summary.valid == 3
    assert con.execute("SELECT max(crawled_us) FROM posts").fetchone()[0] == 1593561600000000


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_formats_read_the_same(tmp_path, fmt):
    df = pd.DataFrame(good_rows())
    path = tmp_path / f"posts.{fmt}"
    if fmt == "parquet":
        df.assign(taken_at=pd.to_datetime(df["taken_at"]), crawled_at=pd.to_datetime(df["crawled_at"])).to_parquet(path)
    elif fmt == "csv":
        df.to_csv(path, index=False)
    else:
        df.to_json(path, orient="records", lines=True)
    con, summary = load([tmp_path])  # a folder works too
    assert summary.valid == 3 and summary.rejected == {}
    got = con.execute("SELECT post_id, taken_us, likes FROM posts ORDER BY post_id").fetchall()
    assert got == [(f"p{i}", 1577872800000000 + i * 86_400_000_000, 100 + i) for i in range(3)]


def test_bad_rows_go_to_rejects_with_reasons(tmp_path):
    rows = good_rows(2)
    bad = [
        {"post_id": "", "why": "missing post_id"},
        {"user_id": None, "why": "missing user_id"},
        {"taken_at": "yesterday", "why": "unparsable taken_at"},
        {"taken_at": "2020-07-01", "why": "taken_at after crawled_at"},
        {"likes": "many", "why": "non-numeric likes"},
        {"likes": "-3", "why": "negative likes"},
        {"likes": "2.5", "why": "non-integer likes"},
        {"likes": None, "why": "missing likes"},
        {"comments": "1e30", "why": "non-integer comments"},
        {"crawled_at": "1e30", "why": "unparsable crawled_at"},
        {"comments": "x", "why": "non-numeric comments"},
        {"taken_at": "1577872800", "why": None},  # Unix seconds are fine
        {"media_type": "reel", "why": "unknown media_type"},
    ]
    for i, b in enumerate(bad):
        row = dict(rows[0], post_id=f"bad{i}", caption="x")
        row.update({k: v for k, v in b.items() if k != "why"})
        rows.append(row)
    dup_old = dict(rows[0], crawled_at="2020-05-01T00:00:00Z", likes=1)  # older observation loses
    rows.append(dup_old)
    path = tmp_path / "posts.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    con, summary = load([path], rejects_path=tmp_path / "rejects.csv")
    expected = {b["why"]: 1 for b in bad if b["why"]} | {"duplicate post_id": 1}
    assert summary.rejected == expected
    assert summary.valid == 3 and summary.rows == len(rows)
    rej = pd.read_csv(tmp_path / "rejects.csv")
    assert sorted(rej["reason"]) == sorted(expected)
    row = rej[rej["reason"] == "non-numeric likes"].iloc[0]
    assert row["source_file"].endswith("posts.csv") and json.loads(row["raw_row"])["likes"] == "many"
    # the duplicate kept is the most recent crawl
    assert con.execute("SELECT likes FROM posts WHERE post_id = 'p0'").fetchall() == [(100,)]
    assert con.execute("SELECT taken_us FROM posts WHERE post_id = 'bad11'").fetchall() == [(1577872800000000,)]


CAPTIONS = [
    "", "   ", "plain words only here", "#Beach #SUMMER sunset", "@Ann.Lee. and @bob_1, mail@x.com",
    "#Café#b ##x #नमस्ते #東京 #a_b1 #!", "🙂 ! -- ok", "a\u3000b\u00a0c\td\ne", "six #a words @b here now ok fine",
    "तुम कैसे हो #हिंदी", "مرحبا #عربي @user", "x#y@z.w.", "#@a @#b", "end.", "#only", "@only.",
]


def test_sql_caption_features_agree_with_the_python_rules():
    con = duckdb.connect()
    con.register("cap", pd.DataFrame({"caption_s": CAPTIONS, "i": range(len(CAPTIONS))}))
    got = con.execute(schema.caption_features_sql({}, "cap") + " ORDER BY i").df()
    for cap, (_, row) in zip(CAPTIONS, got.iterrows(), strict=True):
        assert row["tag_key"] == rules.tag_key(rules.parse_hashtags(cap)), cap
        assert row["mention_key"] == rules.tag_key(rules.parse_mentions(cap)), cap
        assert row["n_hashtags"] == len(rules.parse_hashtags(cap)), cap
        assert row["n_words"] == rules.descriptive_words(cap), cap
        assert bool(row["no_caption"]) == (cap.strip() == ""), cap


def test_given_hashtag_lists_override_the_caption(tmp_path):
    rows = good_rows(2)
    rows[0]["hashtags"] = ["#B", "a"]
    rows[1]["hashtags"] = None  # falls back to the caption
    path = tmp_path / "posts.jsonl"
    pd.DataFrame(rows).to_json(path, orient="records", lines=True)
    con, summary = load([path])
    feats = con.execute(schema.caption_features_sql(summary.types, "posts") + " ORDER BY post_id").df()
    assert list(feats["tag_key"]) == ["a b", "tag1"]


def test_unreadable_and_unknown_files(tmp_path):
    with pytest.raises(IIPAError, match="no such posts file"):
        schema.expand_post_files([tmp_path / "nope.parquet"])
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(IIPAError, match="unsupported"):
        schema.expand_post_files([tmp_path / "x.txt"])
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    with pytest.raises(IIPAError, match="cannot read posts"):
        load([tmp_path / "broken.parquet"])


def test_jsonl_with_a_bad_value_after_the_type_sample(tmp_path):
    # DuckDB infers JSON types from a sample; a late "abc" must be a reject, not a crash.
    rows = good_rows(1) * 1
    lines = [json.dumps(dict(rows[0], post_id=f"p{i}", likes=100)) for i in range(25_000)]
    lines.append(json.dumps(dict(rows[0], post_id="late", likes="abc")))
    (tmp_path / "posts.jsonl").write_text("\n".join(lines) + "\n")
    _, summary = load([tmp_path / "posts.jsonl"])
    assert summary.rejected == {"non-numeric likes": 1} and summary.valid == 25_000
