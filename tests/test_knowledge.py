"""The knowledge base loads, cross-checks, and rejects malformed files with errors naming rule and field."""

from __future__ import annotations

import shutil

import pytest
import yaml

from assistant.knowledge import KnowledgeError, load_knowledge, parse_doc


def test_bundled_knowledge_is_consistent(knowledge):
    assert len(knowledge.docs) >= 12
    assert {"spectrum", "decision-guide", "lora", "qlora", "dpo", "rlhf", "base-models",
            "data-requirements", "rag-plus-fine-tuning", "evaluation"} <= set(knowledge.docs)
    # Every rule cites passages that exist (checked at load), and every doc section is citable.
    assert all(cid in knowledge.sections for rule in knowledge.rules for cid in rule.cite)
    assert "spectrum#retrieval-augmented-generation" in knowledge.sections
    assert knowledge.models["smollm2-135m-instruct"].source == "bundled"


def test_spectrum_doc_states_the_numbers(knowledge):
    text = " ".join(s.text for s in knowledge.docs["spectrum"].sections)
    assert "50–200 ms" in text or "50-200 ms" in text
    assert "10,000" in text and "100" in text


@pytest.fixture
def kdir(tmp_path, knowledge):
    target = tmp_path / "knowledge"
    shutil.copytree(knowledge.root, target)
    return target


def edit_rule(kdir, rule_id, **changes):
    path = kdir / "rules.yaml"
    data = yaml.safe_load(path.read_text())
    rule = next(r for r in data["rules"] if r["id"] == rule_id)
    for key, value in changes.items():
        if value is None:
            rule.pop(key)
        else:
            rule[key] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"when": {"gpu_memroy_gb": {"lt": 20}}}, "unknown field 'gpu_memroy_gb'"),
        ({"when": {"gpu_memory_gb": {"below": 20}}}, "unknown operator(s) ['below']"),
        ({"effect": {"approach": {"finetuning": 2}}}, "field 'effect.approach'"),
        ({"effect": {"technique": {"lora": "lots"}}}, "field 'effect.technique.lora'"),
        ({"reason": None}, "field 'reason' is missing"),
        ({"cite": ["qlora#no-such-section"]}, "unknown citation id 'qlora#no-such-section'"),
    ],
)
def test_malformed_rule_names_rule_and_field(kdir, changes, message):
    edit_rule(kdir, "right-size-needs-4-bit", **changes)
    with pytest.raises(KnowledgeError) as err:
        load_knowledge(kdir)
    assert "rule 'right-size-needs-4-bit'" in str(err.value)
    assert "rules.yaml" in str(err.value)
    assert message in str(err.value)


def test_duplicate_rule_id(kdir):
    path = kdir / "rules.yaml"
    data = yaml.safe_load(path.read_text())
    data["rules"].append(dict(data["rules"][0]))
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(KnowledgeError, match="rule 'start-with-the-cheapest'.*duplicate rule id"):
        load_knowledge(kdir)


def test_broken_yaml_names_the_file(kdir):
    (kdir / "rules.yaml").write_text("rules:\n  - id: x\n   when: {\n")
    with pytest.raises(KnowledgeError, match="rules.yaml: not valid YAML"):
        load_knowledge(kdir)


def test_bad_model_entry(kdir):
    path = kdir / "models.yaml"
    data = yaml.safe_load(path.read_text())
    data["models"][1]["methods"] = ["lora", "magic"]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(KnowledgeError, match=r"model 'smollm2-360m-instruct'.*field 'methods'.*magic"):
        load_knowledge(kdir)


def test_bad_lexicon_regex(kdir):
    path = kdir / "lexicon.yaml"
    data = yaml.safe_load(path.read_text())
    data["cues"][0]["patterns"].append("unclosed (group")
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(KnowledgeError, match=r"lexicon.yaml: cue #1 \(data_kind\): field 'patterns': bad regex"):
        load_knowledge(kdir)


def test_doc_without_front_matter(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text("# No front matter\n\nText.\n")
    with pytest.raises(KnowledgeError, match="x.md: missing YAML front matter"):
        parse_doc(doc)


def test_doc_sections_become_citation_ids(tmp_path):
    doc = tmp_path / "demo.md"
    doc.write_text("---\nid: demo\ntitle: Demo\n---\n# Demo\n\nIntro.\n\n## Mistral and Mixtral\nBody one.\n\n"
                   "## GPU sizes (2026)\nBody two.\n")
    parsed = parse_doc(doc)
    assert [s.citation_id for s in parsed.sections] == ["demo", "demo#mistral-and-mixtral", "demo#gpu-sizes-2026"]
    assert parsed.sections[1].text == "Body one."


def test_the_executor_resolves_models_from_the_catalog_the_advisor_checked():
    from executor.models.catalog import load_catalog, model_ref
    from executor.models.registry import catalog, resolve

    knowledge = load_knowledge()
    assert load_catalog().models == knowledge.models  # one loader: knowledge/models.yaml read and checked once
    assert catalog() == {model_id: info.model_dump() for model_id, info in knowledge.models.items()}
    assert resolve("smollm2-360m-instruct").location == knowledge.models["smollm2-360m-instruct"].hf_id
    ref = model_ref(knowledge.models["smollm2-360m-instruct"])
    assert (ref.id, ref.source, ref.hf_id) == ("smollm2-360m-instruct", "hub", "HuggingFaceTB/SmolLM2-360M-Instruct")


def test_a_measurement_with_a_bad_field_is_refused_naming_it(tmp_path):
    import shutil
    from pathlib import Path

    from assistant.knowledge import KnowledgeError, load_knowledge

    root = shutil.copytree(Path(__file__).resolve().parents[1] / "knowledge", tmp_path / "knowledge")
    text = (root / "measurements.yaml").read_text().replace("accuracy: 0.077", "accuracy: 7.7", 1)
    (root / "measurements.yaml").write_text(text)
    with pytest.raises(KnowledgeError, match=r"measurement 'banking77-smollm2-h200': field 'systems\.few-shot "
                                             r"prompting\.accuracy'"):
        load_knowledge(root)
