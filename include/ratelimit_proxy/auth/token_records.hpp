#pragma once

// The issued tokens as the admin API manages them: list, find by id, read, patch, revoke.
// Each token is a Redis hash at limit::token_key (keys.hpp) with the fields
//   digest      SHA-256 hex of the token (what a lookup checks; never shown)
//   tier        the tier's name
//   created_at  unix ms, set on issue
//   last_seen   unix ms, set on a lookup that missed the local cache
//   overrides   JSON {policy: {limit, window_seconds, burst}}, absent when none
// Runs on the control io_context; every Redis call is asynchronous.

#include <nlohmann/json.hpp>

#include <boost/asio/awaitable.hpp>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ratelimit_proxy/limit/rule_set.hpp"
#include "ratelimit_proxy/redis/connection.hpp"

namespace ratelimit_proxy::auth {

struct token_record {
    std::string id;  // the digest's first 16 hex digits
    std::optional<std::string> tier;
    std::optional<long long> created_at;
    std::optional<long long> last_seen;
    nlohmann::json overrides = nlohmann::json::object();
};

// A token found by its id: its key and id.
struct token_ref {
    std::string key;
    std::string id;
};

enum class record_status { ok, not_found, ambiguous, unavailable };

template <class T>
struct record_result {
    record_status status = record_status::unavailable;
    T value{};
};

struct token_page {
    std::vector<token_record> tokens;
    std::string cursor;  // "0": the keyspace has been walked to its end
};

// What a patch changes; unset members stay as they are.
struct token_patch {
    std::optional<std::string> tier;
    std::optional<limit::token_overrides> overrides;  // empty: removes them
};

class token_records {
  public:
    token_records(redis::connection& conn, std::string key_prefix);

    // A token id as a client may write it (any case), lower-cased; nothing if it is not one.
    static std::optional<std::string> normalize_id(std::string_view raw);

    // From `cursor` ("0": the start), SCAN rounds until `count` tokens are collected, the
    // keyspace ends or a bounded number of rounds is spent. Status ok or unavailable.
    boost::asio::awaitable<record_result<token_page>> list(const std::string& cursor,
                                                           std::size_t count);
    // Walks the whole keyspace: exactly one key may have this (normalized) id.
    boost::asio::awaitable<record_result<token_ref>> find(const std::string& id);
    boost::asio::awaitable<record_result<token_record>> read(const token_ref& t);
    // Changes only a token that still exists (one revoked meanwhile is not brought back).
    boost::asio::awaitable<record_status> patch(const token_ref& t, const token_patch& change);
    boost::asio::awaitable<record_status> revoke(const token_ref& t);

  private:
    redis::connection& conn_;
    std::string prefix_;
};

}  // namespace ratelimit_proxy::auth
