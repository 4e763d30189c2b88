"""Scenario tests: plain-language use cases -> (approach, technique).

Every row of the decision matrix (knowledge/docs/decision-guide.md) and every technique is covered.
These run the whole advisor: extraction, rules, model choice, retrieval and the plan.
"""

from __future__ import annotations

import pytest

SCENARIOS = [
    # id, text, approach, technique
    ("vocabulary", "Our radiology department wants a model that writes reports using our clinical terminology "
     "and abbreviations. We have 3,000 example reports written by our radiologists and a single A100 80GB.",
     "fine_tuning", "lora"),
    ("vocabulary-small-gpu", "Insurance claims adjusters use a lot of industry jargon. We have 2,500 annotated "
     "claim summaries as training examples and a 16 GB GPU.", "fine_tuning", "qlora"),
    ("changing-schedules", "Our assistant answers questions about flight schedules and ticket prices that change "
     "every hour.", "rag", "none"),
    ("changing-inventory", "Customers ask about live inventory and current prices in our online store; the "
     "catalog is updated daily.", "rag", "none"),
    ("format-json", "We need to extract invoice fields into strict JSON. We have 1,200 labeled invoices with the "
     "correct JSON output and a 24GB RTX 4090.", "fine_tuning", "lora"),
    ("tone", "We want replies to customer emails written in our brand voice. We have 4,000 past emails with the "
     "replies our agents sent.", "fine_tuning", "lora"),
    ("citations", "Our compliance team needs answers grounded in our 800 internal policy documents, with "
     "citations for every answer.", "rag", "none"),
    ("hallucinations", "The bot keeps hallucinating product specs. We want it to stick to the facts in our "
     "product documentation.", "rag", "none"),
    ("reasoning", "We want a tutor that solves multi-step math word problems with step-by-step reasoning. We "
     "have 7,000 worked solutions as training examples and two A100 80GB GPUs.", "fine_tuning", "lora"),
    ("tight-budget", "We're a tiny startup with a shoestring budget and want a chatbot that answers questions "
     "about our product.", "prompting", "none"),
    ("tight-budget-with-data", "Limited budget, but we have 5,000 labeled support tickets to classify into 20 "
     "categories.", "fine_tuning", "lora"),
    ("edge-laptops", "The assistant must run offline on our technicians' laptops in the field, helping them fill "
     "in inspection reports. We have 1,500 examples of completed reports.", "fine_tuning", "lora"),
    ("edge-phones", "We want an on-device model for our mobile app that categorizes user notes; it has to work "
     "without a server.", "fine_tuning", "lora"),
    ("knowledge-plus-tone", "We need an assistant that answers from our product manuals in our brand voice, and "
     "the manuals are updated monthly. We have 2,000 example conversations.", "rag_fine_tuning", "lora"),
    ("knowledge-plus-format", "Answer questions from our knowledge base and always respond in a strict JSON "
     "format for our app; we have 3,000 Q&A pairs.", "rag_fine_tuning", "lora"),
    ("no-data", "We don't have any data yet, but we want a chatbot for our website.", "prompting", "none"),
    ("few-examples", "We have about 40 examples of good answers and want the model to answer like that.",
     "prompting", "none"),
    ("empty", "", "prompting", "none"),
    ("anthropic-tone", "We are standardized on Claude and must use the Anthropic API. Answers must follow our "
     "tone of voice.", "prompting", "none"),
    ("anthropic-docs", "We use Claude via the Anthropic API and need it to answer questions from our 10,000 "
     "internal documents with citations.", "rag", "none"),
    ("openai-tone", "We must use the OpenAI API. We have 3,000 examples of support replies in our company's "
     "tone.", "fine_tuning", "api"),
    ("openai-changing", "We are on Azure OpenAI and need answers about stock levels that change daily.",
     "rag", "none"),
    ("dpo", "We have 5,000 preference pairs where reviewers picked the better of two answers; make the model "
     "match their preferences. One H100.", "fine_tuning", "dpo"),
    ("dpo-openai-layout", "Our dataset is 800 rows in the OpenAI DPO layout with preferred_output and "
     "non_preferred_output.", "fine_tuning", "dpo"),
    ("rlhf", "We have 20,000 ranked responses from annotators and want to train a reward model and run RLHF "
     "with GRPO on 8 H100 GPUs.", "fine_tuning", "rlhf"),
    ("prompt-tuning", "We serve 40 different classification tasks for our tenants from a single frozen model "
     "and need tiny per-task storage. Each task has about 500 labeled examples.", "fine_tuning", "prompt_tuning"),
    ("full-cluster", "We have 200,000 instruction-response pairs in the legal domain and a cluster of 8 H100 "
     "GPUs; the budget is generous.", "fine_tuning", "full"),
    ("full-requested", "We want full fine-tuning of Llama 3.2 1B on 60,000 examples; we have four A100 80GB "
     "GPUs.", "fine_tuning", "full"),
    ("qlora-big-model", "We want to fine-tune Llama 3.1 70B on 10,000 training examples but only have one "
     "A100 80GB.", "fine_tuning", "qlora"),
    ("qlora-small-card", "Fine-tune a model for our support bot's tone on a 12 GB RTX 3060; we have 3,000 "
     "example chats.", "fine_tuning", "qlora"),
    ("no-gpu", "We have no GPU, only CPUs, and 2,000 labeled emails to classify by department.",
     "fine_tuning", "lora"),
    ("qlora-on-cpu", "We have no GPU but want to try QLoRA on 1,000 training examples.", "fine_tuning", "qlora"),
    ("from-scratch", "No existing model understands our proprietary protein notation. We have 50 billion "
     "tokens of sequences and a large budget.", "from_scratch", "full"),
    ("continued-pretraining", "No existing model covers our low-resource language; we have 200 million tokens "
     "of text and 8 A100 GPUs.", "fine_tuning", "full"),
    ("latency", "Autocomplete must respond in under 50 ms; we have 20,000 examples of completions from our "
     "users.", "fine_tuning", "lora"),
    ("privacy", "Patient records are HIPAA-protected and cannot leave our network; we have 3,000 clinical "
     "notes with summaries written by doctors as training examples.", "fine_tuning", "lora"),
    ("classification-banking", "Route incoming banking customer messages to one of 77 intents. We have 10,003 "
     "labeled examples and an L4 GPU.", "fine_tuning", "lora"),
    ("documents-only", "We have 2,000 PDFs of maintenance manuals and want technicians to ask questions about "
     "them.", "rag", "none"),
]


