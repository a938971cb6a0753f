"""Each config section becomes one frozen, typed settings object, once."""
import dataclasses

import pytest

from vgjax.cli.config import load_config
from vgjax.data.settings import DataSettings
from vgjax.eval import evaluators
from vgjax.eval.settings import TestSettings
from vgjax.models.settings import ModelSettings, NetVLADInitSettings
from vgjax.train.settings import DASettings, TrainSettings


def test_sections_become_frozen_typed_settings():
    config = load_config("configs/default.py:smoke", ["train.lr=1", "train.optimizer=sgd",
                                                      "train.optimizer_args={'momentum': 0.9}"])
    data = DataSettings.from_config(config)
    assert data.resize == (48, 64) and isinstance(data.test_datasets, tuple)
    model = ModelSettings.from_config(config)
    assert isinstance(model.netvlad_init, NetVLADInitSettings)
    assert model.netvlad_init.images == 20
    train = TrainSettings.from_config(config)
    assert isinstance(train.lr, float) and train.lr == 1.0
    assert isinstance(train.da, DASettings) and train.weight_decay is None
    assert train.optimizer_args.kwargs() == {"momentum": 0.9}
    assert dict(train.loss_args) == {"margin": 0.1}
    assert train.steps_per_epoch == 4 * (8 // 2)
    test = TestSettings.from_section(evaluators.entry_settings(config, "val"))
    assert test.recall_values == (1, 5, 10, 20) and test.save_predictions is False
    for settings in (data, model, train, test, train.optimizer_args):
        with pytest.raises((dataclasses.FrozenInstanceError, TypeError)):
            settings.lr = 0.5
    assert TrainSettings.from_section(train) is train   # converted once
    built = evaluators.build(config, "test")
    assert isinstance(built.settings, TestSettings)


def test_settings_defaults_are_the_schemas():
    """Each settings class has exactly the fields of its section of configs/default.py, with
    the same defaults: the two cannot drift apart."""
    from vgjax.cli.config import schema
    default = schema()
    for cls, section in ((DataSettings, default.data), (ModelSettings, default.model),
                         (TrainSettings, default.train), (TestSettings, default.test)):
        assert {f.name for f in dataclasses.fields(cls)} == set(section.keys()), cls.__name__
        assert cls.from_section(section) == cls(), cls.__name__
