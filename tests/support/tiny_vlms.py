"""Tiny random-weight vision-language models, built offline, saved like a real download.

`build_tiny_vlm(family, out_dir)` constructs a few-hundred-KB model of one family from its
configuration classes (random weights), a word-level tokenizer built in memory with the
`tokenizers` library, the family's own image processor at a tiny image size, and the family's
Processor; then `save_pretrained(out_dir)` writes config, safetensors, tokenizer, processor and
chat template exactly where `from_pretrained(out_dir)` looks for them. The backend under test
loads that directory like a user's `hf download` of the real checkpoint.

Families: ``paligemma`` (PaliGemma: SigLIP + Gemma), ``gemma3`` (SigLIP + Gemma 3),
``mllama`` (LLaMA-3.2-Vision: tiled vision encoder + cross-attention layers), ``qwen2_vl``.

Random weights answer garbage. `only_answer="happy 5"` additionally adds one token whose text
is that answer and writes a generation config (`suppress_tokens`) that forbids every other
token, end-of-sequence included, so a 1-token answer (max_tokens=1) is exactly that text
whatever the weights: a deterministic model that gets through all three steps of a
context-carry conversation ('happy' parses as a label, '5' as a scale value).

The chat templates are short stand-ins with the families' real turn markers (the real ones are
long); the backend uses whatever template the processor ships, as it does for a real model.
"""

from __future__ import annotations

import json
from pathlib import Path

FAMILIES = ("paligemma", "gemma3", "mllama", "qwen2_vl")

# Words the random model can emit; the emotion words make a parseable answer possible.
_WORDS = (
    'happy', 'sad', 'angry', 'anger', 'fear', 'disgust', 'neutral', 'surprise', 'calm',
    'contempt', 'what', 'is', 'the', 'facial', 'expression', 'in', 'this', 'image', 'choose',
    'one', 'from', 'answer', 'with', 'a', 'single', 'word', 'only', 'you', 'identified',
    'face', 'as', 'how', 'pleasant', 'rate', 'to', 'where', 'very', 'unpleasant', 'and',
    'intense', 'or', 'activated', 'emotion', 'excited', 'of', 'out', 'classify', 'into',
    'eight', 'expressions', 'en', 'user', 'model', 'assistant', 'system', '0', '1', '2', '3',
    '4', '5', '6', '7', '8', '9', '.', ',', ':', '?', '!', '[', ']', '(', ')', '{', '}', '"',
    "'", '-', '/', 'with', 'pleasantness',
)

_SPECIAL = {
    "paligemma": ["<pad>", "<eos>", "<bos>", "<unk>", "<image>"],
    "gemma3": ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>",
               "<start_of_image>", "<end_of_image>", "<image_soft_token>"],
    "mllama": ["<|begin_of_text|>", "<|end_of_text|>", "<|finetune_right_pad_id|>", "<|unk|>",
               "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|image|>",
               "<|python_tag|>"],
    "qwen2_vl": ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|unk|>", "<|vision_start|>",
                 "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"],
}

