// Tokenizer: special-token splitting, byte-level BPE (GPT-2 family) and SentencePiece BPE
// (LLaMA family) encoding, decoding. See docs/tokenizer.md for the algorithms.
#include <realizar/error.h>
#include <realizar/tokenizer.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <queue>
#include <unordered_map>
#include <variant>

#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/unicode.h"

namespace realizar {

using namespace tokenizer_detail;

namespace {

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using TokenIndex = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

constexpr std::string_view kSentencePieceSpace = "\xE2\x96\x81";  // U+2581 "▁"

// Control tokens that end a turn in the families we support (llama.cpp's EOT/EOG detection).
constexpr std::array<std::string_view, 8> kEndOfTurnTexts = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|EOT|>", "<EOT>", "<|eom_id|>", "<|endoftext|>"};

// A run of the input: plain text to tokenize, or a token matched literally.
using Segment = std::variant<std::string_view, int32_t>;

// One symbol of a word during BPE: a byte range of the word, the token it currently is (or -1)
// and its neighbours in the doubly linked list of live symbols.
struct Symbol {
  uint32_t start, length;
  int32_t id;
  int32_t prev, next;
};

// A possible merge of two adjacent symbols; `cost` orders merges (lower first), ties go to the
// leftmost pair. Stale entries (a side changed since) are skipped when popped.
struct Candidate {
  double cost;
  int32_t left, right;
  uint32_t left_length, right_length;
  int32_t merged;
  bool operator>(const Candidate& other) const {
    return cost != other.cost ? cost > other.cost : left > other.left;
  }
};

// Merges adjacent symbols by priority until no pair can merge: O(n log n) in the word length,
// since each merge removes one symbol and pushes at most two candidates. `find_merge(a, b)`
// returns {cost, merged id} or nullopt.
template <typename FindMerge>
void merge_symbols(std::vector<Symbol>& symbols, const FindMerge& find_merge) {
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
  auto push = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    if (auto merge = find_merge(symbols[left], symbols[right])) {
      queue.push({merge->first, left, right, symbols[left].length, symbols[right].length, merge->second});
    }
  };
  for (size_t i = 0; i + 1 < symbols.size(); ++i) push(static_cast<int32_t>(i), static_cast<int32_t>(i + 1));
  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.left];
    Symbol& right = symbols[top.right];
    if (left.length != top.left_length || right.length != top.right_length || left.next != top.right) continue;
    left.length += right.length;
    left.id = top.merged;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = top.left;
    right.length = 0;  // dead: no candidate can match its recorded length again
    push(left.prev, top.left);
    push(top.left, left.next);
  }
}

uint64_t pair_key(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

// "<0x41>" → 0x41, or -1.
int byte_token_value(std::string_view text) {
  if (text.size() != 6 || !text.starts_with("<0x") || text.back() != '>') return -1;
  int value = 0;
  const auto result = std::from_chars(text.data() + 3, text.data() + 5, value, 16);
  return result.ec == std::errc() && result.ptr == text.data() + 5 ? value : -1;
}

}  // namespace

struct Tokenizer::Impl {
  TokenizerSpec spec;
  bool byte_level = false;  // model "gpt2"; otherwise "llama" (SentencePiece BPE)
  bool add_bos = false, add_eos = false, add_space_prefix = false, normalize_nfc = false;
  TokenIndex ids;
  std::unique_ptr<PreTokenizer> pre_tokenizer;
  struct Merge {
    int32_t rank, merged;
  };
  std::unordered_map<uint64_t, Merge> merges;  // byte-level: (left id, right id) → merge
  std::array<int32_t, 256> byte_tokens{};      // byte → its token (byte-level char or <0xNN>), -1 if none
  std::vector<std::string> pieces;             // id → bytes it decodes to
  std::vector<bool> end_of_generation;
  std::optional<int32_t> eot;
  // Tokens matched literally in the input, grouped by first byte, longest first.
  std::array<std::vector<int32_t>, 256> literal_tokens_by_first_byte;

  TokenType type(int32_t id) const {
    return spec.token_type.empty() ? TokenType::normal : static_cast<TokenType>(spec.token_type[id]);
  }
  void check_id(int32_t id, std::string_view what) const {
    if (id < 0 || static_cast<size_t>(id) >= spec.tokens.size())
      fail("{} {} is outside the vocabulary of {} tokens", what, id, spec.tokens.size());
  }

  void validate();
  void build_byte_level();
  void build_sentencepiece();
  void build_pieces();
  void build_literal_tokens();
  void build_end_of_generation();

