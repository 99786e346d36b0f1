"""Analysis of a 2AFC study: the paper's Table 4, the model on the same pairs, the Fig. 9
categories, and (beyond the paper) a Bradley-Terry scale of the images.

Accuracy is over *trial* pairs only (training pairs taught the task; attention pairs are
checks). Participants whose attention-check accuracy is below the study's pass mark are
excluded and listed. The majority vote of a pair is right when more than half of the
included participants chose its more popular image; a tie counts half.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from iipa.fileio import plain
from iipa.study.exports import answers_frame, pairs_frame, participants_frame
from iipa.study.storage import Store

# Table 4's columns: (label, participant column, value) and the three contrasts.
GROUPS = (("Female", "gender", "female"), ("Male", "gender", "male"),
          ("G_I", "instagram", True), ("G_II", "instagram", False),
          ("G_A", "social_over_3h", True), ("G_B", "social_over_3h", False))
CONTRASTS = (("Female", "Male"), ("G_I", "G_II"), ("G_A", "G_B"))
CATEGORIES = ("both right", "humans right, model wrong", "model right, humans wrong", "both wrong")


@dataclass
class StudyData:
    answers: pd.DataFrame       # trial answers of included participants
    participants: pd.DataFrame  # every participant, with ``excluded``
    pairs: pd.DataFrame         # trial pairs


@dataclass
class StudyResults:
    table4: pd.DataFrame                  # rows mean/std/n; columns Majority, Single, groups
    tests: pd.DataFrame                   # Welch t-tests of the contrasts
    per_participant: pd.DataFrame
    per_pair: pd.DataFrame                # human agreement (and model scores when given)
    excluded: list[str]
    pairs: pd.DataFrame                   # trial pairs with image paths
    model_accuracy: float | None = None
    categories: pd.DataFrame | None = None
    examples: dict[str, pd.DataFrame] = field(default_factory=dict)
    scale: pd.DataFrame | None = None

    def summary(self) -> dict[str, Any]:
        """JSON-ready figures (NaN as null)."""
        t = self.table4
        return plain({"majority": t.loc["mean", "Majority"], "single_mean": t.loc["mean", "Single"],
                      "single_std": t.loc["std", "Single"], "model": self.model_accuracy,
                      "participants": int(t.loc["n", "Single"]), "excluded": self.excluded,
                      "pairs": len(self.per_pair), "tests": self.tests.to_dict(orient="records")})


def load_study(store: Store) -> StudyData:
    answers = answers_frame(store)
    people = participants_frame(store, answers)
    keep = set(people.loc[~people["excluded"], "participant"])
    trials = answers[(answers["kind"] == "trial") & answers["participant"].isin(keep)].reset_index(drop=True)
    pairs = pairs_frame(store)
    return StudyData(trials, people, pairs[pairs["kind"] == "trial"].reset_index(drop=True))


def per_participant_accuracy(answers: pd.DataFrame, participants: pd.DataFrame) -> pd.DataFrame:
    acc = answers.groupby("participant")["correct"].agg(accuracy="mean", n="size").reset_index()
    cols = ["participant", "gender", "instagram", "social_over_3h"]
    return acc.merge(participants[cols], on="participant", how="left")


def per_pair_agreement(answers: pd.DataFrame) -> pd.DataFrame:
    """Per pair: votes, fraction choosing the more popular image, majority verdict (1, 0.5, 0)."""
    g = answers.groupby(["pair_id", "high_id", "low_id"])["correct"].agg(votes="size", human_high="mean")
    g = g.reset_index()
    g["majority_correct"] = np.where(g["human_high"] > 0.5, 1.0, np.where(g["human_high"] < 0.5, 0.0, 0.5))
    return g


def table4(per_participant: pd.DataFrame, per_pair: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Table 4 (accuracy in %) and the Welch t-tests between the paired groups."""
    cols: dict[str, dict[str, float]] = {
        "Majority": {"mean": 100 * per_pair["majority_correct"].mean() if len(per_pair) else np.nan,
                     "std": np.nan, "n": float(len(per_pair))},
    }
    groups = {"Single": per_participant["accuracy"]}
    for label, column, value in GROUPS:
        groups[label] = per_participant.loc[per_participant[column] == value, "accuracy"]
    for label, acc in groups.items():
        cols[label] = {"mean": 100 * acc.mean() if len(acc) else np.nan,
                       "std": 100 * acc.std(ddof=1) if len(acc) > 1 else np.nan, "n": float(len(acc))}
    tests = []
    for a, b in CONTRASTS:
        x, y = groups[a], groups[b]
        if len(x) >= 2 and len(y) >= 2:
            res = stats.ttest_ind(x, y, equal_var=False)
            t, p = float(res.statistic), float(res.pvalue)
        else:
            t = p = np.nan
        tests.append({"groups": f"{a} vs {b}", "mean_a": cols[a]["mean"], "mean_b": cols[b]["mean"],
                      "n_a": len(x), "n_b": len(y), "t": t, "p": p})
    return pd.DataFrame(cols), pd.DataFrame(tests)


def model_scores(pairs: pd.DataFrame, model: Any, **scorer_kwargs: Any) -> dict[str, float]:
    """Scores of every image in ``pairs`` (post id -> score; NaN when unreadable)."""
    from iipa.scoring import make_scorer

    images = pd.concat([pairs[["high_id", "high_path"]].set_axis(["id", "path"], axis=1),
                        pairs[["low_id", "low_path"]].set_axis(["id", "path"], axis=1)]).drop_duplicates("id")
    images = images[images["path"].notna()]
    scorer = make_scorer(model, **scorer_kwargs)
    scores = scorer.score(list(images["path"]), on_error="nan")
    return dict(zip(images["id"], scores, strict=True))


