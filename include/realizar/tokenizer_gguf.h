// The `tokenizer.ggml.*` metadata of a GGUF file <-> TokenizerSpec.
// Keys and value types are the ones llama.cpp's gguf-py writes (gguf/constants.py Keys.Tokenizer,
// GGUFWriter.add_token_list / add_token_scores / ...): model, pre, chat_template STRING; tokens and
// merges ARRAY of STRING; scores ARRAY of FLOAT32; token_type ARRAY of INT32; the *_token_id keys
// UINT32; add_bos_token / add_eos_token / add_space_prefix BOOL.
#pragma once

#include "realizar/gguf.h"
#include "realizar/tokenizer.h"

namespace realizar {

// Reads the tokenizer metadata of `file`. Throws realizar::Error naming the file when it has no
// `tokenizer.ggml.model` or `tokenizer.ggml.tokens`, or when a key has an unexpected type.
// Integer keys are accepted in any integer type (some writers use INT32 for token ids).
TokenizerSpec tokenizer_spec_from_gguf(const gguf::File& file);

// Whether `file` carries tokenizer metadata (the two keys above).
bool has_tokenizer(const gguf::File& file);

// Adds every field of `spec` that is set (non-empty vectors/strings, engaged optionals; merges
// always for model "gpt2", which llama.cpp requires) to `writer`, which must still be declaring. Throws realizar::Error when a token id is negative or
// scores/token_type are non-empty with a length other than tokens'.
void write_tokenizer_metadata(gguf::Writer& writer, const TokenizerSpec& spec);

}  // namespace realizar
