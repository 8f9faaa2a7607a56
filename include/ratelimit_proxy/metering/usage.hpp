#pragma once

#include <cstdint>
#include <string_view>

namespace ratelimit_proxy::metering {

// The LLM API a request speaks, known from its path's ending (api_dialect_of).
enum class dialect {
    none,              // not metered: no usage to read
    chat_completions,  // OpenAI  .../chat/completions
    responses,         // OpenAI  .../responses
    messages,          // Anthropic .../messages
    embeddings,        // OpenAI  .../embeddings
};

dialect dialect_of(std::string_view path);
std::string_view to_string(dialect d);

// What one response used, in disjoint parts: input excludes the cached and cache-write tokens
// (OpenAI's prompt_tokens includes cached_tokens: they are taken out; Anthropic's input_tokens
// already excludes both), output includes reasoning tokens.
struct usage {
    std::int64_t input = 0;
    std::int64_t cached_input = 0;
    std::int64_t cache_write = 0;
    std::int64_t output = 0;
    bool seen = false;  // the response carried a usage object

    std::int64_t all_input() const { return input + cached_input + cache_write; }
    std::int64_t total() const { return all_input() + output; }
};

}  // namespace ratelimit_proxy::metering
