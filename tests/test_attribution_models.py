"""Both attributor kinds: scoring contract, calibration, saving without pickle, loading by kind."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from attribution import AttributorServer, load_attributor
from attribution.attributor import softmax
from attribution.calibration import expected_calibration_error, fit_temperature
from attribution.config import DataConfig, LLMConfig, TfidfConfig
from attribution.data import NONE, build_data
from attribution.llm import LLMAttributor, train_llm
from attribution.tfidf import TfidfAttributor, train_tfidf
from attribution.train import calibrate
from dareu.errors import DareUError


@pytest.fixture(scope="module")
def built(tiny_data):
    return build_data(tiny_data, DataConfig())


@pytest.fixture(scope="module")
def tfidf(built, tmp_path_factory):
    att, _ = train_tfidf(built.owners, built.train, TfidfConfig(), False, {"source": "tiny"})
    calibrate(att, built)
    path = tmp_path_factory.mktemp("tfidf") / "A"
    att.save(path)
    return att, path


@pytest.fixture(scope="module")
def llm(built, tiny_world, tmp_path_factory):
    cfg = LLMConfig(lm_epochs=1, epochs=0.5, batch_size=32, learning_rate=3e-3)
    att, _log = train_llm(built.owners, built.train, cfg, str(tiny_world / "models" / "base"), False, {}, log=lambda m: None)
    calibrate(att, built)
    path = tmp_path_factory.mktemp("llm") / "A"
    att.save(path)
    return att, path


def _pairs(built, n=40):
    examples = built.test[:n]
    return [e.prompt for e in examples], [e.response for e in examples], [e.label for e in examples]


def test_scores_are_probabilities_over_owners_with_none_last(tfidf, built):
    att, _ = tfidf
    prompts, responses, _ = _pairs(built)
    probs = att.score(prompts, responses)
    assert probs.shape == (len(prompts), len(built.owners)) and att.owners[-1] == NONE
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5) and (probs >= 0).all()


def test_owner_probability_picks_each_rows_owner_and_is_zero_for_an_unknown_owner(tfidf, built):
    att, _ = tfidf
    prompts, responses, labels = _pairs(built)
    probs = att.score(prompts, responses)
    got = att.owner_probability(prompts, responses, labels[:-1] + ["Not An Owner"])
    want = np.array([probs[i, att.owners.index(o)] for i, o in enumerate(labels[:-1])])
    assert np.allclose(got[:-1], want) and got[-1] == 0.0


def test_tfidf_folder_holds_no_pickle_and_reloads_to_identical_scores(tfidf, built):
    att, path = tfidf
    assert sorted(p.name for p in path.iterdir()) == ["attributor.json", "tfidf.json", "tfidf.safetensors"]
    again = load_attributor(path)
    assert isinstance(again, TfidfAttributor) and again.kind == "tfidf" and again.owners == att.owners
    prompts, responses, _ = _pairs(built)
    assert np.allclose(again.score(prompts, responses), att.score(prompts, responses), atol=1e-6)
    info = json.loads((path / "attributor.json").read_text())
    assert info["kind"] == "tfidf" and info["temperature"] == pytest.approx(att.temperature)


def test_tfidf_transform_rebuilt_from_arrays_matches_sklearn(built):
    from sklearn.feature_extraction.text import TfidfVectorizer

    from attribution.tfidf import TOKEN_PATTERN, _Tfidf

    texts = [e.response for e in built.train[:300]]
    ref = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, token_pattern=TOKEN_PATTERN).fit(texts)
    ours = _Tfidf(dict(ref.vocabulary_), ref.idf_, 2, True)
    probe = [e.response for e in built.test[:50]]
    assert np.allclose(ours.transform(probe).toarray(), ref.transform(probe).toarray())


def test_response_only_mode_ignores_the_prompt(built):
    att, _ = train_tfidf(built.owners, built.train, TfidfConfig(max_iter=50), True, {})
    _, responses, _ = _pairs(built, 10)
    assert att.response_only
    assert np.allclose(att.score(["Where?"] * 10, responses), att.score(["Who?"] * 10, responses))


def test_temperature_scaling_recovers_the_temperature_that_made_the_labels():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, size=(4000, 5))
    p = softmax(logits, 2.0)
    labels = np.array([rng.choice(5, p=row) for row in p])
    assert fit_temperature(logits, labels) == pytest.approx(2.0, rel=0.1)


def test_ece_matches_a_hand_computed_value():
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    labels = np.array([0, 1, 0, 0])
    # bin 0.9: accuracy 0.5, confidence 0.9 -> 0.4 * 1/2; bin 0.6: accuracy 1.0, confidence 0.6 -> 0.4 * 1/2
    assert expected_calibration_error(probs, labels, n_bins=10) == pytest.approx(0.4)


def test_llm_classifier_reloads_to_identical_scores_and_the_hf_head_agrees(llm, built):
    from transformers import AutoModelForSequenceClassification

    from attribution.llm import collate, encode

    att, path = llm
    again = load_attributor(path)
    assert isinstance(again, LLMAttributor) and again.kind == "llm" and again.owners == att.owners
    assert (path / "model.safetensors").is_file() and not list(path.glob("*.bin"))
    prompts, responses, _ = _pairs(built, 16)
    assert np.allclose(again.score(prompts, responses), att.score(prompts, responses), atol=1e-5)
    # the folder is a plain HF sequence classifier reading the same (last real) token
    hf = AutoModelForSequenceClassification.from_pretrained(str(path)).eval()
    batch = collate([encode(att.tok, p, r, False, 96) for p, r in zip(prompts, responses)], att.tok.pad_token_id)
    batch.pop("labels")
    with torch.no_grad():
        hf_logits = hf(**batch).logits.numpy()
    assert np.allclose(hf_logits, att.logits(prompts, responses), atol=1e-4)


def test_lora_classifier_is_saved_merged_and_loads_as_a_plain_classifier(built, tiny_world, tmp_path):
    cfg = LLMConfig(lm_epochs=0.5, epochs=0.2, batch_size=32, lora=True, lora_r=4)
    att, _ = train_llm(built.owners, built.train, cfg, str(tiny_world / "models" / "base"), False, {}, log=lambda m: None)
    att.save(tmp_path / "A")
    assert not (tmp_path / "A" / "adapter_config.json").exists()
    again = load_attributor(tmp_path / "A")
    prompts, responses, _ = _pairs(built, 8)
    assert again.extra["lora"] and np.allclose(again.score(prompts, responses), att.score(prompts, responses), atol=1e-5)


def test_loading_a_folder_of_another_kind_is_one_clear_error(tfidf, llm, tiny_world, tmp_path):
    _, tfidf_path = tfidf
    _, llm_path = llm
    with pytest.raises(DareUError, match="holds a 'tfidf' attributor, not a 'llm' one"):
        LLMAttributor.load(tfidf_path)
    with pytest.raises(DareUError, match="holds a 'llm' attributor, not a 'tfidf' one"):
        TfidfAttributor.load(llm_path)
    with pytest.raises(DareUError, match="is a model folder with no attributor.json"):
        load_attributor(tiny_world / "models" / "base")
    with pytest.raises(DareUError, match="does not exist"):
        load_attributor(tmp_path / "nothing")


def test_an_attributor_refuses_owners_of_another_benchmark(tfidf):
    att, _ = tfidf
    att.check_owners(att.owners[:3])
    with pytest.raises(DareUError, match="trained on another benchmark"):
        att.check_owners(["Someone Else"])


def test_server_scores_like_the_attributor_in_process(tfidf, built):
    att, path = tfidf
    server = AttributorServer(str(path), threads=1, expect_owners=att.owners[:2])
    prompts, responses, labels = _pairs(built, 8)
    assert server.owners() == att.owners and server.info()["kind"] == "tfidf"
    assert np.allclose(server.owner_probability(prompts, responses, labels),
                       att.owner_probability(prompts, responses, labels))


def test_server_runs_as_a_ray_actor(tfidf, built):
    import shutil
    import tempfile

    ray = pytest.importorskip("ray")
    att, path = tfidf
    prompts, responses, labels = _pairs(built, 8)
    tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray puts unix sockets under it
    ray.init(num_cpus=1, include_dashboard=False, _temp_dir=tmp, object_store_memory=80 * 2**20,
             log_to_driver=False)
    try:
        server = ray.remote(AttributorServer).options(num_cpus=0).remote(str(path), threads=1)
        got = ray.get(server.owner_probability.remote(prompts, responses, labels), timeout=120)
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    assert np.allclose(got, att.owner_probability(prompts, responses, labels))
