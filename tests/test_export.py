"""Export a real (tiny) LoRA run: adapter, merged weights, GGUF written and read back with transformers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from executor.export.gguf_file import GGUFExportError, permute_rotary, write_gguf
from executor.export.run_dir import ExportError, open_run
from executor.export.weights import export_run
from executor.models.loader import tiny_llama
from executor.plan import TrainingPlan

PROMPT = [{"role": "user", "content": "Capital of Peru?"}]


def _rows(n: int) -> str:
    pairs = [("France", "Paris"), ("Peru", "Lima"), ("Japan", "Tokyo"), ("Kenya", "Nairobi")]
    rows = [{"messages": [{"role": "user", "content": f"Capital of {c}?"},
                          {"role": "assistant", "content": f"The capital of {c} is {city}."}]}
            for c, city in (pairs[i % len(pairs)] for i in range(n))]
    return "".join(json.dumps(r) + "\n" for r in rows)


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, smol_tokenizer) -> Path:
    """A finished LoRA run on a tiny random Llama (the plan names SmolLM2, whose tokenizer it shares)."""
    from executor.train.runner import train

    data = tmp_path_factory.mktemp("data")
    (data / "train.jsonl").write_text(_rows(16))
    plan = TrainingPlan.model_validate({
        "approach": "fine_tuning", "technique": "lora", "base_model": {"id": "smollm2-135m-instruct"},
        "training": {"method": "lora", "epochs": 1, "learning_rate": 1e-2, "per_device_batch_size": 4,
                     "gradient_accumulation_steps": 1, "max_seq_length": 64, "early_stopping_patience": None,
                     "lora": {"r": 8, "alpha": 16, "dropout": 0.0}},
        "hardware": {"device": "cpu"}})
    run = tmp_path_factory.mktemp("runs") / "capitals-lora"
    train(plan.with_overrides({"data.path": str(data), "training.max_steps": 4}), run, model_factory=tiny_llama)
    return run


def _logits(model, tokenizer) -> torch.Tensor:
    enc = tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        return model(**enc).logits.float()


def test_rotary_permutation_is_what_transformers_gguf_loader_undoes():
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    weights = np.arange(8 * 4 * 3, dtype=np.float32).reshape(8 * 4, 3)  # 8 heads of dim 4, 3 inputs
    undo = LlamaTensorProcessor({"num_attention_heads": 8, "num_key_value_heads": 2})
    for heads, kv in ((8, None), (8, 2)):
        permuted = permute_rotary(weights if kv is None else weights[: 2 * 4], heads, kv)
        name = "blk.0.attn_q.weight" if kv is None else "blk.0.attn_k.weight"
        assert not np.array_equal(permuted, weights[: permuted.shape[0]])
        assert np.array_equal(undo.process(permuted, name).weights, weights[: permuted.shape[0]])


@pytest.mark.slow
def test_adapter_export_is_portable_and_loads_with_peft(lora_run, tmp_path, smol_tokenizer):
    from peft import PeftModel

    info = export_run(lora_run, "adapter", tmp_path / "adapter")
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"  # not this machine's cache
    assert info["peft_type"] == "LORA" and json.loads((tmp_path / "adapter" / "export.json").read_text())["dry_run"] \
        is False
    exported = PeftModel.from_pretrained(tiny_llama(smol_tokenizer), tmp_path / "adapter")
    original = PeftModel.from_pretrained(tiny_llama(smol_tokenizer), lora_run / "adapter")
    assert torch.equal(_logits(exported, smol_tokenizer), _logits(original, smol_tokenizer))


@pytest.mark.slow
def test_merged_export_loads_with_plain_automodel_and_keeps_the_chat_template(lora_run, tmp_path, smol_tokenizer):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    export_run(lora_run, "merged", tmp_path / "merged")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "merged")
    assert model.dtype == torch.bfloat16 and any((tmp_path / "merged").glob("*.safetensors"))
    assert tokenizer.chat_template == smol_tokenizer.chat_template
    # The export stops where the chat template ends a turn, whatever the library's GGUF conversion said.
    im_end = smol_tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert tokenizer.eos_token == "<|im_end|>" and model.config.eos_token_id == im_end
    eos = model.generation_config.eos_token_id
    assert (eos if isinstance(eos, list) else [eos])[0] == im_end

    # Merging now from adapter/ (no merged/ in the run) gives the same weights as the merge at training time.
    run_copy = tmp_path / "run-without-merged"
    shutil.copytree(lora_run, run_copy, ignore=shutil.ignore_patterns("merged", "checkpoints", "tensorboard"))
    base = tmp_path / "tiny-base"
    tiny_llama(smol_tokenizer).save_pretrained(base)  # the stand-in the run was trained on (seed 0)
    info = export_run(run_copy, "merged", tmp_path / "merged-now", base=base)
    assert info["how"].startswith("adapter merged into")
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "merged-now")
    assert AutoTokenizer.from_pretrained(tmp_path / "merged-now").eos_token == "<|im_end|>"
    assert again.config.eos_token_id == im_end
    assert torch.allclose(_logits(again, tokenizer), _logits(model, tokenizer), atol=1e-2)
    # The merge changed the base: the adapter was trained, not zero.
    untouched = AutoModelForCausalLM.from_pretrained(base).to(torch.bfloat16)
    assert not torch.allclose(_logits(untouched, tokenizer), _logits(model, tokenizer), atol=1e-2)


@pytest.mark.slow
def test_gguf_export_round_trips_through_transformers(lora_run, tmp_path, smol_tokenizer):
    from gguf import GGUFReader
    from transformers import AutoModelForCausalLM, AutoTokenizer

    info = export_run(lora_run, "gguf", tmp_path / "gguf", file_type="q8_0")
    out = tmp_path / "gguf"
    assert info["file"] == "capitals-lora-q8_0.gguf" and info["architecture"] == "llama"
    reader = GGUFReader(out / info["file"])
    fields = {key: reader.fields[key].contents() for key in (
        "general.architecture", "tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.chat_template",
        "tokenizer.ggml.eos_token_id", "llama.block_count", "general.file_type")}
    assert fields["general.architecture"] == "llama" and fields["tokenizer.ggml.model"] == "gpt2"
    assert fields["tokenizer.ggml.pre"] == "smollm" and fields["llama.block_count"] == 2
    assert fields["tokenizer.chat_template"] == smol_tokenizer.chat_template
    assert fields["tokenizer.ggml.eos_token_id"] == smol_tokenizer.eos_token_id and fields["general.file_type"] == 7
    names = {t.name: t.tensor_type.name for t in reader.tensors}
    assert names["blk.0.attn_q.weight"] == "Q8_0" and names["blk.0.attn_norm.weight"] == "F32"
    assert "output.weight" not in names  # tied embeddings: llama.cpp reuses token_embd

    modelfile = (out / "Modelfile").read_text()
    assert f"FROM ./{info['file']}" in modelfile and "<|im_start|>{{ .Role }}" in modelfile
    assert 'PARAMETER stop "<|im_end|>"' in modelfile
    assert 'SYSTEM """You are a helpful AI assistant named SmolLM, trained by Hugging Face"""' in modelfile

    # Read back by transformers' GGUF loader (which dequantizes q8_0): same tokens, template and outputs.
    only_gguf = tmp_path / "only-gguf"  # transformers would otherwise mix in tokenizer files lying next to it
    only_gguf.mkdir()
    shutil.copy(out / info["file"], only_gguf)
    tokenizer = AutoTokenizer.from_pretrained(only_gguf, gguf_file=info["file"])
    text = "Capital of Peru? 12345 <|im_end|> héllo"
    assert tokenizer(text)["input_ids"] == smol_tokenizer(text)["input_ids"]
    assert tokenizer.chat_template == smol_tokenizer.chat_template and tokenizer.eos_token == "<|im_end|>"
    loaded = AutoModelForCausalLM.from_pretrained(only_gguf, gguf_file=info["file"])
    merged = AutoModelForCausalLM.from_pretrained(lora_run / "merged", dtype=torch.float32)
    reference = _logits(merged, smol_tokenizer)
    difference = (_logits(loaded, smol_tokenizer) - reference).abs().max().item()
    assert difference < 0.02 * reference.abs().max().item(), difference


@pytest.fixture(scope="module")
def small_tokenizer(smol_tokenizer):
    """A 315-token byte-level BPE trained here: reading a GGUF with SmolLM2's 49k vocabulary back takes ~7 s."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    core.train_from_iterator(["The capital of Peru is Lima.", "What is the capital of France? Paris."] * 20, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                        pad_token="<|endoftext|>", unk_token="<|endoftext|>")
    tokenizer.chat_template = smol_tokenizer.chat_template
    return tokenizer


