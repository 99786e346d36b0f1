"""The paper's PDIP constraints, boundary by boundary (rules.py)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from scipy.special import ndtri

from iipa.errors import IIPAError
from iipa.pairs import rules
from iipa.pairs.rules import RuleConfig

T0 = datetime(2020, 1, 1, tzinfo=timezone.utc)


def test_likes_boundary_49_vs_50():
    assert not rules.has_enough_likes(49)
    assert rules.has_enough_likes(50)
    assert rules.has_enough_likes(10, min_likes=10) and not rules.has_enough_likes(9, min_likes=10)


def test_age_boundary_exactly_30_days():
    assert rules.is_settled(T0, T0 + timedelta(days=30))
    assert not rules.is_settled(T0, T0 + timedelta(days=30) - timedelta(microseconds=1))
    assert rules.is_settled(T0, T0 + timedelta(days=7), min_age_days=7)


def test_gap_boundary_exactly_10_days_both_directions():
    assert rules.within_gap(T0, T0 + timedelta(days=10))
    assert rules.within_gap(T0 + timedelta(days=10), T0)
    assert not rules.within_gap(T0, T0 + timedelta(days=10, microseconds=1))
    assert not rules.within_gap(T0, T0 + timedelta(days=3), max_gap_days=2)


def test_caption_boundary_6_vs_7_words_not_counting_tags_and_mentions():
    six = "one two three four five six"
    assert rules.descriptive_words(six) == 6 and rules.caption_ok(six)
    assert not rules.caption_ok(six + " seven")
    assert rules.caption_ok(six + " #seven @eight #nine")
    assert rules.descriptive_words("🙂 ! -- ok") == 1  # emojis and punctuation are not words
    assert rules.descriptive_words("") == 0 and rules.descriptive_words(None) == 0
    assert rules.descriptive_words("a\u3000b\u00a0c") == 3  # Unicode spaces separate words


def test_hashtags_order_and_case_do_not_matter_but_number_does():
    a = rules.parse_hashtags("Sunset #Beach #SUMMER")
    b = rules.parse_hashtags("#summer at the #beach")
    assert a == ["beach", "summer"] and rules.same_tags(a, b)
    assert not rules.same_tags(["beach"], ["beach", "beach"])  # number counts
    assert not rules.same_tags(["beach"], ["beach", "summer"])
    assert rules.same_tags([], None)
    assert rules.same_tags(["#Beach"], ["beach"])  # given lists may carry the sigil


def test_unicode_hashtags_and_mentions():
    assert rules.parse_hashtags("#Café#b ##x #नमस्ते #東京 #a_b1 #!") == ["café", "b", "x", "नमस्ते", "東京", "a_b1"]
    assert rules.parse_mentions("hi @Ann.Lee. and @bob_1, mail@x") == ["ann.lee", "bob_1", "x"]
    assert rules.parse_mentions("#tag only") == []


def test_single_image_only():
    assert rules.is_single_image("image") and rules.is_single_image(" IMAGE ")
    assert not rules.is_single_image("carousel") and not rules.is_single_image("video")
    assert rules.is_single_image("carousel", allowed=("image", "carousel"))


def test_same_user():
    assert rules.same_user("u1", "u1") and not rules.same_user("u1", "u2")


def test_discriminability_matches_paper_equation_and_threshold():
    # P = Φ(ΔS / (√2 σ)): ΔS = 0 gives 1/2; ΔS = √2 σ Φ⁻¹(T) gives exactly T.
    assert rules.discriminability(1.0, 1.0) == pytest.approx(0.5)
    d = math.sqrt(2) * 0.3 * float(ndtri(0.95))
    p = float(rules.discriminability(d, 0.0, 0.3))
    assert p == pytest.approx(0.95, abs=1e-12)
    assert rules.is_discriminable(0.95, 0.95)  # P exactly at T counts
    assert not rules.is_discriminable(np.nextafter(0.95, 0), 0.95)
    assert rules.discriminability(0.0, d) == pytest.approx(0.05)  # antisymmetric


def test_popularity_score_log_base():
    assert rules.popularity_score(100) == pytest.approx(math.log(100))
    assert rules.popularity_score(100, base=10) == pytest.approx(2.0)
    cfg = RuleConfig()
    # ln-likes gap needed for P ≥ T: likes ratio e^0.6978 ≈ 2.01
    assert math.exp(cfg.min_delta_ln_likes) == pytest.approx(2.0093, abs=1e-3)
    assert RuleConfig(log_base=10).min_delta_ln_likes == pytest.approx(cfg.min_delta_ln_likes * math.log(10))


@pytest.mark.parametrize("kwargs", [{"threshold": 0.5}, {"threshold": 1.0}, {"sigma": 0}, {"log_base": 1},
                                    {"min_likes": 0}, {"max_gap_days": -1}, {"media_types": ()}])
def test_bad_rule_options_are_refused(kwargs):
    with pytest.raises(IIPAError):
        RuleConfig(**kwargs)
