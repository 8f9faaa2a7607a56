#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "ratelimit_proxy/metering/usage.hpp"

namespace ratelimit_proxy::metering {

// What a metered request's JSON body says about its cost.
struct request_info {
    dialect kind = dialect::none;
    std::string model;  // "model"; empty when absent
    bool stream = false;
    // chat completions: the client set stream_options.include_usage true itself.
    bool client_asked_usage = false;
    // max_tokens / max_completion_tokens / max_output_tokens as sent (the smallest if several).
    std::optional<std::int64_t> max_output;
    // chat completions' "n": choices generated, each up to max_output.
    std::int64_t choices = 1;
    // An upper bound of the input tokens: the body's bytes (a token covers at least one byte of
    // text), plus a fixed allowance per image part (images by URL cost tokens the body's bytes
    // do not show).
    std::int64_t input_bound = 0;
    // Whether the body has these keys at all, even as null: prepare_request adds a key as text
    // only where it is absent (a duplicate key would be ambiguous), else it re-serialises.
    bool has_stream_options = false;
    bool has_own_max_field = false;  // the dialect's own max field, the one prepare_request sets
};

// The tokens input_bound allows per image part ("type" image_url, input_image or image, at any
// depth of "messages" / "input"): an image by URL costs tokens its bytes do not show.
constexpr std::int64_t image_token_allowance = 2000;

// Reads a request body of dialect `d` (not none). nullopt when it is not a JSON object or a
// field has the wrong type; `error` then says what is wrong, for a 400.
std::optional<request_info> read_request(dialect d, std::string_view body, std::string& error);

// The output bound the reservation uses: max_output (else default_max_output) per choice.
std::int64_t output_bound(const request_info& info, std::int64_t default_max_output);

// Rewrites `body` (read_request accepted it) for metering, changing nothing else in it:
// - chat completions with stream true and no include_usage: sets
//   stream_options.include_usage = true (the response's usage chunk is then the proxy's to hide);
// - no max tokens field: adds the dialect's own (max_completion_tokens for chat completions,
//   max_output_tokens for responses, max_tokens for messages; none for embeddings) set to
//   default_max_output, so the reservation's bound holds.
// Returns true if the body changed.
bool prepare_request(const request_info& info, std::string& body, std::int64_t default_max_output);

// Whether the response's usage chunk must be hidden from the client: prepare_request added
// include_usage to a chat completions stream.
bool hides_usage_chunk(const request_info& info);

}  // namespace ratelimit_proxy::metering