  std::vector<Segment> split_literal_tokens(std::string_view text, bool parse_special,
                                            std::span<const Tokenizer::TextRange> plain = {}) const;
  void encode_byte_level(std::string_view text, std::vector<int32_t>& out) const;
  void encode_byte_level_word(std::string_view word, std::vector<int32_t>& out) const;
  int32_t require_byte_token(char byte) const;  // its byte-level token, or unk, or an error
  void encode_sentencepiece(std::string_view text, bool prefix_space, std::vector<int32_t>& out) const;
};

void Tokenizer::Impl::validate() {
  const size_t n = spec.tokens.size();
  if (n == 0) fail("tokenizer.ggml.tokens is empty");
  if (!spec.token_type.empty() && spec.token_type.size() != n)
    fail("tokenizer.ggml.token_type has {} entries for {} tokens", spec.token_type.size(), n);
  if (!spec.scores.empty() && spec.scores.size() != n)
    fail("tokenizer.ggml.scores has {} entries for {} tokens", spec.scores.size(), n);
  for (int32_t t : spec.token_type) {
    if (t < 1 || t > 6) fail("tokenizer.ggml.token_type holds {} (valid: 1..6)", t);
  }
  for (const auto& [id, key] : {std::pair{spec.bos_token_id, "tokenizer.ggml.bos_token_id"},
                                {spec.eos_token_id, "tokenizer.ggml.eos_token_id"},
                                {spec.eot_token_id, "tokenizer.ggml.eot_token_id"},
                                {spec.unknown_token_id, "tokenizer.ggml.unknown_token_id"},
                                {spec.padding_token_id, "tokenizer.ggml.padding_token_id"}}) {
    if (id) check_id(*id, key);
  }
}

void Tokenizer::Impl::build_byte_level() {
  const auto& table = byte_to_code_point();
  for (int b = 0; b < 256; ++b) {
    std::string text;
    append_utf8(text, table[b]);
    // Some real vocabularies (SmolLM2) lack a few control bytes; like llama.cpp, only fail when
    // such a byte actually occurs in the text (see require_byte_token).
    const auto it = ids.find(text);
    byte_tokens[b] = it == ids.end() ? -1 : it->second;
  }
  merges.reserve(spec.merges.size());
  for (size_t rank = 0; rank < spec.merges.size(); ++rank) {
    const std::string& merge = spec.merges[rank];
    const size_t space = merge.find(' ', 1);
    if (space == std::string::npos) fail("tokenizer.ggml.merges[{}] = '{}' is not \"left right\"", rank, merge);
    const std::string_view left(merge.data(), space), right = std::string_view(merge).substr(space + 1);
    const auto l = ids.find(left), r = ids.find(right);
    std::string joined(left);
    joined += right;
    const auto m = ids.find(joined);
    if (l == ids.end() || r == ids.end() || m == ids.end())
      fail("tokenizer.ggml.merges[{}] = '{}' names a token missing from the vocabulary", rank, merge);
    merges.try_emplace(pair_key(l->second, r->second), Merge{static_cast<int32_t>(rank), m->second});
  }
  pre_tokenizer = std::make_unique<PreTokenizer>(spec.pre.empty() ? "gpt2" : spec.pre);
  // Qwen2's tokenizer.json normalizes to NFC; the other supported families do not normalize.
  normalize_nfc = spec.pre == "qwen2";
}

void Tokenizer::Impl::build_sentencepiece() {
  if (spec.scores.empty()) fail("tokenizer.ggml.model 'llama' needs tokenizer.ggml.scores");
  byte_tokens.fill(-1);
  for (size_t id = 0; id < spec.tokens.size(); ++id) {
    if (type(static_cast<int32_t>(id)) != TokenType::byte) continue;
    const int value = byte_token_value(spec.tokens[id]);
    if (value < 0) fail("byte token {} has text '{}', expected <0xNN>", id, spec.tokens[id]);
    byte_tokens[value] = static_cast<int32_t>(id);
  }
}

