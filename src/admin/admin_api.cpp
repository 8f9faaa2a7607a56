#include "admin_api.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/url/parse.hpp>
#include <cctype>
#include <charconv>
#include <map>

#include "ratelimit_proxy/config/policy_json.hpp"
#include "ratelimit_proxy/limit/policy.hpp"
#include "ratelimit_proxy/limit/policy_script.hpp"
#include "ratelimit_proxy/proxy/http_text.hpp"

namespace ratelimit_proxy::admin {

namespace http = boost::beast::http;
using json = nlohmann::json;

namespace {

constexpr std::size_t token_id_length = 16;
constexpr std::size_t default_page_size = 100;
constexpr std::size_t max_page_size = 1000;
constexpr int max_scan_rounds = 64;  // per request, so one call never walks a huge keyspace

bool is_json_media_type(std::string_view content_type) {
    auto semi = content_type.find(';');
    return proxy::ascii_iequals(proxy::trim_ows(content_type.substr(0, semi)), "application/json");
}

bool is_lower_hex(std::string_view s) {
    return std::ranges::all_of(
        s, [](char ch) { return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'); });
}

// A literal for a SCAN MATCH pattern: glob characters escaped.
std::string glob_escape(std::string_view s) {
    std::string out;
    for (char ch : s) {
        if (ch == '*' || ch == '?' || ch == '[' || ch == ']' || ch == '\\')
            out.push_back('\\');
        out.push_back(ch);
    }
    return out;
}

std::optional<long long> to_integer(const redis::reply& r) {
    if (r.type == redis::reply_type::integer)
        return r.integer;
    if (r.type != redis::reply_type::string)
        return std::nullopt;
    long long v = 0;
    auto [end, ec] = std::from_chars(r.str.data(), r.str.data() + r.str.size(), v);
    if (ec != std::errc() || end != r.str.data() + r.str.size())
        return std::nullopt;
    return v;
}

json not_found(std::string_view what, std::string_view name, std::string_view field = "name") {
    return error_body("not_found", "no " + std::string(what) + " named '" + std::string(name) + "'",
                      field);
}

json unavailable() {
    return error_body("unavailable", "Redis did not answer; try again");
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
    }
    return "";
}

bool in_list(const std::vector<std::string>& list, std::string_view name) {
    return std::ranges::find(list, name) != list.end();
}

json& member_object(json& overlay, const char* name) {
    json& m = overlay[name];
    if (!m.is_object())
        m = json::object();
    return m;
}

// A member that is an object in the overlay: the admin API defined it.
bool defined_by_admin(const json& overlay, const char* section, const std::string& name) {
    auto s = overlay.find(section);
    if (s == overlay.end() || !s->is_object())
        return false;
    auto m = s->find(name);
    return m != s->end() && m->is_object();
}

// Token record fields, in the order HMGET asks for them.
constexpr std::string_view token_fields[] = {"digest", "tier", "created_at", "last_seen",
                                             "overrides"};

// The id (16 hex) of a token hash key "{prefix}:token:{<64 hex>}", or "" if it is not one.
std::string id_of_key(std::string_view key, std::string_view key_prefix) {
    if (!key.starts_with(key_prefix))
        return {};
    key.remove_prefix(key_prefix.size());
    if (key.size() != 66 || key.front() != '{' || key.back() != '}')
        return {};
    auto hex = key.substr(1, 64);
    if (!is_lower_hex(hex))
        return {};
    return std::string(hex.substr(0, token_id_length));
}

json token_record(const std::string& id, const redis::reply& fields) {
    // fields: HMGET digest tier created_at last_seen overrides. The digest is only checked,
    // never shown.
    json j = {{"id", id}};
    const auto& e = fields.elements;
    j["tier"] = e.size() > 1 && e[1].type == redis::reply_type::string ? json(e[1].str) : json();
    auto created = e.size() > 2 ? to_integer(e[2]) : std::nullopt;
    j["created_at"] = created ? json(*created) : json();
    auto seen = e.size() > 3 ? to_integer(e[3]) : std::nullopt;
    j["last_seen"] = seen ? json(*seen) : json();
    json overrides = json::object();
    if (e.size() > 4 && e[4].type == redis::reply_type::string) {
        overrides = json::parse(e[4].str, nullptr, false);
        if (overrides.is_discarded())
            overrides = json::object();
    }
    j["overrides"] = std::move(overrides);
    return j;
}

// Sets or (for an empty value) deletes hash fields, only if the hash still exists, so a
// token revoked meanwhile is not brought back as a fragment. ARGV: field, value pairs.
constexpr std::string_view patch_token_lua = R"lua(
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
for i = 1, #ARGV, 2 do
  if ARGV[i + 1] == '' then
    redis.call('HDEL', KEYS[1], ARGV[i])
  else
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
return 1
)lua";

const redis::script& patch_token_script() {
    static const redis::script s(patch_token_lua);
    return s;
}

}  // namespace

struct admin_api::context {
    api_request req;
    api_responder done;
    std::vector<std::string> segments;
    std::map<std::string, std::string, std::less<>> params;
    json body;
    bool answered = false;

