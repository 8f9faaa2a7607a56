#include "ratelimit_proxy/server/proxy_metrics.hpp"

#include <boost/beast/http/fields.hpp>

#include <algorithm>
#include <charconv>
#include <ctime>

#include "ratelimit_proxy/common/http_text.hpp"

namespace ratelimit_proxy::server {

std::string_view to_string(decision_kind d) {
    switch (d) {
        case decision_kind::allowed:
            return "allowed";
        case decision_kind::denied:
            return "denied";
        case decision_kind::denied_cached:
            return "denied-cached";
        case decision_kind::shadow_denied:
            return "shadow-denied";
        case decision_kind::bypass:
            return "bypass";
        case decision_kind::blocked:
            return "blocked";
        case decision_kind::fallback_allowed:
            return "fallback-allowed";
        case decision_kind::fallback_denied:
            return "fallback-denied";
        case decision_kind::fail_closed:
            return "fail-closed";
    }
    return "allowed";
}

std::string_view to_string(auth_failure a) {
    switch (a) {
        case auth_failure::missing:
            return "missing";
        case auth_failure::unknown:
            return "unknown";
        case auth_failure::unverifiable:
            return "unverifiable";
    }
    return "missing";
}

std::string_view to_string(answered_by a) {
    return a == answered_by::proxy ? "proxy" : "upstream";
}

namespace {

bool starts_with_nocase(std::string_view s, std::string_view prefix) {
    return s.size() >= prefix.size() && common::ascii_iequals(s.substr(0, prefix.size()), prefix);
}

std::optional<double> leading_number(std::string_view v) {
    while (!v.empty() && v.front() == ' ')
        v.remove_prefix(1);
    double d = 0;
    const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), d);
    if (ec != std::errc{} || end == v.data() || !(d >= 0))
        return std::nullopt;
    return d;
}

std::string lower(std::string_view s) {
    std::string out(s);
    for (auto& c : out)
        if (c >= 'A' && c <= 'Z')
            c = static_cast<char>(c - 'A' + 'a');
    return out;
}

bool valid_quota_name(std::string_view n) {
    return !n.empty() && n.size() <= upstream_quota::max_name_length &&
           std::all_of(n.begin(), n.end(), [](char c) {
               return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
           });
}

// IETF RateLimit: `"name";r=50;t=30` (one item; the first when there are more).
void parse_structured(std::string_view v, std::string& name, std::optional<double>& remaining) {
    const auto comma = v.find(',');
    v = v.substr(0, comma);
    const auto semi = v.find(';');
    std::string_view item = v.substr(0, semi);
    while (!item.empty() && item.front() == ' ')
        item.remove_prefix(1);
    if (item.size() >= 2 && item.front() == '"' && item.back() == '"')
        name = std::string(item.substr(1, item.size() - 2));
    for (std::size_t at = semi; at != std::string_view::npos;) {
        const auto next = v.find(';', at + 1);
        auto param = v.substr(at + 1, next == std::string_view::npos ? v.npos : next - at - 1);
        while (!param.empty() && param.front() == ' ')
            param.remove_prefix(1);
        if (param.substr(0, 2) == "r=")
            remaining = leading_number(param.substr(2));
        at = next;
    }
}

}  // namespace

upstream_quota::entry* upstream_quota::find_or_add(std::string_view name) {
    const auto n = published_.load(std::memory_order_relaxed);
    for (std::size_t i = 0; i < n; ++i)
        if (std::string_view(entries_[i].name.data(), entries_[i].length) == name)
            return &entries_[i];
    if (n == max_names || !valid_quota_name(name))
        return nullptr;
    auto& e = entries_[n];
    std::copy(name.begin(), name.end(), e.name.begin());
    e.length = static_cast<std::uint8_t>(name.size());
    published_.store(n + 1, std::memory_order_release);
    return &e;
}

void upstream_quota::observe(const boost::beast::http::fields& fields) {
    static constexpr std::string_view x_remaining = "x-ratelimit-remaining";
    static constexpr std::string_view x_limit = "x-ratelimit-limit";
    double now = 0;  // read once, when the first quota header is found
    for (const auto& f : fields) {
        const auto field = f.name_string();
        const char first = field.empty() ? '\0' : field.front();
        if (first != 'x' && first != 'X' && first != 'r' && first != 'R')
            continue;
        std::string name;
        std::optional<double> remaining;
        std::optional<double> limit;
        if (starts_with_nocase(field, x_remaining) || starts_with_nocase(field, x_limit)) {
            const bool is_remaining = starts_with_nocase(field, x_remaining);
            auto rest = field.substr(is_remaining ? x_remaining.size() : x_limit.size());
            if (!rest.empty() && rest.front() != '-')
                continue;
            name = rest.empty() ? "default" : lower(rest.substr(1));
            (is_remaining ? remaining : limit) = leading_number(f.value());
        } else if (common::ascii_iequals(field, "ratelimit-remaining")) {
            name = "default";
            remaining = leading_number(f.value());
        } else if (common::ascii_iequals(field, "ratelimit-limit")) {
            name = "default";
            limit = leading_number(f.value());
        } else if (common::ascii_iequals(field, "ratelimit")) {
            name = "default";
            parse_structured(f.value(), name, remaining);
        } else {
            continue;
        }
        if (!remaining && !limit)
            continue;
        auto* e = find_or_add(name);
        if (!e)
            continue;
        if (remaining) {
            e->remaining.set(*remaining);
            e->has_remaining.set(1);
        }
        if (limit) {
            e->limit.set(*limit);
            e->has_limit.set(1);
        }
        if (now == 0)
            now = static_cast<double>(std::time(nullptr));
        e->updated.set(now);
    }
}

client_tally::client_tally(std::size_t top_n)
    : capacity_(top_n == 0 ? 0 : std::clamp<std::size_t>(top_n * 4, 64, 4000)) {}

void client_tally::add(std::string_view client, bool allowed) {
    std::lock_guard lock(mutex_);
    (allowed ? all_.allowed : all_.denied) += 1;
    auto it = clients_.find(client);
    if (it == clients_.end()) {
        if (clients_.size() >= capacity_) {
            // Space-saving: the least counted client makes room, and the newcomer ranks from
            // its count (what it may have had unseen), so heavy hitters stay; what it is
            // exported with is only what was counted for it.
            auto least = std::min_element(
                clients_.begin(), clients_.end(),
                [](const auto& a, const auto& b) { return a.second.rank() < b.second.rank(); });
            counts newcomer;
            newcomer.error = least->second.rank();
            clients_.erase(least);
            it = clients_.emplace(std::string(client), newcomer).first;
        } else {
            it = clients_.emplace(std::string(client), counts{}).first;
        }
    }
    (allowed ? it->second.allowed : it->second.denied) += 1;
}

std::vector<std::pair<std::string, client_tally::counts>> client_tally::snapshot(
    counts& all) const {
    std::lock_guard lock(mutex_);
    all.allowed += all_.allowed;
    all.denied += all_.denied;
    return {clients_.begin(), clients_.end()};
}

worker_metrics::worker_metrics(unsigned per_client_top_n)
    : clients(per_client_top_n),
      decisions_(policies * tiers * decision_kinds),
      near_limit_(policies * tiers),
      responses_(policies * status_classes * sources) {
    for (std::size_t i = 0; i < policies; ++i)
        used_ratio_.emplace_back(metrics::ratio_bounds);
}

}  // namespace ratelimit_proxy::server
