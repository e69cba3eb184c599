// UTF-8 and byte-level helpers shared by the tokenizers (private to src/tokenizer).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace realizar::tokenizer_detail {

// One step of UTF-8 decoding at `pos`: either a complete, valid character of `length` bytes, or
// an invalid "maximal subpart" (Unicode §3.9, U+FFFD substitution of maximal subparts) of
// `length` bytes. `truncated` marks an invalid subpart that is a valid prefix cut off by the end
// of the input (it may still complete when more bytes arrive).
struct Utf8Step {
  size_t length;
  bool valid;
  bool truncated;
};
Utf8Step utf8_step(std::string_view bytes, size_t pos);

// Bytes → valid UTF-8, replacing each invalid maximal subpart by U+FFFD (Python's
// bytes.decode("utf-8", "replace")). With `hold_truncated_tail`, a valid prefix at the end is not
// replaced but left out; `consumed` receives how many input bytes were converted.
std::string utf8_lossy(std::string_view bytes, bool hold_truncated_tail, size_t* consumed);

bool is_valid_utf8(std::string_view bytes);

// Appends the UTF-8 encoding of a code point.
void append_utf8(std::string& out, uint32_t code_point);

// GPT-2's reversible byte → Unicode mapping (bytes_to_unicode() in OpenAI's encoder.py):
// printable Latin-1 bytes map to themselves, the other 68 bytes to U+0100 + k in byte order.
const std::array<uint32_t, 256>& byte_to_code_point();
// Inverse mapping: code point → byte, or -1 when the code point is not in the table.
int code_point_to_byte(uint32_t code_point);

// Unicode Normalization Form C (utf8proc); `text` must be valid UTF-8.
std::string nfc(std::string_view text);

}  // namespace realizar::tokenizer_detail
