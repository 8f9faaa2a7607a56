#include "metrics_scrape.hpp"

#include <algorithm>
#include <array>
#include <map>

#include "ratelimit_proxy/limit/name_slots.hpp"
#include "ratelimit_proxy/metrics/exposition.hpp"
#include "ratelimit_proxy/server/proxy_metrics.hpp"
#include "worker.hpp"

#ifndef RLP_COMMIT
#define RLP_COMMIT "unknown"
#endif

namespace ratelimit_proxy::server {

namespace {

using metrics::exposition;
using metrics::histogram_totals;
constexpr std::string_view prefix = "ratelimit_proxy_";
using workers_t = std::vector<std::unique_ptr<worker>>;

std::string name_of(std::string_view suffix) {
    return std::string(prefix).append(suffix);
}

std::string_view slot_name(const std::vector<std::string>& names, std::size_t slot,
                           std::string_view unnamed) {
    if (slot == 0 || slot >= names.size() || names[slot].empty())
        return unnamed;
    return names[slot];
}

void decisions(exposition& out, const workers_t& workers, const limit::rule_set& rules) {
    const auto policies = limit::policy_slots().names();
    const auto tiers = limit::tier_slots().names();
    const auto decisions_name = name_of("decisions_total");
    const auto near_name = name_of("near_limit_total");
    constexpr std::string_view decisions_help =
        "Limit decisions by policy, the token's tier and decision (bypass and blocked: "
        "policy=\"none\")";
    constexpr std::string_view near_help =
        "Allowed requests that left the policy at or above metrics.near_limit_ratio of its limit";
    // The rules in force show as zeros from the start, so rate() has a first sample.
    std::vector<std::array<bool, worker_metrics::tiers>> in_force(worker_metrics::policies);
    for (const auto& t : rules.tiers())
        for (const auto& name : t.policies)
            if (const auto* p = rules.find_policy(name))
                in_force[p->slot][t.slot] = true;

    for (std::size_t p = 0; p < policies.size() && p < worker_metrics::policies; ++p) {
        for (std::size_t t = 0; t < tiers.size() && t < worker_metrics::tiers; ++t) {
            const auto policy = slot_name(policies, p, "none");
            const auto tier = slot_name(tiers, t, "none");
            std::uint64_t near = 0;
            for (std::size_t d = 0; d < decision_kinds; ++d) {
                std::uint64_t n = 0;
                for (const auto& w : workers)
                    n += w->metrics().decisions(p, t, d);
                const auto kind = static_cast<decision_kind>(d);
                const bool always = in_force[p][t] && (kind == decision_kind::allowed ||
                                                       kind == decision_kind::denied);
                if (n == 0 && !always)
                    continue;
                out.counter(decisions_name, decisions_help,
                            {{"policy", policy}, {"tier", tier}, {"decision", to_string(kind)}},
                            static_cast<double>(n));
            }
            for (const auto& w : workers)
                near += w->metrics().near_limit(p, t);
            if (near > 0 || in_force[p][t])
                out.counter(near_name, near_help, {{"policy", policy}, {"tier", tier}},
                            static_cast<double>(near));
        }
    }
    for (std::size_t p = 1; p < policies.size() && p < worker_metrics::policies; ++p) {
        histogram_totals used;
        for (const auto& w : workers)
            w->metrics().used_ratio(p).add_to(used);
        if (used.count == 0)
            continue;
        out.histogram(name_of("policy_limit_used_ratio"),
                      "Share of the policy's limit used when a request was decided (0 to 1)",
                      {{"policy", slot_name(policies, p, "none")}}, metrics::ratio_bounds, used);
    }
    for (const auto& p : rules.policies()) {
        out.gauge(name_of("policy_limit"), "The policy's configured limit (requests per window)",
                  {{"policy", p.name}}, p.numbers.limit);
        // A concurrency policy's limit is slots in flight: it has no window.
        if (p.algo != limit::algorithm::concurrency)
            out.gauge(name_of("policy_window_seconds"), "The policy's configured window",
                      {{"policy", p.name}}, p.numbers.window_seconds);
    }
}

void responses(exposition& out, const workers_t& workers) {
    const auto routes = limit::policy_slots().names();
    static constexpr std::string_view classes[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
    for (std::size_t r = 0; r < routes.size() && r < worker_metrics::policies; ++r) {
        for (std::size_t c = 0; c < worker_metrics::status_classes; ++c) {
            for (std::size_t s = 0; s < worker_metrics::sources; ++s) {
                std::uint64_t n = 0;
                for (const auto& w : workers)
                    n += w->metrics().responses(r, c, s);
                if (n == 0)
                    continue;
                out.counter(name_of("responses_total"),
                            "Responses by route (the matching policy's name, or other), status "
                            "class and who answered (proxy or upstream)",
                            {{"route", slot_name(routes, r, "other")},
                             {"status_class", classes[c]},
                             {"source", to_string(static_cast<answered_by>(s))}},
                            static_cast<double>(n));
            }
        }
    }
    for (std::size_t s = 0; s < worker_metrics::sources; ++s) {
        histogram_totals h;
        for (const auto& w : workers)
            w->metrics().request_seconds(s).add_to(h);
        out.histogram(name_of("request_duration_seconds"),
                      "Whole requests, from the request header read to the response written",
                      {{"source", to_string(static_cast<answered_by>(s))}},
                      metrics::duration_bounds, h);
    }
    histogram_totals header, overhead;
    for (const auto& w : workers) {
        w->metrics().upstream_header_seconds.add_to(header);
        w->metrics().overhead_seconds.add_to(overhead);
    }
    out.histogram(name_of("upstream_response_header_seconds"),
                  "From starting the upstream request to its response header", {},
                  metrics::duration_bounds, header);
    out.histogram(name_of("overhead_seconds"),
                  "The proxy's own time: request header read to the upstream request started "
                  "(authentication and the limit check)",
                  {}, metrics::fast_duration_bounds, overhead);
}

void redis_metrics(exposition& out, const workers_t& workers) {
    std::uint64_t commands = 0, writes = 0, timeouts = 0, disconnected = 0, errors = 0,
                  reconnects = 0;
    std::size_t up = 0;
    std::array<std::size_t, 3> breaker{};
    histogram_totals duration, batch;
    for (const auto& w : workers) {
        const auto& s = w->redis().stats();
        commands += s.commands.value();
        writes += s.writes.value();
        timeouts += s.timeouts.value();
        disconnected += s.disconnected.value();
        errors += s.error_replies.value();
        reconnects += s.reconnects.value();
        up += s.up.value() > 0 ? 1 : 0;
        s.command_seconds.add_to(duration);
        s.commands_per_write.add_to(batch);
        breaker[static_cast<std::size_t>(w->breaker().current())] += 1;
    }
    out.gauge(name_of("redis_up"), "1 when every worker's Redis connection is up, else 0", {},
              up == workers.size() ? 1 : 0);
    out.gauge(name_of("redis_connections_up"), "Workers whose Redis connection is up", {},
              static_cast<double>(up));
    static constexpr std::string_view states[] = {"closed", "open", "half_open"};
    for (std::size_t i = 0; i < breaker.size(); ++i)
        out.gauge(name_of("redis_breaker_state"),
                  "Workers whose Redis circuit breaker is in this state (open and half_open "
                  "decide on the local fallback)",
                  {{"state", states[i]}}, static_cast<double>(breaker[i]));
    constexpr std::string_view errors_help = "Redis commands that failed, by kind";
    out.counter(name_of("redis_errors_total"), errors_help, {{"kind", "timeout"}},
                static_cast<double>(timeouts));
    out.counter(name_of("redis_errors_total"), errors_help, {{"kind", "disconnected"}},
                static_cast<double>(disconnected));
    out.counter(name_of("redis_errors_total"), errors_help, {{"kind", "error_reply"}},
                static_cast<double>(errors));
    out.counter(name_of("redis_reconnects_total"), "Redis connections made again after a loss", {},
                static_cast<double>(reconnects));
    out.counter(name_of("redis_commands_total"), "Redis commands sent", {},
                static_cast<double>(commands));
    out.counter(name_of("redis_writes_total"),
                "Socket writes that carried them (commands per write: pipelining)", {},
                static_cast<double>(writes));
    out.histogram(name_of("redis_command_duration_seconds"), "One Redis command, sent to answered",
                  {}, metrics::fast_duration_bounds, duration);
    out.histogram(name_of("redis_commands_per_write"), "Commands carried by one socket write", {},
                  metrics::batch_bounds, batch);
}

void upstream_metrics(exposition& out, const workers_t& workers) {
    std::uint64_t opened = 0, failures = 0, reused = 0, timeouts = 0, throttled = 0;
    double idle = 0;
    struct quota {
        double remaining = 0, limit = 0, updated = -1;
        bool has_remaining = false, has_limit = false;
    };
    std::map<std::string, quota, std::less<>> quotas;
    for (const auto& w : workers) {
        const auto& p = w->pool().stats();
        opened += p.opened.value();
        failures += p.connect_failures.value();
        reused += p.reused.value();
        idle += p.idle.value();
        const auto& m = w->metrics();
        timeouts += m.upstream_timeouts.value();
        throttled += m.upstream_throttled.value();
        const auto& seen = m.upstream_quota_seen;
        for (std::size_t i = 0; i < seen.size(); ++i) {
            const auto& e = seen.at(i);
            auto& q = quotas[std::string(e.name.data(), e.length)];
            // The newest answer of any worker is the upstream's current word.
            if (e.has_remaining.value() > 0 && e.updated.value() > q.updated) {
                q.updated = e.updated.value();
                q.remaining = e.remaining.value();
                q.has_remaining = true;
            }
            if (e.has_limit.value() > 0) {
                q.limit = e.limit.value();
                q.has_limit = true;
            }
        }
    }
    out.counter(name_of("upstream_connect_failures_total"), "Upstream connects that failed", {},
                static_cast<double>(failures));
    out.counter(name_of("upstream_timeouts_total"), "Upstream exchanges that timed out", {},
                static_cast<double>(timeouts));
    out.counter(name_of("upstream_connections_opened_total"), "Upstream connections opened", {},
                static_cast<double>(opened));
    out.counter(name_of("upstream_connections_reused_total"),
                "Requests sent on a pooled keep-alive connection", {}, static_cast<double>(reused));
    out.gauge(name_of("upstream_pool_idle_connections"), "Idle keep-alive upstream connections", {},
              idle);
    out.counter(name_of("upstream_throttled_total"), "Upstream answers 429 (it limits us)", {},
                static_cast<double>(throttled));
    for (const auto& [name, q] : quotas) {
        if (q.has_remaining)
            out.gauge(name_of("upstream_ratelimit_remaining"),
                      "What the upstream said is left of its own limit (x-ratelimit-remaining-*, "
                      "RateLimit): the one upstream key is shared by every client",
                      {{"limit", name}}, q.remaining);
        if (q.has_limit)
            out.gauge(name_of("upstream_ratelimit_limit"),
                      "The upstream's own limit (x-ratelimit-limit-*, RateLimit-Limit)",
                      {{"limit", name}}, q.limit);
    }
}

void clients(exposition& out, const workers_t& workers, unsigned top_n) {
    if (top_n == 0)
        return;
    std::map<std::string, client_tally::counts, std::less<>> merged;
    client_tally::counts all;
    for (const auto& w : workers)
        for (auto& [client, c] : w->metrics().clients.snapshot(all)) {
            auto& m = merged[client];
            m.allowed += c.allowed;
            m.denied += c.denied;
            m.error += c.error;
        }
    std::vector<std::pair<std::string_view, client_tally::counts>> ranked(merged.begin(),
                                                                          merged.end());
    const auto n = std::min<std::size_t>(top_n, ranked.size());
    std::partial_sort(
        ranked.begin(), ranked.begin() + static_cast<std::ptrdiff_t>(n), ranked.end(),
        [](const auto& a, const auto& b) { return a.second.rank() > b.second.rank(); });
    client_tally::counts shown;
    constexpr std::string_view help =
        "Limit decisions for the busiest clients (token id, or address without a token); the "
        "rest as client=\"other\"";
    for (std::size_t i = 0; i < n; ++i) {
        const auto& [client, c] = ranked[i];
        out.counter(name_of("client_requests_total"), help,
                    {{"client", client}, {"decision", "allowed"}}, static_cast<double>(c.allowed));
        out.counter(name_of("client_requests_total"), help,
                    {{"client", client}, {"decision", "denied"}}, static_cast<double>(c.denied));
        shown.allowed += c.allowed;
        shown.denied += c.denied;
    }
    out.counter(name_of("client_requests_total"), help,
                {{"client", "other"}, {"decision", "allowed"}},
                static_cast<double>(all.allowed - std::min(all.allowed, shown.allowed)));
    out.counter(name_of("client_requests_total"), help,
                {{"client", "other"}, {"decision", "denied"}},
                static_cast<double>(all.denied - std::min(all.denied, shown.denied)));
}

}  // namespace

namespace {

// Budgets: metered requests by how they were charged, what the LLM usage came to, and what
// each metered policy was charged.
void budget_metrics(exposition& out, const workers_t& workers, const limit::rule_set& rules) {
    constexpr std::string_view endings[worker_metrics::metered_endings] = {
        "usage", "upstream_error", "estimated"};
    constexpr std::string_view kinds[worker_metrics::token_kinds] = {"input", "cached_input",
                                                                     "cache_write", "output"};
    std::array<std::uint64_t, worker_metrics::metered_endings> ended{};
    std::array<std::uint64_t, worker_metrics::token_kinds> tokens{};
    std::uint64_t nano_usd = 0;
    for (const auto& w : workers) {
        const auto& m = w->metrics();
        for (std::size_t e = 0; e < ended.size(); ++e)
            ended[e] += m.metered_ending_count(e);
        for (std::size_t k = 0; k < tokens.size(); ++k)
            tokens[k] += m.llm_tokens(k);
        nano_usd += m.llm_nano_usd();
    }
    for (std::size_t e = 0; e < ended.size(); ++e)
        out.counter(name_of("metered_requests_total"),
                    "Requests under a token or money budget, by how they were charged: usage "
                    "(the response's), upstream_error (nothing), estimated (no usage: cut, "
                    "client gone; an estimate within the reservation)",
                    {{"charged", endings[e]}}, static_cast<double>(ended[e]));
    for (std::size_t k = 0; k < tokens.size(); ++k)
        out.counter(name_of("llm_tokens_total"), "LLM tokens charged to metered requests",
                    {{"kind", kinds[k]}}, static_cast<double>(tokens[k]));
    out.counter(name_of("llm_cost_usd_total"),
                "Money charged to metered requests at the configured prices, USD", {},
                static_cast<double>(nano_usd) / 1e9);
    for (const auto& p : rules.policies()) {
        if (!p.metered())
            continue;
        std::uint64_t charged = 0;
        for (const auto& w : workers)
            charged += w->metrics().budget_charged(p.slot);
        const bool usd = p.what == limit::meter::usd;
        out.counter(name_of("budget_charged_total"),
                    "What each budget was charged, in its unit (tokens, or USD)",
                    {{"policy", p.name}, {"unit", usd ? "usd" : "tokens"}},
                    usd ? static_cast<double>(charged) / 1e9 : static_cast<double>(charged));
    }
}

}  // namespace

std::string scrape_metrics(const workers_t& workers, const limit::rule_set& rules,
                           const process_metrics& process) {
    exposition out;
    out.gauge(name_of("build_info"), "The proxy's version and commit",
              {{"version", RLP_VERSION}, {"commit", RLP_COMMIT}}, 1);
    decisions(out, workers, rules);
    responses(out, workers);
    redis_metrics(out, workers);
    upstream_metrics(out, workers);

    budget_metrics(out, workers, rules);

    std::uint64_t registered = 0;
    std::array<std::uint64_t, auth_failure_kinds> auth{};
    std::size_t open = 0;
    for (const auto& w : workers) {
        registered += w->metrics().tokens_registered.value();
        for (std::size_t a = 0; a < auth_failure_kinds; ++a)
            auth[a] += w->metrics().auth_failures(a);
        open += w->session_count();
    }
    out.counter(name_of("tokens_registered_total"), "Tokens issued by POST /register", {},
                static_cast<double>(registered));
    for (std::size_t a = 0; a < auth_failure_kinds; ++a)
        out.counter(name_of("auth_failures_total"),
                    "Requests refused for their token: missing, unknown, or unverifiable "
                    "(Redis unreachable)",
                    {{"reason", to_string(static_cast<auth_failure>(a))}},
                    static_cast<double>(auth[a]));
    out.gauge(name_of("open_connections"), "Client connections open", {},
              static_cast<double>(open));
    constexpr std::string_view reload_help = "Configuration reloads (SIGHUP) by result";
    out.counter(name_of("config_reloads_total"), reload_help, {{"result", "ok"}},
                static_cast<double>(process.reloads_ok.value()));
    out.counter(name_of("config_reloads_total"), reload_help, {{"result", "failed"}},
                static_cast<double>(process.reloads_failed.value()));
    out.gauge(name_of("config_last_reload_success_timestamp_seconds"),
              "When the configuration was last loaded successfully (start-up or SIGHUP), unix "
              "time",
              {}, process.last_reload_success.value());
    if (!workers.empty())
        clients(out, workers, workers.front()->context().settings.metrics.per_client_top_n);
    return out.text();
}

}  // namespace ratelimit_proxy::server
