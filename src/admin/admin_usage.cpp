// GET /admin/usage?from=YYYY-MM-DD&to=YYYY-MM-DD[&token=<id>][&format=csv|json]: what each
// token used per model and UTC day, from the usage hashes the settle script adds to
// (limit::usage_key) and the per-day sets of token ids (limit::usage_days_key).
#include <nlohmann/json.hpp>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "admin_api.hpp"
#include "api_reply.hpp"
#include "ratelimit_proxy/admin/usage_report.hpp"
#include "ratelimit_proxy/auth/token_records.hpp"
#include "ratelimit_proxy/limit/keys.hpp"
#include "ratelimit_proxy/redis/awaitable.hpp"

namespace ratelimit_proxy::admin {

using json = nlohmann::json;
using detail::reply;
using detail::unavailable;

namespace {

// Commands per pipelined batch: one write each, and no reply waits behind thousands.
constexpr std::size_t batch_size = 500;

std::int64_t day_param(const std::string* text, const char* field) {
    if (!text)
        throw api_error(400, error_body("invalid", "is required: a UTC date, YYYY-MM-DD", field));
    auto day = parse_day(*text);
    if (!day)
        throw api_error(
            400, error_body("invalid", "must be a date YYYY-MM-DD, got '" + *text + "'", field));
    return *day;
}

bool answered_array(const redis::answer& a) {
    return a.ok() && a.reply.type == redis::reply_type::array;
}

}  // namespace

admin_api::response admin_api::usage(request& r) {
    const std::int64_t from = day_param(r.param("from"), "from");
    const std::int64_t to = day_param(r.param("to"), "to");
    if (to < from)
        co_return reply(400, error_body("invalid", "must not be before from", "to"));
    if (to - from + 1 > max_usage_days)
        co_return reply(
            400,
            error_body("invalid",
                       "the range is at most " + std::to_string(max_usage_days) + " days", "to"));
    bool csv = false;
    if (const auto* format = r.param("format")) {
        if (*format != "csv" && *format != "json")
            co_return reply(400, error_body("invalid", "must be csv or json", "format"));
        csv = *format == "csv";
    }
    std::optional<std::string> only_token;
    if (const auto* raw = r.param("token")) {
        only_token = auth::token_records::normalize_id(*raw);
        if (!only_token)
            co_return reply(
                400, error_body("invalid", "a token id is the 16 hex digits the token list shows",
                                "token"));
    }

    std::vector<std::string> days;
    for (auto d = from; d <= to; ++d)
        days.push_back(format_day(d));
    auto& redis = rules_.redis();

    // Which tokens have usage on which day: the given one, or each day's set.
    std::vector<std::pair<std::size_t, std::string>> hashes;  // (day index, token id)
    if (only_token) {
        for (std::size_t i = 0; i < days.size(); ++i)
            hashes.emplace_back(i, *only_token);
    } else {
        for (std::size_t start = 0; start < days.size(); start += batch_size) {
            std::vector<std::vector<std::string>> commands;
            for (std::size_t i = start; i < std::min(days.size(), start + batch_size); ++i)
                commands.push_back(
                    {"SMEMBERS", limit::usage_days_key(rules_.key_prefix(), days[i])});
            auto answers = co_await redis::await_pipeline(redis, commands);
            for (std::size_t k = 0; k < answers.size(); ++k) {
                if (!answered_array(answers[k]))
                    co_return reply(503, unavailable());
                for (const auto& member : answers[k].reply.elements)
                    hashes.emplace_back(start + k, member.str);
            }
        }
    }

    std::vector<usage_row> rows;
    for (std::size_t start = 0; start < hashes.size(); start += batch_size) {
        const std::size_t end = std::min(hashes.size(), start + batch_size);
        std::vector<std::vector<std::string>> commands;
        for (std::size_t i = start; i < end; ++i)
            commands.push_back({"HGETALL", limit::usage_key(rules_.key_prefix(), hashes[i].second,
                                                            days[hashes[i].first])});
        auto answers = co_await redis::await_pipeline(redis, commands);
        for (std::size_t k = 0; k < answers.size(); ++k) {
            if (!answered_array(answers[k]))
                co_return reply(503, unavailable());
            const auto& e = answers[k].reply.elements;
            std::vector<std::pair<std::string, std::string>> fields;
            for (std::size_t f = 0; f + 1 < e.size(); f += 2)
                fields.emplace_back(e[f].str, e[f + 1].str);
            const auto& [day, token] = hashes[start + k];
            add_usage_fields(days[day], token, fields, rows);
        }
    }
    sort_usage(rows);

    if (csv) {
        api_response out;
        out.status = 200;
        out.content_type = "text/csv; charset=utf-8";
        out.text = usage_to_csv(rows);
        co_return out;
    }
    co_return reply(200,
                    {{"from", days.front()}, {"to", days.back()}, {"usage", usage_to_json(rows)}});
}

}  // namespace ratelimit_proxy::admin
