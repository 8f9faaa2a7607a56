#pragma once

#include <span>
#include <string>
#include <string_view>

#include "ratelimit_proxy/redis/reply.hpp"

namespace ratelimit_proxy::redis {

class connection;

// A Lua script run by EVALSHA; on NOSCRIPT (Redis restarted, SCRIPT FLUSH) it is sent once
// with EVAL, which also caches it again, so the caller never sees NOSCRIPT.
class script {
  public:
    explicit script(std::string_view source);

    const std::string& sha1() const { return sha1_; }
    const std::string& source() const { return source_; }

    void run(connection& conn, std::span<const std::string_view> keys,
             std::span<const std::string_view> args, reply_handler handler) const;

  private:
    std::string source_;
    std::string sha1_;
};

}  // namespace ratelimit_proxy::redis
