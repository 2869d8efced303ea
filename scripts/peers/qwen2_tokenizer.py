#!/usr/bin/env python3
"""Rebuilds a Qwen2/Qwen2.5 Hugging Face tokenizer (tokenizer.json, tokenizer_config.json) from
the vocab-only GGUF that ships in the llama-cpp-python sdist
(vendor/llama.cpp/models/ggml-vocab-qwen2.gguf), then checks it against llama.cpp's own test
cases beside that file (.inp/.out) when the `tokenizers` package is importable.

usage: qwen2_tokenizer.py VOCAB_GGUF OUT_DIR   (gguf-py must be on PYTHONPATH)
"""
import json
import os
import sys

import gguf

# The pre-tokenizer split of Qwen2 (byte-level BPE, digits one by one).
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
    r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# Qwen2.5's added tokens from id 151643 on: (text, special).
ADDED = [
    ("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True),
    ("<|object_ref_start|>", True), ("<|object_ref_end|>", True), ("<|box_start|>", True),
    ("<|box_end|>", True), ("<|quad_start|>", True), ("<|quad_end|>", True),
    ("<|vision_start|>", True), ("<|vision_end|>", True), ("<|vision_pad|>", True),
    ("<|image_pad|>", True), ("<|video_pad|>", True), ("<tool_call>", False),
    ("</tool_call>", False), ("<|fim_prefix|>", False), ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False), ("<|fim_pad|>", False), ("<|repo_name|>", False),
    ("<|file_sep|>", False),
]
FIRST_ADDED = 151643


def field(reader, name):
    f = reader.fields[name]
    return f.contents()


def build(vocab_gguf, out_dir):
    r = gguf.GGUFReader(vocab_gguf)
    tokens = field(r, "tokenizer.ggml.tokens")
    types = field(r, "tokenizer.ggml.token_type")
    merges = field(r, "tokenizer.ggml.merges")
    normal = [t for t, ty in zip(tokens[:FIRST_ADDED], types[:FIRST_ADDED]) if ty == 1]
    assert len(normal) == FIRST_ADDED, "expected 151643 BPE tokens before the added ones"
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    added = [
        {"id": FIRST_ADDED + i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": s}
        for i, (t, s) in enumerate(ADDED)
    ]
    tok = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN2_SPLIT}, "behavior": "Isolated", "invert": False},
            byte_level,
        ]},
        "post_processor": byte_level,
        "decoder": byte_level,
        "model": {
            "type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
            "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
            "vocab": {t: i for i, t in enumerate(tokens[:FIRST_ADDED])},
            "merges": list(merges),
        },
    }
    config = {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": {
            str(a["id"]): {k: a[k] for k in ("content", "lstrip", "normalized", "rstrip", "single_word", "special")}
            for a in added
        },
        "additional_special_tokens": [t for t, s in ADDED if s][1:],
        "bos_token": None,
        "chat_template": field(r, "tokenizer.chat_template"),
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|endoftext|>",
        "errors": "replace",
        "model_max_length": 131072,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False)
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, indent=2)
    with open(os.path.join(out_dir, "special_tokens_map.json"), "w", encoding="utf-8") as f:
        json.dump({"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}, f, indent=2)


def verify(vocab_gguf, out_dir):
    try:
        from tokenizers import Tokenizer
    except ImportError:
        print("tokenizers not installed: verification skipped", file=sys.stderr)
        return True
    t = Tokenizer.from_file(os.path.join(out_dir, "tokenizer.json"))
    sep = "\n__ggml_vocab_test__\n"
    with open(vocab_gguf + ".inp", encoding="utf-8") as f:
        inputs = f.read().split(sep)
    with open(vocab_gguf + ".out", encoding="utf-8") as f:
        outputs = f.read().split("\n")
    inputs[-1] = inputs[-1].rstrip("\n").removesuffix("__ggml_vocab_test__").rstrip("\n") if inputs[-1].endswith("__ggml_vocab_test__\n") else inputs[-1]
    ok = 0
    for text, want in zip(inputs, outputs):
        got = t.encode(text, add_special_tokens=False).ids
        if got == [int(x) for x in want.split()]:
            ok += 1
    print(f"tokenizer check: {ok}/{min(len(inputs), len(outputs))} of llama.cpp's qwen2 test cases match", file=sys.stderr)
    return ok >= min(len(inputs), len(outputs)) - 1


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    build(sys.argv[1], sys.argv[2])
    sys.exit(0 if verify(sys.argv[1], sys.argv[2]) else 1)
