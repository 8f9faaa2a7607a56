#include "ratelimit_proxy/server/admission.hpp"

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>

#include "ratelimit_proxy/auth/token.hpp"
#include "ratelimit_proxy/limit/check_items.hpp"
#include "ratelimit_proxy/limit/keys.hpp"
#include "ratelimit_proxy/limit/name_slots.hpp"
#include "ratelimit_proxy/metering/request_info.hpp"

namespace ratelimit_proxy::server {

namespace {

enum class endpoint { api, health, ready, register_token, budget };

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
    {endpoint::budget, "/budget", get_or_head, "GET, HEAD", "use GET /budget"},
};

bool needs_body(const limit::policy* p) {
    return p->needs_body();
}
bool is_metered(const limit::policy* p) {
    return p->metered();
}
bool counts_money(const limit::policy* p) {
    return p->what == limit::meter::usd;
}

std::int64_t unix_seconds_now() {
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

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

// 86400, not 86400.0.
nlohmann::json whole_or_not(double v) {
    if (std::floor(v) == v && std::fabs(v) < 9e15)
        return static_cast<std::int64_t>(v);
    return v;
}

nlohmann::json amount_json(const limit::policy& p, double amount) {
    return nlohmann::json::parse(limit::budget_amount_text(p, amount));
}

// GET /budget's answer: the token's budgets and today's usage by model.
std::string budget_report(const std::vector<limit::budget_state>& states,
                          const std::vector<limit::check_item>& items, const auth::identity& who,
                          const std::string& day, const limit::usage_counters* usage) {
    nlohmann::json budgets = nlohmann::json::array();
    for (std::size_t i = 0; i < items.size(); ++i) {
        const auto& p = *items[i].source;
        const auto& st = states[i];
        const double limit = items[i].numbers.limit;
        nlohmann::json b = {
            {"policy", p.name},
            {"unit", p.what == limit::meter::usd ? "usd" : "tokens"},
            {"scope", p.key == limit::key_kind::global      ? "global"
                      : p.key == limit::key_kind::client_ip ? "ip"
                                                            : "token"},
            {"limit", amount_json(p, limit)},
            {"spent", amount_json(p, st.used)},
            {"held", amount_json(p, st.held)},
            {"remaining", amount_json(p, std::max(0.0, limit - st.used - st.held))},
        };
        if (p.what == limit::meter::tokens)
            b["count"] = limit::to_string(p.counts);
        if (!p.match.model.empty())
            b["model"] = p.match.model;
        switch (p.numbers.period) {
            case limit::calendar::lifetime:
                b["window"] = "lifetime";
                break;
            case limit::calendar::week:
                b["window"] = "week";
                break;
            case limit::calendar::month:
                b["window"] = "month";
                break;
            case limit::calendar::none:
                b["window_seconds"] = whole_or_not(items[i].numbers.window_seconds);
                break;
        }
        if (p.numbers.period != limit::calendar::lifetime)
            b["reset_seconds"] = static_cast<std::int64_t>(std::ceil(st.reset_seconds - 1e-6));
        budgets.push_back(std::move(b));
    }
    nlohmann::json models = nlohmann::json::object();
    if (usage) {
        // Fields "<model>|<what>": the model may itself hold '|', the part after the last not.
        for (const auto& [field, value] : *usage) {
            const auto bar = field.rfind('|');
            if (bar == std::string::npos)
                continue;
            const auto model = field.substr(0, bar);
            const auto what = field.substr(bar + 1);
            auto& m = models[model];
            if (what == "nano_usd")
                m["usd"] = static_cast<double>(value) / 1e9;
            else
                m[what] = value;
        }
    }
    nlohmann::json out = {{"token_id", who.id},
                          {"budgets", std::move(budgets)},
                          {"usage_today", {{"date", day}, {"models", std::move(models)}}}};
    if (!usage)
        out["usage_today"]["unavailable"] = true;
    // Model names come from clients: never let a stray byte throw.
    return out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
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
    body_ = nullptr;
    reservations_.clear();
    metered_.reset();
    budget_request_ = false;
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
        case endpoint::budget:
            budget_request_ = true;
            return handle_api(h);
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
        return budget_request_ ? answer_budget(h) : check_limit(h);
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
            return budget_request_ ? answer_budget(h) : check_limit(h);
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
    if (std::ranges::any_of(selected_, needs_body)) {
        // Its model and its cost bound are in the body: the session reads it, then
        // body_ready() comes back here.
        if (!body_) {
            verdict_.what = verdict::kind::read_body;
            return deliver(h);
        }
        if (!prepare_metering(h))
            return;
    }
    scale_ = emergency.factor * ctx_.load.factor();
    auto s = subject();
    s.token_id = identity_.id;
    s.overrides = identity_.overrides.get();
    s.scale = scale_;
    const bool concurrency = std::ranges::any_of(
        selected_, [](const limit::policy* p) { return p->algo == limit::algorithm::concurrency; });
    if (concurrency || metered_.active()) {
        // One id per request: its lease and its hold are in different keys.
        hold_id_.assign(leases_.new_id());
        if (concurrency) {
            s.lease_id = hold_id_;
            s.lease_seconds = std::chrono::duration<double>(ctx_.leases.lease_time()).count();
        }
        if (metered_.active()) {
            s.metered_costs = reservations_;
            s.hold_id = hold_id_;
            s.hold_seconds = std::chrono::duration<double>(ctx_.settings.budget.hold_time).count();
        }
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

void admission::body_ready(std::string& body, handler_ptr h) {
    body_ = &body;
    check_limit(h);
}

bool admission::prepare_metering(handler_ptr& h) {
    // Only a POST asks an LLM for something (GET .../chat/completions lists stored ones).
    const auto dialect = request_->method == http::verb::post ? metering::dialect_of(request_->path)
                                                              : metering::dialect::none;
    if (dialect == metering::dialect::none) {
        // No LLM API this proxy knows: no model to match, no usage to read.
        std::erase_if(selected_, needs_body);
        return true;
    }
    std::string error;
    auto info = metering::read_request(dialect, *body_, error);
    if (!info) {
        verdict_.label = "invalid-body";
        verdict_.local(http::status::bad_request, "invalid_request_body", error);
        deliver(h);
        return false;
    }
    std::erase_if(selected_,
                  [&](const limit::policy* p) { return !p->match.matches_model(info->model); });
    if (!std::ranges::any_of(selected_, is_metered))
        return true;
    const auto default_max = ctx_.settings.budget.default_max_output_tokens;
    metered_.begin(dialect, std::move(*info), default_max);
    if (std::ranges::any_of(selected_, counts_money)) {
        // A zero price would let the request through uncounted: refuse it instead.
        const auto& model = metered_.info().model;
        const metering::price* price = model.empty() ? nullptr : rules_->pricing().find(model);
        if (!price) {
            verdict_.label = "unpriced-model";
            if (model.empty()) {
                verdict_.local(http::status::bad_request, "model_required",
                               "a money budget applies to this request, and its body names no "
                               "\"model\"");
            } else {
                verdict_.local(http::status::bad_request, "model_not_priced",
                               "a money budget applies to this request, and no price is "
                               "configured for model \"");
                verdict_.message.append(model).append(
                    "\" (the operator sets prices in \"pricing\" or PUT /admin/prices)");
            }
            metered_.reset();
            deliver(h);
            return false;
        }
        metered_.set_price(price);
    }
    metering::prepare_request(metered_.info(), *body_, default_max);
    reservations_.resize(selected_.size());
    for (std::size_t i = 0; i < selected_.size(); ++i)
        reservations_[i] = selected_[i]->metered() ? metered_.reservation(*selected_[i]) : 0;
    return true;
}

void admission::end_request() {
    leases_.end();
    settle_metered();
}

void admission::settle_metered() {
    if (!metered_.take_settlement())
        return;
    const auto used = metered_.charged_usage(body_ ? body_->size() : 0);
    held_items_.clear();
    settle_amounts_.clear();
    for (std::size_t i = 0; i < items_.size(); ++i) {
        const auto& item = items_[i];
        // A shadow budget that denied took nothing: there is nothing of it to settle.
        if (!item.metered || i >= consumed_.size() || !consumed_[i])
            continue;
        held_items_.push_back(item);
        settle_amounts_.push_back(metered_.amount(*item.source, used));
    }
    const auto ending = metered_.ending();
    auto& m = ctx_.metrics;
    m.count_metered_ending(static_cast<std::size_t>(ending));
    for (std::size_t i = 0; i < held_items_.size(); ++i)
        m.count_budget_charge(held_items_[i].source->slot, settle_amounts_[i]);
    limit::usage_record record;
    const auto day = limit::utc_day(unix_seconds_now());
    const auto& prefix = ctx_.settings.redis.key_prefix;
    usage_key_ = limit::usage_key(prefix, identity_.id, day);
    usage_days_key_ = limit::usage_days_key(prefix, day);
    record.key = usage_key_;
    record.days_key = usage_days_key_;
    record.token_id = identity_.id;
    record.model = metered_.info().model.empty() ? std::string_view("-") : metered_.info().model;
    record.input = used.input;
    record.cached_input = used.cached_input;
    record.cache_write = used.cache_write;
    record.output = used.output;
    record.nano_usd = metered_.nano_usd(used);
    record.estimated = ending == metered_ending::estimated;
    m.count_llm_usage(used.input, used.cached_input, used.cache_write, used.output,
                      record.nano_usd);
    ctx_.limiter.settle(held_items_, settle_amounts_, hold_id_, &record);
}

void admission::answer_budget(handler_ptr& h) {
    // Every budget of the token's tier that one key per token (or client, or everybody)
    // holds; a budget per route has a key per route and is not one number to show.
    selected_.clear();
    if (const auto* t = rules_->tier_for(identity_.tier)) {
        for (const auto& name : t->policies) {
            const auto* p = rules_->find_policy(name);
            if (p && p->metered() && p->key != limit::key_kind::token_route)
                selected_.push_back(p);
        }
    }
    auto s = subject();
    s.token_id = identity_.id;
    s.overrides = identity_.overrides.get();
    reservations_.assign(selected_.size(), 0);
    s.metered_costs = reservations_;
    limit::build_check_items(selected_, s, items_);
    ctx_.limiter.inspect(items_, [this, h = std::move(h)](
                                     bool ok, std::vector<limit::budget_state>&& states) mutable {
        if (h->closed())
            return;
        if (!ok || states.size() != items_.size()) {
            verdict_.label = "unavailable";
            verdict_.local(http::status::service_unavailable, "unavailable",
                           "the budgets cannot be read now (Redis is unreachable); retry shortly");
            verdict_.retry_after = "1";
            return deliver(h);
        }
        budget_states_ = std::move(states);
        const auto day = limit::utc_day(unix_seconds_now());
        usage_key_ = limit::usage_key(ctx_.settings.redis.key_prefix, identity_.id, day);
        ctx_.limiter.read_usage(usage_key_, [this, h = std::move(h), day](
                                                bool ok, limit::usage_counters&& usage) mutable {
            if (h->closed())
                return;
            verdict_.local_json(http::status::ok, budget_report(budget_states_, items_, identity_,
                                                                day, ok ? &usage : nullptr));
            deliver(h);
        });
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
    // A refused request holds nothing: nothing to settle.
    if (!d.allowed || d.store_unavailable) {
        metered_.reset();
    } else if (metered_.active()) {
        consumed_.resize(d.results.size());
        for (std::size_t i = 0; i < d.results.size(); ++i)
            consumed_[i] = d.results[i].allowed;
    }
    if (h->closed())
        return end_request();
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
        const auto& denying = d.results[static_cast<std::size_t>(std::max(d.tightest, 0))];
        if (known_denial) {
            verdict_.label = "denied-cached";
        } else {
            // Measured from when the check was sent, so it never outlasts the store's answer.
            ctx_.denials.remember(items_, d, scale_, check_started_);
            verdict_.label = d.decided_locally ? "denied-local" : "denied";
        }
        if (d.tightest >= 0 && denying.source->metered())
            return deny_budget(denying, items_[static_cast<std::size_t>(d.tightest)], h);
        verdict_.too_many_requests("rate limit exceeded");
        return deliver(h);
    }
    verdict_.forward(d.decided_locally ? "allowed-local" : "allowed");
    deliver(h);
}

void admission::deny_budget(const limit::policy_result& r, const limit::check_item& item,
                            handler_ptr& h) {
    const auto& p = *r.source;
    const char* unit = p.what == limit::meter::usd ? " USD" : " tokens";
    if (item.cost > r.quota) {
        // Never fits, whatever is spent: asking again would not help; a smaller request would.
        verdict_.label = "budget-too-small";
        verdict_.local(http::status::bad_request, "request_exceeds_budget",
                       "this request may cost up to ");
        verdict_.message.append(limit::budget_amount_text(p, item.cost))
            .append(unit)
            .append(" (its input bound plus its max tokens), more than budget \"")
            .append(p.name)
            .append("\" allows per window (")
            .append(limit::budget_amount_text(p, r.quota))
            .append(unit)
            .append("); send a smaller max_tokens");
        return deliver(h);
    }
    if (r.held_out) {
        verdict_.label = "budget-held";
        verdict_.too_many_requests("budget \"" + p.name + "\" is held by requests in flight");
        return deliver(h);
    }
    verdict_.label = "budget-spent";
    if (r.remaining > 0) {
        verdict_.budget_spent("budget \"" + p.name + "\" has " +
                              limit::budget_amount_text(p, static_cast<double>(r.remaining)) +
                              unit + " left, less than this request may cost (" +
                              limit::budget_amount_text(p, item.cost) + unit +
                              "); a smaller max_tokens may fit");
    } else {
        verdict_.budget_spent("budget \"" + p.name + "\" is spent");
    }
    deliver(h);
}

}  // namespace ratelimit_proxy::server
