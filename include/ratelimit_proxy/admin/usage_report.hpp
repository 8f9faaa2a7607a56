#pragma once

// GET /admin/usage: the per-token usage the settle script records (limit::usage_key, one hash
// per token and UTC day with fields "<model>|<what>"), as rows per day, token and model, in
// JSON or CSV. Pure: the admin API reads the hashes, this shapes them.

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ratelimit_proxy::admin {

struct usage_row {
    std::string day;  // YYYY-MM-DD (UTC)
    std::string token;
    std::string model;  // as the request named it ("-" when none)
    std::int64_t requests = 0;
    std::int64_t input = 0;
    std::int64_t cached_input = 0;
    std::int64_t cache_write = 0;
    std::int64_t output = 0;
    std::int64_t nano_usd = 0;
    std::int64_t estimated = 0;  // requests charged an estimate (no usage seen)
};

// The longest range one request may ask for, in days (from and to included).
inline constexpr std::int64_t max_usage_days = 400;

// Days since 1970-01-01 of a YYYY-MM-DD date; nothing when it is not one (2025-02-30).
std::optional<std::int64_t> parse_day(std::string_view text);
// The reverse.
std::string format_day(std::int64_t days_since_epoch);

// One usage hash's fields (name, value pairs, as HGETALL lists them) appended to `out` as
// one row per model. Fields that are not "<model>|<what>" with a known what and an integer
// value are skipped: the report shows what it can read.
void add_usage_fields(std::string_view day, std::string_view token,
                      std::span<const std::pair<std::string, std::string>> fields,
                      std::vector<usage_row>& out);

// By day, then token, then model.
void sort_usage(std::vector<usage_row>& rows);

// Exact USD text of nano-USD: 1500000000 -> "1.5", 1 -> "0.000000001", 0 -> "0".
std::string usd_text(std::int64_t nano_usd);

// [{"day", "token", "model", "requests", "input", "cached_input", "cache_write", "output",
//   "usd", "estimated"}...], usd a JSON number.
nlohmann::json usage_to_json(const std::vector<usage_row>& rows);
// A header row, then one line per row (CRLF line ends, RFC 4180 quoting). A model that
// begins with = + - @ (a formula to a spreadsheet) is written with a leading apostrophe.
std::string usage_to_csv(const std::vector<usage_row>& rows);

}  // namespace ratelimit_proxy::admin