_TEMPLATES = {
    # Gemma 3: system text goes before the first user text; the image is <start_of_image>.
    "gemma3": (
        "{{ bos_token }}{% set sys = namespace(t='') %}"
        "{% for m in messages %}{% if m['role'] == 'system' %}"
        "{% set sys.t = (m['content'] if m['content'] is string else m['content'][0]['text']) + '\n\n' %}"
        "{% else %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n"
        "{% if m['role'] == 'user' %}{{ sys.t }}{% set sys.t = '' %}{% endif %}"
        "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
        "{% if c['type'] == 'image' %}<start_of_image>{% else %}{{ c['text'] }}{% endif %}"
        "{% endfor %}{% endif %}<end_of_turn>\n{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
    ),
    "mllama": (
        "{{ bos_token }}{% for m in messages %}"
        "<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
        "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
        "{% if c['type'] == 'image' %}<|image|>{% else %}{{ c['text'] }}{% endif %}"
        "{% endfor %}{% endif %}<|eot_id|>{% endfor %}"
        "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
    ),
    "qwen2_vl": (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
        "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
        "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
        "{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    ),
}

_H = 32  # text hidden size
_V = 32  # vision hidden size


def _tokenizer(family: str, extra_answer: str | None):
    """A word-level tokenizer over _WORDS and the family's special tokens, in memory."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    special = _SPECIAL[family]
    vocab: dict[str, int] = {}
    for tok in special + list(_WORDS):
        vocab.setdefault(tok, len(vocab))
    unk = special[3]
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=unk))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with single spaces
    pad, eos, bos = special[0], special[1], special[2]
    kwargs: dict = {}
    if family == "paligemma":
        pad, eos, bos = "<pad>", "<eos>", "<bos>"
    elif family == "gemma3":
        pad, eos, bos = "<pad>", "<end_of_turn>", "<bos>"
        kwargs["extra_special_tokens"] = {"boi_token": "<start_of_image>",
                                          "eoi_token": "<end_of_image>",
                                          "image_token": "<image_soft_token>"}
    elif family == "mllama":
        pad, eos, bos = "<|finetune_right_pad_id|>", "<|eot_id|>", "<|begin_of_text|>"
    elif family == "qwen2_vl":
        pad, eos, bos = "<|endoftext|>", "<|im_end|>", None
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token=unk, pad_token=pad, eos_token=eos,
        bos_token=bos, padding_side="left", **kwargs)
    fast.add_special_tokens({"additional_special_tokens": [t for t in special
                                                           if t not in (pad, eos, bos, unk)]}
                            if family not in ("gemma3",) else {})
    if extra_answer is not None:
        fast.add_tokens([extra_answer])
    return fast


def _image_processor(family: str):
    import transformers as T

    if family == "paligemma":
        ip = T.SiglipImageProcessor(size={"height": 16, "width": 16})
        ip.image_seq_length = 4  # (16 / 8) ** 2 patches
        return ip
    if family == "gemma3":
        return T.Gemma3ImageProcessor(size={"height": 16, "width": 16})
    if family == "mllama":
        return T.MllamaImageProcessor(size={"height": 16, "width": 16}, max_image_tiles=1)
    if family == "qwen2_vl":
        return T.Qwen2VLImageProcessor(
            size={"shortest_edge": 16 * 16, "longest_edge": 16 * 16}, patch_size=4,
            temporal_patch_size=2, merge_size=2)
    raise ValueError(family)


def _model(family: str, tokenizer, image_processor):
    import torch
    import transformers as T

    torch.manual_seed(0)
    vocab = len(tokenizer)
    ids = tokenizer.convert_tokens_to_ids
    common = dict(vocab_size=vocab, hidden_size=_H, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                  pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                  bos_token_id=tokenizer.bos_token_id)
    if family == "paligemma":
        text = T.GemmaConfig(head_dim=16, **common)
        vision = T.SiglipVisionConfig(hidden_size=_V, intermediate_size=64, num_hidden_layers=1,
                                      num_attention_heads=2, image_size=16, patch_size=8,
                                      projection_dim=_H)
        cfg = T.PaliGemmaConfig(text_config=text.to_dict(), vision_config=vision.to_dict(),
                                image_token_index=ids("<image>"), vocab_size=vocab,
                                projection_dim=_H, hidden_size=_H)
        cfg.text_config.vocab_size = vocab
        return T.PaliGemmaForConditionalGeneration(cfg)
    if family == "gemma3":
        text = T.Gemma3TextConfig(head_dim=16, sliding_window=64, query_pre_attn_scalar=16,
                                  layer_types=["sliding_attention", "full_attention"], **common)
        vision = T.SiglipVisionConfig(hidden_size=_V, intermediate_size=64, num_hidden_layers=1,
                                      num_attention_heads=2, image_size=16, patch_size=4,
                                      vision_use_head=False)
        cfg = T.Gemma3Config(text_config=text.to_dict(), vision_config=vision.to_dict(),
                             mm_tokens_per_image=4, boi_token_index=ids("<start_of_image>"),
                             eoi_token_index=ids("<end_of_image>"),
                             image_token_index=ids("<image_soft_token>"))
        return T.Gemma3ForConditionalGeneration(cfg)
    if family == "mllama":
        text = T.MllamaTextConfig(cross_attention_layers=[1], **{k: v for k, v in common.items()
                                                                  if k != "max_position_embeddings"})
        vision = T.MllamaVisionConfig(hidden_size=_V, intermediate_size=64, num_hidden_layers=2,
                                      num_global_layers=1, attention_heads=2, image_size=16,
                                      patch_size=8, max_num_tiles=1,
                                      intermediate_layers_indices=[0],
                                      vision_output_dim=_V * 2,
                                      supported_aspect_ratios=[[1, 1]])
        cfg = T.MllamaConfig(text_config=text.to_dict(), vision_config=vision.to_dict(),
                             image_token_index=ids("<|image|>"))
        return T.MllamaForConditionalGeneration(cfg)
    if family == "qwen2_vl":
        text = T.Qwen2VLTextConfig(rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                    "mrope_section": [2, 3, 3]},
                                   layer_types=["full_attention"] * 2, **common)
        vision = T.Qwen2VLVisionConfig(depth=1, embed_dim=_V, hidden_size=_H, num_heads=2,
                                       mlp_ratio=2, patch_size=4, spatial_merge_size=2,
                                       temporal_patch_size=2)
        cfg = T.Qwen2VLConfig(text_config=text.to_dict(), vision_config=vision.to_dict(),
                              image_token_id=ids("<|image_pad|>"),
                              video_token_id=ids("<|video_pad|>"),
                              vision_start_token_id=ids("<|vision_start|>"),
                              vision_end_token_id=ids("<|vision_end|>"))
        return T.Qwen2VLForConditionalGeneration(cfg)
    raise ValueError(family)


def _processor(family: str, tokenizer, image_processor):
    import transformers as T

    if family == "paligemma":
        return T.PaliGemmaProcessor(image_processor=image_processor, tokenizer=tokenizer)
    if family == "gemma3":
        return T.Gemma3Processor(image_processor=image_processor, tokenizer=tokenizer,
                                 chat_template=_TEMPLATES[family], image_seq_length=4)
    if family == "mllama":
        return T.MllamaProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                 chat_template=_TEMPLATES[family])
    if family == "qwen2_vl":
        video = T.Qwen2VLVideoProcessor(size={"shortest_edge": 16 * 16, "longest_edge": 16 * 16},
                                        patch_size=4, temporal_patch_size=2, merge_size=2)
        return T.Qwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                  video_processor=video, chat_template=_TEMPLATES[family])
    raise ValueError(family)


def build_tiny_vlm(family: str, out_dir: str | Path, *, only_answer: str | None = None) -> Path:
    """Build the tiny `family` model and save it (model, tokenizer, processor) to `out_dir`."""
    if family not in FAMILIES:
        raise ValueError(f"family {family!r} is not one of {FAMILIES}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = _tokenizer(family, only_answer)
    image_processor = _image_processor(family)
    processor = _processor(family, tokenizer, image_processor)
    tokenizer = processor.tokenizer  # the processor may have added tokens (PaliGemma)
    model = _model(family, tokenizer, image_processor)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    if only_answer is not None:
        keep = {tokenizer.convert_tokens_to_ids(only_answer)}
        model.generation_config.suppress_tokens = [i for i in range(len(tokenizer))
                                                   if i not in keep]
    model.save_pretrained(out)
    processor.save_pretrained(out)
    (out / "TINY_RANDOM_WEIGHTS.json").write_text(json.dumps({"family": family,
                                                              "only_answer": only_answer}))
    return out


if __name__ == "__main__":  # pragma: no cover - manual use: python -m tests.support.tiny_vlms DIR
    import sys

    root = Path(sys.argv[1] if len(sys.argv) > 1 else "tiny_vlms")
    for fam in FAMILIES:
        print(fam, build_tiny_vlm(fam, root / fam))
