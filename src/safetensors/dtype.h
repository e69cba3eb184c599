// Private: parsing dtype names of the safetensors header.
#pragma once

#include <optional>
#include <string_view>

#include "realizar/safetensors.h"

namespace realizar::safetensors {

// "F16" -> DType::F16; std::nullopt for a name safetensors does not define.
std::optional<DType> dtype_from_name(std::string_view name);

}  // namespace realizar::safetensors
