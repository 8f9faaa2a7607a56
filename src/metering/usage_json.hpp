#pragma once

#include <optional>
#include <string_view>

#include "ratelimit_proxy/metering/usage.hpp"

namespace ratelimit_proxy::metering {

// A usage object's text (as the reader captured it) to usage, per dialect; nullopt if it is not
// a JSON object or a count in it is not a non-negative integer. Absent or null counts are 0.
//   chat completions: prompt_tokens (cached_tokens taken out), completion_tokens
//   responses:        input_tokens (cached_tokens taken out), output_tokens
//   messages:         input_tokens, cache_read_input_tokens, cache_creation_input_tokens,
//                     output_tokens
//   embeddings:       prompt_tokens (else total_tokens)
std::optional<usage> usage_from_json(dialect d, std::string_view text);

// Anthropic's message_delta usage is cumulative: each count it carries replaces the one in
// `into`, the others stay. False (and `into` unchanged) if the text is not a usage object.
bool update_messages_usage(usage& into, std::string_view text);

}  // namespace ratelimit_proxy::metering