@pytest.mark.parametrize(("name", "text", "approach", "technique"), SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_scenario(advisor, name, text, approach, technique):
    rec = advisor.recommend(text)
    assert (rec.approach, rec.technique) == (approach, technique), [r.rule for r in rec.reasons]
    assert len(rec.reasons) >= 2
    assert len(rec.citations) >= 1
    assert rec.plan.approach == approach and rec.plan.technique == technique


def test_scenarios_cover_the_matrix_and_every_technique():
    techniques = {s[3] for s in SCENARIOS}
    approaches = {s[2] for s in SCENARIOS}
    assert techniques >= {"full", "lora", "qlora", "prompt_tuning", "dpo", "rlhf", "api", "none"}
    assert approaches == {"prompting", "rag", "fine_tuning", "rag_fine_tuning", "from_scratch"}
    assert len(SCENARIOS) >= 30


def test_edge_deployment_gets_a_small_model(advisor):
    rec = advisor.recommend("On-device assistant for our mobile app; we have 3,000 examples and an RTX 4090 "
                            "to train on.")
    assert rec.approach == "fine_tuning"
    assert rec.base_model_info["params_b"] <= 4


def test_no_gpu_gets_the_bundled_default(advisor):
    rec = advisor.recommend("We have no GPU and 2,000 labeled emails to classify.")
    assert rec.base_model == "smollm2-135m-instruct"
    assert rec.plan.hardware.device == "cpu"


def test_qlora_on_cpu_says_it_is_slower(advisor):
    rec = advisor.recommend("We have no GPU but want to try QLoRA on 1,000 training examples.")
    assert any("slower than LoRA" in note for note in rec.notes)


def test_openai_gets_a_hosted_model_and_a_token_priced_estimate(advisor):
    rec = advisor.recommend("We must use the OpenAI API. We have 3,000 examples of support replies in our tone.")
    assert rec.base_model.startswith("gpt-")
    # 3,000 examples x 350 tokens x 3 epochs at $3 per million training tokens
    assert rec.estimates["cost_usd"] == pytest.approx(3000 * 350 * 3 / 1e6 * 3.0, rel=1e-6)
