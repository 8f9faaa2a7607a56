#pragma once

// Private to src/admin: the admin API's routes, independent of the HTTP transport. Runs on
// the control io_context; every Redis call is asynchronous.

#include <nlohmann/json.hpp>

#include <boost/beast/http/verb.hpp>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "control_plane_impl.hpp"

namespace ratelimit_proxy::admin {

struct api_request {
    boost::beast::http::verb method = boost::beast::http::verb::get;
    std::string target;
    std::string content_type;  // "" when absent
    std::string body;
};

struct api_response {
    unsigned status = 200;
    nlohmann::json body;
    std::string allow;  // for 405: the methods the resource has
};

using api_responder = std::function<void(api_response)>;

class admin_api : public std::enable_shared_from_this<admin_api> {
  public:
    admin_api(std::shared_ptr<control_plane::impl> rules, std::string key_prefix);

    // Routes an authenticated request; `done` is called exactly once, on the control
    // io_context (maybe before handle returns).
    void handle(api_request req, api_responder done);

  private:
    struct context;
    void route(const std::shared_ptr<context>& c);

    void list_policies(const std::shared_ptr<context>& c);
    void get_policy(const std::shared_ptr<context>& c, const std::string& name);
    void put_policy(const std::shared_ptr<context>& c, const std::string& name);
    void delete_policy(const std::shared_ptr<context>& c, const std::string& name);

    void list_tiers(const std::shared_ptr<context>& c);
    void get_tier(const std::shared_ptr<context>& c, const std::string& name);
    void put_tier(const std::shared_ptr<context>& c, const std::string& name);
    void delete_tier(const std::shared_ptr<context>& c, const std::string& name);

    void list_tokens(const std::shared_ptr<context>& c);
    void find_token(const std::shared_ptr<context>& c, const std::string& id,
                    std::function<void(const std::string& key)> found);
    void get_token(const std::shared_ptr<context>& c, const std::string& id);
    void patch_token(const std::shared_ptr<context>& c, const std::string& id);
    void delete_token(const std::shared_ptr<context>& c, const std::string& id);

    void show_bucket(const std::shared_ptr<context>& c);
    void reset_bucket(const std::shared_ptr<context>& c);

    void get_override(const std::shared_ptr<context>& c);
    void put_override(const std::shared_ptr<context>& c);
    void delete_override(const std::shared_ptr<context>& c);
    void get_registration(const std::shared_ptr<context>& c);
    void put_registration(const std::shared_ptr<context>& c);
    void get_access(const std::shared_ptr<context>& c);
    void put_access(const std::shared_ptr<context>& c);
    void get_shadow(const std::shared_ptr<context>& c);
    void put_shadow(const std::shared_ptr<context>& c);
    void stats(const std::shared_ptr<context>& c);

    // Runs an overlay update and answers with `answer(result)` on success.
    void update(const std::shared_ptr<context>& c, control_plane::impl::mutation m,
                std::function<nlohmann::json(const update_result&)> answer,
                unsigned success_status = 200);

    std::shared_ptr<control_plane::impl> rules_;
    std::string prefix_;
    std::string token_key_prefix_;  // "{prefix}:token:"
};

}  // namespace ratelimit_proxy::admin
