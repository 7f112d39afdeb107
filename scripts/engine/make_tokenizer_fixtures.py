#!/usr/bin/env python3
"""Generate the tokenizer fixtures for Tests/FlywheelTokenizerTests (and one GGUF for FlywheelEngineTests).

The reference token ids come from independent implementations: Hugging Face `tokenizers` (byte-level BPE)
and Google's `sentencepiece` (BPE with byte fallback). Both train tiny vocabularies on the built-in
multilingual text below, so the fixtures are small and need no download.

Needs `pip install tokenizers sentencepiece gguf numpy` (only to regenerate; the Swift tests read the
checked-in outputs). Writes:
  Tests/FlywheelTokenizerTests/Fixtures/gpt2.json     byte-level BPE, GPT-2 split regex, pre "gpt-2", add_eos
  Tests/FlywheelTokenizerTests/Fixtures/llama3.json   byte-level BPE, Llama-3 regex, pre "llama-bpe", ignore_merges, add_bos
  Tests/FlywheelTokenizerTests/Fixtures/qwen2.json    byte-level BPE, Qwen2 regex, pre "qwen2"
  Tests/FlywheelTokenizerTests/Fixtures/smollm.json   byte-level BPE, digits isolated then GPT-2 regex, pre "smollm"
  Tests/FlywheelTokenizerTests/Fixtures/tekken.json   byte-level BPE, Tekken (case-aware) regex, pre "tekken", add_bos
  Tests/FlywheelTokenizerTests/Fixtures/spm.json      SentencePiece BPE, byte_fallback, model "llama"
  Tests/FlywheelEngineTests/Fixtures/tokenizer-gpt2.gguf  the qwen2 vocabulary as GGUF metadata + one tiny tensor
  Tests/FlywheelEngineTests/Fixtures/tokenizer-gpt2.expected.json  what reading it back must give
Each JSON holds the vocabulary as GGUF would carry it (tokens, token_type, scores, merges, special ids,
flags) and `cases`: text, parse_special, add_special, the reference ids and the reference decode
(`decoded`, `decoded_skip_special`; absent when equal to the text).
Byte-level fixtures also hold `splits`: the reference pre-tokenizer's words for each case text.
Usage: python3 scripts/engine/make_tokenizer_fixtures.py
"""
import io
import json
import random
import os

import numpy as np
import sentencepiece as spm
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
OUT = os.path.join(ROOT, "Tests", "FlywheelTokenizerTests", "Fixtures")
ENGINE_OUT = os.path.join(ROOT, "Tests", "FlywheelEngineTests", "Fixtures")

# Split regexes exactly as the models' tokenizer.json files carry them.
GPT2_REGEX = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
LLAMA3_REGEX = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
                r"""|\s*[\r\n]+|\s+(?!\S)|\s+""")