def categorise(per_pair: pd.DataFrame) -> pd.DataFrame:
    """Fig. 9's four categories from majority and model verdicts (majority ties left out)."""
    decided = per_pair[(per_pair["majority_correct"] != 0.5) & per_pair["model_correct"].notna()]
    humans, model = decided["majority_correct"] == 1.0, decided["model_correct"].astype(bool)
    masks = (humans & model, humans & ~model, ~humans & model, ~humans & ~model)
    out = per_pair.copy()
    out["category"] = None
    for name, mask in zip(CATEGORIES, masks, strict=True):
        out.loc[mask[mask].index, "category"] = name
    return out


def _components(n: int, w: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Connected-component label of each image in the comparison graph (labels follow the
    lowest image index of each component)."""
    graph = coo_matrix((np.ones(len(w)), (w, lo)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def bradley_terry(winners: list[str], losers: list[str], *, prior: float = 0.1,
                  level: float = 0.95, max_iter: int = 100) -> pd.DataFrame:
    """Bradley-Terry strengths of the images from pairwise choices, with Wald intervals.

    Maximises sum log sigmoid(s_w - s_l) - prior/2 * sum s^2 by Newton's method; the small
    Gaussian prior keeps unanimous pairs finite. Only differences are identified, and only
    within a connected group of images (a PDIP image usually appears in one pair, so a
    group is one pair): scales are centred on their group's mean (``group`` column) and
    the intervals come from the centred inverse penalised Hessian.
    """
    ids = sorted(set(winners) | set(losers))
    index = {k: i for i, k in enumerate(ids)}
    w = np.array([index[k] for k in winners], dtype=int)
    lo = np.array([index[k] for k in losers], dtype=int)
    n = len(ids)
    s = np.zeros(n)
    for _ in range(max_iter):
        p = 1.0 / (1.0 + np.exp(-(s[w] - s[lo])))  # P(winner beats loser) under the model
        grad = -prior * s
        np.add.at(grad, w, 1 - p)
        np.add.at(grad, lo, -(1 - p))
        info = prior * np.eye(n)
        v = p * (1 - p)
        np.add.at(info, (w, w), v)
        np.add.at(info, (lo, lo), v)
        np.add.at(info, (w, lo), -v)
        np.add.at(info, (lo, w), -v)
        step = np.linalg.solve(info, grad)
        s += step
        if np.max(np.abs(step)) < 1e-8:
            break
    cov = np.linalg.inv(info)
    group = _components(n, w, lo)
    var = np.empty(n)
    for g in np.unique(group):
        idx = np.flatnonzero(group == g)
        centre = np.eye(len(idx)) - 1.0 / len(idx)
        s[idx] -= s[idx].mean()
        var[idx] = np.diag(centre @ cov[np.ix_(idx, idx)] @ centre)
    se = np.sqrt(np.maximum(var, 0.0))
    z = stats.norm.ppf(0.5 + level / 2)
    wins = np.bincount(w, minlength=n)
    games = wins + np.bincount(lo, minlength=n)
    return pd.DataFrame({"image_id": ids, "scale": s, "se": se, "ci_low": s - z * se,
                         "ci_high": s + z * se, "wins": wins, "comparisons": games, "group": group}
                        ).sort_values("scale", ascending=False).reset_index(drop=True)


def analyze(store: Store, *, model: Any = None, examples: int = 4, **scorer_kwargs: Any) -> StudyResults:
    """Everything in the report; ``model`` (a checkpoint, named weights or PopularityNet)
    adds the model's accuracy on the same pairs and the Fig. 9 categories."""
    data = load_study(store)
    people = per_participant_accuracy(data.answers, data.participants)
    per_pair = per_pair_agreement(data.answers)
    t4, tests = table4(people, per_pair)
    excluded = data.participants.loc[data.participants["excluded"], "participant"].tolist()
    res = StudyResults(t4, tests, people, per_pair, excluded, data.pairs)
    if len(data.answers):
        losers = np.where(data.answers["chosen_id"] == data.answers["high_id"],
                          data.answers["low_id"], data.answers["high_id"])
        res.scale = bradley_terry(list(data.answers["chosen_id"]), list(losers))
    if model is not None and len(per_pair):
        scores = model_scores(data.pairs, model, **scorer_kwargs)
        per_pair["score_high"] = per_pair["high_id"].map(scores)
        per_pair["score_low"] = per_pair["low_id"].map(scores)
        ok = per_pair["score_high"].notna() & per_pair["score_low"].notna()
        per_pair["model_correct"] = np.where(ok, per_pair["score_high"] > per_pair["score_low"], np.nan)
        res.model_accuracy = float(per_pair.loc[ok, "model_correct"].mean()) if ok.any() else None
        res.per_pair = per_pair = categorise(per_pair)
        res.categories = (per_pair["category"].value_counts().reindex(CATEGORIES, fill_value=0)
                          .rename_axis("category").reset_index(name="pairs"))
        for name in CATEGORIES:
            sub = per_pair[per_pair["category"] == name]
            confident = (sub["human_high"] - 0.5).abs() + (sub["score_high"] - sub["score_low"]).abs()
            res.examples[name] = sub.loc[confident.sort_values(ascending=False).index[:examples]]
    return res
