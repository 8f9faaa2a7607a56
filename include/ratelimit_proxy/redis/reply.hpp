#pragma once

#include <functional>
#include <string>
#include <vector>

namespace ratelimit_proxy::redis {

enum class reply_type { nil, integer, string, status, error, array };

// A reply copied out of hiredis memory, so handlers may keep it.
struct reply {
    reply_type type = reply_type::nil;
    long long integer = 0;
    std::string str;  // string, status and error replies
    std::vector<reply> elements;
};

// ok: the reply is what Redis answered (which may itself be an error reply).
// timeout / disconnected: Redis did not answer in time or the connection is down.
enum class outcome { ok, timeout, disconnected };

using reply_handler = std::function<void(outcome, reply&&)>;

}  // namespace ratelimit_proxy::redis
