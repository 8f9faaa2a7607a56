// The admin API's budgets (metered policies: meter tokens or usd): one key's state read with
// lua/settle.lua's peek, reset by deleting its bucket key (as /admin/buckets does), and a
// fixed window budget credited for its current window (settle.lua's credit). Over the control
// plane's own Redis connection; the numbers are the policy's with the token's overrides.
#include <nlohmann/json.hpp>

#include <spdlog/spdlog.h>

#include <boost/asio/ip/address.hpp>
#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "admin_api.hpp"
#include "api_reply.hpp"
#include "ratelimit_proxy/config/policy_json.hpp"
#include "ratelimit_proxy/limit/check_items.hpp"
#include "ratelimit_proxy/limit/lua_scripts.hpp"
#include "ratelimit_proxy/limit/redis_limiter.hpp"
#include "ratelimit_proxy/redis/awaitable.hpp"
#include "ratelimit_proxy/redis/script.hpp"

namespace ratelimit_proxy::admin {

namespace asio = boost::asio;
using json = nlohmann::json;
using detail::not_found;
using detail::reply;
using detail::unavailable;

struct admin_api::budget_target {
    std::shared_ptr<const limit::rule_set> rules;  // holds *policy
    const limit::policy* policy = nullptr;
    std::string token_id;  // key token
    std::string client;    // key ip, as the proxy writes client addresses
    limit::token_overrides overrides;
    std::vector<limit::check_item> items;  // one: the bucket key and the numbers in force
};

namespace {

const redis::script& settle_script() {
    static const redis::script s(lua::settle);
    return s;
}

// A quantity as the API shows it: USD for money (nano-USD inside), else tokens.
json amount_out(const limit::policy& p, double v) {
    if (p.what == limit::meter::usd)
        return config::usd_json_from_nano(std::round(v));
    if (std::floor(v) == v && std::fabs(v) < 9e15)
        return static_cast<long long>(v);
    return v;
}

json state_out(const limit::policy& p, const limit::check_item& item,
               const limit::budget_state& s) {
    const bool bucket =
        p.algo == limit::algorithm::token_bucket || p.algo == limit::algorithm::gcra;
    const double limit = bucket ? item.numbers.capacity() : item.numbers.limit;
    const double remaining = std::max(0.0, limit - s.used - s.held);
    json policy = config::policy_to_json(p);
    return {{"policy", p.name},
            {"meter", limit::to_string(p.what)},
            {"unit", p.what == limit::meter::usd ? "usd" : "tokens"},
            {"algorithm", limit::to_string(p.algo)},
            {"window", policy["window"]},
            {"key", item.key},
            {"limit", amount_out(p, limit)},
            {"used", amount_out(p, s.used)},
            {"held", amount_out(p, s.held)},
            {"remaining", amount_out(p, remaining)},
            {"reset_seconds", s.reset_seconds}};
}

// settle.lua in `mode` ("peek", "credit") for the target's item; nothing when Redis did not
// answer or refused (`error` then says what it said).
asio::awaitable<std::optional<limit::budget_state>> run_settle(
    redis::connection& conn, const std::vector<limit::check_item>& items, const std::string& mode,
    const std::vector<double>& amounts, std::string& error) {
    std::vector<std::string> storage;
    std::vector<std::string_view> keys;
    std::vector<std::string_view> args;
    limit::redis_limiter::settle_args(mode, items, amounts, {}, nullptr, std::chrono::seconds(0),
                                      storage, keys, args);
    auto answered = co_await redis::await_script(settle_script(), conn, keys, args);
    if (!answered.ok())
        co_return std::nullopt;
    std::vector<limit::budget_state> states;
    if (!limit::redis_limiter::parse_budget_reply(answered.reply, items.size(), states)) {
        error = answered.reply.str;
        co_return std::nullopt;
    }
    co_return states.front();
}

// Which key an answer is about, besides its Redis key.
void identify(json& out, const admin_api::budget_target& t);

}  // namespace

asio::awaitable<admin_api::budget_target> admin_api::find_budget(request& r,
                                                                 const std::string* token,
                                                                 const std::string* client) {
    budget_target t;
    t.rules = rules_.current();
    t.policy = t.rules->find_policy(r.name);
    if (!t.policy)
        throw api_error(404, not_found("policy", r.name, "policy"));
    if (!t.policy->metered())
        throw api_error(400, error_body("invalid",
                                        "policy '" + t.policy->name +
                                            "' is not a budget (meter requests): its state is "
                                            "at /admin/buckets",
                                        "policy"));
    switch (t.policy->key) {
        case limit::key_kind::global:
            break;
        case limit::key_kind::token_route:
            throw api_error(400, error_body("invalid",
                                            "policy '" + t.policy->name +
                                                "' counts per token and route: use "
                                                "/admin/buckets?policy=&key=<id METHOD /path>",
                                            "policy"));
        case limit::key_kind::client_ip: {
            if (!client || client->empty())
                throw api_error(400, error_body("invalid",
                                                "policy '" + t.policy->name +
                                                    "' counts per client address: give client",
                                                "client"));
            boost::system::error_code ec;
            const auto address = boost::asio::ip::make_address(*client, ec);
            if (ec)
                throw api_error(400, error_body("invalid", "not an IP address", "client"));
            t.client = address.to_string();
            break;
        }
        case limit::key_kind::token: {
            if (!token || token->empty())
                throw api_error(400, error_body("invalid",
                                                "policy '" + t.policy->name +
                                                    "' counts per token: give token (its id)",
                                                "token"));
            auto id = auth::token_records::normalize_id(*token);
            if (!id)
                throw api_error(400, error_body("invalid",
                                                "a token id is the 16 hex digits the token "
                                                "list shows",
                                                "token"));
            t.token_id = *id;
            // The token's own numbers, if it still exists (a revoked token's budget can
            // still be read and reset, with the policy's numbers).
            auto found = co_await tokens_.find(t.token_id);
            if (found.status == auth::record_status::unavailable)
                throw api_error(503, unavailable());
            if (found.status == auth::record_status::ambiguous)
                throw api_error(
                    409,
                    error_body("conflict", "several tokens share the id " + t.token_id, "token"));
            if (found.status == auth::record_status::ok) {
                auto record = co_await tokens_.read(found.value);
                if (record.status == auth::record_status::unavailable)
                    throw api_error(503, unavailable());
                if (record.status == auth::record_status::ok) {
                    try {
                        t.overrides =
                            config::token_overrides_from_json(record.value.overrides, "overrides");
                    } catch (const config::config_error&) {
                        // Unreadable: the proxy ignores them too.
                    }
                }
            }
            break;
        }
    }
    limit::check_subject s;
    s.key_prefix = rules_.key_prefix();
    s.token_id = t.token_id;
    s.client_address = t.client;
    s.overrides = &t.overrides;
    const limit::policy* one[] = {t.policy};
    limit::build_check_items(one, s, t.items);
    t.items.front().cost = 0;  // peek and credit reserve nothing
    co_return t;
}

namespace {

void identify(json& out, const admin_api::budget_target& t) {
    if (!t.token_id.empty())
        out["token"] = t.token_id;
    if (!t.client.empty())
        out["client"] = t.client;
}

}  // namespace

admin_api::response admin_api::get_budget(request& r) {
    const auto target = co_await find_budget(r, r.param("token"), r.param("client"));
    const std::string mode = "peek";
    const std::vector<double> amounts{0};
    std::string error;
    auto state = co_await run_settle(rules_.redis(), target.items, mode, amounts, error);
    if (!state) {
        if (!error.empty())
            spdlog::warn("admin API: budget peek failed: {}", error);
        co_return reply(503, unavailable());
    }
    json out = state_out(*target.policy, target.items.front(), *state);
    identify(out, target);
    co_return reply(200, std::move(out));
}

admin_api::response admin_api::reset_budget(request& r) {
    const auto target = co_await find_budget(r, r.param("token"), r.param("client"));
    const std::string key = target.items.front().key;
    auto out = co_await delete_state(key);
    if (out.status == 200) {
        out.body["policy"] = target.policy->name;
        identify(out.body, target);
    }
    co_return out;
}

admin_api::response admin_api::credit_budget(request& r) {
    r.read_json_body();
    r.only_fields({"token", "client", "amount"});
    std::optional<std::string> token, client;
    for (const char* field : {"token", "client"}) {
        auto it = r.body.find(field);
        if (it == r.body.end())
            continue;
        if (!it->is_string())
            co_return reply(400, error_body("invalid", "must be a string", field));
        (std::string_view(field) == "token" ? token : client) = it->get<std::string>();
    }
    const auto target =
        co_await find_budget(r, token ? &*token : nullptr, client ? &*client : nullptr);
    const limit::policy& p = *target.policy;
    if (p.algo != limit::algorithm::fixed_window)
        co_return reply(400,
                        error_body("invalid",
                                   "credit works on fixed_window budgets only; policy '" + p.name +
                                       "' is " + std::string(limit::to_string(p.algo)) +
                                       " (reset it with DELETE instead)",
                                   "policy"));
    auto it = r.body.find("amount");
    if (it == r.body.end())
        co_return reply(
            400, error_body("invalid",
                            p.what == limit::meter::usd ? "is required: the USD to give back"
                                                        : "is required: the tokens to give back",
                            "amount"));
    double amount = 0;
    if (p.what == limit::meter::usd) {
        auto nano = config::nano_usd_from_json(*it);
        if (!nano || *nano == 0)
            co_return reply(400, error_body("invalid",
                                            "must be a positive amount of USD with at most 9 "
                                            "decimals",
                                            "amount"));
        amount = static_cast<double>(*nano);
    } else {
        const double d = it->is_number() ? it->get<double>() : 0;
        if (!(std::isfinite(d) && d >= 1 && d <= 1e15 && std::floor(d) == d))
            co_return reply(
                400, error_body("invalid", "must be a positive whole number of tokens", "amount"));
        amount = d;
    }
    const std::string mode = "credit";
    const std::vector<double> amounts{amount};
    std::string error;
    auto state = co_await run_settle(rules_.redis(), target.items, mode, amounts, error);
    if (!state) {
        if (!error.empty())
            spdlog::warn("admin API: budget credit failed: {}", error);
        co_return reply(503, unavailable());
    }
    spdlog::info("admin API: budget {} credited {}", target.items.front().key, amount);
    json out = state_out(p, target.items.front(), *state);
    identify(out, target);
    out["credited"] = amount_out(p, amount);
    // Instances that remember the key as over its limit forget it: the credit applies at once.
    auto bumped = co_await rules_.bump_version();
    out["propagated"] = bumped.status == 200;
    co_return reply(200, std::move(out));
}

}  // namespace ratelimit_proxy::admin
