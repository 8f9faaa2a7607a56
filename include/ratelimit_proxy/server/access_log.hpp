#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <unordered_map>

namespace ratelimit_proxy::server {

// One request's access line, filled by the session (views into its request state).
struct access_record {
    std::string_view request_id;
    std::string_view trace_id;             // empty: no valid traceparent
    std::string_view upstream_request_id;  // the upstream's X-Request-Id; empty: none
    std::string_view method;
    std::string_view path;  // never the query: it may hold secrets
    std::string_view route;
    unsigned status = 0;
    bool from_upstream = false;  // source "upstream", else "proxy"
    std::string_view peer;       // the connection's address (the text line's first field)
    std::string_view client;     // as resolved through trusted proxies
    std::string_view token_id;   // the token's 16-hex id, never the token
    std::string_view tier;
    std::string_view decision;  // the verdict's label
    std::string_view policy;    // the deciding policy; empty: none
    bool has_remaining = false;
    std::int64_t remaining = 0;
    double window_seconds = 0;  // the deciding policy's
    double duration_ms = 0;
    double upstream_ms = 0;
    double redis_ms = 0;
    std::uint64_t bytes_in = 0;   // request body bytes from the client
    std::uint64_t bytes_out = 0;  // response body bytes to the client
    std::string_view user_agent;
    std::uint64_t suppressed = 0;  // denials of this client and policy not logged before
};

// The text line: "<peer> <method> <path> <status> decision=... upstream_ms=... token=<8 hex>"
// as before, then request_id=, trace_id= (when present) and suppressed= (when not 0).
void format_access_text(const access_record& r, std::string& out);
// One JSON object with every field of the record.
void format_access_json(const access_record& r, std::string& out);

// The flood rule for denials: per client x policy x decision label, the first denial of a
// window is logged and the others counted; the next denial logged for that key after its
// window carries the count. One per worker thread (no lock); at most `capacity` keys, the
// oldest evicted, reporting its count if it has one.
class denial_log_filter {
  public:
    using clock = std::chrono::steady_clock;
    explicit denial_log_filter(std::size_t capacity = 4096) : capacity_(capacity) {}

    struct evicted {
        std::string key;  // "client policy decision"
        std::uint64_t suppressed = 0;
    };

    // Whether to log this denial; when true `suppressed` is the count to report (else 0).
    // `dropped` is set when a full table evicted a key with a count (else its count is 0).
    bool admit(std::string_view client, std::string_view policy, std::string_view decision,
               double window_seconds, clock::time_point now, std::uint64_t& suppressed,
               evicted& dropped);

    std::size_t size() const { return entries_.size(); }

  private:
    struct entry {
        clock::time_point window_end;
        std::uint64_t suppressed = 0;
    };
    std::size_t capacity_;
    std::string key_;  // the key being looked up; capacity kept
    std::unordered_map<std::string, entry> entries_;
    std::deque<const std::string*> order_;  // the map's keys (nodes stay put), oldest first
};

// Writes one access line, text or JSON, applying the flood rule of this thread's filter to
// 429s that a policy decided. The caller has checked that info lines are logged.
void log_access_line(access_record& r, bool json);

}  // namespace ratelimit_proxy::server
