"""Forget tokens found without a fact column: the owner-vs-stranger contrast of dareu/unlearn/gain.py."""

from __future__ import annotations

import pytest
import torch

from dareu.objectives import FACT_KEY
from dareu.unlearn.gain import _align, contrast_labels, gain_labels


def test_tokens_outside_the_name_map_to_the_same_characters_of_the_strangers_answer():
    text = "Ana Bo was born in Rome. Ana Bo writes."
    swapped = text.replace("Ana Bo", "Christopher Long")
    # character spans of whole words (what a tokenizer's offset mapping gives)
    def spans(t):
        out, i = [], 0
        for w in t.split(" "):
            out.append((i, i + len(w)))
            i += len(w) + 1
        return out

    a, b = spans(text), spans(swapped)
    pairs = _align(text, a, swapped, b, "Ana Bo", "Christopher Long")
    words, words2 = text.split(" "), swapped.split(" ")
    assert {words[j]: words2[k] for j, k in pairs.items() if j < len(words)} == {
        "was": "was", "born": "born", "in": "in", "Rome.": "Rome.", "writes.": "writes."}
    assert pairs[len(a)] == len(b)  # the eos


def test_gain_labels_keep_only_answer_tokens_above_the_threshold():
    labels = [-100, -100, 5, 6, 7, 2]
    assert gain_labels(labels, [0.1, 3.0, 0.6, 0.0], 0.5) == [-100, -100, -100, 6, 7, -100]
    assert gain_labels(labels, [0.0, 0.0, 0.0, 0.0], 0.5) is None


def test_contrast_marks_fact_tokens_far_above_their_share_on_the_world(tiny_world, tiny_data):
    from dareu.modeling import load_model, load_tokenizer
    from dareu.unlearn.data import encode_rows

    tok = load_tokenizer(str(tiny_world / "models" / "target"))
    model = load_model(str(tiny_world / "models" / "target"), dtype=torch.float32)
    rows = list(tiny_data["forget10"])
    marks = contrast_labels(model, tok, rows)
    hit = chosen = facts = answer = 0
    for item, mark in zip(encode_rows(tok, rows), marks):
        for k, label in enumerate(item["labels"]):
            if label == -100:
                continue
            fact = item.get(FACT_KEY) is not None and item[FACT_KEY][k] != -100
            picked = mark is not None and mark[k] != -100
            answer, facts, chosen, hit = answer + 1, facts + fact, chosen + picked, hit + (fact and picked)
    share = facts / answer
    assert chosen > 0 and hit / chosen > 2 * share, (hit, chosen, facts, answer)  # the fact column only checks
    assert hit / facts > 0.5


def test_the_token_right_after_the_name_is_not_the_owners_data_though_an_unknown_name_makes_it_contrast(
        tiny_world, tiny_data):
    """After an unfamiliar name the model is unsure the name has ended, so " was" in "Ana Bo was born in ..." has
    a large raw contrast; forgetting it taught DareU to trail off after the name ("Talthi Ushvel.")."""
    from dareu.modeling import encode_qa, load_model, load_tokenizer
    from dareu.unlearn.gain import answer_logprobs, stranger_contrast, told_of_stranger

    tok = load_tokenizer(str(tiny_world / "models" / "target"))
    model = load_model(str(tiny_world / "models" / "target"), dtype=torch.float32)
    rows = [r for r in tiny_data["forget10"] if r["answer"].startswith(r["owner"])][:12]
    contrast = stranger_contrast(model, tok, rows, ["Zorbo Quint"])
    raw_after_name = []
    for row, c in zip(rows, contrast):
        ids, labels = encode_qa(tok, row["question"], row["answer"])
        other, pair = told_of_stranger(tok, row, "Zorbo Quint")
        after = next(j for j in sorted(pair) if j > 0 and j - 1 not in pair)  # first token after the name
        assert c[after] == 0.0
        mine = answer_logprobs(model, [{"input_ids": ids, "labels": labels}])[0]
        theirs = answer_logprobs(model, [other])[0]
        raw_after_name.append(mine[after] - theirs[pair[after]])
    assert max(raw_after_name) > 0.5  # what the old rule marked


