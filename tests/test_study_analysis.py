"""Study analysis on synthetic answers with a known outcome, the Bradley-Terry scale,
and the `iipa study` commands end to end (init, export, analyze)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats
from sqlalchemy import select

from iipa.scoring import make_scorer
from iipa.study import Store
from iipa.study.analysis import CATEGORIES, analyze, bradley_terry
from iipa.study.plan import left_slot
from iipa.study.storage import Answer, Pair, Participant, Study
from study_util import make_pairs, make_study


def fill_answers(store: Store, people: list[dict], seed: int = 0) -> dict[str, float]:
    """Insert participants answering trials right with probability ``acc`` and attention
    checks right unless ``fail_attention``; returns each code's realised trial accuracy."""
    rng = np.random.default_rng(seed)
    realised = {}
    with store.session() as s:
        study_secret = s.get(Study, 1).secret
        pairs = list(s.scalars(select(Pair)))
        for i, spec in enumerate(people):
            code = f"P{i:04d}"
            p = Participant(code=code, gender=spec["gender"], age_band="20-29",
                            instagram=spec["instagram"], social_over_3h=spec["social"])
            s.add(p)
            s.flush()
            hits = []
            for pair in pairs:
                if pair.kind == "attention":
                    right = not spec.get("fail_attention", False)
                else:
                    right = bool(rng.random() < spec["acc"])
                if pair.kind == "trial":
                    hits.append(right)
                left = left_slot(study_secret, code, pair.id)
                low = "b" if pair.high_slot == "a" else "a"
                chosen = pair.high_slot if right else low
                s.add(Answer(participant_id=p.id, pair_id=pair.id, left_slot=left,
                             chosen_side="left" if chosen == left else "right", chosen_slot=chosen,
                             correct=right, response_ms=int(rng.integers(300, 3000))))
            realised[code] = float(np.mean(hits))
        s.commit()
    return realised


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("analysis")
    db = make_study(tmp, n=40, training=2, attention=4, n_test=45)
    store = Store(db)
    rng = np.random.default_rng(1)
    people = [{"gender": ("female", "male")[i % 2], "instagram": i < 12, "social": bool(rng.random() < 0.5),
               "acc": 0.85 if i < 12 else 0.6} for i in range(24)]
    people += [{"gender": "male", "instagram": False, "social": True, "acc": 1.0, "fail_attention": True}] * 2
    realised = fill_answers(store, people)
    return db, store, realised


def test_table4_on_synthetic_answers(synthetic):
    _db, store, realised = synthetic
    res = analyze(store)
    assert res.excluded == ["P0024", "P0025"]  # failed every attention check
    got = dict(zip(res.per_participant["participant"], res.per_participant["accuracy"], strict=True))
    assert got == {k: v for k, v in realised.items() if k not in res.excluded}
    t = res.table4
    assert t.loc["n", "Single"] == 24 and t.loc["n", "G_I"] == 12 and t.loc["n", "G_II"] == 12
    assert t.loc["mean", "Single"] == pytest.approx(100 * np.mean(list(got.values())))
    assert t.loc["std", "Single"] == pytest.approx(100 * np.std(list(got.values()), ddof=1))
    assert t.loc["mean", "G_I"] > t.loc["mean", "G_II"] + 15
    assert t.loc["mean", "Majority"] > t.loc["mean", "Single"] + 10  # the wisdom of the crowd
    tests = res.tests.set_index("groups")
    assert tests.loc["G_I vs G_II", "p"] < 1e-4 and tests.loc["G_I vs G_II", "t"] > 0
    gi = [got[f"P{i:04d}"] for i in range(12)]
    gii = [got[f"P{i:04d}"] for i in range(12, 24)]
    assert tests.loc["G_I vs G_II", "p"] == pytest.approx(stats.ttest_ind(gi, gii, equal_var=False).pvalue)
    assert res.model_accuracy is None and res.categories is None
    assert len(res.per_pair) == 40 and (res.per_pair["votes"] == 24).all()


