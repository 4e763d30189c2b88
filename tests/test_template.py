"""Chat template checks with the real SmolLM2 tokenizer, and with broken templates that must be caught."""

from __future__ import annotations

import copy

import pytest

from executor.data.records import Example, SourceRef
from executor.data.template import ChatTemplate

SRC = SourceRef("f.jsonl", 3)


def test_smollm2_template_passes_and_reports_its_default_system_prompt(smol_tokenizer):
    t = ChatTemplate(smol_tokenizer, max_length=2048)
    r = t.report
    assert r.eos_after_reply and r.end_of_turn == "<|im_end|>"
    assert r.pad_token == "<|endoftext|>"
    assert r.prefix_preserving and r.system_supported
    assert r.default_system_prompt == "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    assert r.problems == []


def test_token_lengths_and_empty_masks(smol_tokenizer):
    t = ChatTemplate(smol_tokenizer, max_length=40)
    short = Example(SRC, [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}])
    long_prompt = Example(SRC, [{"role": "user", "content": "word " * 60}, {"role": "assistant", "content": "ok"}])
    pref = Example(SRC, [{"role": "user", "content": "Hi"}], chosen="Hello there, friend!", rejected="Go away")
    doc = Example(SRC, text="plain text")
    lengths = t.token_lengths([short, long_prompt, pref, doc])
    expected_short = len(smol_tokenizer(t.render(short.messages), add_special_tokens=False)["input_ids"])
    assert lengths[0] == expected_short
    assert lengths[1] > 40
    assert lengths[2] == len(smol_tokenizer(t.render(t.conversations(pref)[0]), add_special_tokens=False)["input_ids"])
    assert lengths[3] == len(smol_tokenizer("plain text", add_special_tokens=False)["input_ids"]) + 1
    t.check_masks([short, long_prompt])
    assert (t.report.rows_checked_for_mask, t.report.rows_with_empty_mask) == (2, 1)
    assert "have no assistant tokens left within 40 tokens" in t.report.problems[-1]


def test_template_without_end_of_turn_is_a_problem(smol_tokenizer):
    tok = copy.deepcopy(smol_tokenizer)
    tok.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}" \
                        "{% if add_generation_prompt %}assistant: {% endif %}"
    tok.chat_template = tok.chat_template.replace("\\n", "")
    report = ChatTemplate(tok, 512).report
    assert not report.eos_after_reply
    assert any("never learns to stop" in p for p in report.problems)


def test_pad_equal_to_end_of_turn_is_a_problem(smol_tokenizer):
    tok = copy.deepcopy(smol_tokenizer)
    tok.pad_token = "<|im_end|>"
    assert any("pad token is the end-of-turn token" in p for p in ChatTemplate(tok, 512).report.problems)


def test_system_turns_are_moved_or_merged(smol_tokenizer):
    t = ChatTemplate(smol_tokenizer, 512)
    ex = Example(SRC, [{"role": "user", "content": "Q"}, {"role": "system", "content": "S"},
                       {"role": "assistant", "content": "A"}])
    t.place_system(ex)
    assert [m["role"] for m in ex.messages] == ["system", "user", "assistant"]
    tok = copy.deepcopy(smol_tokenizer)
    tok.chat_template = ("{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system') }}"
                         "{% endif %}<{{ m['role'] }}>{{ m['content'] }}</s>{% endfor %}"
                         "{% if add_generation_prompt %}<assistant>{% endif %}")
    gemma_like = ChatTemplate(tok, 512)
    assert not gemma_like.report.system_supported
    ex = Example(SRC, [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"},
                       {"role": "assistant", "content": "A"}])
    gemma_like.place_system(ex)
    assert ex.messages[0] == {"role": "user", "content": "S\n\nQ"}


def test_rows_the_template_cannot_render_are_reported(smol_tokenizer):
    tok = copy.deepcopy(smol_tokenizer)
    tok.chat_template = ("{% for m in messages %}{% if loop.index0 % 2 == 0 and m['role'] != 'user' %}"
                         "{{ raise_exception('roles must alternate') }}{% endif %}<{{ m['role'] }}>{{ m['content'] }}"
                         "<end>{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}")
    t = ChatTemplate(tok, 512)
    bad = Example(SRC, [{"role": "assistant", "content": "A"}, {"role": "user", "content": "Q"},
                        {"role": "assistant", "content": "A"}])
    good = Example(SRC, [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}])
    lengths = t.token_lengths([bad, good])
    assert isinstance(lengths[0], str) and "roles must alternate" in lengths[0]
    assert isinstance(lengths[1], int) and lengths[1] > 0


def test_no_chat_template_is_refused(smol_tokenizer):
    tok = copy.deepcopy(smol_tokenizer)
    tok.chat_template = None
    with pytest.raises(ValueError, match="no chat template"):
        ChatTemplate(tok, 512)
