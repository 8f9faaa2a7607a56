#include "ratelimit_proxy/limit/policy.hpp"

#include <algorithm>
#include <array>
#include <utility>

#include "ratelimit_proxy/common/http_text.hpp"

namespace ratelimit_proxy::limit {

namespace {

constexpr std::array<std::pair<algorithm, std::string_view>, 5> algorithm_names{{
    {algorithm::token_bucket, "token_bucket"},
    {algorithm::gcra, "gcra"},
    {algorithm::sliding_window, "sliding_window"},
    {algorithm::fixed_window, "fixed_window"},
    {algorithm::concurrency, "concurrency"},
}};

constexpr std::array<std::pair<key_kind, std::string_view>, 4> key_names{{
    {key_kind::global, "global"},
    {key_kind::client_ip, "ip"},
    {key_kind::token, "token"},
    {key_kind::token_route, "token_route"},
}};

constexpr std::array<std::pair<meter, std::string_view>, 3> meter_names{{
    {meter::requests, "requests"},
    {meter::tokens, "tokens"},
    {meter::usd, "usd"},
}};

constexpr std::array<std::pair<token_count, std::string_view>, 3> token_count_names{{
    {token_count::total, "total"},
    {token_count::input, "input"},
    {token_count::output, "output"},
}};

template <typename E, std::size_t N>
std::string_view name_of(const std::array<std::pair<E, std::string_view>, N>& names, E e) {
    for (const auto& [value, name] : names)
        if (value == e)
            return name;
    return "unknown";
}

template <typename E, std::size_t N>
std::optional<E> value_of(const std::array<std::pair<E, std::string_view>, N>& names,
                          std::string_view s) {
    for (const auto& [value, name] : names)
        if (name == s)
            return value;
    return std::nullopt;
}

// The path without query or fragment, percent-decoded except %2F: an encoded slash is data
// inside a segment, not a separator, so "/api%2Fadmin" is one segment (as most upstreams
// route it). Malformed escapes stay as they are.
std::string decode_path(std::string_view path) {
    path = path.substr(0, path.find_first_of("?#"));
    std::string out;
    out.reserve(path.size());
    for (std::size_t i = 0; i < path.size(); ++i) {
        if (path[i] == '%' && i + 2 < path.size()) {
            int hi = common::hex_digit_value(path[i + 1]);
            int lo = common::hex_digit_value(path[i + 2]);
            if (hi >= 0 && lo >= 0) {
                char c = static_cast<char>(hi * 16 + lo);
                if (c == '/')
                    out += "%2F";  // one spelling, whatever the client's case
                else
                    out += c;
                i += 2;
                continue;
            }
        }
        out += path[i];
    }
    return out;
}

}  // namespace

policy_counters::policy_counters(std::size_t slots)
    : slot_count_(std::max<std::size_t>(1, slots)), slots_(new slot[slot_count_]) {}

policy_counters::totals policy_counters::sum() const {
    totals t;
    for (std::size_t i = 0; i < slot_count_; ++i) {
        t.allowed += slots_[i].counts[allowed].load(std::memory_order_relaxed);
        t.denied += slots_[i].counts[denied].load(std::memory_order_relaxed);
        t.shadow_denied += slots_[i].counts[shadow_denied].load(std::memory_order_relaxed);
    }
    return t;
}

bool policy::matches(std::string_view method, std::string_view path) const {
    if (!match.method.empty() && method != match.method)
        return false;
    const std::string& prefix = match.path_prefix;
    if (prefix.empty())
        return true;
    std::string decoded = decode_path(path);
    if (decoded.compare(0, prefix.size(), prefix) != 0)
        return false;
    // On a segment boundary: "/api/chat" matches "/api/chat" and "/api/chat/x", not
    // "/api/chatx"; a prefix ending in "/" already ends a segment.
    return decoded.size() == prefix.size() || prefix.back() == '/' || decoded[prefix.size()] == '/';
}

std::string_view to_string(algorithm a) {
    return name_of(algorithm_names, a);
}
std::string_view to_string(key_kind k) {
    return name_of(key_names, k);
}
std::string_view to_string(meter m) {
    return name_of(meter_names, m);
}
std::string_view to_string(token_count c) {
    return name_of(token_count_names, c);
}
std::optional<algorithm> algorithm_from(std::string_view s) {
    return value_of(algorithm_names, s);
}
std::optional<key_kind> key_kind_from(std::string_view s) {
    return value_of(key_names, s);
}
std::optional<meter> meter_from(std::string_view s) {
    return value_of(meter_names, s);
}
std::optional<token_count> token_count_from(std::string_view s) {
    return value_of(token_count_names, s);
}

bool route_match::matches_model(std::string_view request_model) const {
    if (model.empty())
        return true;
    if (model.back() == '*')
        return request_model.substr(0, model.size() - 1) ==
               std::string_view(model).substr(0, model.size() - 1);
    return request_model == model;
}

namespace {

void append_bucket_id(std::string& out, key_kind k, std::string_view token_id,
                      std::string_view client_address, std::string_view method,
                      std::string_view path) {
    switch (k) {
        case key_kind::global:
            out += "global";
            return;
        case key_kind::client_ip:
            out += client_address;
            return;
        case key_kind::token:
            out += token_id;
            return;
        case key_kind::token_route:
            // Decoded as for matching, so "/api/chat" and "/api/ch%61t" share one bucket.
            out += token_id;
            out += ' ';
            out += method;
            out += ' ';
            out += decode_path(path);
            return;
    }
    out += "global";
}

}  // namespace

std::string bucket_id(key_kind k, std::string_view token_id, std::string_view client_address,
                      std::string_view method, std::string_view path) {
    std::string id;
    append_bucket_id(id, k, token_id, client_address, method, path);
    return id;
}

void assign_bucket_key(std::string& key, std::string_view key_prefix, std::string_view policy_name,
                       key_kind k, std::string_view token_id, std::string_view client_address,
                       std::string_view method, std::string_view path) {
    key.clear();
    append_bucket_key_head(key, key_prefix, policy_name);
    append_bucket_id(key, k, token_id, client_address, method, path);
}

}  // namespace ratelimit_proxy::limit
