#!/usr/bin/env python3
"""Reference data for realizar's tokenizer tests, produced with Hugging Face `tokenizers` and
`transformers` (chat templates).

  make_tokenizer_golden.py golden            writes tests/data/tokenizer/{corpus,golden_*,chat_*}.json
  make_tokenizer_golden.py random N SEED OUT writes N generated strings and their HF ids to OUT
                                             (the differential test calls this at run time)

Ids are encode(text, add_special_tokens=False) with special tokens recognised ("ids") and with
them treated as text ("ids_plain", encode_special_tokens=True); "decoded" is
decode(ids, skip_special_tokens=False). Pre-tokenizer variants re-use the Qwen2 vocabulary with
the pre_tokenizer of another family swapped in, so every supported `tokenizer.ggml.pre` is checked.
"""
import json
import random
import sys
import unicodedata
from pathlib import Path

from tokenizers import Tokenizer

ROOT = Path(__file__).resolve().parents[2]
TOKENIZERS = ROOT / "tests/data/tokenizers"
OUT = ROOT / "tests/data/tokenizer"

GPT2_REGEX = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
LLAMA3_REGEX = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""


def split(regex):
    return {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False}


BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}
# pre_tokenizer sections of each family's tokenizer.json (gpt2, Meta-Llama-3, SmolLM2, deepseek-coder).
PRE_VARIANTS = {
    "gpt2": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
    "llama-bpe": {"type": "Sequence", "pretokenizers": [split(LLAMA3_REGEX), BYTE_LEVEL]},
    "smollm": {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]},
    "deepseek-coder": {"type": "Sequence", "pretokenizers": [
        split(r"[\r\n]"), split(r"\s?\p{L}+"), split(r"\s?\p{P}+"), split("[一-龥ࠀ-一가-퟿]+"),
        {"type": "Digits", "individual_digits": True}, BYTE_LEVEL]},
}

CORPUS = [
    "", " ", "  ", "\n", "\n\n\n", "\t\t", " \n \n", "Hello", "Hello world", " Hello world",
    "Hello, world! How are you today?", "I'm can't won't they're we've he'd you'll I'M IT'S",
    "The year 2024 had 366 days; 3.14159 and 1,000,000 and 12345678901234567890.",
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "#include <stdio.h>\nint main(void) {\n\tprintf(\"%d\\n\", 42);\n\treturn 0;\n}\n",
    "fn main() { let v: Vec<u8> = vec![1, 2, 3]; println!(\"{:?}\", v); }",
    "const f = async (x) => { await fetch(`/api/${x}`); }; // arrow",
    "SELECT name, COUNT(*) FROM users WHERE age >= 18 GROUP BY name;",
    "<html><body><div class=\"a\">text</div></body></html>",
    "{\"key\": [1, 2.5, null, true], \"nested\": {\"x\": \"y\"}}",
    "    indented with four spaces\n        and eight",
    "trailing spaces   ", "   leading spaces", "mixed \t tabs \t and spaces",
    "line1\r\nline2\r\nline3", "a\n\nb\n\n\nc", "x  y   z    w",
    "Привет, мир! Как дела?", "Γειά σου Κόσμε", "مرحبا بالعالم", "שלום עולם",
    "你好，世界！今天天气很好。", "こんにちは世界、カタカナとひらがな", "안녕하세요 세계",
    "नमस्ते दुनिया", "สวัสดีชาวโลก", "Tiếng Việt có dấu", "Ünïcödé çàfé naïve résumé",
    "Emoji: 😀😃😄 👍🏽 👨‍👩‍👧‍👦 🇫🇷 ❤️", "Math: ∑ ∫ √ ∞ ≠ ≤ ≥ π ∂", "Symbols: © ® ™ § ¶ † ‡ • …",
    "Combining: e\u0301 a\u0308 o\u0302 (decomposed)", "Zero\u200bwidth\u200bspace and nbsp\u00a0here",
    "Fullwidth ＡＢＣ１２３", "Ligature ﬁ ﬂ and ℌ𝔢𝔩𝔩𝔬", "𝕄𝕒𝕥𝕙 𝔹𝕠𝕝𝕕", "\u0085next line\u2028line sep",
    "<|im_start|>user\nHi<|im_end|>", "<|endoftext|>", "text<|im_end|>more", "<|im_start|",
    "<think>reasoning</think>answer", "<s>[INST] hi [/INST]</s>", "<unk> <s> </s>", "<0x41>",
    "<|fake_token|> <|im_start |>", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "----------========__________**********", "!!!???...,,,;;;:::", "'''\"\"\"```",
    "https://example.com/path?query=1&b=2#frag", "user@example.com", "C:\\Users\\name\\file.txt",
    "snake_case camelCase PascalCase kebab-case SCREAMING_CASE", "x=1;y=2;z=x+y*3/4-5%6",
    "0x1F 0b1010 1e-9 -42 +7 3.0e8", "MMXXIV 1st 2nd 3rd 4th", "٠١٢٣٤٥٦٧٨٩ ०१२३ ①②③",
    "A" * 3 + " " * 7 + "B", " " * 40 + "x", "\n" * 5 + "end", "word " * 20,
    "The quick brown fox jumps over the lazy dog. " * 3,
]

