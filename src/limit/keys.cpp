#include "ratelimit_proxy/limit/keys.hpp"

#include <chrono>
#include <cstdio>

#include <algorithm>

namespace ratelimit_proxy::limit {

namespace {

constexpr std::size_t digest_hex_length = 64;

// A literal for a SCAN MATCH pattern: glob characters escaped.
std::string glob_escape(std::string_view s) {
    std::string out;
    for (char ch : s) {
        if (ch == '*' || ch == '?' || ch == '[' || ch == ']' || ch == '\\')
            out.push_back('\\');
        out.push_back(ch);
    }
    return out;
}

bool is_lower_hex(std::string_view s) {
    return std::ranges::all_of(
        s, [](char ch) { return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'); });
}

std::string tagged(std::string_view prefix, std::string_view rest) {
    std::string key;
    key.reserve(prefix.size() + rest.size() + 2);
    key += '{';
    key += prefix;
    key += '}';
    key += rest;
    return key;
}

}  // namespace

void append_bucket_key_head(std::string& key, std::string_view prefix,
                            std::string_view policy_name) {
    key += '{';
    key += prefix;
    key += "}:rl:";
    key += policy_name;
    key += ':';
}

std::string bucket_key(std::string_view prefix, std::string_view policy_name,
                       std::string_view bucket) {
    std::string key;
    key.reserve(prefix.size() + policy_name.size() + bucket.size() + 8);
    append_bucket_key_head(key, prefix, policy_name);
    key += bucket;
    return key;
}

std::string token_key_head(std::string_view prefix) {
    std::string head(prefix);
    head += ":token:";
    return head;
}

std::string token_key(std::string_view prefix, std::string_view digest_hex) {
    std::string key = token_key_head(prefix);
    key += '{';
    key += digest_hex;
    key += '}';
    return key;
}

std::string token_scan_pattern(std::string_view prefix) {
    return glob_escape(token_key_head(prefix)) + "[{]*";
}

std::string token_scan_pattern(std::string_view prefix, std::string_view id_hex) {
    return glob_escape(token_key_head(prefix)) + "[{]" + glob_escape(id_hex) + "*";
}

std::string token_id_of_key(std::string_view key, std::string_view prefix) {
    const std::string head = token_key_head(prefix);
    if (!key.starts_with(head))
        return {};
    key.remove_prefix(head.size());
    if (key.size() != digest_hex_length + 2 || key.front() != '{' || key.back() != '}')
        return {};
    auto hex = key.substr(1, digest_hex_length);
    if (!is_lower_hex(hex))
        return {};
    return std::string(token_id_of_digest(hex));
}

std::string_view token_id_of_digest(std::string_view digest_hex) {
    return digest_hex.substr(0, token_id_length);
}

bool is_token_id(std::string_view s) {
    return s.size() == token_id_length && is_lower_hex(s);
}

std::string usage_key(std::string_view prefix, std::string_view token_id, std::string_view day) {
    std::string key = tagged(prefix, ":usage:");
    key.append(token_id).append(":").append(day);
    return key;
}

std::string usage_days_key(std::string_view prefix, std::string_view day) {
    std::string key = tagged(prefix, ":usage-days:");
    key.append(day);
    return key;
}

std::string utc_day(std::int64_t unix_seconds) {
    const std::chrono::sys_days day{std::chrono::floor<std::chrono::days>(
        std::chrono::sys_seconds{std::chrono::seconds{unix_seconds}})};
    const std::chrono::year_month_day ymd{day};
    char text[16];
    std::snprintf(text, sizeof text, "%04d-%02u-%02u", static_cast<int>(ymd.year()),
                  static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()));
    return text;
}

std::string admin_state_key(std::string_view prefix) {
    return tagged(prefix, ":admin:state");
}

std::string admin_version_key(std::string_view prefix) {
    return tagged(prefix, ":admin:version");
}

}  // namespace ratelimit_proxy::limit