void Tokenizer::Impl::build_pieces() {
  pieces.resize(spec.tokens.size());
  for (size_t id = 0; id < spec.tokens.size(); ++id) {
    const std::string& text = spec.tokens[id];
    std::string& piece = pieces[id];
    switch (type(static_cast<int32_t>(id))) {
      case TokenType::unused: break;
      case TokenType::control:
      case TokenType::unknown:
      case TokenType::user_defined: piece = text; break;
      case TokenType::byte: piece.push_back(static_cast<char>(byte_token_value(text))); break;
      case TokenType::normal:
        if (!byte_level) {
          for (size_t pos = 0; pos < text.size();) {
            if (std::string_view(text).substr(pos).starts_with(kSentencePieceSpace)) {
              piece.push_back(' ');
              pos += kSentencePieceSpace.size();
            } else {
              piece.push_back(text[pos++]);
            }
          }
          break;
        }
        // Undo the byte → code point mapping; a code point outside the table stays as UTF-8.
        for (size_t pos = 0; pos < text.size();) {
          const Utf8Step step = utf8_step(text, pos);
          uint32_t cp = static_cast<uint8_t>(text[pos]);
          if (step.valid && step.length > 1) {
            cp &= 0xFFu >> (step.length + 1);
            for (size_t k = 1; k < step.length; ++k) cp = (cp << 6) | (static_cast<uint8_t>(text[pos + k]) & 0x3F);
          }
          const int byte = step.valid ? code_point_to_byte(cp) : -1;
          if (byte >= 0) {
            piece.push_back(static_cast<char>(byte));
          } else {
            piece.append(text, pos, step.length);
          }
          pos += step.length;
        }
        break;
    }
  }
}

void Tokenizer::Impl::build_literal_tokens() {
  for (size_t id = 0; id < spec.tokens.size(); ++id) {
    const TokenType t = type(static_cast<int32_t>(id));
    const bool literal = t == TokenType::control || t == TokenType::user_defined || t == TokenType::unknown;
    if (!literal || spec.tokens[id].empty()) continue;
    literal_tokens_by_first_byte[static_cast<uint8_t>(spec.tokens[id][0])].push_back(static_cast<int32_t>(id));
  }
  for (auto& group : literal_tokens_by_first_byte) {
    std::stable_sort(group.begin(), group.end(),
                     [&](int32_t a, int32_t b) { return spec.tokens[a].size() > spec.tokens[b].size(); });
  }
}

void Tokenizer::Impl::build_end_of_generation() {
  end_of_generation.assign(spec.tokens.size(), false);
  eot = spec.eot_token_id;
  for (std::string_view text : kEndOfTurnTexts) {
    const auto it = ids.find(text);
    if (it == ids.end() || type(it->second) != TokenType::control) continue;
    end_of_generation[it->second] = true;
    if (!eot && text != "<|endoftext|>") eot = it->second;
  }
  if (spec.eos_token_id) end_of_generation[*spec.eos_token_id] = true;
  if (eot) end_of_generation[*eot] = true;
}

std::vector<Segment> Tokenizer::Impl::split_literal_tokens(std::string_view text, bool parse_special,
                                                          std::span<const Tokenizer::TextRange> plain) const {
  std::vector<Segment> segments;
  size_t text_start = 0;
  size_t next_plain = 0;  // first range of `plain` that does not end before pos
  for (size_t pos = 0; pos < text.size();) {
    while (next_plain < plain.size() && plain[next_plain].end <= pos) ++next_plain;
    int32_t found = -1;
    for (int32_t id : literal_tokens_by_first_byte[static_cast<uint8_t>(text[pos])]) {
      const bool special_here =
          parse_special && !(next_plain < plain.size() && plain[next_plain].begin < pos + spec.tokens[id].size());
      if (!special_here && type(id) != TokenType::user_defined) continue;
      if (text.substr(pos).starts_with(spec.tokens[id])) {
        found = id;
        break;
      }
    }
    if (found < 0) {
      ++pos;
      continue;
    }
    if (pos > text_start) segments.emplace_back(text.substr(text_start, pos - text_start));
    segments.emplace_back(found);
    pos += spec.tokens[found].size();
    text_start = pos;
  }
  if (text_start < text.size()) segments.emplace_back(text.substr(text_start));
  return segments;
}

void Tokenizer::Impl::encode_byte_level_word(std::string_view word, std::vector<int32_t>& out) const {
  std::vector<Symbol> symbols(word.size());
  for (size_t i = 0; i < word.size(); ++i) {
    symbols[i] = {static_cast<uint32_t>(i), 1, byte_tokens[static_cast<uint8_t>(word[i])],
                  static_cast<int32_t>(i) - 1, i + 1 < word.size() ? static_cast<int32_t>(i + 1) : -1};
  }
  merge_symbols(symbols, [&](const Symbol& a, const Symbol& b) -> std::optional<std::pair<double, int32_t>> {
    const auto it = merges.find(pair_key(a.id, b.id));
    if (it == merges.end()) return std::nullopt;
    return std::pair{static_cast<double>(it->second.rank), it->second.merged};
  });
  for (int32_t i = 0; i >= 0; i = symbols[i].next) {
    out.push_back(symbols[i].id >= 0 ? symbols[i].id : require_byte_token(word[symbols[i].start]));
  }
}

