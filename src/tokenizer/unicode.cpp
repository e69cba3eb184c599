#include "tokenizer/unicode.h"

#include <realizar/error.h>
#include <utf8proc.h>

#include <cstdlib>
#include <memory>

namespace realizar::tokenizer_detail {

namespace {

// Range of valid second bytes after lead byte `lead` (Unicode Table 3-7), 0/0 if `lead` is not
// a valid lead byte of a multi-byte sequence.
struct SecondByteRange {
  uint8_t low, high;
};
SecondByteRange second_byte_range(uint8_t lead) {
  if (lead >= 0xC2 && lead <= 0xDF) return {0x80, 0xBF};
  if (lead == 0xE0) return {0xA0, 0xBF};
  if (lead == 0xED) return {0x80, 0x9F};  // excludes surrogates
  if (lead >= 0xE1 && lead <= 0xEF) return {0x80, 0xBF};
  if (lead == 0xF0) return {0x90, 0xBF};
  if (lead == 0xF4) return {0x80, 0x8F};  // up to U+10FFFF
  if (lead >= 0xF1 && lead <= 0xF3) return {0x80, 0xBF};
  return {0, 0};
}

size_t sequence_length(uint8_t lead) {
  if (lead < 0xE0) return 2;
  if (lead < 0xF0) return 3;
  return 4;
}

}  // namespace

Utf8Step utf8_step(std::string_view bytes, size_t pos) {
  const auto lead = static_cast<uint8_t>(bytes[pos]);
  if (lead < 0x80) return {1, true, false};
  const SecondByteRange second = second_byte_range(lead);
  if (second.high == 0) return {1, false, false};
  const size_t needed = sequence_length(lead);
  size_t length = 1;
  while (length < needed) {
    if (pos + length >= bytes.size()) return {length, false, true};
    const auto byte = static_cast<uint8_t>(bytes[pos + length]);
    const bool ok = length == 1 ? (byte >= second.low && byte <= second.high) : (byte >= 0x80 && byte <= 0xBF);
    if (!ok) return {length, false, false};
    ++length;
  }
  return {length, true, false};
}

std::string utf8_lossy(std::string_view bytes, bool hold_truncated_tail, size_t* consumed) {
  std::string out;
  out.reserve(bytes.size());
  size_t pos = 0;
  while (pos < bytes.size()) {
    const Utf8Step step = utf8_step(bytes, pos);
    if (step.valid) {
      out.append(bytes.substr(pos, step.length));
    } else if (step.truncated && hold_truncated_tail) {
      break;
    } else {
      out.append("\xEF\xBF\xBD");
    }
    pos += step.length;
  }
  if (consumed) *consumed = pos;
  return out;
}

bool is_valid_utf8(std::string_view bytes) {
  for (size_t pos = 0; pos < bytes.size();) {
    const Utf8Step step = utf8_step(bytes, pos);
    if (!step.valid) return false;
    pos += step.length;
  }
  return true;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

const std::array<uint32_t, 256>& byte_to_code_point() {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    auto printable = [](int b) { return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF); };
    uint32_t next_unprintable = 0x100;
    for (int b = 0; b < 256; ++b) t[b] = printable(b) ? static_cast<uint32_t>(b) : next_unprintable++;
    return t;
  }();
  return table;
}

int code_point_to_byte(uint32_t cp) {
  static const std::array<int16_t, 0x144> inverse = [] {
    std::array<int16_t, 0x144> t;
    t.fill(-1);
    for (int b = 0; b < 256; ++b) t[byte_to_code_point()[b]] = static_cast<int16_t>(b);
    return t;
  }();
  return cp < inverse.size() ? inverse[cp] : -1;
}

std::string nfc(std::string_view text) {
  utf8proc_uint8_t* normalized = nullptr;
  const utf8proc_ssize_t length =
      utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()), static_cast<utf8proc_ssize_t>(text.size()),
                   &normalized, static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  if (length < 0) fail("NFC normalization failed: {}", utf8proc_errmsg(length));
  std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> owner(normalized, &std::free);
  return std::string(reinterpret_cast<const char*>(normalized), static_cast<size_t>(length));
}

}  // namespace realizar::tokenizer_detail
