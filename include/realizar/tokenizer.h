// Tokenizers of GGUF models: byte-level BPE (`tokenizer.ggml.model = gpt2`, GPT-2/Qwen2/LLaMA-3
// style) and SentencePiece BPE (`tokenizer.ggml.model = llama`, LLaMA-2 style), built from the
// `tokenizer.ggml.*` metadata held in a TokenizerSpec. Algorithms and test method: docs/tokenizer.md.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace realizar {

// Values of `tokenizer.ggml.token_type` (llama.cpp's llama_token_type / gguf-py TokenType).
enum class TokenType : int32_t {
  normal = 1,
  unknown = 2,
  control = 3,       // special tokens (<|im_start|>, <s>): matched in input only when asked
  user_defined = 4,  // added tokens (<think>): always matched as a whole in input
  unused = 5,        // padding entries such as [PAD151700]
  byte = 6,          // SentencePiece byte fallback <0xNN>
};

// The GGUF tokenizer metadata, one field per key (`tokenizer.ggml.<field>`, or
// `tokenizer.chat_template`). Optional fields are the keys a GGUF may omit.
struct TokenizerSpec {
  std::string model;                       // tokenizer.ggml.model: "gpt2" or "llama"
  std::string pre;                         // tokenizer.ggml.pre: "qwen2", "llama-bpe", ...
  std::vector<std::string> tokens;         // tokenizer.ggml.tokens, indexed by token id
  std::vector<float> scores;               // tokenizer.ggml.scores (llama: merge priority)
  std::vector<int32_t> token_type;         // tokenizer.ggml.token_type (TokenType values)
  std::vector<std::string> merges;         // tokenizer.ggml.merges, "left right" by rank (gpt2)
  std::optional<int32_t> bos_token_id;     // tokenizer.ggml.bos_token_id
  std::optional<int32_t> eos_token_id;     // tokenizer.ggml.eos_token_id
  std::optional<int32_t> eot_token_id;     // tokenizer.ggml.eot_token_id
  std::optional<int32_t> unknown_token_id; // tokenizer.ggml.unknown_token_id
  std::optional<int32_t> padding_token_id; // tokenizer.ggml.padding_token_id
  std::optional<bool> add_bos_token;       // tokenizer.ggml.add_bos_token
  std::optional<bool> add_eos_token;       // tokenizer.ggml.add_eos_token
  std::optional<bool> add_space_prefix;    // tokenizer.ggml.add_space_prefix
  std::optional<std::string> chat_template;  // tokenizer.chat_template (Jinja source)
};

// Converts a Hugging Face tokenizer.json (and optionally tokenizer_config.json, for bos/eos/pad,
// add_bos/add_eos and the chat template) to GGUF tokenizer metadata, the way llama.cpp's
// convert_hf_to_gguf.py does: byte-level BPE → "gpt2" with `pre` named after the pre-tokenizer
// regex; BPE with byte_fallback over "▁" pieces → "llama" with scores = −(rank of the merge that
// forms the token). Added tokens become control (special) or user_defined; ids missing from the
// vocabulary become "[PAD<id>]" unused entries. Throws realizar::Error on unreadable files, an
// unsupported model type or an unknown pre-tokenizer (message names the file and the item).
TokenizerSpec load_hf_tokenizer(const std::filesystem::path& tokenizer_json,
                                const std::optional<std::filesystem::path>& tokenizer_config_json);

// Appends "[PAD<id>]" tokens of type unused (score −1000 where scores exist) until the vocabulary
// holds `vocab_size` entries, as HF→GGUF converters do when the embedding matrix is larger than the
// tokenizer. Throws if the spec already holds more than `vocab_size` tokens.
void pad_vocab(TokenizerSpec& spec, size_t vocab_size);

// Encoder/decoder over one TokenizerSpec. Immutable after construction; encode/decode are const
// and safe to call from several threads.
class Tokenizer {
 public:
  // Validates the spec (sizes agree, ids in range, merges name known tokens, pre is supported) and
  // builds the lookup tables. Throws realizar::Error naming the first inconsistency.
  explicit Tokenizer(TokenizerSpec spec);
  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;

  // UTF-8 text → token ids. `add_special` adds BOS when the spec asks for it
  // (add_bos_token; default true for "llama", false for "gpt2"), likewise EOS with add_eos_token.
  // `parse_special`: control tokens written in the text (e.g. "<|im_start|>") become their ids;
  // when false they are tokenized as plain text, so user text cannot inject control tokens.
  // User-defined tokens are always matched. Invalid UTF-8 bytes are encoded as bytes.
  std::vector<int32_t> encode(std::string_view text, bool add_special, bool parse_special) const;

  // A byte range [begin, end) of a text.
  struct TextRange {
    size_t begin;
    size_t end;
  };
  // encode(text, add_special, parse_special = true), except that no control token is matched
  // where it would overlap one of `plain` (sorted, disjoint): the parts of a rendered chat
  // prompt that hold what users wrote stay text there (user-defined tokens still match).
  std::vector<int32_t> encode_with_plain_ranges(std::string_view text, bool add_special,
                                                std::span<const TextRange> plain) const;

  // Token ids → UTF-8 text; control tokens render as their text. Byte sequences that are not
  // valid UTF-8 become U+FFFD (one per maximal invalid subpart, like Python's errors="replace").
  // Throws on an id outside [0, vocab_size).
  std::string decode(std::span<const int32_t> ids) const;

  // The raw bytes one token stands for (byte-level mapping undone, "▁" → " ", <0xNN> → byte);
  // may be an incomplete UTF-8 sequence.
  std::string token_piece(int32_t id) const;
  // The token's text as stored in the vocabulary.
  const std::string& token_text(int32_t id) const;
  TokenType token_type(int32_t id) const;
  // The id of a vocabulary entry, if present.
  std::optional<int32_t> find_token(std::string_view text) const;

  // End of generation: EOS, EOT, and control tokens that end a turn (<|im_end|>, <|eot_id|>,
  // <|endoftext|>, <|EOT|>, <end_of_turn>, <|end|>), as llama.cpp's vocabulary loader decides.
  bool is_eog(int32_t id) const;
  std::optional<int32_t> bos() const;
  std::optional<int32_t> eos() const;
  std::optional<int32_t> eot() const;
  std::optional<int32_t> pad() const;
  size_t vocab_size() const;
  const TokenizerSpec& spec() const;
  // Whether decoding drops one leading space: SentencePiece models that add a space prefix when
  // encoding (HF's Strip decoder).
  bool strips_leading_space() const;

 private:
  std::vector<int32_t> encode_segments(std::string_view text, bool add_special, bool parse_special,
                                       std::span<const TextRange> plain) const;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Incremental detokenizer for streaming output: feed one token at a time and get back only text
// that ends on a complete UTF-8 character; bytes of a character split across tokens are held until
// it is complete. The concatenation of all feed() results and finish() equals Tokenizer::decode of
// the same ids.
class StreamingDecoder {
 public:
  explicit StreamingDecoder(const Tokenizer& tokenizer);
  // Returns the newly completed text (possibly empty).
  std::string feed(int32_t id);
  // Flushes held bytes that never completed a character, as U+FFFD; resets the decoder.
  std::string finish();

 private:
  const Tokenizer* tokenizer_;
  std::string pending_;
  bool first_ = true;
};

}  // namespace realizar
