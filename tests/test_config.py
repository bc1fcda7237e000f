"""Typed configs: YAML + key=value overrides, unknown keys named with their closest valid ones."""

from __future__ import annotations

import pytest

from dareu.config import load_config
from dareu.errors import DareUError
from dareu.prepare import PrepareConfig

from .conftest import CONFIGS


def test_overrides_are_typed_and_nested():
    cfg = load_config(PrepareConfig, None, ["world.n_authors=30", "finetune.learning_rate=1e-3",
                                            "retain_splits=[forget10]", "model.family=llama"])
    assert cfg.world.n_authors == 30 and isinstance(cfg.world.n_authors, int)
    assert cfg.finetune.learning_rate == pytest.approx(1e-3)
    assert cfg.retain_splits == ["forget10"]
    assert cfg.model.family == "llama"


def test_unknown_key_names_the_closest_valid_keys():
    with pytest.raises(DareUError, match=r"unknown config key 'world.n_author'.*world.n_authors"):
        load_config(PrepareConfig, None, ["world.n_author=3"])


def test_wrong_type_and_bad_choice_are_errors():
    with pytest.raises(DareUError, match="expects int"):
        load_config(PrepareConfig, None, ["world.seed=abc"])
    with pytest.raises(DareUError, match="must be one of"):
        load_config(PrepareConfig, None, ["model.family=gpt9"])


@pytest.mark.parametrize("path", sorted((CONFIGS / "prepare").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_prepare_configs_load(path):
    from dareu.prepare_tofu import TofuPrepareConfig

    load_config(TofuPrepareConfig if path.name.startswith("tofu") else PrepareConfig, path)


def test_default_yaml_matches_the_dataclass_defaults():
    from dareu.config import to_dict

    assert to_dict(load_config(PrepareConfig, CONFIGS / "prepare" / "default.yaml")) == to_dict(PrepareConfig())


def test_an_empty_mapping_clears_a_section_so_another_objective_takes_none_of_the_old_ones_parameters():
    from dareu.config import merge
    from rl.launch import load_dareu_config

    assert merge({"p": {"beta": 0.2}, "q": 1}, {"p": {"gamma": 1}}) == {"p": {"beta": 0.2, "gamma": 1}, "q": 1}
    assert merge({"p": {"beta": 0.2}, "q": 1}, {"p": {}}) == {"p": {}, "q": 1}
    cfg = load_dareu_config(["aux.forget=fact_base", "aux.forget_params={}"])
    assert cfg.aux.forget == "fact_base" and cfg.aux.forget_params == {}


def test_a_mapping_given_whole_replaces_the_shipped_one_and_a_dotted_key_merges_into_it():
    """`aux.forget_params={beta: 0.1}` names another objective's parameters: the shipped stranger_kl ones must not
    ride along (fact NPO would refuse them as unknown keys)."""
    from rl.launch import load_dareu_config

    cfg = load_dareu_config(["aux.forget=fact_npo", "aux.forget_params={beta: 0.1}"])
    assert cfg.aux.forget_params == {"beta": 0.1}
    # another objective without its parameters runs with its own defaults, not the shipped objective's
    assert load_dareu_config(["aux.forget=fact_npo"]).aux.forget_params == {}
    assert load_dareu_config(["aux.forget=fact_npo", "aux.forget_params.beta=0.5"]).aux.forget_params == {"beta": 0.5}
    shipped = load_dareu_config([]).aux.forget_params
    cfg = load_dareu_config(["aux.forget_params.extra=1"])
    assert cfg.aux.forget_params == {**shipped, "extra": 1}