CHAT_CONVERSATIONS = {
    "single_user": [{"role": "user", "content": "Hello!"}],
    "system_user": [{"role": "system", "content": "You are a helpful assistant."},
                    {"role": "user", "content": "What is 2+2?"}],
    "multi_turn": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                   {"role": "assistant", "content": "Hello! How can I help?"},
                   {"role": "user", "content": "  Tell me a joke.  "}],
    "no_system_multi": [{"role": "user", "content": "Write code"}, {"role": "assistant", "content": "print('hi')\n"},
                        {"role": "user", "content": "Thanks 👍"}],
    "ends_with_assistant": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}],
    "thinking": [{"role": "user", "content": "2+2?"},
                 {"role": "assistant", "content": "<think>\nadd them\n</think>\n\n4"},
                 {"role": "user", "content": "and 3+3?"}],
    "tool_results": [{"role": "user", "content": "Weather?"}, {"role": "assistant", "content": "Checking."},
                     {"role": "tool", "content": "{\"temp\": 20}"}, {"role": "tool", "content": "{\"rain\": false}"},
                     {"role": "user", "content": "Thanks"}],
}


def load_hf(name, pre=None):
    spec = json.loads((TOKENIZERS / name / "tokenizer.json").read_text(encoding="utf-8"))
    if pre is not None:
        spec["pre_tokenizer"] = PRE_VARIANTS[pre]
        spec["normalizer"] = None  # only Qwen2 normalizes (NFC)
    return Tokenizer.from_str(json.dumps(spec))


def encode_all(tok, texts):
    plain = Tokenizer.from_str(tok.to_str())
    plain.encode_special_tokens = True
    rows = []
    for text in texts:
        ids = tok.encode(text, add_special_tokens=False).ids
        rows.append({"ids": ids, "ids_plain": plain.encode(text, add_special_tokens=False).ids,
                     "decoded": tok.decode(ids, skip_special_tokens=False)})
    return rows


def write_json(path, data):
    path.write_text(json.dumps(data, ensure_ascii=True, indent=0) + "\n", encoding="utf-8")


def chat_templates():
    """Real chat templates of the supported families (tests/data/tokenizer/chat_templates.json)."""
    return json.loads((OUT / "chat_templates.json").read_text(encoding="utf-8"))