    void reply(unsigned status, json body_out, std::string allow = {}) {
        if (answered)
            return;
        answered = true;
        api_response r;
        r.status = status;
        r.body = std::move(body_out);
        r.allow = std::move(allow);
        done(std::move(r));
    }
    void method_not_allowed(std::string allow) {
        reply(405,
              error_body("method_not_allowed", std::string(http::to_string(req.method)) +
                                                   " is not allowed here; allowed: " + allow),
              allow);
    }
    // Parses the body as a JSON object into `body`; answers and returns false otherwise.
    bool json_body() {
        // `curl -d '{...}'` labels JSON as a form: take it when the body is JSON all the same.
        const bool form_label =
            req.content_type.empty() ||
            proxy::ascii_iequals(
                proxy::trim_ows(req.content_type.substr(0, req.content_type.find(';'))),
                "application/x-www-form-urlencoded");
        if (!req.body.empty() && !is_json_media_type(req.content_type) &&
            !(form_label && json::accept(req.body))) {
            reply(415, error_body("unsupported_media_type",
                                  "the body must be JSON (Content-Type: application/json)",
                                  "Content-Type"));
            return false;
        }
        if (req.body.empty()) {
            reply(400, error_body("invalid_json", "a JSON object body is required", "body"));
            return false;
        }
        body = json::parse(req.body, nullptr, false);
        if (body.is_discarded()) {
            reply(400, error_body("invalid_json", "the body is not valid JSON", "body"));
            return false;
        }
        if (!body.is_object()) {
            reply(400, error_body("invalid_json", "the body must be a JSON object", "body"));
            return false;
        }
        return true;
    }
    // Fields of the body other than these are errors.
    bool only_fields(std::initializer_list<std::string_view> allowed) {
        for (const auto& [k, v] : body.items()) {
            if (std::ranges::find(allowed, k) == allowed.end()) {
                reply(400, error_body("invalid", "unknown field", k));
                return false;
            }
        }
        return true;
    }
    const std::string* param(std::string_view name) const {
        auto it = params.find(name);
        return it == params.end() ? nullptr : &it->second;
    }
};

admin_api::admin_api(std::shared_ptr<control_plane::impl> rules, std::string key_prefix)
    : rules_(std::move(rules)),
      prefix_(std::move(key_prefix)),
      token_key_prefix_(prefix_ + ":token:") {}

void admin_api::handle(api_request req, api_responder done) {
    auto c = std::make_shared<context>();
    c->req = std::move(req);
    c->done = std::move(done);
    auto parsed = boost::urls::parse_origin_form(c->req.target);
    if (!parsed) {
        c->reply(400, error_body("invalid", "the request target is not a valid path", "target"));
        return;
    }
    for (auto seg : parsed->segments())
        c->segments.push_back(std::string(seg));
    // "/admin/policies/" names the collection, like "/admin/policies".
    if (!c->segments.empty() && c->segments.back().empty())
        c->segments.pop_back();
    for (auto p : parsed->params(boost::urls::encoding_opts(true)))
        c->params.emplace(std::string(p.key), std::string(p.value));
    try {
        route(c);
    } catch (const api_error& e) {
        c->reply(e.status, e.body);
    } catch (const config::config_error& e) {
        c->reply(400, invalid_body(e));
    } catch (const std::exception& e) {
        spdlog::error("admin API: {} {}: {}", http::to_string(c->req.method), c->req.target,
                      e.what());
        c->reply(500, error_body("internal", "internal error"));
    }
}

void admin_api::route(const std::shared_ptr<context>& c) {
    using v = http::verb;
    const auto& s = c->segments;
    const v m = c->req.method;
    auto not_found_path = [&] {
        c->reply(404, error_body("not_found", "no such endpoint", "path"));
    };
    if (s.size() < 2 || s[0] != "admin")
        return not_found_path();
    const std::string& what = s[1];
    if (s.size() == 2) {
        if (what == "policies")
            return m == v::get ? list_policies(c) : c->method_not_allowed("GET");
        if (what == "tiers")
            return m == v::get ? list_tiers(c) : c->method_not_allowed("GET");
        if (what == "tokens")
            return m == v::get ? list_tokens(c) : c->method_not_allowed("GET");
        if (what == "buckets") {
            if (m == v::get)
                return show_bucket(c);
            if (m == v::delete_)
                return reset_bucket(c);
            return c->method_not_allowed("GET, DELETE");
        }
        if (what == "override") {
            if (m == v::get)
                return get_override(c);
            if (m == v::put)
                return put_override(c);
            if (m == v::delete_)
                return delete_override(c);
            return c->method_not_allowed("GET, PUT, DELETE");
        }
        if (what == "registration") {
            if (m == v::get)
                return get_registration(c);
            if (m == v::put)
                return put_registration(c);
            return c->method_not_allowed("GET, PUT");
        }
        if (what == "access") {
            if (m == v::get)
                return get_access(c);
            if (m == v::put)
                return put_access(c);
            return c->method_not_allowed("GET, PUT");
        }
        if (what == "shadow") {
            if (m == v::get)
                return get_shadow(c);
            if (m == v::put)
                return put_shadow(c);
            return c->method_not_allowed("GET, PUT");
        }
        if (what == "stats")
            return m == v::get ? stats(c) : c->method_not_allowed("GET");
        return not_found_path();
    }
    if (s.size() == 3) {
        const std::string& name = s[2];
        if (what == "policies") {
            if (m == v::get)
                return get_policy(c, name);
            if (m == v::put)
                return put_policy(c, name);
            if (m == v::delete_)
                return delete_policy(c, name);
            return c->method_not_allowed("GET, PUT, DELETE");
        }
        if (what == "tiers") {
            if (m == v::get)
                return get_tier(c, name);
            if (m == v::put)
                return put_tier(c, name);
            if (m == v::delete_)
                return delete_tier(c, name);
            return c->method_not_allowed("GET, PUT, DELETE");
        }
        if (what == "tokens") {
            if (m == v::get)
                return get_token(c, name);
            if (m == v::patch)
                return patch_token(c, name);
            if (m == v::delete_)
                return delete_token(c, name);
            return c->method_not_allowed("GET, PATCH, DELETE");
        }
    }
    not_found_path();
}

void admin_api::update(const std::shared_ptr<context>& c, control_plane::impl::mutation m,
                       std::function<json(const update_result&)> answer, unsigned success_status) {
    rules_->update(std::move(m), [c, answer = std::move(answer), success_status](update_result r) {
        if (r.status != 200)
            return c->reply(r.status, std::move(r.body));
        json out;
        try {
            out = answer(r);
        } catch (const std::exception& e) {
            out = json::object();  // stored and applied; only the description failed
            spdlog::warn("admin API: describing the change failed: {}", e.what());
        }
        out["version"] = r.version;
        c->reply(success_status, std::move(out));
    });
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

void admin_api::list_policies(const std::shared_ptr<context>& c) {
    auto snap = rules_->snapshot();
    json list = json::array();
    for (const auto& p : snap.rules->policies())
        list.push_back(policy_out(p, *snap.overlay));
    c->reply(200, {{"policies", std::move(list)}, {"version", snap.rules->version()}});
}

void admin_api::get_policy(const std::shared_ptr<context>& c, const std::string& name) {
    auto snap = rules_->snapshot();
    const auto* p = snap.rules->find_policy(name);
    if (!p)
        return c->reply(404, not_found("policy", name));
    c->reply(200, policy_out(*p, *snap.overlay));
}

void admin_api::put_policy(const std::shared_ptr<context>& c, const std::string& name) {
    if (!config::is_valid_name(name))
        return c->reply(
            400, error_body("invalid", "a policy name is 1 to 64 letters, digits, '_', '-', '.'",
                            "name"));
    if (!c->json_body())
        return;
    json body = c->body;
    if (auto it = body.find("name"); it != body.end() && *it != name)
        return c->reply(400, error_body("invalid", "does not match the name in the path", "name"));
    body["name"] = name;
    // Field errors named as the overlay names them ("policies.<name>.<field>").
    config::policy_from_json(body, "policies." + name);
    const bool existed = rules_->current()->find_policy(name) != nullptr;
    update(
        c,
        [name, body](json& overlay, const limit::rule_set&) {
            member_object(overlay, "policies")[name] = body;
        },
        [name](const update_result& r) {
            json out = config::policy_to_json(*r.rules->find_policy(name));
            out["name"] = name;
            out["source"] = "admin";
            return out;
        },
        existed ? 200 : 201);
}

void admin_api::delete_policy(const std::shared_ptr<context>& c, const std::string& name) {
    auto in_file = rules_->file_rules()->find_policy(name) != nullptr;
    update(
        c,
        [name, in_file, cp = rules_](json& overlay, const limit::rule_set& before) {
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
            json& policies = member_object(overlay, "policies");
            if (in_file)
                policies[name] = nullptr;  // hides the config file's policy
            else
                policies.erase(name);
        },
        [name](const update_result&) {
            return json{{"deleted", name}};
        });
}

// ---------------------------------------------------------------------------------------
// Tiers

void admin_api::list_tiers(const std::shared_ptr<context>& c) {
    auto snap = rules_->snapshot();
    const bool implicit = rules_->tiers_implicit(*snap.overlay);
    json list = json::array();
    for (const auto& t : snap.rules->tiers())
        list.push_back(tier_out(t, *snap.rules, *snap.overlay, implicit));
    c->reply(200, {{"default_tier", snap.rules->default_tier()},
                   {"tiers", std::move(list)},
                   {"version", snap.rules->version()}});
}

void admin_api::get_tier(const std::shared_ptr<context>& c, const std::string& name) {
    auto snap = rules_->snapshot();
    const auto* t = snap.rules->find_tier(name);
    if (!t)
        return c->reply(404, not_found("tier", name));
    c->reply(200, tier_out(*t, *snap.rules, *snap.overlay, rules_->tiers_implicit(*snap.overlay)));
}

void admin_api::put_tier(const std::shared_ptr<context>& c, const std::string& name) {
    if (!config::is_valid_name(name))
        return c->reply(
            400,
            error_body("invalid", "a tier name is 1 to 64 letters, digits, '_', '-', '.'", "name"));
    if (!c->json_body())
        return;
    json body = c->body;
    if (auto it = body.find("name"); it != body.end()) {
        if (*it != name)
            return c->reply(400,
                            error_body("invalid", "does not match the name in the path", "name"));
        body.erase("name");
    }
    bool make_default = false;
    if (auto it = body.find("default"); it != body.end()) {
        if (!it->is_boolean())
            return c->reply(400, error_body("invalid", "must be true or false", "default"));
        make_default = it->get<bool>();
        body.erase("default");
    }
    config::tier_from_json(name, body, "tiers." + name);
    const bool existed = rules_->current()->find_tier(name) != nullptr;
    update(
        c,
        [name, body, make_default](json& overlay, const limit::rule_set&) {
            member_object(overlay, "tiers")[name] = body;
            if (make_default)
                overlay["default_tier"] = name;
        },
        [name](const update_result& r) {
            const auto* t = r.rules->find_tier(name);
            json out = config::tier_to_json(*t);
            out["name"] = name;
            out["default"] = r.rules->default_tier() == name;
            out["source"] = "admin";
            return out;
        },
        existed ? 200 : 201);
}

void admin_api::delete_tier(const std::shared_ptr<context>& c, const std::string& name) {
    auto in_file = rules_->file_rules()->find_tier(name) != nullptr;
    update(
        c,
        [name, in_file](json& overlay, const limit::rule_set& before) {
            if (!before.find_tier(name))
                throw api_error(404, not_found("tier", name));
            if (before.default_tier() == name)
                throw api_error(409, error_body("conflict",
                                                "'" + name +
                                                    "' is the default tier; make another tier "
                                                    "the default first",
                                                "name"));
            json& tiers = member_object(overlay, "tiers");
            if (in_file)
                tiers[name] = nullptr;
            else
                tiers.erase(name);
        },
        [name](const update_result&) {
            return json{{"deleted", name}};
        });
}

// ---------------------------------------------------------------------------------------
// Tokens

void admin_api::list_tokens(const std::shared_ptr<context>& c) {
    std::size_t page = default_page_size;
    if (const auto* n = c->param("count")) {
        std::size_t v = 0;
        auto [end, ec] = std::from_chars(n->data(), n->data() + n->size(), v);
        if (ec != std::errc() || end != n->data() + n->size() || v == 0 || v > max_page_size)
            return c->reply(
                400, error_body("invalid", "a number from 1 to " + std::to_string(max_page_size),
                                "count"));
        page = v;
    }
    std::string cursor = "0";
    if (const auto* cur = c->param("cursor")) {
        if (cur->empty() || cur->size() > 20 ||
            !std::ranges::all_of(*cur, [](char ch) { return ch >= '0' && ch <= '9'; }))
            return c->reply(400,
                            error_body("invalid", "not a cursor from a previous page", "cursor"));
        cursor = *cur;
    }
    struct state {
        std::shared_ptr<context> c;
        std::string cursor;
        std::size_t page;
        int rounds = 0;
        json tokens = json::array();
        std::string pattern;
    };
    auto st = std::make_shared<state>();
    st->c = c;
    st->cursor = cursor;
    st->page = page;
    st->pattern = glob_escape(token_key_prefix_) + "[{]*";
    auto self = shared_from_this();
    auto step = std::make_shared<std::function<void()>>();
    *step = [self, st, step] {
        const std::string count = std::to_string(std::max<std::size_t>(st->page, 100));
        const std::string_view args[] = {"SCAN", st->cursor, "MATCH", st->pattern, "COUNT", count};
        self->rules_->redis().command(args, [self, st, step](redis::outcome o, redis::reply&& r) {
            if (o != redis::outcome::ok || r.type != redis::reply_type::array ||
                r.elements.size() != 2) {
                *step = nullptr;  // breaks the cycle
                return st->c->reply(503, unavailable());
            }
            st->cursor = r.elements[0].str;
            ++st->rounds;
            std::vector<std::pair<std::string, std::string>> keys;  // key, id
            for (const auto& k : r.elements[1].elements) {
                auto id = id_of_key(k.str, self->token_key_prefix_);
                if (!id.empty())
                    keys.emplace_back(k.str, std::move(id));
            }
            auto finish_round = [self, st, step] {
                if (st->cursor == "0" || st->tokens.size() >= st->page ||
                    st->rounds >= max_scan_rounds) {
                    *step = nullptr;
                    return st->c->reply(200, {{"tokens", std::move(st->tokens)},
                                              {"cursor", st->cursor},
                                              {"complete", st->cursor == "0"}});
                }
                (*step)();
            };
            if (keys.empty())
                return finish_round();
            // One HMGET per key, all sent in this loop turn (pipelined).
            auto pending = std::make_shared<std::size_t>(keys.size());
            auto records = std::make_shared<std::vector<json>>(keys.size());
            auto failed = std::make_shared<bool>(false);
            for (std::size_t i = 0; i < keys.size(); ++i) {
                std::vector<std::string_view> hmget{"HMGET", keys[i].first};
                hmget.insert(hmget.end(), std::begin(token_fields), std::end(token_fields));
                self->rules_->redis().command(
                    hmget, [st, step, i, id = keys[i].second, pending, records, failed,
                            finish_round](redis::outcome o, redis::reply&& r) {
                        if (o != redis::outcome::ok || r.type != redis::reply_type::array)
                            *failed = true;
                        else if (r.elements.size() == 5 &&
                                 r.elements[0].type == redis::reply_type::string)
                            (*records)[i] = token_record(id, r);  // gone meanwhile: skipped
                        if (--*pending > 0)
                            return;
                        if (*failed) {
                            *step = nullptr;
                            return st->c->reply(503, unavailable());
                        }
                        for (auto& rec : *records)
                            if (!rec.is_null())
                                st->tokens.push_back(std::move(rec));
                        finish_round();
                    });
            }
        });
    };
    (*step)();
}

// SCAN for "{prefix}:token:{<id>*" to the end of the keyspace; exactly one key must match.
void admin_api::find_token(const std::shared_ptr<context>& c, const std::string& raw_id,
                           std::function<void(const std::string& key)> found) {
    std::string id = raw_id;
    std::ranges::transform(id, id.begin(),
                           [](char ch) { return std::tolower(static_cast<unsigned char>(ch)); });
    if (id.size() != token_id_length || !is_lower_hex(id))
        return c->reply(
            400,
            error_body("invalid", "a token id is the 16 hex digits the token list shows", "id"));
    struct state {
        std::string cursor = "0";
        std::string pattern;
        std::vector<std::string> matches;
    };
    auto st = std::make_shared<state>();
    st->pattern = glob_escape(token_key_prefix_) + "[{]" + id + "*";
    auto self = shared_from_this();
    auto step = std::make_shared<std::function<void()>>();
    *step = [self, c, st, step, id, found = std::move(found)] {
        const std::string_view args[] = {"SCAN", st->cursor, "MATCH", st->pattern, "COUNT", "1000"};
        self->rules_->redis().command(
            args, [self, c, st, step, id, found](redis::outcome o, redis::reply&& r) {
                if (o != redis::outcome::ok || r.type != redis::reply_type::array ||
                    r.elements.size() != 2) {
                    *step = nullptr;
                    return c->reply(503, unavailable());
                }
                st->cursor = r.elements[0].str;
                for (const auto& k : r.elements[1].elements)
                    if (id_of_key(k.str, self->token_key_prefix_) == id &&
                        std::ranges::find(st->matches, k.str) == st->matches.end())
                        st->matches.push_back(k.str);
                if (st->cursor != "0")
                    return (*step)();
                *step = nullptr;
                if (st->matches.empty())
                    return c->reply(404, error_body("not_found", "no token with id " + id, "id"));
                if (st->matches.size() > 1)
                    return c->reply(
                        409, error_body("conflict", "several tokens share the id " + id, "id"));
                found(st->matches.front());
            });
    };
    (*step)();
}

void admin_api::get_token(const std::shared_ptr<context>& c, const std::string& id) {
    auto self = shared_from_this();
    find_token(c, id, [self, c](const std::string& key) {
        std::vector<std::string_view> hmget{"HMGET", key};
        hmget.insert(hmget.end(), std::begin(token_fields), std::end(token_fields));
        auto token_id = id_of_key(key, self->token_key_prefix_);
        self->rules_->redis().command(hmget, [c, token_id](redis::outcome o, redis::reply&& r) {
            if (o != redis::outcome::ok || r.type != redis::reply_type::array ||
                r.elements.size() != 5)
                return c->reply(503, unavailable());
            if (r.elements[0].type != redis::reply_type::string)
                return c->reply(404, error_body("not_found", "no token with id " + token_id, "id"));
            c->reply(200, token_record(token_id, r));
        });
    });
}

void admin_api::patch_token(const std::shared_ptr<context>& c, const std::string& id) {
    if (!c->json_body() || !c->only_fields({"tier", "overrides"}))
        return;
    auto rules = rules_->current();
    std::vector<std::string> fields;  // field, value ("" deletes)
    if (auto it = c->body.find("tier"); it != c->body.end()) {
        if (!it->is_string())
            return c->reply(400, error_body("invalid", "must be a tier name", "tier"));
        const auto tier = it->get<std::string>();
        if (!rules->find_tier(tier))
            return c->reply(400, error_body("invalid", "no tier named '" + tier + "'", "tier"));
        fields.push_back("tier");
        fields.push_back(tier);
    }
    if (auto it = c->body.find("overrides"); it != c->body.end()) {
        fields.push_back("overrides");
        if (it->is_null()) {
            fields.push_back("");
        } else {
            auto overrides = config::token_overrides_from_json(*it, "overrides");
            for (const auto& [policy, o] : overrides)
                if (!rules->find_policy(policy))
                    return c->reply(400, error_body("invalid", "no policy named '" + policy + "'",
                                                    "overrides." + policy));
            fields.push_back(overrides.empty() ? std::string()
                                               : config::token_overrides_to_json(overrides).dump());
        }
    }
    if (fields.empty())
        return c->reply(400,
                        error_body("invalid", "nothing to change: give tier or overrides", "body"));
    auto self = shared_from_this();
    find_token(c, id, [self, c, fields = std::move(fields)](const std::string& key) {
        const std::string_view keys[] = {key};
        std::vector<std::string_view> argv(fields.begin(), fields.end());
        patch_token_script().run(
            self->rules_->redis(), keys, argv, [self, c, key](redis::outcome o, redis::reply&& r) {
                if (o != redis::outcome::ok || r.type != redis::reply_type::integer)
                    return c->reply(503, unavailable());
                auto token_id = id_of_key(key, self->token_key_prefix_);
                if (r.integer == 0)
                    return c->reply(404,
                                    error_body("not_found", "no token with id " + token_id, "id"));
                // Bump the version: every instance rebuilds its rules and drops its token
                // caches, so the new tier applies everywhere within a poll.
                self->rules_->update(
                    [](json&, const limit::rule_set&) {},
                    [self, c, key, token_id](update_result u) {
                        std::vector<std::string_view> hmget{"HMGET", key};
                        hmget.insert(hmget.end(), std::begin(token_fields), std::end(token_fields));
                        self->rules_->redis().command(
                            hmget, [c, token_id, u](redis::outcome o, redis::reply&& r) {
                                if (o != redis::outcome::ok || r.type != redis::reply_type::array ||
                                    r.elements.size() != 5)
                                    return c->reply(503, unavailable());
                                json out = token_record(token_id, r);
                                out["propagated"] = u.status == 200;
                                if (u.status == 200)
                                    out["version"] = u.version;
                                c->reply(200, std::move(out));
                            });
                    });
            });
    });
}

void admin_api::delete_token(const std::shared_ptr<context>& c, const std::string& id) {
    auto self = shared_from_this();
    find_token(c, id, [self, c](const std::string& key) {
        const std::string_view args[] = {"DEL", key};
        auto token_id = id_of_key(key, self->token_key_prefix_);
        self->rules_->redis().command(args, [self, c, token_id](redis::outcome o,
                                                                redis::reply&& r) {
            if (o != redis::outcome::ok || r.type != redis::reply_type::integer)
                return c->reply(503, unavailable());
            if (r.integer == 0)
                return c->reply(404, error_body("not_found", "no token with id " + token_id, "id"));
            spdlog::info("admin API: token {} revoked", token_id);
            // The token is gone from Redis; bumping the version makes every instance drop its
            // token caches (and the known-token fallback) within one poll.
            self->rules_->update(
                [](json&, const limit::rule_set&) {},
                [c, token_id](update_result u) {
                    json out = {{"revoked", token_id}, {"propagated", u.status == 200}};
                    if (u.status == 200)
                        out["version"] = u.version;
                    else
                        out["message"] =
                            "revoked in Redis; other instances forget it when "
                            "their token cache entry expires";
                    c->reply(200, std::move(out));
                });
        });
    });
}

// ---------------------------------------------------------------------------------------
// Buckets

void admin_api::show_bucket(const std::shared_ptr<context>& c) {
    const auto* policy = c->param("policy");
    const auto* bucket = c->param("key");
    if (!policy || policy->empty())
        return c->reply(400, error_body("invalid", "the policy name is required", "policy"));
    if (!bucket || bucket->empty())
        return c->reply(400, error_body("invalid",
                                        "the bucket is required: global, a client address, a token "
                                        "id, or 'id METHOD /path'",
                                        "key"));
    auto rules = rules_->current();
    const auto* p = rules->find_policy(*policy);
    if (!p)
        return c->reply(404, not_found("policy", *policy, "policy"));
    auto key = limit::bucket_key(prefix_, p->name, *bucket);
    json out = {{"policy", p->name},
                {"algorithm", limit::to_string(p->algo)},
                {"bucket", *bucket},
                {"key", key},
                {"layout", layout_of(p->algo)}};
    const std::string_view type_args[] = {"TYPE", key};
    auto self = shared_from_this();
    rules_->redis().command(type_args, [self, c, key, out = std::move(out)](
                                           redis::outcome o, redis::reply&& type) mutable {
        if (o != redis::outcome::ok || type.type != redis::reply_type::status)
            return c->reply(503, unavailable());
        out["type"] = type.str;
        auto with_ttl = [self, c, key](json out) {
            const std::string_view ttl_args[] = {"PTTL", key};
            self->rules_->redis().command(
                ttl_args, [c, out = std::move(out)](redis::outcome o, redis::reply&& r) mutable {
                    if (o != redis::outcome::ok || r.type != redis::reply_type::integer)
                        return c->reply(503, unavailable());
                    out["ttl_ms"] = r.integer >= 0 ? json(r.integer) : json();
                    c->reply(200, std::move(out));
                });
        };
        if (type.str == "none") {
            out["exists"] = false;
            out["state"] = nullptr;
            out["ttl_ms"] = nullptr;
            return c->reply(200, std::move(out));
        }
        out["exists"] = true;
        const bool hash = type.str == "hash";
        const std::string_view args[] = {hash ? "HGETALL" : "GET", key};
        if (!hash && type.str != "string") {
            out["state"] = nullptr;
            return with_ttl(std::move(out));
        }
        self->rules_->redis().command(args, [c, hash, with_ttl, out = std::move(out)](
                                                redis::outcome o, redis::reply&& r) mutable {
            if (o != redis::outcome::ok || r.type == redis::reply_type::error)
                return c->reply(503, unavailable());
            json state = json::object();
            if (hash) {
                for (std::size_t i = 0; i + 1 < r.elements.size(); i += 2)
                    state[r.elements[i].str] = r.elements[i + 1].str;
            } else {
                state["value"] = r.str;
            }
            out["state"] = std::move(state);
            with_ttl(std::move(out));
        });
    });
}

void admin_api::reset_bucket(const std::shared_ptr<context>& c) {
    const auto* policy = c->param("policy");
    const auto* bucket = c->param("key");
    if (!policy || policy->empty())
        return c->reply(400, error_body("invalid", "the policy name is required", "policy"));
    if (!bucket || bucket->empty())
        return c->reply(400, error_body("invalid", "the bucket is required", "key"));
    auto rules = rules_->current();
    const auto* p = rules->find_policy(*policy);
    if (!p)
        return c->reply(404, not_found("policy", *policy, "policy"));
    auto key = limit::bucket_key(prefix_, p->name, *bucket);
    const std::string_view args[] = {"DEL", key};
    auto self = shared_from_this();
    rules_->redis().command(args, [self, c, key, policy = p->name, bucket = *bucket](
                                      redis::outcome o, redis::reply&& r) {
        if (o != redis::outcome::ok || r.type != redis::reply_type::integer)
            return c->reply(503, unavailable());
        spdlog::info("admin API: bucket {} reset", key);
        json out = {
            {"policy", policy}, {"bucket", bucket}, {"key", key}, {"deleted", r.integer > 0}};
        // Instances remember keys known to be over their limit until the retry time; the
        // version bump makes them forget, so the reset takes effect at once everywhere.
        self->rules_->update([](json&, const limit::rule_set&) {},
                             [c, out = std::move(out)](update_result u) mutable {
                                 out["propagated"] = u.status == 200;
                                 c->reply(200, std::move(out));
                             });
    });
}

// ---------------------------------------------------------------------------------------
// Override, registration, access lists, shadow mode, stats

void admin_api::get_override(const std::shared_ptr<context>& c) {
    auto rules = rules_->current();
    json out = config::override_to_json(rules->override_state());
    out["active"] = rules->override_state().active();
    c->reply(200, std::move(out));
}

void admin_api::put_override(const std::shared_ptr<context>& c) {
    if (!c->json_body())
        return;
    json body = c->body;
    config::override_from_json(body, "override");
    update(
        c, [body](json& overlay, const limit::rule_set&) { overlay["override"] = body; },
        [](const update_result& r) {
            json out = config::override_to_json(r.rules->override_state());
            out["active"] = r.rules->override_state().active();
            return out;
        });
}

void admin_api::delete_override(const std::shared_ptr<context>& c) {
    update(
        c,
        [](json& overlay, const limit::rule_set&) {
            // Explicitly lifted (not just removed: lifts one from the config file too).
            overlay["override"] = config::override_to_json(limit::emergency_override{});
        },
        [](const update_result& r) {
            json out = config::override_to_json(r.rules->override_state());
            out["active"] = r.rules->override_state().active();
            return out;
        });
}

void admin_api::get_registration(const std::shared_ptr<context>& c) {
    c->reply(200, config::registration_to_json(rules_->current()->registration()));
}

void admin_api::put_registration(const std::shared_ptr<context>& c) {
    if (!c->json_body())
        return;
    json body = c->body;
    config::registration_from_json(body, "registration");
    update(
        c, [body](json& overlay, const limit::rule_set&) { overlay["registration"] = body; },
        [](const update_result& r) {
            return config::registration_to_json(r.rules->registration());
        });
}

namespace {
json access_out(const limit::rule_set& rules) {
    return {{"bypass", config::access_list_to_json(rules.bypass())},
            {"block", config::access_list_to_json(rules.block())}};
}
}  // namespace

void admin_api::get_access(const std::shared_ptr<context>& c) {
    c->reply(200, access_out(*rules_->current()));
}

void admin_api::put_access(const std::shared_ptr<context>& c) {
    if (!c->json_body() || !c->only_fields({"bypass", "block"}))
        return;
    json body = c->body;
    if (body.empty())
        return c->reply(400, error_body("invalid", "give bypass, block or both", "body"));
    for (const auto& [k, v] : body.items())
        config::access_list_from_json(v, k);
    update(
        c,
        [body](json& overlay, const limit::rule_set&) {
            for (const auto& [k, v] : body.items())
                overlay[k] = v;
        },
        [](const update_result& r) { return access_out(*r.rules); });
}

void admin_api::get_shadow(const std::shared_ptr<context>& c) {
    c->reply(200, {{"enabled", rules_->current()->shadow_all()}});
}

void admin_api::put_shadow(const std::shared_ptr<context>& c) {
    if (!c->json_body() || !c->only_fields({"enabled"}))
        return;
    auto it = c->body.find("enabled");
    if (it == c->body.end() || !it->is_boolean())
        return c->reply(400, error_body("invalid", "must be true or false", "enabled"));
    const bool enabled = it->get<bool>();
    update(
        c, [enabled](json& overlay, const limit::rule_set&) { overlay["shadow_mode"] = enabled; },
        [](const update_result& r) {
            return json{{"enabled", r.rules->shadow_all()}};
        });
}

void admin_api::stats(const std::shared_ptr<context>& c) {
    auto rules = rules_->current();
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
    if (rules_->runtime_stats_)
        out["runtime"] = rules_->runtime_stats_();
    c->reply(200, std::move(out));
}

}  // namespace ratelimit_proxy::admin
