#pragma once

// Private to src/admin: the small pieces every group of admin handlers answers with
// (admin_api.cpp, admin_prices.cpp, admin_budgets.cpp, admin_usage.cpp).

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

#include "admin_api.hpp"
#include "api_error.hpp"

namespace ratelimit_proxy::admin::detail {

inline api_response reply(unsigned status, nlohmann::json body) {
    api_response r;
    r.status = status;
    r.body = std::move(body);
    return r;
}

inline nlohmann::json not_found(std::string_view what, std::string_view name,
                                std::string_view field = "name") {
    return error_body("not_found", "no " + std::string(what) + " named '" + std::string(name) + "'",
                      field);
}

inline nlohmann::json unavailable() {
    return error_body("unavailable", "Redis did not answer; try again");
}

inline nlohmann::json& member_object(nlohmann::json& overlay, const char* name) {
    nlohmann::json& m = overlay[name];
    if (!m.is_object())
        m = nlohmann::json::object();
    return m;
}

// Deleting a member the config file defines leaves a null that hides it; one the admin API
// made just goes.
inline void remove_member(nlohmann::json& overlay, const char* section, const std::string& name,
                          bool in_file) {
    nlohmann::json& members = member_object(overlay, section);
    if (in_file)
        members[name] = nullptr;
    else
        members.erase(name);
}

// A member that is an object in the overlay: the admin API defined it.
inline bool defined_by_admin(const nlohmann::json& overlay, const char* section,
                             const std::string& name) {
    auto s = overlay.find(section);
    if (s == overlay.end() || !s->is_object())
        return false;
    auto m = s->find(name);
    return m != s->end() && m->is_object();
}

}  // namespace ratelimit_proxy::admin::detail
