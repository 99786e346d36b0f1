"""Posts read for the baseline go through the pairs schema: same checks, same rejects."""

from __future__ import annotations

import pandas as pd

from iipa.train.baseline import context_features, read_posts


def test_bad_rows_become_rejects_and_the_rest_is_used(tmp_path):
    posts = tmp_path / "posts.csv"
    posts.write_text("post_id,user_id,likes,caption\n"
                     "a,u1,10,#x hi\nb,u1,abc,\n,u2,5,\na,u1,12,dup\nc,,-1,\nd,u3,7,@m.n #Café ok\n")
    df = read_posts(posts, rejects_path=tmp_path / "rejects.csv")
    assert df["post_id"].tolist() == ["a", "d"] and df["likes"].tolist() == [12, 7]  # the duplicate with most likes
    assert df.attrs["posts"]["rejected"] == {"missing post_id": 1, "non-numeric likes": 1,
                                             "negative likes": 1, "duplicate post_id": 1}
    rejects = pd.read_csv(tmp_path / "rejects.csv")
    assert sorted(rejects["reason"]) == ["duplicate post_id", "missing post_id", "negative likes", "non-numeric likes"]
    feats, _ = context_features(df)
    # hashtags and mentions counted by the pair build's parser (Unicode tags, dotted mentions)
    assert feats[:, 3].tolist() == [0.0, 1.0] and feats[:, 4].tolist() == [0.0, 1.0]
