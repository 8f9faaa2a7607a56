#include "ratelimit_proxy/server/local_reply.hpp"

#include <cmath>
#include <cstdio>

#include "ratelimit_proxy/limit/policy.hpp"
#include "ratelimit_proxy/server/logging.hpp"

namespace ratelimit_proxy::server {

namespace {

void append_string(std::string& out, std::string_view s) {
    out.push_back('"');
    append_json_escaped(out, s);
    out.push_back('"');
}

// A whole number without a fraction ("60"), else up to 6 significant digits ("0.5").
void append_number(std::string& out, double v) {
    char text[32];
    const int n = std::floor(v) == v && std::fabs(v) < 1e15
                      ? std::snprintf(text, sizeof text, "%.0f", v)
                      : std::snprintf(text, sizeof text, "%.6g", v);
    out.append(text, static_cast<std::size_t>(n));
}

}  // namespace

void verdict::forward(const char* decision_label) {
    what = kind::forward;
    label = decision_label;
}

void verdict::local(http::status s, std::string_view error_code, std::string_view text) {
    what = kind::local;
    status = s;
    error = error_code;
    message.assign(text);
    retry_after = {};
    allow = {};
}

void verdict::local_json(http::status s, std::string_view body) {
    local(s, {}, body);
}

void verdict::too_many_requests(std::string_view what_is_exceeded) {
    // Null only for a store reply that denies with no enforced result: still a 429.
    const std::string_view retry = limit_headers ? limit_headers->retry_after : std::string_view();
    local(http::status::too_many_requests, "rate_limit_exceeded", what_is_exceeded);
    message.append("; retry after ").append(retry).append(" seconds");
}

void verdict::budget_spent(std::string_view what_is_spent) {
    local(http::status::too_many_requests, "insufficient_quota", what_is_spent);
    if (limit_headers && !limit_headers->budget_reset.empty())
        message.append("; it resets in ").append(limit_headers->budget_reset).append(" seconds");
}

void verdict::clear_decision() {
    deciding = {};
    route = {};
    check_time = {};
}

std::string_view error_type(http::status s) {
    switch (s) {
        case http::status::unauthorized:
            return "authentication_error";
        case http::status::forbidden:
            return "permission_error";
        case http::status::too_many_requests:
            return "rate_limited";
        case http::status::bad_gateway:
        case http::status::gateway_timeout:
            return "upstream_error";
        case http::status::service_unavailable:
            return "service_unavailable";
        default:
            return static_cast<unsigned>(s) >= 500 ? "server_error" : "invalid_request_error";
    }
}

std::string_view scope_name(limit::key_kind k) {
    switch (k) {
        case limit::key_kind::token:
            return "token";
        case limit::key_kind::client_ip:
            return "ip";
        case limit::key_kind::token_route:
            return "route";
        case limit::key_kind::global:
            return "global";
    }
    return "global";
}

void error_body(const verdict& v, const reply_context& context, std::string& out) {
    const bool limited = v.status == http::status::too_many_requests;
    const auto* policy = limited && context.expose_limits ? v.deciding.source : nullptr;
    const bool concurrency = policy && policy->algo == limit::algorithm::concurrency;
    const bool metered = policy && policy->metered();
    const bool lifetime = metered && policy->numbers.period == limit::calendar::lifetime;
    out.append("{\"error\":{\"message\":\"");
    append_json_escaped(out, v.message);
    if (policy) {
        out.append(" (policy \\\"");
        append_json_escaped(out, policy->name);
        out.append("\\\" allows ");
        if (metered) {
            out.append(limit::budget_amount_text(*policy, v.deciding.quota));
            out.append(policy->what == limit::meter::usd ? " USD" : " tokens");
        } else {
            append_number(out, v.deciding.quota);
        }
        if (lifetime) {
            out.append(" in all per ");
        } else if (metered) {
            out.append(" per ");
            append_number(out, v.deciding.window_seconds);
            out.append(" seconds per ");
        } else if (concurrency) {
            out.append(" requests in flight per ");
        } else {
            out.append(" per ");
            append_number(out, v.deciding.window_seconds);
            out.append(" seconds per ");
        }
        out.append(scope_name(policy->key));
        out.push_back(')');
    }
    out.append("\",\"type\":");
    append_string(out, error_type(v.status));
    out.append(",\"code\":");
    append_string(out, v.error);
    out.append(",\"param\":null}");
    if (policy) {
        out.append(",\"policy\":");
        append_string(out, policy->name);
        out.append(",\"scope\":");
        append_string(out, scope_name(policy->key));
        out.append(",\"limit\":");
        if (metered) {
            out.append(limit::budget_amount_text(*policy, v.deciding.quota));
        } else {
            append_number(out, v.deciding.quota);
        }
        // Slots held, not a window: no window_seconds.
        if (!concurrency && !lifetime) {
            out.append(",\"window_seconds\":");
            append_number(out, v.deciding.window_seconds);
        }
        out.append(",\"remaining\":");
        if (metered) {
            out.append(
                limit::budget_amount_text(*policy, static_cast<double>(v.deciding.remaining)));
            out.append(",\"unit\":");
            append_string(out, policy->what == limit::meter::usd ? "usd" : "tokens");
        } else {
            append_number(out, static_cast<double>(v.deciding.remaining));
        }
    }
    // Retry-After's own digits: the body and the header never disagree.
    if (limited && v.limit_headers && !v.limit_headers->retry_after.empty())
        out.append(",\"retry_after\":").append(v.limit_headers->retry_after);
    out.append(",\"request_id\":");
    append_string(out, context.request_id);
    out.push_back('}');
}

void build_local_reply(const verdict& v, const reply_context& context, unsigned version,
                       bool keep_alive, http::response<http::string_body>& out) {
    out = {};
    out.result(v.status);
    out.version(version);
    out.set(http::field::server, "ratelimit-proxy");
    out.set(http::field::content_type, "application/json");
    out.set(http::field::cache_control, "no-store");
    if (v.status == http::status::unauthorized)
        out.set(http::field::www_authenticate, "Bearer");
    if (!v.allow.empty())
        out.set(http::field::allow, v.allow);
    if (!v.retry_after.empty())
        out.set(http::field::retry_after, v.retry_after);
    if (v.error.empty()) {
        out.body() = v.message;
    } else {
        error_body(v, context, out.body());
    }
    out.keep_alive(keep_alive);
    out.prepare_payload();
}

}  // namespace ratelimit_proxy::server
