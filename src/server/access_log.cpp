#include "ratelimit_proxy/server/access_log.hpp"

#include <spdlog/spdlog.h>

#include <cmath>
#include <cstdio>

#include "ratelimit_proxy/server/logging.hpp"

namespace ratelimit_proxy::server {

namespace {

void append_field(std::string& out, std::string_view name, std::string_view value) {
    out.append(",\"").append(name).append("\":\"");
    append_json_escaped(out, value);
    out.push_back('"');
}

// Empty text is null: "not known" rather than "".
void append_optional(std::string& out, std::string_view name, std::string_view value) {
    if (value.empty()) {
        out.append(",\"").append(name).append("\":null");
    } else {
        append_field(out, name, value);
    }
}

void append_integer(std::string& out, std::string_view name, std::int64_t value) {
    char text[24];
    const int n = std::snprintf(text, sizeof text, "%lld", static_cast<long long>(value));
    out.append(",\"").append(name).append("\":").append(text, static_cast<std::size_t>(n));
}

void append_millis(std::string& out, std::string_view name, double ms) {
    char text[32];
    const int n = std::snprintf(text, sizeof text, "%.3f", ms);
    out.append(",\"").append(name).append("\":").append(text, static_cast<std::size_t>(n));
}

}  // namespace

void format_access_text(const access_record& r, std::string& out) {
    char ms[32];
    std::snprintf(ms, sizeof ms, "%.1f", r.upstream_ms);
    out.append(r.peer).push_back(' ');
    out.append(r.method).push_back(' ');
    out.append(r.path).push_back(' ');
    out.append(std::to_string(r.status));
    out.append(" decision=").append(r.decision);
    out.append(" upstream_ms=").append(ms);
    out.append(" token=").append(r.token_id.empty() ? "-" : r.token_id.substr(0, 8));
    out.append(" request_id=").append(r.request_id);
    if (!r.trace_id.empty())
        out.append(" trace_id=").append(r.trace_id);
    if (!r.upstream_request_id.empty())
        out.append(" upstream_request_id=").append(r.upstream_request_id);
    if (r.suppressed > 0)
        out.append(" suppressed=").append(std::to_string(r.suppressed));
}

void format_access_json(const access_record& r, std::string& out) {
    out.append("{\"type\":\"access\"");
    append_field(out, "request_id", r.request_id);
    append_optional(out, "trace_id", r.trace_id);
    append_optional(out, "upstream_request_id", r.upstream_request_id);
    append_field(out, "method", r.method);
    append_field(out, "path", r.path);
    append_field(out, "route", r.route.empty() ? std::string_view("other") : r.route);
    append_integer(out, "status", r.status);
    append_field(out, "source", r.from_upstream ? "upstream" : "proxy");
    append_field(out, "client", r.client);
    append_optional(out, "token_id", r.token_id);
    append_optional(out, "tier", r.tier);
    append_field(out, "decision", r.decision);
    append_optional(out, "policy", r.policy);
    if (r.has_remaining) {
        append_integer(out, "remaining", r.remaining);
    } else {
        out.append(",\"remaining\":null");
    }
    append_millis(out, "duration_ms", r.duration_ms);
    append_millis(out, "upstream_ms", r.upstream_ms);
    append_millis(out, "redis_ms", r.redis_ms);
    append_integer(out, "bytes_in", static_cast<std::int64_t>(r.bytes_in));
    append_integer(out, "bytes_out", static_cast<std::int64_t>(r.bytes_out));
    append_optional(out, "user_agent", r.user_agent);
    if (r.suppressed > 0)
        append_integer(out, "suppressed", static_cast<std::int64_t>(r.suppressed));
    out.push_back('}');
}

bool denial_log_filter::admit(std::string_view client, std::string_view policy,
                              std::string_view decision, double window_seconds,
                              clock::time_point now, std::uint64_t& suppressed, evicted& dropped) {
    suppressed = 0;
    dropped.suppressed = 0;
    key_.assign(client).append(" ").append(policy).append(" ").append(decision);
    // At least a second: a policy of sub-second windows would otherwise log every denial.
    const auto window = std::chrono::duration_cast<clock::duration>(
        std::chrono::duration<double>(std::max(window_seconds, 1.0)));
    if (auto it = entries_.find(key_); it != entries_.end()) {
        if (now < it->second.window_end) {
            ++it->second.suppressed;
            return false;
        }
        suppressed = it->second.suppressed;
        it->second = {now + window, 0};
        return true;
    }
    if (entries_.size() >= capacity_ && !order_.empty()) {
        const auto oldest = entries_.find(*order_.front());
        order_.pop_front();
        if (oldest->second.suppressed > 0) {
            dropped.key = oldest->first;
            dropped.suppressed = oldest->second.suppressed;
        }
        entries_.erase(oldest);
    }
    const auto inserted = entries_.emplace(key_, entry{now + window, 0}).first;
    order_.push_back(&inserted->first);
    return true;
}

void log_access_line(access_record& r, bool json) {
    auto* logger = spdlog::default_logger_raw();
    // One of each per worker thread: no lock, capacity kept from line to line.
    thread_local denial_log_filter denials;
    thread_local std::string line;
    if (r.status == 429 && !r.policy.empty()) {
        denial_log_filter::evicted dropped;
        const bool log = denials.admit(r.client, r.policy, r.decision, r.window_seconds,
                                       denial_log_filter::clock::now(), r.suppressed, dropped);
        if (dropped.suppressed > 0)
            spdlog::info("denials not logged (flood rule): {} suppressed={}", dropped.key,
                         dropped.suppressed);
        if (!log)
            return;
    }
    line.clear();
    if (json) {
        format_access_json(r, line);
        logger->log(access_line_location(), spdlog::level::info, spdlog::string_view_t(line));
    } else {
        format_access_text(r, line);
        logger->log(spdlog::level::info, spdlog::string_view_t(line));
    }
}

}  // namespace ratelimit_proxy::server
