"""The default recipe's config states the decoding its model's profile uses (config, profile
and card agree), and old configs' draft flag still reads."""

from __future__ import annotations

import pytest

from iipa.errors import IIPAError
from iipa.train.config import TrainConfig
from iipa.train.small import SmallDataTrainer


@pytest.mark.parametrize(("asked", "used"), [(None, "exact"), ("draft", "draft"), ("exact", "exact")])
def test_default_recipe_records_the_decoding_its_profile_uses(asked, used, tmp_path):
    trainer = SmallDataTrainer(TrainConfig(out=str(tmp_path), backbone="tiny", pretrained="none", decode=asked))
    assert trainer.model.profile.decode == used
    assert trainer.config.decode == used  # what is saved into the checkpoint's info["config"]


def test_configs_saved_with_the_draft_flag_read_as_their_decoding():
    assert TrainConfig.from_dict({"fast_decode": True}).decode == "draft"
    assert TrainConfig.from_dict({"fast_decode": False}).decode is None
    with pytest.raises(IIPAError, match="decode must be one of exact, draft"):
        TrainConfig(decode="fast")
