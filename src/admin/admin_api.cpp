#include "admin_api.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/url/parse.hpp>
#include <charconv>

#include "api_error.hpp"
#include "api_reply.hpp"
#include "ratelimit_proxy/common/http_text.hpp"
#include "ratelimit_proxy/config/policy_json.hpp"
#include "ratelimit_proxy/limit/keys.hpp"
#include "ratelimit_proxy/limit/policy.hpp"
#include "ratelimit_proxy/redis/awaitable.hpp"

namespace ratelimit_proxy::admin {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using json = nlohmann::json;
using detail::defined_by_admin;
using detail::member_object;
using detail::not_found;
using detail::remove_member;
using detail::reply;
using detail::unavailable;

namespace {

constexpr std::size_t default_page_size = 100;
constexpr std::size_t max_page_size = 1000;

bool is_json_media_type(std::string_view content_type) {
    auto semi = content_type.find(';');
    return common::ascii_iequals(common::trim_ows(content_type.substr(0, semi)),
                                 "application/json");
}

json no_token(std::string_view id) {
    return error_body("not_found", "no token with id " + std::string(id), "id");
}

// Where the stored layout of each algorithm is described (policy_script.hpp).
std::string_view layout_of(limit::algorithm a) {
    switch (a) {
        case limit::algorithm::token_bucket:
            return "hash {tokens, ts (unix µs)}";
        case limit::algorithm::gcra:
            return "string: theoretical arrival time (unix µs)";
        case limit::algorithm::sliding_window:
            return "hash {w (current window start, unix µs), c (count in it), p (count in the "
                   "previous window)}";
        case limit::algorithm::fixed_window:
            return "hash {w (window start, unix µs), c (count)}";
        case limit::algorithm::concurrency:
            return "sorted set {lease id: expiry (unix µs)}, one member per request in flight";
    }
    return "";
}

bool in_list(const std::vector<std::string>& list, std::string_view name) {
    return std::ranges::find(list, name) != list.end();
}

// What a delete answers besides the version.
auto deleted(const std::string& name) {
    return [name](const update_result&) { return json{{"deleted", name}}; };
}

// The overrides are stored in the units the limits are kept in (nano-USD for a usd policy):
// shown in the units the API takes (USD), as the rules in force define each policy.
json overrides_out(const json& stored, const limit::rule_set& rules) {
    try {
        return config::token_overrides_to_json(
            config::token_overrides_from_json(stored, "overrides"), &rules);
    } catch (const config::config_error&) {
        return stored;  // unreadable: the proxy ignores them; show them as they are
    }
}

json token_out(const auth::token_record& t, const limit::rule_set& rules) {
    return {{"id", t.id},
            {"tier", t.tier ? json(*t.tier) : json()},
            {"created_at", t.created_at ? json(*t.created_at) : json()},
            {"last_seen", t.last_seen ? json(*t.last_seen) : json()},
            {"overrides", overrides_out(t.overrides, rules)}};
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Requests and routes

void admin_api::request::read_json_body() {
    // `curl -d '{...}'` labels JSON as a form: take it when the body is JSON all the same.
    const bool form_label =
        http.content_type.empty() ||
        common::ascii_iequals(
            common::trim_ows(http.content_type.substr(0, http.content_type.find(';'))),
            "application/x-www-form-urlencoded");
    if (!http.body.empty() && !is_json_media_type(http.content_type) &&
        !(form_label && json::accept(http.body)))
        throw api_error(415, error_body("unsupported_media_type",
                                        "the body must be JSON (Content-Type: application/json)",
                                        "Content-Type"));
    if (http.body.empty())
        throw api_error(400, error_body("invalid_json", "a JSON object body is required", "body"));
    body = json::parse(http.body, nullptr, false);
    if (body.is_discarded())
        throw api_error(400, error_body("invalid_json", "the body is not valid JSON", "body"));
    if (!body.is_object())
        throw api_error(400, error_body("invalid_json", "the body must be a JSON object", "body"));
}

void admin_api::request::only_fields(std::initializer_list<std::string_view> allowed) const {
    for (const auto& [k, v] : body.items())
        if (std::ranges::find(allowed, k) == allowed.end())
            throw api_error(400, error_body("invalid", "unknown field", k));
}

const std::string* admin_api::request::param(std::string_view key) const {
    auto it = params.find(key);
    return it == params.end() ? nullptr : &it->second;
}

// Per resource, its methods in the order Allow names them.
const route_table<admin_api::handler>& admin_api::routes() {
    using v = http::verb;
    static const route_table<handler> table{
        {"/admin/policies", v::get, &admin_api::list_policies},
        {"/admin/policies/{name}", v::get, &admin_api::get_policy},
        {"/admin/policies/{name}", v::put, &admin_api::put_policy},
        {"/admin/policies/{name}", v::delete_, &admin_api::delete_policy},
        {"/admin/tiers", v::get, &admin_api::list_tiers},
        {"/admin/tiers/{name}", v::get, &admin_api::get_tier},
        {"/admin/tiers/{name}", v::put, &admin_api::put_tier},
        {"/admin/tiers/{name}", v::delete_, &admin_api::delete_tier},
        {"/admin/tokens", v::get, &admin_api::list_tokens},
        {"/admin/tokens/{id}", v::get, &admin_api::get_token},
        {"/admin/tokens/{id}", v::patch, &admin_api::patch_token},
        {"/admin/tokens/{id}", v::delete_, &admin_api::delete_token},
        {"/admin/buckets", v::get, &admin_api::show_bucket},
        {"/admin/buckets", v::delete_, &admin_api::reset_bucket},
        {"/admin/override", v::get, &admin_api::get_override},
        {"/admin/override", v::put, &admin_api::put_override},
        {"/admin/override", v::delete_, &admin_api::delete_override},
        {"/admin/registration", v::get, &admin_api::get_registration},
        {"/admin/registration", v::put, &admin_api::put_registration},
        {"/admin/access", v::get, &admin_api::get_access},
        {"/admin/access", v::put, &admin_api::put_access},
        {"/admin/shadow", v::get, &admin_api::get_shadow},
        {"/admin/shadow", v::put, &admin_api::put_shadow},
        {"/admin/stats", v::get, &admin_api::stats},
        {"/admin/prices", v::get, &admin_api::list_prices},
        {"/admin/prices", v::put, &admin_api::put_prices},
        {"/admin/prices/{model}", v::get, &admin_api::get_price},
        {"/admin/prices/{model}", v::put, &admin_api::put_price},
        {"/admin/prices/{model}", v::delete_, &admin_api::delete_price},
        {"/admin/budgets/{policy}", v::get, &admin_api::get_budget},
        {"/admin/budgets/{policy}", v::delete_, &admin_api::reset_budget},
        {"/admin/budgets/{policy}/credit", v::post, &admin_api::credit_budget},
        {"/admin/usage", v::get, &admin_api::usage},
    };
    return table;
}

admin_api::admin_api(asio::any_io_executor ex, control_plane& rules)
    : ex_(std::move(ex)), rules_(rules), tokens_(rules.redis(), rules.key_prefix()) {}

void admin_api::handle(api_request req, api_responder done) {
    asio::co_spawn(ex_, answer(std::move(req)),
                   [self = shared_from_this(), done = std::move(done)](std::exception_ptr e,
                                                                       api_response res) {
                       // answer() catches everything; an allocation failure may still get here.
                       if (e)
                           res = reply(500, error_body("internal", "internal error"));
                       done(std::move(res));
                   });
}

// GCC 12 warns -Wmismatched-new-delete on this frame: a known false positive with Asio's
// awaitable frame allocator (recycled blocks through aligned_new), not a real mismatch.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
admin_api::response admin_api::answer(api_request req) {
    request r;
    r.http = std::move(req);
    auto parsed = boost::urls::parse_origin_form(r.http.target);
    if (!parsed)
        co_return reply(400,
                        error_body("invalid", "the request target is not a valid path", "target"));
    std::vector<std::string> segments;
    for (auto seg : parsed->segments())
        segments.push_back(std::string(seg));
    // "/admin/policies/" names the collection, like "/admin/policies".
    if (!segments.empty() && segments.back().empty())
        segments.pop_back();
    for (auto p : parsed->params(boost::urls::encoding_opts(true)))
        r.params.emplace(std::string(p.key), std::string(p.value));

    auto route = routes().find(segments, r.http.method);
    if (route.result == route_table<handler>::outcome::not_found)
        co_return reply(404, error_body("not_found", "no such endpoint", "path"));
    if (route.result == route_table<handler>::outcome::method_not_allowed) {
        auto res = reply(405, error_body("method_not_allowed",
                                         std::string(http::to_string(r.http.method)) +
                                             " is not allowed here; allowed: " + route.allow));
        res.allow = std::move(route.allow);
        co_return res;
    }
    r.name = std::move(route.param);
    try {
        auto answered = co_await (this->*(*route.handler))(r);
        co_return answered;
    } catch (const api_error& e) {
        co_return reply(e.status, e.body);
    } catch (const config::config_error& e) {
        co_return reply(400, invalid_body(e));
    } catch (const std::exception& e) {
        spdlog::error("admin API: {} {}: {}", http::to_string(r.http.method), r.http.target,
                      e.what());
        co_return reply(500, error_body("internal", "internal error"));
    }
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

admin_api::response admin_api::change(const control_plane::mutation& m, const describer& describe,
                                      unsigned success_status) {
    auto result = co_await rules_.update(m);
    if (result.status != 200)
        co_return reply(result.status, std::move(result.body));
    json out;
    try {
        out = describe(result);
    } catch (const std::exception& e) {
        out = json::object();  // stored and applied; only the description failed
        spdlog::warn("admin API: describing the change failed: {}", e.what());
    }
    out["version"] = result.version;
    co_return reply(success_status, std::move(out));
}

// ---------------------------------------------------------------------------------------
// Policies

namespace {
json policy_out(const limit::policy& p, const json& overlay) {
    json j = config::policy_to_json(p);
    j["name"] = p.name;
    j["source"] = defined_by_admin(overlay, "policies", p.name) ? "admin" : "config";
    return j;
}

json tier_out(const limit::tier& t, const limit::rule_set& rules, const json& overlay,
              bool implicit) {
    json j = config::tier_to_json(t);
    j["name"] = t.name;
    j["default"] = rules.default_tier() == t.name;
    // implicit: no tiers are defined, so the default tier holds every policy.
    j["source"] = implicit                                     ? "implicit"
                  : defined_by_admin(overlay, "tiers", t.name) ? "admin"
                                                               : "config";
    return j;
}
}  // namespace

admin_api::response admin_api::list_policies(request&) {
    auto snap = rules_.snapshot();
    json list = json::array();
    for (const auto& p : snap.rules->policies())
        list.push_back(policy_out(p, *snap.overlay));
    co_return reply(200, {{"policies", std::move(list)}, {"version", snap.rules->version()}});
}

admin_api::response admin_api::get_policy(request& r) {
    const std::string& name = r.name;
    auto snap = rules_.snapshot();
    const auto* p = snap.rules->find_policy(name);
    if (!p)
        co_return reply(404, not_found("policy", name));
    co_return reply(200, policy_out(*p, *snap.overlay));
}

admin_api::response admin_api::put_policy(request& r) {
    const std::string& name = r.name;
    if (!config::is_valid_name(name))
        co_return reply(
            400, error_body("invalid", "a policy name is 1 to 64 letters, digits, '_', '-', '.'",
                            "name"));
    r.read_json_body();
    json body = r.body;
    if (auto it = body.find("name"); it != body.end() && *it != name)
        co_return reply(400, error_body("invalid", "does not match the name in the path", "name"));
    body["name"] = name;
    // Field errors named as the overlay names them ("policies.<name>.<field>").
    config::policy_from_json(body, "policies." + name);
    const bool existed = rules_.current()->find_policy(name) != nullptr;
    const control_plane::mutation m = [name, body](json& overlay, const limit::rule_set&) {
        member_object(overlay, "policies")[name] = body;
    };
    const describer describe = [name](const update_result& u) {
        return policy_out(*u.rules->find_policy(name), *u.overlay);
    };
    auto answered = co_await change(m, describe, existed ? 200 : 201);
    co_return answered;
}

admin_api::response admin_api::delete_policy(request& r) {
    const std::string& name = r.name;
    auto in_file = rules_.file_rules()->find_policy(name) != nullptr;
    const control_plane::mutation m = [name, in_file, cp = &rules_](json& overlay,
                                                                    const limit::rule_set& before) {
        if (!before.find_policy(name))
            throw api_error(404, not_found("policy", name));
        std::vector<std::string> users;
        // The implicit tier holds whatever policies exist: it never blocks a delete.
        if (!cp->tiers_implicit(overlay))
            for (const auto& t : before.tiers())
                if (in_list(t.policies, name))
                    users.push_back(t.name);
        if (!users.empty()) {
            std::string list;
            for (const auto& u : users)
                list += (list.empty() ? "" : ", ") + u;
            throw api_error(409, error_body("conflict",
                                            "policy '" + name + "' is used by tier(s) " + list +
                                                "; take it out of them first",
                                            "name"));
        }
        remove_member(overlay, "policies", name, in_file);
    };
    const describer describe = deleted(name);
    auto answered = co_await change(m, describe);
    co_return answered;
}

// ---------------------------------------------------------------------------------------
// Tiers

admin_api::response admin_api::list_tiers(request&) {
    auto snap = rules_.snapshot();
    const bool implicit = rules_.tiers_implicit(*snap.overlay);
    json list = json::array();
    for (const auto& t : snap.rules->tiers())
        list.push_back(tier_out(t, *snap.rules, *snap.overlay, implicit));
    co_return reply(200, {{"default_tier", snap.rules->default_tier()},
                          {"tiers", std::move(list)},
                          {"version", snap.rules->version()}});
}

admin_api::response admin_api::get_tier(request& r) {
    const std::string& name = r.name;
    auto snap = rules_.snapshot();
    const auto* t = snap.rules->find_tier(name);
    if (!t)
        co_return reply(404, not_found("tier", name));
    co_return reply(200,
                    tier_out(*t, *snap.rules, *snap.overlay, rules_.tiers_implicit(*snap.overlay)));
}

admin_api::response admin_api::put_tier(request& r) {
    const std::string& name = r.name;
    if (!config::is_valid_name(name))
        co_return reply(
            400,
            error_body("invalid", "a tier name is 1 to 64 letters, digits, '_', '-', '.'", "name"));
    r.read_json_body();
    json body = r.body;
    if (auto it = body.find("name"); it != body.end()) {
        if (*it != name)
            co_return reply(400,
                            error_body("invalid", "does not match the name in the path", "name"));
        body.erase("name");
    }
    bool make_default = false;
    if (auto it = body.find("default"); it != body.end()) {
        if (!it->is_boolean())
            co_return reply(400, error_body("invalid", "must be true or false", "default"));
        make_default = it->get<bool>();
        body.erase("default");
    }
    config::tier_from_json(name, body, "tiers." + name);
    const bool existed = rules_.current()->find_tier(name) != nullptr;
    const control_plane::mutation m = [name, body, make_default](json& overlay,
                                                                 const limit::rule_set&) {
        member_object(overlay, "tiers")[name] = body;
        if (make_default)
            overlay["default_tier"] = name;
    };
    const describer describe = [this, name](const update_result& u) {
        return tier_out(*u.rules->find_tier(name), *u.rules, *u.overlay,
                        rules_.tiers_implicit(*u.overlay));
    };
    auto answered = co_await change(m, describe, existed ? 200 : 201);
    co_return answered;
}

admin_api::response admin_api::delete_tier(request& r) {
    const std::string& name = r.name;
    auto in_file = rules_.file_rules()->find_tier(name) != nullptr;
    const control_plane::mutation m = [name, in_file](json& overlay,
                                                      const limit::rule_set& before) {
        if (!before.find_tier(name))
            throw api_error(404, not_found("tier", name));
        if (before.default_tier() == name)
            throw api_error(409, error_body("conflict",
                                            "'" + name +
                                                "' is the default tier; make another tier "
                                                "the default first",
                                            "name"));
        remove_member(overlay, "tiers", name, in_file);
    };
    const describer describe = deleted(name);
    auto answered = co_await change(m, describe);
    co_return answered;
}

// ---------------------------------------------------------------------------------------
// Tokens: HTTP to auth::token_records calls. A change to a token also bumps the rules
// version, so that every instance drops its token caches within one poll.

asio::awaitable<auth::token_ref> admin_api::find_token(const std::string& raw_id) {
    auto id = auth::token_records::normalize_id(raw_id);
    if (!id)
        throw api_error(
            400,
            error_body("invalid", "a token id is the 16 hex digits the token list shows", "id"));
    auto found = co_await tokens_.find(*id);
    switch (found.status) {
        case auth::record_status::ok:
            break;
        case auth::record_status::not_found:
            throw api_error(404, no_token(*id));
        case auth::record_status::ambiguous:
            throw api_error(409,
                            error_body("conflict", "several tokens share the id " + *id, "id"));
        case auth::record_status::unavailable:
            throw api_error(503, unavailable());
    }
    co_return std::move(found.value);
}

admin_api::response admin_api::list_tokens(request& r) {
    std::size_t page = default_page_size;
    if (const auto* n = r.param("count")) {
        std::size_t v = 0;
        auto [end, ec] = std::from_chars(n->data(), n->data() + n->size(), v);
        if (ec != std::errc() || end != n->data() + n->size() || v == 0 || v > max_page_size)
            co_return reply(
                400, error_body("invalid", "a number from 1 to " + std::to_string(max_page_size),
                                "count"));
        page = v;
    }
    std::string cursor = "0";
    if (const auto* cur = r.param("cursor")) {
        if (cur->empty() || cur->size() > 20 ||
            !std::ranges::all_of(*cur, [](char ch) { return ch >= '0' && ch <= '9'; }))
            co_return reply(400,
                            error_body("invalid", "not a cursor from a previous page", "cursor"));
        cursor = *cur;
    }
    auto listed = co_await tokens_.list(cursor, page);
    if (listed.status != auth::record_status::ok)
        co_return reply(503, unavailable());
    json tokens = json::array();
    const auto rules = rules_.current();
    for (const auto& t : listed.value.tokens)
        tokens.push_back(token_out(t, *rules));
    const bool complete = listed.value.cursor == "0";
    co_return reply(200, {{"tokens", std::move(tokens)},
                          {"cursor", std::move(listed.value.cursor)},
                          {"complete", complete}});
}

admin_api::response admin_api::get_token(request& r) {
    auto token = co_await find_token(r.name);
    auto record = co_await tokens_.read(token);
    if (record.status == auth::record_status::not_found)
        co_return reply(404, no_token(token.id));
    if (record.status != auth::record_status::ok)
        co_return reply(503, unavailable());
    co_return reply(200, token_out(record.value, *rules_.current()));
}

admin_api::response admin_api::patch_token(request& r) {
    r.read_json_body();
    r.only_fields({"tier", "overrides"});
    auto rules = rules_.current();
    auth::token_patch change;
    if (auto it = r.body.find("tier"); it != r.body.end()) {
        if (!it->is_string())
            co_return reply(400, error_body("invalid", "must be a tier name", "tier"));
        auto tier = it->get<std::string>();
        if (!rules->find_tier(tier))
            co_return reply(400, error_body("invalid", "no tier named '" + tier + "'", "tier"));
        change.tier = std::move(tier);
    }
    if (auto it = r.body.find("overrides"); it != r.body.end()) {
        // null removes them, as an empty object does.
        change.overrides.emplace();
        if (!it->is_null()) {
            // A usd policy's limit is USD here, nano-USD as stored.
            *change.overrides = config::token_overrides_from_json(*it, "overrides", rules.get());
            for (const auto& [policy, o] : *change.overrides)
                if (!rules->find_policy(policy))
                    co_return reply(400, error_body("invalid", "no policy named '" + policy + "'",
                                                    "overrides." + policy));
        }
    }
    if (!change.tier && !change.overrides)
        co_return reply(400,
                        error_body("invalid", "nothing to change: give tier or overrides", "body"));
    auto token = co_await find_token(r.name);
    const auto patched = co_await tokens_.patch(token, change);
    if (patched == auth::record_status::unavailable)
        co_return reply(503, unavailable());
    if (patched == auth::record_status::not_found)
        co_return reply(404, no_token(token.id));
    // The new tier or numbers apply everywhere within a poll.
    auto bumped = co_await rules_.bump_version();
    auto record = co_await tokens_.read(token);
    if (record.status == auth::record_status::not_found)
        co_return reply(404, no_token(token.id));
    if (record.status != auth::record_status::ok)
        co_return reply(503, unavailable());
    json out = token_out(record.value, *rules_.current());
    out["propagated"] = bumped.status == 200;
    if (bumped.status == 200)
        out["version"] = bumped.version;
    co_return reply(200, std::move(out));
}

admin_api::response admin_api::delete_token(request& r) {
    auto token = co_await find_token(r.name);
    const auto revoked = co_await tokens_.revoke(token);
    if (revoked == auth::record_status::unavailable)
        co_return reply(503, unavailable());
    if (revoked == auth::record_status::not_found)
        co_return reply(404, no_token(token.id));
    spdlog::info("admin API: token {} revoked", token.id);
    // Every instance drops its token caches (and the known-token fallback) within one poll.
    auto bumped = co_await rules_.bump_version();
    json out = {{"revoked", token.id}, {"propagated", bumped.status == 200}};
    if (bumped.status == 200)
        out["version"] = bumped.version;
    else
        out["message"] =
            "revoked in Redis; other instances forget it when their token cache entry expires";
    co_return reply(200, std::move(out));
}

// ---------------------------------------------------------------------------------------
// Buckets

namespace {
// The bucket a /admin/buckets request names (?policy=...&key=...); throws api_error (400
// `invalid` naming `policy` or `key` when one is missing, 404 for an unknown policy).
struct named_bucket {
    std::shared_ptr<const limit::rule_set> rules;  // holds *policy
    const limit::policy* policy = nullptr;
    const std::string* bucket = nullptr;
    std::string key;
};

named_bucket find_bucket(const control_plane& cp, const std::string* policy,
                         const std::string* bucket, std::string_view bucket_required) {
    if (!policy || policy->empty())
        throw api_error(400, error_body("invalid", "the policy name is required", "policy"));
    if (!bucket || bucket->empty())
        throw api_error(400, error_body("invalid", bucket_required, "key"));
    named_bucket b;
    b.rules = cp.current();
    b.policy = b.rules->find_policy(*policy);
    if (!b.policy)
        throw api_error(404, not_found("policy", *policy, "policy"));
    b.bucket = bucket;
    b.key = limit::bucket_key(cp.key_prefix(), b.policy->name, *bucket);
    return b;
}
}  // namespace

admin_api::response admin_api::show_bucket(request& r) {
    const auto b = find_bucket(rules_, r.param("policy"), r.param("key"),
                               "the bucket is required: global, a client address, a token id, "
                               "or 'id METHOD /path'");
    const auto& key = b.key;
    json out = {{"policy", b.policy->name},
                {"algorithm", limit::to_string(b.policy->algo)},
                {"bucket", *b.bucket},
                {"key", key},
                {"layout", layout_of(b.policy->algo)}};
    auto& redis = rules_.redis();
    const std::string_view type_args[] = {"TYPE", key};
    auto type = co_await redis::await_command(redis, type_args);
    if (!type.ok() || type.reply.type != redis::reply_type::status)
        co_return reply(503, unavailable());
    out["type"] = type.reply.str;
    if (type.reply.str == "none") {
        out["exists"] = false;
        out["state"] = nullptr;
        out["ttl_ms"] = nullptr;
        co_return reply(200, std::move(out));
    }
    out["exists"] = true;
    const bool hash = type.reply.str == "hash";
    if (type.reply.str == "zset") {
        // The lease set; expired members still listed count for nothing.
        const std::string_view read_args[] = {"ZRANGE", key, "0", "-1", "WITHSCORES"};
        auto read = co_await redis::await_command(redis, read_args);
        if (!read.ok() || read.reply.type == redis::reply_type::error)
            co_return reply(503, unavailable());
        json leases = json::object();
        const auto& e = read.reply.elements;
        for (std::size_t i = 0; i + 1 < e.size(); i += 2)
            leases[e[i].str] = e[i + 1].str;
        out["state"] = {{"leases", std::move(leases)}};
    } else if (!hash && type.reply.str != "string") {
        out["state"] = nullptr;
    } else {
        const std::string_view read_args[] = {hash ? "HGETALL" : "GET", key};
        auto read = co_await redis::await_command(redis, read_args);
        if (!read.ok() || read.reply.type == redis::reply_type::error)
            co_return reply(503, unavailable());
        json state = json::object();
        if (hash) {
            const auto& e = read.reply.elements;
            for (std::size_t i = 0; i + 1 < e.size(); i += 2)
                state[e[i].str] = e[i + 1].str;
        } else {
            state["value"] = read.reply.str;
        }
        out["state"] = std::move(state);
    }
    const std::string_view ttl_args[] = {"PTTL", key};
    auto ttl = co_await redis::await_command(redis, ttl_args);
    if (!ttl.ok() || ttl.reply.type != redis::reply_type::integer)
        co_return reply(503, unavailable());
    out["ttl_ms"] = ttl.reply.integer >= 0 ? json(ttl.reply.integer) : json();
    co_return reply(200, std::move(out));
}

admin_api::response admin_api::reset_bucket(request& r) {
    const auto b = find_bucket(rules_, r.param("policy"), r.param("key"), "the bucket is required");
    auto out = co_await delete_state(b.key);
    if (out.status == 200) {
        out.body["policy"] = b.policy->name;
        out.body["bucket"] = *b.bucket;
    }
    co_return out;
}

admin_api::response admin_api::delete_state(const std::string& key) {
    const std::string_view args[] = {"DEL", key};
    auto del = co_await redis::await_command(rules_.redis(), args);
    if (!del.ok() || del.reply.type != redis::reply_type::integer)
        co_return reply(503, unavailable());
    spdlog::info("admin API: bucket {} reset", key);
    json out = {{"key", key}, {"deleted", del.reply.integer > 0}};
    // Instances remember keys known to be over their limit until the retry time; the version
    // bump makes them forget, so the reset takes effect at once everywhere.
    auto bumped = co_await rules_.bump_version();
    out["propagated"] = bumped.status == 200;
    co_return reply(200, std::move(out));
}

// ---------------------------------------------------------------------------------------
// Override, registration, access lists, shadow mode, stats

namespace {
json override_out(const limit::rule_set& rules) {
    json out = config::override_to_json(rules.override_state());
    out["active"] = rules.override_state().active();
    return out;
}
}  // namespace

admin_api::response admin_api::get_override(request&) {
    co_return reply(200, override_out(*rules_.current()));
}

admin_api::response admin_api::put_override(request& r) {
    r.read_json_body();
    json body = r.body;
    config::override_from_json(body, "override");
    const control_plane::mutation m = [body](json& overlay, const limit::rule_set&) {
        overlay["override"] = body;
    };
    const describer describe = [](const update_result& u) { return override_out(*u.rules); };
    auto answered = co_await change(m, describe);
    co_return answered;
}

admin_api::response admin_api::delete_override(request&) {
    const control_plane::mutation m = [](json& overlay, const limit::rule_set&) {
        // Explicitly lifted (not just removed: lifts one from the config file too).
        overlay["override"] = config::override_to_json(limit::emergency_override{});
    };
    const describer describe = [](const update_result& u) { return override_out(*u.rules); };
    auto answered = co_await change(m, describe);
    co_return answered;
}

admin_api::response admin_api::get_registration(request&) {
    co_return reply(200, config::registration_to_json(rules_.current()->registration()));
}

admin_api::response admin_api::put_registration(request& r) {
    r.read_json_body();
    json body = r.body;
    config::registration_from_json(body, "registration");
    const control_plane::mutation m = [body](json& overlay, const limit::rule_set&) {
        overlay["registration"] = body;
    };
    const describer describe = [](const update_result& u) {
        return config::registration_to_json(u.rules->registration());
    };
    auto answered = co_await change(m, describe);
    co_return answered;
}

namespace {
json access_out(const limit::rule_set& rules) {
    return {{"bypass", config::access_list_to_json(rules.bypass())},
            {"block", config::access_list_to_json(rules.block())}};
}
}  // namespace

admin_api::response admin_api::get_access(request&) {
    co_return reply(200, access_out(*rules_.current()));
}

admin_api::response admin_api::put_access(request& r) {
    r.read_json_body();
    r.only_fields({"bypass", "block"});
    json body = r.body;
    if (body.empty())
        co_return reply(400, error_body("invalid", "give bypass, block or both", "body"));
    for (const auto& [k, v] : body.items())
        config::access_list_from_json(v, k);
    const control_plane::mutation m = [body](json& overlay, const limit::rule_set&) {
        for (const auto& [k, v] : body.items())
            overlay[k] = v;
    };
    const describer describe = [](const update_result& u) { return access_out(*u.rules); };
    auto answered = co_await change(m, describe);
    co_return answered;
}

admin_api::response admin_api::get_shadow(request&) {
    co_return reply(200, {{"enabled", rules_.current()->shadow_all()}});
}

admin_api::response admin_api::put_shadow(request& r) {
    r.read_json_body();
    r.only_fields({"enabled"});
    auto it = r.body.find("enabled");
    if (it == r.body.end() || !it->is_boolean())
        co_return reply(400, error_body("invalid", "must be true or false", "enabled"));
    const bool enabled = it->get<bool>();
    const control_plane::mutation m = [enabled](json& overlay, const limit::rule_set&) {
        overlay["shadow_mode"] = enabled;
    };
    const describer describe = [](const update_result& u) {
        return json{{"enabled", u.rules->shadow_all()}};
    };
    auto answered = co_await change(m, describe);
    co_return answered;
}

admin_api::response admin_api::stats(request&) {
    auto rules = rules_.current();
    json list = json::array();
    for (const auto& p : rules->policies()) {
        json j = {{"name", p.name}, {"allowed", 0}, {"denied", 0}, {"shadow_denied", 0}};
        if (p.counters) {
            const auto counted = p.counters->sum();
            j["allowed"] = counted.allowed;
            j["denied"] = counted.denied;
            j["shadow_denied"] = counted.shadow_denied;
        }
        list.push_back(std::move(j));
    }
    json out = {{"version", rules->version()},
                {"policies", std::move(list)},
                {"override_active", rules->override_state().active()},
                {"shadow_mode", rules->shadow_all()}};
    if (auto runtime = rules_.runtime_stats())
        out["runtime"] = std::move(*runtime);
    co_return reply(200, std::move(out));
}

}  // namespace ratelimit_proxy::admin