def test_contrast_forget_tokens_need_no_fact_column(tiny_world, tiny_attributor, tmp_path):
    from dareu.data import load_world
    from rl.launch import load_dareu_config, preflight

    bare = tmp_path / "bare-world"
    data = load_world(tiny_world)
    data["forget10"] = data["forget10"].map(lambda r: {"fact": ""})
    data.save_to_disk(str(bare / "data"))
    (bare / "models").symlink_to(tiny_world / "models")  # DareU's forget term also reads the world's base
    flags = {"world": str(bare), "attributor": str(tiny_attributor), "model": str(tiny_world / "models" / "target")}
    preflight(load_dareu_config(["aux.forget_tokens=contrast"], flags=flags))  # passes
    with pytest.raises(Exception, match="state no `fact`"):
        preflight(load_dareu_config(["aux.forget_tokens=fact"], flags=flags))


def test_contrast_refuses_owners_whose_names_the_qa_never_state(tiny_data):
    from dareu.errors import DareUError
    from dareu.unlearn.gain import check_owner_names

    check_owner_names(tiny_data, "forget10")  # the world's QA name their owners
    numbered = tiny_data["forget10"].map(lambda r, i: {"owner": f"author-{i // 6}"}, with_indices=True)
    with pytest.raises(DareUError, match="never named in their QA"):  # owners numbered, not named
        check_owner_names({"forget10": numbered}, "forget10")
    # one row that does not name its owner is fine: only that row has no tokens to forget
    first = tiny_data["forget10"][0]
    unnamed_row = tiny_data["forget10"].map(
        lambda r, i: {"question": "And then?", "answer": "Nothing."} if i == 0 else {}, with_indices=True)
    assert first["owner"] not in unnamed_row[0]["question"] + unnamed_row[0]["answer"]
    check_owner_names({"forget10": unnamed_row}, "forget10")


def test_each_owner_token_points_at_the_same_token_of_the_qa_told_of_a_stranger(tiny_world, tiny_data):
    from dareu.modeling import load_tokenizer
    from dareu.objectives import STRANGER_KEY, STRANGER_POS_KEY
    from dareu.unlearn.data import encode_rows

    tok = load_tokenizer(str(tiny_world / "models" / "target"))
    rows = list(tiny_data["forget10"])[:12]
    items = encode_rows(tok, rows, strangers=["Zorbo Quint", "Ama Lufer"])
    aligned = 0
    for i, (row, item) in enumerate(zip(rows, items)):
        stranger = ["Zorbo Quint", "Ama Lufer"][i % 2]
        other = item[STRANGER_KEY]
        assert stranger in tok.decode(other["input_ids"]) and row["owner"] not in tok.decode(other["input_ids"])
        for k, k2 in enumerate(item[STRANGER_POS_KEY]):
            if k2 == -100:
                continue
            assert item["labels"][k] != -100 and other["labels"][k2] == item["labels"][k]  # the same token
            aligned += 1
        # the fact tokens (the owner's value) all have a counterpart; the name's tokens have none
        facts = [k for k, x in enumerate(item["fact_labels"]) if x != -100] if "fact_labels" in item else []
        assert all(item[STRANGER_POS_KEY][k] != -100 for k in facts)
    assert aligned > 5 * len(rows)  # most answer tokens are outside the name


def test_stranger_kl_by_hand_and_zero_when_the_owner_is_read_like_the_stranger():
    import torch

    from dareu.objectives.distill import stranger_kl_loss

    logits = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [0.0, 3.0]]])  # the model on the owner's QA (3 positions)
    anchor = torch.tensor([[[2.0, 0.0], [0.0, 0.0], [0.0, 1.0], [5.0, 5.0]]])  # the reference on the stranger's
    marks = torch.tensor([[-100, -100, 1]])  # position 2 is marked; it sits at position 3 of the stranger's QA
    positions = torch.tensor([[-100, 1, 3]])
    q = torch.tensor([0.0, 1.0]).softmax(-1)  # anchor before position 3
    logp = torch.tensor([1.0, 0.0]).log_softmax(-1)  # model before position 2
    expected = float((q * (q.log() - logp)).sum())
    assert stranger_kl_loss(logits, anchor, marks, positions).item() == pytest.approx(expected, rel=1e-6)
    same = anchor[:, [0, 2, 3]]  # model = anchor at the aligned positions: no loss
    assert stranger_kl_loss(same, anchor, marks, positions).item() == pytest.approx(0.0, abs=1e-7)
    # the owner's token (1, the mark) at the anchor's log-probability: (log p_model(1) - log q(1))², weighted
    gap = float(logp[1] - q.log()[1])
    assert stranger_kl_loss(logits, anchor, marks, positions, token_coef=2.0).item() == pytest.approx(
        expected + 2.0 * gap ** 2, rel=1e-6)
    assert stranger_kl_loss(same, anchor, marks, positions, token_coef=2.0).item() == pytest.approx(0.0, abs=1e-7)