def test_model_comparison_and_fig9_categories(synthetic, tiny_checkpoint):
    _db, store, _ = synthetic
    res = analyze(store, model=tiny_checkpoint, device="cpu", precision="fp32", num_workers=0)
    pairs = res.pairs
    scores = make_scorer(tiny_checkpoint, device="cpu", precision="fp32", num_workers=0)
    hi = scores.score(list(pairs["high_path"]))
    lo = scores.score(list(pairs["low_path"]))
    assert res.model_accuracy == pytest.approx(np.mean(np.array(hi) > np.array(lo)))
    counts = dict(zip(res.categories["category"], res.categories["pairs"], strict=True))
    pp = res.per_pair
    decided = pp[pp["majority_correct"] != 0.5]
    assert sum(counts.values()) == len(decided)
    assert counts["both right"] == int(((decided["majority_correct"] == 1) & (decided["model_correct"] == 1)).sum())
    for name in CATEGORIES:
        ex = res.examples[name]
        assert len(ex) == min(4, counts[name]) and (ex["category"] == name).all()


def test_bradley_terry_recovers_known_strengths():
    rng = np.random.default_rng(0)
    truth = {"a": 2.0, "b": 1.0, "c": 0.0, "d": -1.0, "e": -2.0}
    names = list(truth)
    winners, losers = [], []
    for _ in range(1500):
        x, y = rng.choice(names, 2, replace=False)
        p = 1 / (1 + np.exp(-(truth[x] - truth[y])))
        w, lo = (x, y) if rng.random() < p else (y, x)
        winners.append(w)
        losers.append(lo)
    scale = bradley_terry(winners, losers)
    assert list(scale["image_id"]) == names  # sorted by estimated strength
    covered = sum(r.ci_low <= truth[r.image_id] <= r.ci_high for r in scale.itertuples())
    assert covered >= 4
    assert (scale["ci_high"] - scale["ci_low"] < 0.6).all()
    # a unanimous pair stays finite thanks to the prior
    one = bradley_terry(["x"] * 10, ["y"] * 10).set_index("image_id")
    assert np.isfinite(one["scale"]).all() and one.loc["x", "scale"] > one.loc["y", "scale"]
    assert one.loc["x", "wins"] == 10 and one.loc["y", "comparisons"] == 10
    # disjoint pairs (the PDIP case) are separate groups, each centred; 8 of 10 votes for
    # "p" puts it about logit(0.8) = 1.39 above "q" (a little less: the prior shrinks)
    two = bradley_terry(["p"] * 8 + ["q"] * 2 + ["r"] * 5 + ["t"] * 5,
                        ["q"] * 8 + ["p"] * 2 + ["t"] * 5 + ["r"] * 5).set_index("image_id")
    assert two["group"].nunique() == 2
    assert two.loc["p", "scale"] == pytest.approx(-two.loc["q", "scale"])
    assert 1.2 < two.loc["p", "scale"] - two.loc["q", "scale"] < np.log(4)
    assert two.loc["r", "scale"] == pytest.approx(0, abs=1e-9) and two.loc["r", "ci_low"] < 0


def test_cli_init_export_analyze(tmp_path, run_cli, tiny_checkpoint):
    pairs, images = make_pairs(tmp_path, n_test=15)
    db = str(tmp_path / "s.sqlite")
    code, out, err = run_cli("study", "init", "--pairs", pairs, "--images", images, "--n", 20,
                             "--training", 2, "--attention", 2, "--db", db, "--seed", 3)
    assert code == 0, err
    assert "2 training, 13 trial and 2 attention-check pairs" in out and "using 13 trials, not 20" in err
    code, _, err = run_cli("study", "init", "--pairs", pairs, "--images", images, "--db", db)
    assert code == 2 and "already holds a study" in err
    store = Store(db)
    fill_answers(store, [{"gender": g, "instagram": i % 3 == 0, "social": i % 2 == 0, "acc": 0.7}
                         for i, g in enumerate(["female", "male"] * 4)])
    code, out, err = run_cli("study", "export", "--db", db, "--table", "answers", "--format", "json")
    assert code == 0, err
    assert len(json.loads(out)) == 8 * 17
    report = tmp_path / "report"
    code, out, err = run_cli("study", "analyze", "--db", db, "--out", report, "--model", tiny_checkpoint,
                             "--device", "cpu", "--precision", "fp32")
    assert code == 0, err
    assert "majority" in out and "8 participants" in out
    for name in ("report.md", "report.html", "results.json", "accuracy.svg", "groups.svg", "scale.csv"):
        assert (report / name).stat().st_size > 0, name
    results = json.loads((report / "results.json").read_text())
    assert results["participants"] == 8 and 0 <= results["model"] <= 1
    html = (report / "report.html").read_text()
    assert "Table 4" in html and "Welch" in html and "<table>" in html
    code, _, err = run_cli("study", "analyze", "--db", str(tmp_path / "missing.sqlite"), "--out", report)
    assert code == 2 and "no such study database" in err
