"""The card facts of the named weights, declared once as data beside their entries in
:mod:`iipa.model.weights` (``NamedWeights.card``), as torchvision declares ``Weights.meta``.

The weights files carry only what training computed (counts, calibration, reference); what a
person needs to judge the scores (the data's origin, the accuracy estimate and where it comes
from, baselines with their sources, limits) is written here and nowhere else. The packaging
step (:func:`iipa.packaging.package_weights`, run by ``benchmarks/ship_real_model.py``) writes
none of it into the file; ``benchmarks/ship_real_model.py --cv`` prints the estimate block to
paste into :data:`INSTAGRAM_LITE0` after a re-measurement.
"""

from __future__ import annotations

from iipa.model.cardschema import CardFacts

INSTAGRAM_DEV = ("instagram-dev: public Instagram posts crawled in 2019 by a public university course project "
                 "(572 accounts, 8,368 photos stored at 299x299 px, posts from 2015-2017); not redistributed")

# What the default model's accuracy compares with, each with where the figure comes from.
# benchmarks/real_photos.py rows: its seed-0 user split (403 training accounts), accuracy on
# the test accounts (n = 208) / the validation accounts (n = 209).
LITE0_BASELINES = (
    {"method": "iipa train --recipe paper (Lite0, backbone lr 1e-5, 6 epochs)", "accuracy": "0.558 / 0.579",
     "source": "benchmarks/real_photos.py (without --quick): test / validation accounts"},
    {"method": "hand-crafted colour/brightness/sharpness + logistic regression", "accuracy": "0.519 / 0.555",
     "source": "benchmarks/real_photos.py --quick: test / validation accounts"},
    {"method": "frozen ImageNet Lite0 final features + logistic regression (matched PDIPs)",
     "accuracy": "0.649 / 0.746", "source": "benchmarks/real_photos.py --quick: test / validation accounts"},
    {"method": "paper: ResNet-50, 2.4M pairs, their Instagram test set", "accuracy": 0.7665,
     "source": "paper §4.2 Table 3"},
    {"method": "human majority vote (paper)", "accuracy": 0.72, "source": "paper §4.4 Table 4"},
    {"method": "chance", "accuracy": 0.5, "source": "a coin toss per pair"},
)

# Earlier instagram-lite0 files, kept for comparison: not this model's figures.
LITE0_EARLIER = {
    "what": "the previous instagram-lite0 models. (3) third: this recipe without quality pairs and "
            "temperature. (1) first: default recipe of `iipa train` (probe warm start + "
            "conv_head fine-tuning) on 403 accounts, split by user (seed 0). (2) second: a probe on the final "
            "1280 Lite0 features only, every account, 5-fold CV by account 0.689 [0.660, 0.716] (fold seed 0, "
            "L2 nested)",
    "validation_users": {"accuracy": 0.7273, "ci95": [0.6632, 0.7831], "pairs": 209, "users": 82,
                         "note": "model (1); these users chose the probe's L2 and the epoch: optimistic"},
    "test_users": {"accuracy": 0.6394, "ci95": [0.5722, 0.7016], "pairs": 208, "users": 83, "note": "model (1)"},
    "final_features_probe_cv": {"accuracy": 0.689, "ci95": [0.660, 0.716], "pairs": 1041, "note": "model (2)"},
    "multi_stage_probe_cv": {"accuracy": 0.696, "ci95": [0.668, 0.724], "pairs": 1041,
                             "note": "model (3): the same multi-stage probe without quality pairs or calibration "
                                     "(real_photos_cv.py, three fold assignments); its probability was uncalibrated "
                                     "(ECE 0.12 in calibration_cv.py)"},
}

# benchmarks/ship_real_model.py --cv calib.json --quality-weight 0.1 (calibration_cv.py --seeds 0,1).
LITE0_ESTIMATE = {
    "accuracy": 0.6892, "ci95": [0.6605, 0.7166], "pairs": 1041, "per_seed": [0.6936, 0.6849], "seeds": [0, 1],
    "mean_confidence": 0.6734, "ece": 0.0358, "log_loss": 0.5928, "brier": 0.2034, "ece_uncalibrated": 0.1077,
    "beats_degraded_copies": {"blur": 0.9974, "thumb": 0.9991, "jpeg10": 0.9745, "black": 0.9912},
    "what": "estimate for unseen accounts: 5-fold cross-validation by account over all 572 accounts of "
            "instagram-dev of this recipe (benchmarks/calibration_cv.py, quality-pair weight 0.1, temperature "
            "fitted inside the training folds), mean over 2 fold assignments; held-out matched PDIPs pooled "
            "over folds, 95 % Wilson interval of that mean",
}

INSTAGRAM_LITE0 = CardFacts(
    training_data={
        "source": INSTAGRAM_DEV,
        "pairs": "every within-user pair with P >= 0.5 and at most 10.0 days apart of the 572 accounts of "
                 "posts.csv outside validation and test",
    },
    validation={
        "metric": "pairwise accuracy on matched PDIPs of unseen accounts (iipa pairs build, paper rules "
                  "without caption rules)",
        "unseen_accounts": LITE0_ESTIMATE,
        "earlier_user_split_model": LITE0_EARLIER,
        "note": "this model was trained on every account: it has no held-out accounts of its own; "
                "the estimate is the cross-validated accuracy of its recipe",
    },
    baselines=LITE0_BASELINES,
    limits=(
        "trained on one domain: public Instagram accounts with 150k-2M followers (median 395k), posts of 2015-2017",
        "trained on 299x299 px copies of the photos: fine detail of larger images is not seen",
        "scores rank photos against each other (same model); they are not like counts and not calibrated "
        "across accounts",
        "sees only pixels: captions, hashtags, posting time and the account's audience are not inputs",
        "a linear read-out of frozen ImageNet features (final and middle stages): it ranks by what ImageNet "
        "features already encode",
        "572 accounts of one crawl: styles, subjects and cultures absent from them are guesses; "
        "the accuracy estimate is cross-validated on the same crawl, other crawls may score lower",
    ),
)

# The authors' release: its facts are the paper's, not re-measured by iipa.
AUTHORS_RESNET50 = CardFacts(
    training_data={"source": "the authors' Instagram crawl (paper §3): single-image Instagram posts",
                   "pdips": "about 2.5 million (paper Table 1)"},
    validation={
        "metric": "pairwise accuracy on PDIPs (paper §4.2)",
        "paper_test_set": {"accuracy": 0.7665, "what": "paper §4.2 Table 3: the authors' Instagram test set, as "
                                                       "they report it (not re-measured by iipa)"},
        "note": "no figure of iipa's own: the paper reports its test set, not accounts held out by iipa",
    },
    limits=(
        "the training data is the authors' crawl of Instagram; its accounts and years are described in the paper only",
        "the publisher gives no checksum: the first download is trusted and its SHA-256 recorded "
        "(iipa weights verify)",
    ),
)
