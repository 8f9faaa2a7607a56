#include "ratelimit_proxy/admin/usage_report.hpp"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <map>
#include <tuple>

#include "ratelimit_proxy/limit/keys.hpp"

namespace ratelimit_proxy::admin {

namespace {

constexpr std::int64_t nano_per_usd = 1'000'000'000;

bool all_digits(std::string_view s) {
    return !s.empty() &&
           std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::optional<std::int64_t> parse_integer(std::string_view s) {
    std::int64_t v = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || end != s.data() + s.size())
        return std::nullopt;
    return v;
}

std::int64_t* member_of(usage_row& row, std::string_view what) {
    if (what == "requests")
        return &row.requests;
    if (what == "input")
        return &row.input;
    if (what == "cached_input")
        return &row.cached_input;
    if (what == "cache_write")
        return &row.cache_write;
    if (what == "output")
        return &row.output;
    if (what == "nano_usd")
        return &row.nano_usd;
    if (what == "estimated")
        return &row.estimated;
    return nullptr;
}

void append_csv_cell(std::string& out, std::string_view cell) {
    std::string text(cell);
    if (text.size() > 1 &&
        std::string_view("=+-@\t\r").find(text.front()) != std::string_view::npos)
        text.insert(text.begin(), '\'');
    if (text.find_first_of(",\"\r\n") == std::string::npos) {
        out += text;
        return;
    }
    out += '"';
    for (char c : text) {
        if (c == '"')
            out += '"';
        out += c;
    }
    out += '"';
}

}  // namespace

std::optional<std::int64_t> parse_day(std::string_view text) {
    if (text.size() != 10 || text[4] != '-' || text[7] != '-' || !all_digits(text.substr(0, 4)) ||
        !all_digits(text.substr(5, 2)) || !all_digits(text.substr(8, 2)))
        return std::nullopt;
    const auto y = *parse_integer(text.substr(0, 4));
    const auto m = *parse_integer(text.substr(5, 2));
    const auto d = *parse_integer(text.substr(8, 2));
    const std::chrono::year_month_day date{std::chrono::year(static_cast<int>(y)),
                                           std::chrono::month(static_cast<unsigned>(m)),
                                           std::chrono::day(static_cast<unsigned>(d))};
    if (!date.ok())
        return std::nullopt;
    return std::chrono::sys_days(date).time_since_epoch().count();
}

std::string format_day(std::int64_t days_since_epoch) {
    return limit::utc_day(days_since_epoch * 86400);
}

void add_usage_fields(std::string_view day, std::string_view token,
                      std::span<const std::pair<std::string, std::string>> fields,
                      std::vector<usage_row>& out) {
    std::map<std::string, usage_row, std::less<>> by_model;
    for (const auto& [name, value] : fields) {
        // The model may itself hold a '|': the last one separates the what.
        const auto bar = name.rfind('|');
        if (bar == std::string::npos || bar == 0)
            continue;
        const auto model = std::string_view(name).substr(0, bar);
        const auto what = std::string_view(name).substr(bar + 1);
        const auto number = parse_integer(value);
        if (!number)
            continue;
        auto it = by_model.find(model);
        if (it == by_model.end()) {
            usage_row fresh;
            fresh.day = std::string(day);
            fresh.token = std::string(token);
            fresh.model = std::string(model);
            it = by_model.emplace(fresh.model, std::move(fresh)).first;
        }
        if (auto* member = member_of(it->second, what))
            *member = *number;
    }
    for (auto& [model, row] : by_model)
        out.push_back(std::move(row));
}

void sort_usage(std::vector<usage_row>& rows) {
    std::sort(rows.begin(), rows.end(), [](const usage_row& a, const usage_row& b) {
        return std::tie(a.day, a.token, a.model) < std::tie(b.day, b.token, b.model);
    });
}

std::string usd_text(std::int64_t nano_usd) {
    const bool negative = nano_usd < 0;
    // Magnitude in unsigned arithmetic: INT64_MIN has no positive twin.
    const std::uint64_t magnitude =
        negative ? 0 - static_cast<std::uint64_t>(nano_usd) : static_cast<std::uint64_t>(nano_usd);
    std::string out = negative ? "-" : "";
    out += std::to_string(magnitude / nano_per_usd);
    std::string fraction = std::to_string(magnitude % nano_per_usd);
    fraction.insert(0, 9 - fraction.size(), '0');
    while (!fraction.empty() && fraction.back() == '0')
        fraction.pop_back();
    if (!fraction.empty())
        out += "." + fraction;
    return out;
}

nlohmann::json usage_to_json(const std::vector<usage_row>& rows) {
    auto list = nlohmann::json::array();
    for (const auto& r : rows) {
        const double usd = static_cast<double>(r.nano_usd) / static_cast<double>(nano_per_usd);
        list.push_back({{"day", r.day},
                        {"token", r.token},
                        {"model", r.model},
                        {"requests", r.requests},
                        {"input", r.input},
                        {"cached_input", r.cached_input},
                        {"cache_write", r.cache_write},
                        {"output", r.output},
                        {"usd", usd},
                        {"estimated", r.estimated}});
    }
    return list;
}

std::string usage_to_csv(const std::vector<usage_row>& rows) {
    std::string out =
        "day,token,model,requests,input,cached_input,cache_write,output,usd,estimated\r\n";
    for (const auto& r : rows) {
        out += r.day;
        out += ',';
        append_csv_cell(out, r.token);
        out += ',';
        append_csv_cell(out, r.model);
        for (std::int64_t n : {r.requests, r.input, r.cached_input, r.cache_write, r.output}) {
            out += ',';
            out += std::to_string(n);
        }
        out += ',';
        out += usd_text(r.nano_usd);
        out += ',';
        out += std::to_string(r.estimated);
        out += "\r\n";
    }
    return out;
}

}  // namespace ratelimit_proxy::admin
