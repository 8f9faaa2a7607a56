#include "ratelimit_proxy/auth/token_records.hpp"

#include <algorithm>
#include <charconv>
#include <iterator>

#include "ratelimit_proxy/config/policy_json.hpp"
#include "ratelimit_proxy/limit/keys.hpp"
#include "ratelimit_proxy/redis/awaitable.hpp"

namespace ratelimit_proxy::auth {

namespace asio = boost::asio;
using json = nlohmann::json;

namespace {

constexpr int max_scan_rounds = 64;  // per call, so one request never walks a huge keyspace

// In the order HMGET asks for them.
constexpr std::string_view record_fields[] = {"digest", "tier", "created_at", "last_seen",
                                              "overrides"};

std::vector<std::string> hmget(const std::string& key) {
    std::vector<std::string> args{"HMGET", key};
    args.insert(args.end(), std::begin(record_fields), std::end(record_fields));
    return args;
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

// An answer to HMGET (record_fields) with the digest present. The digest is only checked,
// never shown.
token_record record_of(const std::string& id, const redis::reply& fields) {
    token_record t;
    t.id = id;
    const auto& e = fields.elements;
    if (e[1].type == redis::reply_type::string)
        t.tier = e[1].str;
    t.created_at = to_integer(e[2]);
    t.last_seen = to_integer(e[3]);
    if (e[4].type == redis::reply_type::string) {
        t.overrides = json::parse(e[4].str, nullptr, false);
        if (t.overrides.is_discarded())
            t.overrides = json::object();
    }
    return t;
}

bool is_record_reply(const redis::answer& a) {
    return a.ok() && a.reply.type == redis::reply_type::array &&
           a.reply.elements.size() == std::size(record_fields);
}

bool is_scan_reply(const redis::answer& a) {
    return a.ok() && a.reply.type == redis::reply_type::array && a.reply.elements.size() == 2;
}

// Sets or (for an empty value) deletes hash fields, only if the hash still exists, so a
// token revoked meanwhile is not brought back as a fragment. ARGV: field, value pairs.
constexpr std::string_view patch_lua = R"lua(
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

const redis::script& patch_script() {
    static const redis::script s(patch_lua);
    return s;
}

}  // namespace

token_records::token_records(redis::connection& conn, std::string key_prefix)
    : conn_(conn), prefix_(std::move(key_prefix)) {}

std::optional<std::string> token_records::normalize_id(std::string_view raw) {
    std::string id(raw);
    std::ranges::transform(id, id.begin(),
                           [](char ch) { return std::tolower(static_cast<unsigned char>(ch)); });
    if (!limit::is_token_id(id))
        return std::nullopt;
    return id;
}

asio::awaitable<record_result<token_page>> token_records::list(const std::string& from,
                                                               std::size_t count) {
    record_result<token_page> out;
    std::string cursor = from;
    const std::string pattern = limit::token_scan_pattern(prefix_);
    const std::string scan_count = std::to_string(std::max<std::size_t>(count, 100));
    for (int rounds = 1;; ++rounds) {
        const std::string_view scan[] = {"SCAN", cursor, "MATCH", pattern, "COUNT", scan_count};
        auto a = co_await redis::await_command(conn_, scan);
        if (!is_scan_reply(a))
            co_return out;
        cursor = a.reply.elements[0].str;
        std::vector<std::string> ids;
        std::vector<std::vector<std::string>> reads;
        for (const auto& k : a.reply.elements[1].elements) {
            auto id = limit::token_id_of_key(k.str, prefix_);
            if (id.empty())
                continue;
            ids.push_back(std::move(id));
            reads.push_back(hmget(k.str));
        }
        auto records = co_await redis::await_pipeline(conn_, reads);
        for (const auto& r : records)
            if (!r.ok() || r.reply.type != redis::reply_type::array)
                co_return out;
        for (std::size_t i = 0; i < records.size(); ++i)
            // A token revoked between SCAN and HMGET is skipped.
            if (is_record_reply(records[i]) &&
                records[i].reply.elements[0].type == redis::reply_type::string)
                out.value.tokens.push_back(record_of(ids[i], records[i].reply));
        if (cursor == "0" || out.value.tokens.size() >= count || rounds >= max_scan_rounds)
            break;
    }
    out.value.cursor = cursor;
    out.status = record_status::ok;
    co_return out;
}

asio::awaitable<record_result<token_ref>> token_records::find(const std::string& id) {
    record_result<token_ref> out;
    const std::string pattern = limit::token_scan_pattern(prefix_, id);
    std::vector<std::string> matches;
    std::string cursor = "0";
    do {
        const std::string_view scan[] = {"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"};
        auto a = co_await redis::await_command(conn_, scan);
        if (!is_scan_reply(a))
            co_return out;
        cursor = a.reply.elements[0].str;
        // SCAN may return a key twice.
        for (const auto& k : a.reply.elements[1].elements)
            if (limit::token_id_of_key(k.str, prefix_) == id &&
                std::ranges::find(matches, k.str) == matches.end())
                matches.push_back(k.str);
    } while (cursor != "0");
    if (matches.empty()) {
        out.status = record_status::not_found;
    } else if (matches.size() > 1) {
        out.status = record_status::ambiguous;
    } else {
        out.status = record_status::ok;
        out.value = token_ref{matches.front(), id};
    }
    co_return out;
}

asio::awaitable<record_result<token_record>> token_records::read(const token_ref& t) {
    record_result<token_record> out;
    const std::vector<std::vector<std::string>> commands{hmget(t.key)};
    auto answers = co_await redis::await_pipeline(conn_, commands);
    const auto& a = answers.front();
    if (!is_record_reply(a))
        co_return out;
    if (a.reply.elements[0].type != redis::reply_type::string) {
        out.status = record_status::not_found;
        co_return out;
    }
    out.status = record_status::ok;
    out.value = record_of(t.id, a.reply);
    co_return out;
}

asio::awaitable<record_status> token_records::patch(const token_ref& t, const token_patch& change) {
    std::vector<std::string> fields;  // field, value ("" deletes)
    if (change.tier) {
        fields.push_back("tier");
        fields.push_back(*change.tier);
    }
    if (change.overrides) {
        fields.push_back("overrides");
        fields.push_back(change.overrides->empty()
                             ? std::string()
                             : config::token_overrides_to_json(*change.overrides).dump());
    }
    const std::string_view keys[] = {t.key};
    std::vector<std::string_view> argv(fields.begin(), fields.end());
    auto a = co_await redis::await_script(patch_script(), conn_, keys, argv);
    if (!a.ok() || a.reply.type != redis::reply_type::integer)
        co_return record_status::unavailable;
    co_return a.reply.integer == 0 ? record_status::not_found : record_status::ok;
}

asio::awaitable<record_status> token_records::revoke(const token_ref& t) {
    const std::string_view del[] = {"DEL", t.key};
    auto a = co_await redis::await_command(conn_, del);
    if (!a.ok() || a.reply.type != redis::reply_type::integer)
        co_return record_status::unavailable;
    co_return a.reply.integer == 0 ? record_status::not_found : record_status::ok;
}

}  // namespace ratelimit_proxy::auth