@pytest.mark.parametrize("family,file_type,tolerance", [("llama", "f16", 2e-3), ("mistral", "f16", 2e-3),
                                                        ("qwen2", "f16", 2e-3), ("qwen2", "q8_0", 2e-2)])
def test_gguf_file_types_and_architectures_round_trip(family, file_type, tolerance, tmp_path, small_tokenizer):
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, MistralConfig, Qwen2Config

    torch.manual_seed(3)
    shape = {"vocab_size": len(small_tokenizer), "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2, "tie_word_embeddings": False,
             "eos_token_id": small_tokenizer.eos_token_id, "bos_token_id": small_tokenizer.bos_token_id}
    config = {"llama": LlamaConfig, "mistral": MistralConfig, "qwen2": Qwen2Config}[family](**shape)
    model = AutoModelForCausalLM.from_config(config)
    if family == "qwen2":  # biases on q/k/v, and no rotary permutation in llama.cpp's layout
        with torch.no_grad():  # random non-zero biases, so a mis-mapped bias would show
            for layer in model.model.layers:
                for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                    proj.bias.normal_(0, 0.5)
    folder = tmp_path / "hf"
    model.save_pretrained(folder)
    small_tokenizer.save_pretrained(folder)
    summary = write_gguf(folder, tmp_path / "gguf" / "m.gguf", file_type)
    assert summary.architecture == ("qwen2" if family == "qwen2" else "llama")  # llama.cpp runs Mistral as llama
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "gguf", gguf_file="m.gguf")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "gguf", gguf_file="m.gguf")
    text = "What is the capital of Peru? héllo 42 <|im_end|>"
    assert tokenizer(text)["input_ids"] == small_tokenizer(text)["input_ids"]
    reference = _logits(model, small_tokenizer)
    difference = (_logits(loaded, small_tokenizer) - reference).abs().max().item()
    assert difference < tolerance * reference.abs().max().item(), difference