int32_t Tokenizer::Impl::require_byte_token(char byte) const {
  const int32_t id = byte_tokens[static_cast<uint8_t>(byte)];
  if (id >= 0) return id;
  if (spec.unknown_token_id) return *spec.unknown_token_id;
  fail("the text contains byte 0x{:02X}, which this vocabulary has no token for",
       static_cast<uint8_t>(byte));
}

void Tokenizer::Impl::encode_byte_level(std::string_view text, std::vector<int32_t>& out) const {
  // Bytes that are not valid UTF-8 cannot go through the regex; each becomes its byte token.
  if (!is_valid_utf8(text)) {
    size_t valid_start = 0;
    for (size_t pos = 0; pos < text.size();) {
      const Utf8Step step = utf8_step(text, pos);
      if (!step.valid) {
        encode_byte_level(text.substr(valid_start, pos - valid_start), out);
        for (size_t k = 0; k < step.length; ++k) out.push_back(require_byte_token(text[pos + k]));
        valid_start = pos + step.length;
      }
      pos += step.length;
    }
    encode_byte_level(text.substr(valid_start), out);
    return;
  }
  const std::string normalized = normalize_nfc ? nfc(text) : std::string(text);
  // Words repeat a lot in real text; remember the ids of short ones for this call.
  std::unordered_map<std::string_view, std::pair<size_t, size_t>> cache;  // word → [begin, end) in out
  constexpr size_t kMaxCachedWord = 64;
  for (std::string_view word : pre_tokenizer->split(normalized)) {
    if (word.size() <= kMaxCachedWord) {
      if (const auto it = cache.find(word); it != cache.end()) {
        for (size_t k = it->second.first; k < it->second.second; ++k) out.push_back(out[k]);
        continue;
      }
    }
    const size_t begin = out.size();
    encode_byte_level_word(word, out);
    if (word.size() <= kMaxCachedWord) cache.emplace(word, std::pair{begin, out.size()});
  }
}

void Tokenizer::Impl::encode_sentencepiece(std::string_view text, bool prefix_space, std::vector<int32_t>& out) const {
  std::string normalized;
  normalized.reserve(text.size() + 3);
  if (prefix_space) normalized += kSentencePieceSpace;
  for (char c : text) {
    if (c == ' ') {
      normalized += kSentencePieceSpace;
    } else {
      normalized.push_back(c);
    }
  }
  std::vector<Symbol> symbols;
  for (size_t pos = 0; pos < normalized.size();) {
    const size_t length = utf8_step(normalized, pos).length;
    const auto it = ids.find(std::string_view(normalized).substr(pos, length));
    const int32_t index = static_cast<int32_t>(symbols.size());
    symbols.push_back({static_cast<uint32_t>(pos), static_cast<uint32_t>(length), it == ids.end() ? -1 : it->second,
                       index - 1, -1});
    if (index > 0) symbols[index - 1].next = index;
    pos += length;
  }
  // SentencePiece BPE: merge the adjacent pair whose concatenation is the highest-scoring piece.
  merge_symbols(symbols, [&](const Symbol& a, const Symbol& b) -> std::optional<std::pair<double, int32_t>> {
    const auto it = ids.find(std::string_view(normalized).substr(a.start, a.length + b.length));
    if (it == ids.end() || type(it->second) != TokenType::normal) return std::nullopt;
    return std::pair{-static_cast<double>(spec.scores[it->second]), it->second};
  });
  for (int32_t i = symbols.empty() ? -1 : 0; i >= 0; i = symbols[i].next) {
    const Symbol& s = symbols[i];
    if (s.id >= 0) {
      out.push_back(s.id);
      continue;
    }
    for (uint32_t k = 0; k < s.length; ++k) {  // byte fallback, else the unknown token
      const int32_t byte = byte_tokens[static_cast<uint8_t>(normalized[s.start + k])];
      if (byte >= 0) {
        out.push_back(byte);
      } else if (spec.unknown_token_id) {
        out.push_back(*spec.unknown_token_id);
        break;
      } else {
        fail("cannot encode '{}': no byte fallback and no unknown token", normalized.substr(s.start, s.length));
      }
    }
  }
}

