#include "ratelimit_proxy/server/admission.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "ratelimit_proxy/auth/token.hpp"
#include "ratelimit_proxy/limit/check_items.hpp"
#include "ratelimit_proxy/limit/name_slots.hpp"

namespace ratelimit_proxy::server {

namespace {

enum class endpoint { api, health, ready, register_token };

bool get_or_head(http::verb v) {
    return v == http::verb::get || v == http::verb::head;
}
bool post_only(http::verb v) {
    return v == http::verb::post;
}
// TRACE would echo the injected upstream key back; CONNECT is no request for an API.
bool relayable(http::verb v) {
    return v != http::verb::trace && v != http::verb::connect;
}

// Every path the proxy answers, with the methods each takes. A 405's Allow is `allow`.
struct route {
    endpoint to;
    std::string_view path;  // empty: the configured API prefix and every path below it
    bool (*accepts)(http::verb);
    std::string_view allow;
    std::string_view refusal;  // the 405's message
};

constexpr route routes[] = {
    {endpoint::api,
     {},
     relayable,
     "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS",
     "TRACE and CONNECT are not relayed"},
    {endpoint::health, "/health", get_or_head, "GET, HEAD", "use GET /health"},
    {endpoint::ready, "/ready", get_or_head, "GET, HEAD", "use GET /ready"},
    {endpoint::register_token, "/register", post_only, "POST", "use POST /register"},
};

// On a segment boundary: "/api" holds "/api/x", not "/apix".
bool under_prefix(std::string_view path, std::string_view prefix) {
    return path.substr(0, prefix.size()) == prefix &&
           (path.size() == prefix.size() || path[prefix.size()] == '/');
}

const route* find_route(std::string_view path, std::string_view api_prefix) {
    for (const auto& r : routes) {
        if (r.path.empty() ? under_prefix(path, api_prefix) : path == r.path)
            return &r;
    }
    return nullptr;
}

}  // namespace

limit::policy registration_policy(const limit::rule_set& rules) {
    limit::policy p;
    p.name = "register";
    p.key = limit::key_kind::client_ip;
    p.numbers.limit = rules.registration().per_ip_per_minute;
    p.numbers.window_seconds = 60;
    p.slot = limit::policy_slots().slot(p.name);
    return p;
}

void admission::reset() {
    identity_.id.clear();
    identity_.tier.clear();
    identity_.overrides.reset();
    tier_slot_ = 0;
    route_slot_ = 0;
    limit_headers_.reset();
    verdict_.what = verdict::kind::forward;
    verdict_.label = "-";
    verdict_.limit_headers = nullptr;
    verdict_.clear_decision();
}

void admission::decide(const request_facts& request, handler_ptr h) {
    request_ = &request;
    rules_ = ctx_.rules;
    const auto& prefix = ctx_.settings.server.api_prefix;
    const route* r = find_route(request_->path, prefix);
    if (!r) {
        verdict_.local(http::status::not_found, "not_found",
                       "no such endpoint; proxied paths start with ");
        verdict_.message += prefix;
        return deliver(h);
    }
    if (!r->accepts(request_->method)) {
        verdict_.local(http::status::method_not_allowed, "method_not_allowed", r->refusal);
        verdict_.allow = r->allow;
        return deliver(h);
    }
    // A blocked network can neither call the API nor register.
    if ((r->to == endpoint::api || r->to == endpoint::register_token) &&
        rules_->address_blocked(*request_->client)) {
        count_request(decision_kind::blocked);
        verdict_.label = "blocked";
        verdict_.local(http::status::forbidden, "forbidden", "this client is blocked");
        return deliver(h);
    }
    if (r->to == endpoint::register_token) {
        route_slot_ = ctx_.register_policy.slot;
        verdict_.route = ctx_.register_policy.name;
    } else if (r->to == endpoint::api) {
        if (const auto* p = rules_->route_of(request_->method_text, request_->path)) {
            route_slot_ = p->slot;
            verdict_.route = p->name;
        }
    }
    switch (r->to) {
        case endpoint::api:
            return handle_api(h);
        case endpoint::health:
            verdict_.local_json(http::status::ok, R"({"status":"ok"})");
            return deliver(h);
        case endpoint::ready:
            return handle_ready(h);
        case endpoint::register_token:
            return handle_register(h);
    }
}

limit::check_subject admission::subject() const {
    limit::check_subject s;
    s.key_prefix = ctx_.settings.redis.key_prefix;
    s.client_address = request_->client_text;
    s.method = request_->method_text;
    s.path = request_->path;
    s.shadow_all = rules_->shadow_all();
    return s;
}

void admission::handle_ready(handler_ptr& h) {
    static constexpr std::string_view ping[] = {"PING"};
    ctx_.redis.command(ping, [this, h = std::move(h)](redis::outcome o, redis::reply&& r) mutable {
        if (o == redis::outcome::ok && r.type != redis::reply_type::error) {
            verdict_.local_json(http::status::ok, R"({"status":"ready"})");
        } else {
            verdict_.local_json(http::status::service_unavailable,
                                R"({"status":"unavailable","redis":"unreachable"})");
        }
        deliver(h);
    });
}

void admission::handle_register(handler_ptr& h) {
    const auto& reg = rules_->registration();
    if (reg.mode == limit::registration_mode::closed) {
        verdict_.label = "registration-closed";
        verdict_.local(http::status::forbidden, "registration_closed",
                       "registration is closed; ask the operator for a token");
        return deliver(h);
    }
    if (reg.mode == limit::registration_mode::secret) {
        const std::string_view sent = (*request_->headers)["X-Registration-Secret"];
        // Digests of both, so the comparison takes the same time whatever was sent.
        if (sent.empty() || !auth::digests_equal(auth::sha256(sent), auth::sha256(reg.secret))) {
            verdict_.label = "registration-refused";
            verdict_.local(http::status::forbidden, "registration_refused",
                           "registration needs the registration secret in "
                           "X-Registration-Secret");
            return deliver(h);
        }
    }
    // Registration is limited per client address, like any other policy.
    const limit::policy* p = &ctx_.register_policy;
    limit::build_check_items({&p, 1}, subject(), items_);
    check_started_ = std::chrono::steady_clock::now();
    ctx_.limiter.check(items_, [this, h = std::move(h)](limit::decision&& d) mutable {
        on_register_decision(std::move(d), h);
    });
}

void admission::on_register_decision(limit::decision&& d, handler_ptr& h) {
    if (h->closed())
        return;
    count_decision(d, false);
    record_decision(d);
    if (!d.allowed) {
        verdict_.label = "denied";
        set_limit_headers(d);
        if (d.store_unavailable) {
            verdict_.local(http::status::service_unavailable, "unavailable",
                           "cannot store the token: Redis is unreachable");
        } else {
            verdict_.too_many_requests("too many registrations from this address");
        }
        return deliver(h);
    }
    ctx_.tokens.issue(rules_->default_tier(),
                      [this, h = std::move(h)](std::optional<std::string> token) mutable {
                          if (!token) {
                              verdict_.local(http::status::service_unavailable, "unavailable",
                                             "cannot store the token: Redis is unreachable");
                          } else {
                              ctx_.metrics.tokens_registered.add();
                              verdict_.local_json(http::status::created, "{\"token\":\"");
                              verdict_.message.append(*token).append("\"}");
                          }
                          deliver(h);
                      });
}

void admission::handle_api(handler_ptr& h) {
    auto token = auth::bearer_token((*request_->headers)[http::field::authorization]);
    if (!token) {
        ctx_.metrics.count_auth_failure(auth_failure::missing);
        verdict_.label = "unauthenticated";
        verdict_.local(http::status::unauthorized, "unauthorized",
                       "missing bearer token: send Authorization: Bearer <token> from POST "
                       "/register");
        return deliver(h);
    }
    if (ctx_.tokens.cached(*token, identity_))
        return check_limit(h);
    ctx_.tokens.lookup(*token, [this, h = std::move(h)](auth::lookup_result result) mutable {
        on_lookup(result, h);
    });
}

void admission::on_lookup(const auth::lookup_result& result, handler_ptr& h) {
    if (h->closed())
        return;
    switch (result.status) {
        case auth::lookup_status::found:
            identity_ = result.who;
            return check_limit(h);
        case auth::lookup_status::unknown:
            ctx_.metrics.count_auth_failure(auth_failure::unknown);
            verdict_.label = "unauthenticated";
            verdict_.local(http::status::unauthorized, "unauthorized", "unknown token");
            return deliver(h);
        case auth::lookup_status::unavailable:
            ctx_.metrics.count_auth_failure(auth_failure::unverifiable);
            verdict_.label = "unavailable";
            verdict_.local(http::status::service_unavailable, "unavailable",
                           "cannot verify the token: Redis is unreachable");
            return deliver(h);
    }
}

void admission::check_limit(handler_ptr& h) {
    const auto& rules = *rules_;
    if (const auto* t = rules.tier_for(identity_.tier))
        tier_slot_ = t->slot;
    switch (rules.classify(identity_.id, *request_->client)) {
        case limit::access::block:
            count_request(decision_kind::blocked);
            verdict_.label = "blocked";
            verdict_.local(http::status::forbidden, "forbidden", "this token is blocked");
            return deliver(h);
        case limit::access::bypass:
            count_request(decision_kind::bypass);
            verdict_.forward("bypass");
            return deliver(h);
        case limit::access::normal:
            break;
    }
    const auto& emergency = rules.override_state();
    if (emergency.block_all) {
        verdict_.label = "emergency-block";
        verdict_.local(http::status::service_unavailable, "emergency_block",
                       "the operator has paused all traffic; retry later");
        verdict_.retry_after = "60";
        return deliver(h);
    }
    rules.select(identity_.tier, request_->method_text, request_->path, selected_);
    scale_ = emergency.factor * ctx_.load.factor();
    auto s = subject();
    s.token_id = identity_.id;
    s.overrides = identity_.overrides.get();
    s.scale = scale_;
    if (std::ranges::any_of(selected_, [](const limit::policy* p) {
            return p->algo == limit::algorithm::concurrency;
        })) {
        s.lease_id = leases_.new_id();
        s.lease_seconds = std::chrono::duration<double>(ctx_.leases.lease_time()).count();
    }
    limit::build_check_items(selected_, s, items_);
    if (items_.empty()) {
        verdict_.forward("unlimited");
        return deliver(h);
    }
    check_started_ = std::chrono::steady_clock::now();
    if (limit::decision known; ctx_.denials.lookup(items_, scale_, check_started_, known))
        return on_decision(std::move(known), true, h);
    ctx_.limiter.check(items_, [this, h = std::move(h)](limit::decision&& d) mutable {
        on_decision(std::move(d), false, h);
    });
}

void admission::count_request(decision_kind k) {
    ctx_.metrics.count_decision(0, tier_slot_, k);
}

void admission::count_decision(const limit::decision& d, bool known_denial) {
    auto& m = ctx_.metrics;
    if (d.store_unavailable) {
        for (const auto& item : items_)
            m.count_decision(item.source->slot, tier_slot_, decision_kind::fail_closed);
        return;
    }
    const double near = ctx_.settings.metrics.near_limit_ratio;
    for (const auto& r : d.results) {
        const auto policy = r.source->slot;
        auto* counters = r.source->counters.get();
        // A remembered denial checked nothing now: only the policies that denied count.
        if (known_denial && r.allowed)
            continue;
        const double used =
            r.allowed && r.quota > 0
                ? std::clamp(1.0 - static_cast<double>(r.remaining) / r.quota, 0.0, 1.0)
                : 1.0;
        m.observe_used(policy, used);
        decision_kind k;
        if (r.shadow && !r.allowed) {
            // Shadow mode: what enforcement would have done, for the operator only.
            spdlog::info("shadow: policy \"{}\" would deny {} {} (token {}, client {})",
                         r.source->name, request_->method_text, request_->path,
                         identity_.id.empty() ? "-" : identity_.id.substr(0, 8),
                         request_->client_text);
            if (counters)
                counters->add(limit::policy_counters::shadow_denied, ctx_.worker_index);
            k = decision_kind::shadow_denied;
        } else {
            if (counters)
                counters->add(
                    r.allowed ? limit::policy_counters::allowed : limit::policy_counters::denied,
                    ctx_.worker_index);
            if (r.allowed)
                k = d.decided_locally ? decision_kind::fallback_allowed : decision_kind::allowed;
            else if (known_denial)
                k = decision_kind::denied_cached;
            else
                k = d.decided_locally ? decision_kind::fallback_denied : decision_kind::denied;
        }
        m.count_decision(policy, tier_slot_, k);
        if (r.allowed && used >= near)
            m.count_near_limit(policy, tier_slot_);
    }
    if (m.clients.enabled())
        m.clients.add(identity_.id.empty() ? request_->client_text : identity_.id, d.allowed);
}

void admission::record_decision(const limit::decision& d) {
    verdict_.check_time = std::chrono::steady_clock::now() - check_started_;
    verdict_.deciding =
        d.tightest >= 0 ? d.results[static_cast<std::size_t>(d.tightest)] : limit::policy_result{};
}

void admission::set_limit_headers(const limit::decision& d) {
    auto headers = limit::make_headers(d);
    if (headers.empty()) {
        limit_headers_.reset();
        verdict_.limit_headers = nullptr;
    } else {
        limit_headers_ = std::move(headers);
        verdict_.limit_headers = &*limit_headers_;
    }
}

void admission::on_decision(limit::decision&& d, bool known_denial, handler_ptr& h) {
    // Held first: a client gone meanwhile gives its slots straight back.
    if (!known_denial)
        leases_.take(items_, d);
    if (h->closed())
        return leases_.end();
    count_decision(d, known_denial);
    record_decision(d);
    if (known_denial)
        verdict_.check_time = {};  // answered from memory: no store call
    if (d.store_unavailable) {
        verdict_.label = "unavailable";
        verdict_.local(http::status::service_unavailable, "unavailable",
                       "the rate limit cannot be checked now (Redis is unreachable) and this "
                       "limit fails closed; retry shortly");
        verdict_.retry_after = "1";
        return deliver(h);
    }
    set_limit_headers(d);
    if (!d.allowed) {
        if (known_denial) {
            verdict_.label = "denied-cached";
        } else {
            // Measured from when the check was sent, so it never outlasts the store's answer.
            ctx_.denials.remember(items_, d, scale_, check_started_);
            verdict_.label = d.decided_locally ? "denied-local" : "denied";
        }
        verdict_.too_many_requests("rate limit exceeded");
        return deliver(h);
    }
    verdict_.forward(d.decided_locally ? "allowed-local" : "allowed");
    deliver(h);
}

}  // namespace ratelimit_proxy::server
