#include "usage_json.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include <nlohmann/json.hpp>

namespace ratelimit_proxy::metering {

namespace {

using json = nlohmann::json;

// Counts above this are not token counts; refusing them keeps every sum far from overflow.
constexpr std::int64_t max_count = std::int64_t{1} << 50;

enum class count_state { absent, ok, bad };

struct count {
    count_state state = count_state::absent;
    std::int64_t value = 0;
};

// A non-negative integer count; an integral float (12.0) is accepted, some servers write them.
count count_of(const json& object, const char* key) {
    const auto it = object.find(key);
    if (it == object.end() || it->is_null())
        return {};
    const json& v = *it;
    if (v.is_number_unsigned()) {
        const auto u = v.get<std::uint64_t>();
        if (u <= static_cast<std::uint64_t>(max_count))
            return {count_state::ok, static_cast<std::int64_t>(u)};
    } else if (v.is_number_integer()) {
        const auto i = v.get<std::int64_t>();
        if (i >= 0 && i <= max_count)
            return {count_state::ok, i};
    } else if (v.is_number_float()) {
        const double d = v.get<double>();
        if (std::isfinite(d) && d >= 0 && d <= static_cast<double>(max_count) && std::floor(d) == d)
            return {count_state::ok, static_cast<std::int64_t>(d)};
    }
    return {count_state::bad, 0};
}

// Reads counts into their fields; false if one is bad.
struct counts_reader {
    const json& object;
    bool good = true;

    std::int64_t operator()(const char* key) {
        const count c = count_of(object, key);
        good = good && c.state != count_state::bad;
        return c.value;
    }
    std::int64_t nested(const char* parent, const char* key) {
        const auto it = object.find(parent);
        if (it == object.end() || it->is_null())
            return 0;
        if (!it->is_object()) {
            good = false;
            return 0;
        }
        counts_reader inner{*it};
        const std::int64_t v = inner(key);
        good = good && inner.good;
        return v;
    }
};

json parse_object(std::string_view text) {
    json doc = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
    return doc.is_object() ? doc : json();
}

}  // namespace

std::optional<usage> usage_from_json(dialect d, std::string_view text) {
    const json doc = parse_object(text);
    if (!doc.is_object())
        return std::nullopt;
    counts_reader read{doc};
    usage u;
    switch (d) {
        case dialect::chat_completions: {
            // cached_tokens is a part of prompt_tokens.
            const std::int64_t prompt = read("prompt_tokens");
            const std::int64_t cached = read.nested("prompt_tokens_details", "cached_tokens");
            u.cached_input = std::min(cached, prompt);
            u.input = prompt - u.cached_input;
            u.output = read("completion_tokens");
            break;
        }
        case dialect::responses: {
            const std::int64_t input = read("input_tokens");
            const std::int64_t cached = read.nested("input_tokens_details", "cached_tokens");
            u.cached_input = std::min(cached, input);
            u.input = input - u.cached_input;
            u.output = read("output_tokens");
            break;
        }
        case dialect::messages:
            // Anthropic's input_tokens already excludes the cache reads and writes.
            u.input = read("input_tokens");
            u.cached_input = read("cache_read_input_tokens");
            u.cache_write = read("cache_creation_input_tokens");
            u.output = read("output_tokens");
            break;
        case dialect::embeddings: {
            const count prompt = count_of(doc, "prompt_tokens");
            u.input =
                prompt.state == count_state::absent ? read("total_tokens") : read("prompt_tokens");
            break;
        }
        case dialect::none:
            return std::nullopt;
    }
    if (!read.good)
        return std::nullopt;
    u.seen = true;
    return u;
}

bool update_messages_usage(usage& into, std::string_view text) {
    const json doc = parse_object(text);
    if (!doc.is_object())
        return false;
    usage u = into;
    bool good = true;
    const auto take = [&](const char* key, std::int64_t& field) {
        const count c = count_of(doc, key);
        if (c.state == count_state::ok)
            field = c.value;
        good = good && c.state != count_state::bad;
    };
    take("input_tokens", u.input);
    take("cache_read_input_tokens", u.cached_input);
    take("cache_creation_input_tokens", u.cache_write);
    take("output_tokens", u.output);
    if (!good)
        return false;
    u.seen = true;
    into = u;
    return true;
}

}  // namespace ratelimit_proxy::metering