Tokenizer::Tokenizer(TokenizerSpec spec) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.spec = std::move(spec);
  m.validate();
  if (m.spec.model != "gpt2" && m.spec.model != "llama")
    fail("tokenizer.ggml.model '{}' is not supported (gpt2 or llama)", m.spec.model);
  m.byte_level = m.spec.model == "gpt2";
  m.add_bos = m.spec.add_bos_token.value_or(!m.byte_level);
  m.add_eos = m.spec.add_eos_token.value_or(false);
  m.add_space_prefix = m.spec.add_space_prefix.value_or(!m.byte_level);
  m.ids.reserve(m.spec.tokens.size());
  for (size_t id = 0; id < m.spec.tokens.size(); ++id) m.ids.try_emplace(m.spec.tokens[id], static_cast<int32_t>(id));
  if (m.byte_level) {
    m.build_byte_level();
  } else {
    m.build_sentencepiece();
  }
  m.build_pieces();
  m.build_literal_tokens();
  m.build_end_of_generation();
}

Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special, bool parse_special) const {
  return encode_segments(text, add_special, parse_special, {});
}

std::vector<int32_t> Tokenizer::encode_with_plain_ranges(std::string_view text, bool add_special,
                                                         std::span<const TextRange> plain) const {
  return encode_segments(text, add_special, true, plain);
}

std::vector<int32_t> Tokenizer::encode_segments(std::string_view text, bool add_special, bool parse_special,
                                                std::span<const TextRange> plain) const {
  const Impl& m = *impl_;
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 2);
  if (add_special && m.add_bos && m.spec.bos_token_id) out.push_back(*m.spec.bos_token_id);
  bool after_literal = true;  // SentencePiece adds "▁" at the start and after each literal token
  for (const Segment& segment : m.split_literal_tokens(text, parse_special, plain)) {
    if (const auto* id = std::get_if<int32_t>(&segment)) {
      out.push_back(*id);
      after_literal = true;
      continue;
    }
    const std::string_view part = std::get<std::string_view>(segment);
    if (m.byte_level) {
      m.encode_byte_level(part, out);
    } else {
      m.encode_sentencepiece(part, m.add_space_prefix && after_literal, out);
    }
    after_literal = false;
  }
  if (add_special && m.add_eos && m.spec.eos_token_id) out.push_back(*m.spec.eos_token_id);
  return out;
}

std::string Tokenizer::decode(std::span<const int32_t> ids) const {
  std::string bytes;
  for (int32_t id : ids) bytes += token_piece(id);
  if (impl_->add_space_prefix && !impl_->byte_level && bytes.starts_with(' ')) bytes.erase(0, 1);
  return utf8_lossy(bytes, false, nullptr);
}

std::string Tokenizer::token_piece(int32_t id) const {
  impl_->check_id(id, "token id");
  return impl_->pieces[id];
}

const std::string& Tokenizer::token_text(int32_t id) const {
  impl_->check_id(id, "token id");
  return impl_->spec.tokens[id];
}

TokenType Tokenizer::token_type(int32_t id) const {
  impl_->check_id(id, "token id");
  return impl_->type(id);
}

std::optional<int32_t> Tokenizer::find_token(std::string_view text) const {
  const auto it = impl_->ids.find(text);
  if (it == impl_->ids.end()) return std::nullopt;
  return it->second;
}

bool Tokenizer::is_eog(int32_t id) const {
  return id >= 0 && static_cast<size_t>(id) < impl_->end_of_generation.size() && impl_->end_of_generation[id];
}

std::optional<int32_t> Tokenizer::bos() const { return impl_->spec.bos_token_id; }
std::optional<int32_t> Tokenizer::eos() const { return impl_->spec.eos_token_id; }
std::optional<int32_t> Tokenizer::eot() const { return impl_->eot; }
std::optional<int32_t> Tokenizer::pad() const { return impl_->spec.padding_token_id; }
size_t Tokenizer::vocab_size() const { return impl_->spec.tokens.size(); }
const TokenizerSpec& Tokenizer::spec() const { return impl_->spec; }

bool Tokenizer::strips_leading_space() const { return impl_->add_space_prefix && !impl_->byte_level; }

StreamingDecoder::StreamingDecoder(const Tokenizer& tokenizer) : tokenizer_(&tokenizer) {}

std::string StreamingDecoder::feed(int32_t id) {
  pending_ += tokenizer_->token_piece(id);
  if (first_ && !pending_.empty()) {
    if (tokenizer_->strips_leading_space() && pending_.starts_with(' ')) pending_.erase(0, 1);
    first_ = false;
  }
  size_t consumed = 0;
  std::string text = utf8_lossy(pending_, true, &consumed);
  pending_.erase(0, consumed);
  return text;
}

std::string StreamingDecoder::finish() {
  std::string text = utf8_lossy(pending_, false, nullptr);
  pending_.clear();
  first_ = true;
  return text;
}

}  // namespace realizar
