#include "api_error.hpp"

namespace ratelimit_proxy::admin {

using json = nlohmann::json;

namespace {

// The message without the field name config_error puts in front: the field has its own
// member in the answer.
std::string problem_text(const config::config_error& e) {
    std::string what = e.what();
    const std::string lead = e.field() + ": ";
    if (what.starts_with(lead))
        what.erase(0, lead.size());
    return what;
}

}  // namespace

json error_body(std::string_view error, std::string_view message, std::string_view field) {
    json j = {{"error", error}};
    if (!field.empty())
        j["field"] = field;
    j["message"] = message;
    return j;
}

json invalid_body(const config::config_error& e) {
    return error_body("invalid", problem_text(e), e.field().empty() ? "body" : e.field());
}

}  // namespace ratelimit_proxy::admin