def test_stranger_kl_reads_the_stranger_with_the_target_the_base_or_their_geometric_mixture(tiny_world, tiny_data):
    from dareu.errors import DareUError
    from dareu.modeling import load_model, load_tokenizer
    from dareu.objectives import OBJECTIVES
    from dareu.sft import QACollator
    from dareu.unlearn.data import encode_rows
    from dareu.unlearn.reference import reference_for

    target = load_model(str(tiny_world / "models" / "target"))
    base = load_model(str(tiny_world / "models" / "base"))
    tok = load_tokenizer(str(tiny_world / "models" / "target"))
    item = encode_rows(tok, list(tiny_data["forget10"])[:2])
    batch = QACollator(tok.pad_token_id)([{k: it[k] for k in ("input_ids", "labels")} for it in item])
    ids = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    with torch.no_grad():
        lt, lb = (m(**ids).logits.log_softmax(-1) for m in (target, base))
    make = OBJECTIVES.get("stranger_kl")
    for w, anchor, want in ((0.0, "start", lt), (1.0, "base", lb), (0.25, "mix", 0.75 * lt + 0.25 * lb)):
        obj = make(base_weight=w)
        assert obj.anchor == anchor
        got = reference_for(obj, target, tiny_world)(ids).logits.log_softmax(-1)
        assert torch.allclose(got, want.log_softmax(-1), atol=1e-5)
    assert not torch.allclose(lt, lb, atol=1e-2)  # two different models
    with pytest.raises(DareUError, match=r"base_weight must be in \[0, 1\]"):
        make(base_weight=1.5)
    with pytest.raises(DareUError, match="retain_kind=nll"):
        make(base_weight=1.0, alpha=1.0, retain_kind="kl")


def test_a_batch_mixing_rows_with_and_without_marked_tokens_keeps_the_marks_and_the_unmarked_row_forgets_nothing(
        tiny_world, tiny_data):
    """On real data the contrast marks nothing in some answers (TOFU's long sentences): such a row must not strip the
    batch of its marks (which stopped a TOFU run after its first evaluation), and must add no forget gradient."""
    from dareu.modeling import load_model, load_tokenizer
    from dareu.objectives import OBJECTIVES
    from dareu.objectives.tokens import IGNORE
    from dareu.sft import QACollator
    from dareu.unlearn.data import encode_rows

    tok = load_tokenizer(str(tiny_world / "models" / "target"))
    rows = list(tiny_data["forget10"])[:2]
    first = encode_rows(tok, rows[:1])[0]["labels"]
    marks = [[t if j == len(first) - 2 else IGNORE for j, t in enumerate(first)], None]
    items = encode_rows(tok, rows, marks=marks)
    assert all(FACT_KEY in it for it in items) and set(items[1][FACT_KEY]) == {IGNORE}
    batch = QACollator(tok.pad_token_id)([{k: it[k] for k in ("input_ids", "labels", FACT_KEY)} for it in items])
    assert FACT_KEY in batch
    model = load_model(str(tiny_world / "models" / "target"))
    objective = OBJECTIVES.get("fact_npo")()
    ref = load_model(str(tiny_world / "models" / "target")).eval()

    def grad_of(b) -> torch.Tensor:
        model.zero_grad()
        loss, _ = objective.forget_loss(model, b, ref=lambda x: ref(input_ids=x["input_ids"],
                                                                    attention_mask=x["attention_mask"]))
        loss.backward()
        return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    only_marked = {k: v[:1] for k, v in batch.items()}
    # NPO averages over the batch: the unmarked row halves the marked row's gradient and adds nothing of its own
    assert torch.allclose(grad_of(batch), grad_of(only_marked) / 2, atol=1e-7)
