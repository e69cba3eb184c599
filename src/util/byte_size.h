// Sizes written by people on the command line ("4GiB", "512MiB", "2G", "8MB", "1500000").
#pragma once

#include <cstdint>
#include <string_view>

namespace realizar {

// A number (decimals allowed) with an optional unit, case-insensitive: B; KiB, MiB, GiB, TiB
// (powers of 1024); KB, MB, GB, TB (powers of 1000, as SI and disk vendors count); K, M, G, T
// alone mean the binary units, as `ls -h`, Docker's --memory and llama.cpp's size flags do.
// Returns bytes, rounded down. Throws realizar::Error naming the text when it is not a positive
// size or does not fit in int64.
int64_t parse_byte_size(std::string_view text);

}  // namespace realizar