TEKKEN_REGEX = (r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"""
                r"""|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}"""
                r"""| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+""")
QWEN2_REGEX = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
               r"""|\s*[\r\n]+|\s+(?!\S)|\s+""")

CORPUS = [
    "The quick brown fox jumps over the lazy dog. It's a dog's life, isn't it? We're here, they've gone.",
    "I'll say it once: you'd better come. I'm sure THEY'RE READY and WE'VE WON. Don't stop!",
    "In 2024 the population was 8,100,000,000 people; in 1999 it was 6,000,000,000. Call 555-0123.",
    "Prices: $3.99, €12.50, £7 — 50% off! Version 3.14.159 released on 2023-10-05 at 12:30:45.",
    "Le café est très bon. Où est la bibliothèque? Ça coûte cher, mais c'est délicieux à Noël.",
    "Der Bär läuft über die Straße. Grüße aus München! Fußgänger müssen hier warten.",
    "El niño comió piña y jalapeño. ¿Dónde está el baño? ¡Qué día tan bonito!",
    "Привет, как дела? Москва — столица России. Я люблю читать книги.",
    "Καλημέρα! Η Αθήνα είναι η πρωτεύουσα της Ελλάδας.",
    "我爱自然语言处理。今天天气很好，我们去公园散步吧！北京是中国的首都。",
    "日本語のテキストです。東京は大きな都市です。ありがとうございます。",
    "안녕하세요. 한국어를 공부하고 있어요. 서울은 아름다워요.",
    "مرحبا بالعالم. اللغة العربية جميلة.",
    "Emoji time 😀🎉👍🏽 and hearts ❤️💙 plus a family 👨‍👩‍👧.",
    "def main():\n    for i in range(10):\n        print(f\"value {i}\")\n\treturn None\n",
    "if (x != y && z >= 0) { return a[i] + b[j]; } // comment\n/* block */",
    "Line one\nLine two\r\nLine three\n\n\nAfter blanks   with   spaces    and\ttabs\t\there.",
    "Numbers 1 12 123 1234 12345 123456 and 3.14 and 1e10 and 0x1F.",
    "<|im_start|>user\nHello there!<|im_end|>\n<|im_start|>assistant\nHi! How can I help?<|im_end|>",
    "Use the <tool> tag to call a tool: <tool>search</tool> for results.",
]

CASES = [
    ("Hello world", False),
    ("The quick brown fox jumps over the lazy dog.", False),
    ("It's Bob's; they're here, we've won, I'm sure, you'd say, we'll go. DON'T SHOUT, It'S odd", False),
    ("café naïve façade Ünïcödé crème brûlée", False),
    ("我爱自然语言处理。日本語のテキスト、안녕하세요", False),
    ("emoji 😀🎉 👍🏽 ❤️ 👨‍👩‍👧 end", False),
    ("digits 1 12 123 1234 12345 1234567 3.14159 2024-10-05", False),
    ("multiple   spaces    here  and a trailing space ", False),
    ("   leading spaces", False),
    ("new\nlines\r\nand\ttabs\t\tand \n mixed \n\n\n end", False),
    ("code: def f(x):\n    return x**2  # square\n", False),
    ("punctuation!!! ??? ... ,,, ;;; --- ((()))", False),
    ("zß xyz QWERTY unknownwordsareunknown", False),
    ("Привет мир! Καλημέρα κόσμε!", False),
    ("", False),
    (" ", False),
    ("\n", False),
    ("a", False),
    ("<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n", True),
    ("<|im_start|>user\nHi there<|im_end|>\n", False),
    ("text with <tool> inside and <|endoftext|> too", True),
    ("text with <tool> inside and <|endoftext|> too", False),
    ("<|im_end|><|im_end|>x<|endoftext|>", True),
]


def compact_case(text, parse_special, add_special, ids, decoded, decoded_skip_special):
    """A case; the decoded texts are left out when they equal `text` (the Swift loader defaults them)."""
    case = {"text": text, "parse_special": parse_special, "add_special": add_special, "ids": ids}
    if decoded != text:
        case["decoded"] = decoded
    if decoded_skip_special != text:
        case["decoded_skip_special"] = decoded_skip_special
    return case


def fuzz_cases(count=60, seed=1234):
    """Deterministic random strings over characters that stress the split rules: whitespace of every
    kind, newlines, apostrophes and contraction letters in both cases, digits of several scripts,
    combining marks, joiners, symbols, CJK and emoji."""
    rng = random.Random(seed)
    pool = (list(" \t\n\r\u000b\u000c\u00a0\u3000\u2028\u0085\u200b") + list("'''sStTdDmMlLrReEvV")
            + list("abcXYZ0123456789\u0663\u096b\u00bd\u00b2\u216b") + list(".,;:!?-_()[]{}<>|/\\\"#$%&*+=@^`~")
            + list("éüñçßøжЖλΩ中文字日本한국ء") + ["\u0301", "\u200d", "😀", "👍🏽", "❤️", "€", "™", "—"])
    words = ["hello", "World", "it's", "WE'LL", "don't", "12345", "3.14", "café", "   ", "\n\n", "\r\n"]
    cases = []
    for _ in range(count):
        parts = []
        for _ in range(rng.randint(1, 12)):
            parts.append(rng.choice(words) if rng.random() < 0.3 else rng.choice(pool))
        cases.append(("".join(parts), False))
    return cases


BASE_TEXTS = {text for text, _ in CASES}
CASES += fuzz_cases()


def train_byte_level(pattern, *, digits_first=False, ignore_merges=False, vocab_size=900, specials, user_defined):
    tok = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    steps = []
    if digits_first:
        steps.append(pre_tokenizers.Digits(individual_digits=True))
    steps.append(pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False))
    steps.append(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence(steps)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 3, trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in user_defined])
    return tok


def byte_level_fixture(name, pre, tok, *, specials, user_defined, bos=None, eos=None, eot=None,
                       add_bos=False, add_eos=False):
    vocab = tok.get_vocab(with_added_tokens=True)
    size = len(vocab)
    tokens = [None] * size
    for text, i in vocab.items():
        tokens[i] = text
    assert all(t is not None for t in tokens)
    types = [1] * size
    for t in specials:
        types[vocab[t]] = 3
    for t in user_defined:
        types[vocab[t]] = 4
    model = json.loads(tok.to_str())["model"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]

    def ref_id(t):
        return None if t is None else vocab[t]

    template_single = "$A"
    proc_specials = []
    if add_bos:
        template_single = f"{bos} " + template_single
        proc_specials.append((bos, vocab[bos]))
    if add_eos:
        template_single = template_single + f" {eos}"
        proc_specials.append((eos, vocab[eos]))
    if proc_specials:
        tok.post_processor = processors.TemplateProcessing(single=template_single, special_tokens=proc_specials)

    cases = []
    for text, parse_special in CASES:
        tok.encode_special_tokens = not parse_special
        # With and without BOS/EOS for the hand-written texts; the fuzz texts only without.
        for add_special in ([False, True] if proc_specials and text in BASE_TEXTS else [False]):
            ids = tok.encode(text, add_special_tokens=add_special).ids
            cases.append(compact_case(text, parse_special, add_special, ids,
                                      tok.decode(ids, skip_special_tokens=False),
                                      tok.decode(ids, skip_special_tokens=True)))
    tok.encode_special_tokens = False

    # The pre-tokenizer's words (before byte-level mapping) for the special-free texts.
    plain = pre_tokenizers.Sequence([s for s in [
        pre_tokenizers.Digits(individual_digits=True) if pre == "smollm" else None,
        pre_tokenizers.Split(Regex({"gpt-2": GPT2_REGEX, "smollm": GPT2_REGEX, "llama-bpe": LLAMA3_REGEX,
                                    "qwen2": QWEN2_REGEX, "tekken": TEKKEN_REGEX}[pre]),
                             behavior="isolated", invert=False),
    ] if s is not None])
    splits = [{"text": text, "words": [w for w, _ in plain.pre_tokenize_str(text)]}
              for text, _ in CASES + [(c, False) for c in CORPUS]]

    return {
        "name": name, "model": "gpt2", "pre": pre,
        "tokens": tokens, "token_type": types, "scores": None, "merges": merges,
        "bos_token_id": ref_id(bos), "eos_token_id": ref_id(eos), "eot_token_id": ref_id(eot),
        "add_bos_token": add_bos, "add_eos_token": add_eos, "add_space_prefix": False,
        "cases": cases, "splits": splits,
    }


def sentencepiece_fixture():
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS * 3), model_writer=buf, model_type="bpe", vocab_size=700,
        byte_fallback=True, character_coverage=0.995, normalization_rule_name="identity",
        remove_extra_whitespaces=False, add_dummy_prefix=True, split_digits=True,
        allow_whitespace_only_pieces=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        hard_vocab_limit=False, minloglevel=2)
    sp = spm.SentencePieceProcessor(model_proto=buf.getvalue())
    size = sp.get_piece_size()
    tokens, scores, types = [], [], []
    for i in range(size):
        tokens.append(sp.id_to_piece(i))
        scores.append(float(np.float32(sp.get_score(i))))
        if sp.is_unknown(i):
            types.append(2)
        elif sp.is_control(i):
            types.append(3)
        elif sp.is_byte(i):
            types.append(6)
        elif sp.is_unused(i):
            types.append(5)
        else:
            types.append(1)
    cases = []
    for text, parse_special in CASES:
        if "<" in text:  # SentencePiece has no special-token parsing of text; those cases are tested by hand
            continue
        for add_special in (False, True):
            ids = sp.encode(text, add_bos=add_special)
            cases.append(compact_case(text, False, add_special, ids, sp.decode(ids), sp.decode(ids)))
    return {
        "name": "spm", "model": "llama", "pre": None,
        "tokens": tokens, "token_type": types, "scores": scores, "merges": None,
        "bos_token_id": 1, "eos_token_id": 2, "eot_token_id": None, "unknown_token_id": 0,
        "add_bos_token": True, "add_eos_token": False, "add_space_prefix": True,
        "cases": cases, "splits": [],
    }


def write_json(fixture):
    path = os.path.join(OUT, fixture["name"] + ".json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(fixture, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {path} ({os.path.getsize(path)} bytes, {len(fixture['tokens'])} tokens, "
          f"{len(fixture['cases'])} cases)")


def write_gguf(fixture, path):
    import gguf
    w = gguf.GGUFWriter(path, "qwen2")
    w.add_name("flywheel-tokenizer-fixture")
    w.add_tokenizer_model(fixture["model"])
    w.add_tokenizer_pre(fixture["pre"])
    w.add_token_list(fixture["tokens"])
    w.add_token_types(fixture["token_type"])
    w.add_token_merges(fixture["merges"])
    w.add_bos_token_id(fixture["bos_token_id"])
    w.add_eos_token_id(fixture["eos_token_id"])
    if fixture["eot_token_id"] is not None:
        w.add_eot_token_id(fixture["eot_token_id"])
    w.add_pad_token_id(fixture["bos_token_id"])
    w.add_add_bos_token(False)
    w.add_add_eos_token(False)
    w.add_tensor("token_embd.weight", np.arange(8, dtype=np.float32).reshape(2, 4))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")

    # What the Swift test must read back, and reference ids for a few strings (from HF tokenizers).
    tokens = fixture["tokens"]
    expected = {
        "token_count": len(tokens), "merge_count": len(fixture["merges"]),
        "first_tokens": tokens[:8], "last_token": tokens[-1], "first_merges": fixture["merges"][:4],
        "bos_token_id": fixture["bos_token_id"], "eos_token_id": fixture["eos_token_id"],
        "control_token_ids": [i for i, t in enumerate(fixture["token_type"]) if t == 3],
        "cases": [{"text": c["text"], "parse_special": c["parse_special"], "ids": c["ids"]}
                  for c in fixture["cases"] if c["text"] and not c["add_special"]][::4],
    }
    expected_path = os.path.splitext(path)[0] + ".expected.json"
    with open(expected_path, "w", encoding="utf-8") as f:
        json.dump(expected, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {expected_path}")


def main():
    os.makedirs(OUT, exist_ok=True)
    chat_specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    user_defined = ["<tool>"]

    gpt2 = train_byte_level(GPT2_REGEX, specials=chat_specials, user_defined=user_defined)
    write_json(byte_level_fixture("gpt2", "gpt-2", gpt2, specials=chat_specials, user_defined=user_defined,
                                  bos="<|endoftext|>", eos="<|endoftext|>", add_eos=True))

    llama_specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"] + chat_specials
    llama3 = train_byte_level(LLAMA3_REGEX, ignore_merges=True, specials=llama_specials, user_defined=user_defined)
    write_json(byte_level_fixture("llama3", "llama-bpe", llama3, specials=llama_specials,
                                  user_defined=user_defined, bos="<|begin_of_text|>", eos="<|end_of_text|>",
                                  eot="<|eot_id|>", add_bos=True))

    qwen2 = train_byte_level(QWEN2_REGEX, specials=chat_specials, user_defined=user_defined)
    qwen_fixture = byte_level_fixture("qwen2", "qwen2", qwen2, specials=chat_specials, user_defined=user_defined,
                                      bos="<|endoftext|>", eos="<|im_end|>")
    write_json(qwen_fixture)

    smollm = train_byte_level(GPT2_REGEX, digits_first=True, specials=chat_specials, user_defined=user_defined)
    write_json(byte_level_fixture("smollm", "smollm", smollm, specials=chat_specials, user_defined=user_defined,
                                  bos="<|im_start|>", eos="<|im_end|>"))

    tekken_specials = ["<unk>", "<s>", "</s>", "[INST]", "[/INST]", "<|im_end|>"]
    tekken = train_byte_level(TEKKEN_REGEX, ignore_merges=True, specials=tekken_specials, user_defined=user_defined)
    write_json(byte_level_fixture("tekken", "tekken", tekken, specials=tekken_specials, user_defined=user_defined,
                                  bos="<s>", eos="</s>", add_bos=True))

    write_json(sentencepiece_fixture())

    os.makedirs(ENGINE_OUT, exist_ok=True)
    write_gguf(qwen_fixture, os.path.join(ENGINE_OUT, "tokenizer-gpt2.gguf"))


if __name__ == "__main__":
    main()