def test_bad_exports_are_refused_with_the_file_named(tmp_path, smol_tokenizer):
    with pytest.raises(ExportError, match="no such run directory"):
        open_run(tmp_path / "nope")
    (tmp_path / "run").mkdir()
    with pytest.raises(ExportError, match="plan.yaml: missing"):
        open_run(tmp_path / "run")
    (tmp_path / "run" / "plan.yaml").write_text("approach: prompting\ntechnique: none\nbase_model: {id: x}\n")
    with pytest.raises(ExportError, match="result.json: missing"):
        open_run(tmp_path / "run")
    with pytest.raises(ExportError, match="--format 'onnx'"):
        export_run(tmp_path / "run", "onnx")

    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=100)).save_pretrained(gpt2)
    with pytest.raises(GGUFExportError, match="model_type 'gpt2' is not supported"):
        write_gguf(gpt2, tmp_path / "x.gguf")
    llama = tmp_path / "llama"
    tiny_llama(smol_tokenizer, hidden=32, layers=1).save_pretrained(llama)
    smol_tokenizer.save_pretrained(llama)
    tokenizer_json = json.loads((llama / "tokenizer.json").read_text())
    tokenizer_json["model"]["byte_fallback"] = True  # what a SentencePiece-derived tokenizer looks like
    (llama / "tokenizer.json").write_text(json.dumps(tokenizer_json))
    with pytest.raises(GGUFExportError, match="tokenizer.json: .*not a byte-level BPE"):
        write_gguf(llama, tmp_path / "y.gguf")
    assert not (tmp_path / "y.gguf").exists() and not (tmp_path / "y.gguf.partial").exists()


@pytest.mark.slow
def test_prompt_tuning_adapter_cannot_be_merged(lora_run, tmp_path):
    run = tmp_path / "prompt-run"
    shutil.copytree(lora_run, run, ignore=shutil.ignore_patterns("merged", "checkpoints", "tensorboard"))
    config = json.loads((run / "adapter" / "adapter_config.json").read_text())
    (run / "adapter" / "adapter_config.json").write_text(json.dumps(config | {"peft_type": "PROMPT_TUNING"}))
    with pytest.raises(ExportError, match="PROMPT_TUNING' cannot be merged"):
        export_run(run, "gguf")
    with pytest.raises(ExportError, match="would overwrite the run's own files"):
        export_run(run, "adapter", run / "adapter")


@pytest.mark.slow
def test_export_cli(lora_run, tmp_path):
    from typer.testing import CliRunner

    from assistant.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["export", str(lora_run), "--format", "adapter", "--out", str(tmp_path / "a"),
                                 "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["out"] == str(tmp_path / "a")
    bad = runner.invoke(app, ["export", str(tmp_path / "missing"), "--format", "merged"])
    assert bad.exit_code == 2 and "no such run directory" in bad.output


@pytest.mark.slow
def test_a_run_directory_is_served_from_its_merged_weights(lora_run, smol_tokenizer):
    from transformers import AutoModelForCausalLM

    from executor.serve.loading import load_for_serving

    loaded = load_for_serving(lora_run, device="cpu")
    assert loaded.model_id == "capitals-lora" and "merged/" in loaded.source
    assert loaded.tokenizer.chat_template == smol_tokenizer.chat_template
    merged = AutoModelForCausalLM.from_pretrained(lora_run / "merged", dtype=torch.float32)
    assert torch.equal(_logits(loaded.model, smol_tokenizer), _logits(merged, smol_tokenizer))
