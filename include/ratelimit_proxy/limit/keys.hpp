#pragma once

// Every Redis key the proxy writes, in one place. `prefix` is redis.key_prefix ("rlp" by
// default). Redis Cluster places a key by its hash tag (the text between the first "{" and
// the next "}"); the tag of each key and why are given with it. Deployed Redis data and the
// Lua scripts depend on these spellings: change them only together with a migration.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace ratelimit_proxy::limit {

// ---- Buckets: the policies script's and the memory store's state, one key per bucket.
// "{" + prefix + "}:rl:" + policy name + ":" + bucket, e.g. "{rlp}:rl:daily:3f2a9c0d1e4b5a6f".
// Tag: the prefix, so that every key of one multi-policy check (one EVALSHA) lands in one
// slot. POST /register's per-IP limit is one of these, under the policy name "register".
// A concurrency policy's bucket key holds its lease set (a sorted set, policy_script.hpp).
std::string bucket_key(std::string_view prefix, std::string_view policy_name,
                       std::string_view bucket);
// The key up to its bucket part, appended to `key` (the per-request form reuses its buffer).
void append_bucket_key_head(std::string& key, std::string_view prefix,
                            std::string_view policy_name);

// ---- Tokens: one hash per issued token {digest, tier, created_at, last_seen, overrides}.
// prefix + ":token:{" + SHA-256 hex of the token + "}". Tag: the digest, so tokens spread
// over the slots; a lookup touches one token only.
std::string token_key(std::string_view prefix, std::string_view digest_hex);
// prefix + ":token:": what every token key starts with.
std::string token_key_head(std::string_view prefix);
// A token id: the digest's first 16 hex digits, lower case (what the admin API, the access
// log and the bypass/block lists name a token by).
inline constexpr std::size_t token_id_length = 16;
std::string_view token_id_of_digest(std::string_view digest_hex);
bool is_token_id(std::string_view s);
// SCAN MATCH patterns over the token keys: all of them, or those whose digest begins with
// `id_hex` (a token id: the digest's first 16 hex digits). The prefix is glob-escaped.
std::string token_scan_pattern(std::string_view prefix);
std::string token_scan_pattern(std::string_view prefix, std::string_view id_hex);
// The token id of a token key, or "" when `key` is not one.
std::string token_id_of_key(std::string_view key, std::string_view prefix);

// ---- Usage per token: one hash per token and UTC day, "{" + prefix + "}:usage:" + token id
// + ":" + YYYY-MM-DD, fields "<model>|<what>" (what: requests, input, cached_input,
// cache_write, output, nano_usd, estimated) added to by the settle script; and per day the set
// of token ids with usage, "{" + prefix + "}:usage-days:" + YYYY-MM-DD. Tag: the prefix, so
// that the settle script writes them in the same call as the budgets it settles.
std::string usage_key(std::string_view prefix, std::string_view token_id, std::string_view day);
std::string usage_days_key(std::string_view prefix, std::string_view day);
// The UTC date of a Unix time, YYYY-MM-DD.
std::string utc_day(std::int64_t unix_seconds);

// ---- The admin overlay: a JSON document and its version counter (INCR on every change).
// "{" + prefix + "}:admin:state" and "{" + prefix + "}:admin:version". Tag: the prefix, for
// both: the compare-and-set script reads the one and writes both, so they share a slot.
std::string admin_state_key(std::string_view prefix);
std::string admin_version_key(std::string_view prefix);

}  // namespace ratelimit_proxy::limit