def render_chat_goldens():
    from transformers.utils.chat_template_utils import render_jinja_template
    renders = []
    for name, entry in chat_templates().items():
        for conv_name, messages in CHAT_CONVERSATIONS.items():
            for add_generation_prompt in (False, True):
                try:
                    rendered, _ = render_jinja_template(
                        conversations=[messages], chat_template=entry["template"],
                        add_generation_prompt=add_generation_prompt,
                        bos_token=entry["bos_token"], eos_token=entry["eos_token"])
                except Exception as error:  # template refuses this conversation (e.g. roles)
                    rendered = [None]
                    print(f"{name}/{conv_name}: {error}", file=sys.stderr)
                renders.append({"template": name, "conversation": conv_name,
                                "add_generation_prompt": add_generation_prompt, "render": rendered[0]})
    write_json(OUT / "chat_golden.json", {"conversations": CHAT_CONVERSATIONS, "renders": renders})


def golden():
    write_json(OUT / "corpus.json", CORPUS)
    for name in ("qwen2", "llama2"):
        write_json(OUT / f"golden_{name}.json", encode_all(load_hf(name), CORPUS))
    for pre in PRE_VARIANTS:
        write_json(OUT / f"golden_pre_{pre}.json", encode_all(load_hf("qwen2", pre), CORPUS))
    render_chat_goldens()


ALPHABETS = [
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789", " \t\n\r", " ",
    "'\"`~!@#$%^&*()-_=+[]{}|;:,.<>/?\\", "éèêëàâäôöûüçñßøåæœ", "абвгдежзийклмнопрстуфхцчшщъыьэюя",
    "αβγδεζηθικλμνξοπρστυφχψω", "你好世界中文字符测试数据", "こんにちはカタカナ", "한국어텍스트",
    "مرحبا", "😀👍🏽❤️🇫🇷\u200d", "\u0301\u0308\u00a0\u2028\u0085\u200b", "ｆｕｌｌ１２３", "١٢٣०१२",
]
FRAGMENTS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>", "<s>", "</s>", "<unk>",
             "<|", "|>", "'s", "'T", "'ll", "def ", "return ", "    ", "\n\n", "::", "->", "0x", "<0x0A>"]


def random_assigned_char(rng):
    """A random code point assigned in Unicode 14 (PCRE2 10.42's tables, Python 3.11's unicodedata):
    characters assigned later have no \\p{L}/\\p{N} class in our regex engine yet (see docs)."""
    while True:
        c = chr(rng.randint(0x20, 0x2FFFF))
        if unicodedata.category(c) not in ("Cn", "Cs"):
            return c


def random_text(rng):
    parts = []
    for _ in range(rng.randint(1, 12)):
        kind = rng.random()
        if kind < 0.15:
            parts.append(rng.choice(FRAGMENTS))
        elif kind < 0.25:
            parts.append("".join(random_assigned_char(rng) for _ in range(rng.randint(1, 6))))
        else:
            alphabet = rng.choice(ALPHABETS)
            parts.append("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 10))))
    text = "".join(parts)
    return "".join(c for c in text if not 0xD800 <= ord(c) <= 0xDFFF)


def random_cases(count, seed, out_path):
    rng = random.Random(seed)
    texts = [random_text(rng) for _ in range(count)]
    result = {"texts": texts, "qwen2": [], "llama2": []}
    for name in ("qwen2", "llama2"):
        tok = load_hf(name)
        plain = load_hf(name)
        plain.encode_special_tokens = True
        for text in texts:
            result[name].append({"ids": tok.encode(text, add_special_tokens=False).ids,
                                 "ids_plain": plain.encode(text, add_special_tokens=False).ids})
    for pre in PRE_VARIANTS:
        tok = load_hf("qwen2", pre)
        result["pre_" + pre] = [tok.encode(text, add_special_tokens=False).ids for text in texts]
    Path(out_path).write_text(json.dumps(result, ensure_ascii=True), encoding="utf-8")


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "golden":
        golden()
    elif len(sys.argv) == 5 and sys.argv[1] == "random":
        random_cases(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
    else:
        sys.exit(__doc__)
