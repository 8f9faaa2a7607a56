#pragma once

// Private to src/admin: the admin API's error answers.

#include <nlohmann/json.hpp>

#include <stdexcept>
#include <string>
#include <string_view>

#include "ratelimit_proxy/config/config.hpp"

namespace ratelimit_proxy::admin {

// An answer to give instead of going on (400, 404, 409 ...), thrown by a handler or a
// mutation.
struct api_error : std::runtime_error {
    api_error(unsigned status, nlohmann::json body)
        : std::runtime_error(body.value("message", std::string("admin API error"))),
          status(status),
          body(std::move(body)) {}
    unsigned status;
    nlohmann::json body;
};

// {"error": error, "field": field (when given), "message": message}
nlohmann::json error_body(std::string_view error, std::string_view message,
                          std::string_view field = {});
// 400 {"error":"invalid","field":...,"message":...} from a config_error.
nlohmann::json invalid_body(const config::config_error& e);

}  // namespace ratelimit_proxy::admin
