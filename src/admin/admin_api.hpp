#pragma once

// Private to src/admin: the admin API, independent of the HTTP transport. A route table
// (resource + method -> handler) picks the handler; handlers translate HTTP to calls on the
// control plane (policies, tiers, lists: the overlay) and on auth::token_records (tokens).
// Runs on the control io_context; every Redis call is asynchronous.

#include <nlohmann/json.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/beast/http/verb.hpp>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "ratelimit_proxy/admin/control_plane.hpp"
#include "ratelimit_proxy/admin/route_table.hpp"
#include "ratelimit_proxy/auth/token_records.hpp"

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
    // Set for an answer that is not JSON (GET /admin/usage?format=csv): `text` is sent
    // as it is with this Content-Type, and `body` is not.
    std::string content_type;
    std::string text;
};

using api_responder = std::function<void(api_response)>;

class admin_api : public std::enable_shared_from_this<admin_api> {
  public:
    // `rules` outlives this object and every request it answers.
    admin_api(boost::asio::any_io_executor ex, control_plane& rules);

    // Answers an authenticated request; `done` is called exactly once, on the control
    // io_context, never before handle returns.
    void handle(api_request req, api_responder done);

    // What GET/DELETE /admin/budgets/{policy} and POST .../credit name: the policy, its bucket
    // and the numbers that apply to it (admin_budgets.cpp).
    struct budget_target;

  private:
    // One request as the handlers see it.
    struct request {
        api_request http;
        std::string name;  // the "{name}" segment of the route
        std::map<std::string, std::string, std::less<>> params;
        nlohmann::json body;

        // Parses the body as a JSON object into `body`; throws api_error (415, 400) if not.
        void read_json_body();
        // Throws api_error (400) for a body field other than these.
        void only_fields(std::initializer_list<std::string_view> allowed) const;
        const std::string* param(std::string_view key) const;
    };
    using response = boost::asio::awaitable<api_response>;
    using handler = response (admin_api::*)(request&);

    static const route_table<handler>& routes();

    response answer(api_request req);

    response list_policies(request& r);
    response get_policy(request& r);
    response put_policy(request& r);
    response delete_policy(request& r);

    response list_tiers(request& r);
    response get_tier(request& r);
    response put_tier(request& r);
    response delete_tier(request& r);

    response list_tokens(request& r);
    response get_token(request& r);
    response patch_token(request& r);
    response delete_token(request& r);

    response show_bucket(request& r);
    response reset_bucket(request& r);

    response get_override(request& r);
    response put_override(request& r);
    response delete_override(request& r);
    response get_registration(request& r);
    response put_registration(request& r);
    response get_access(request& r);
    response put_access(request& r);
    response get_shadow(request& r);
    response put_shadow(request& r);
    response stats(request& r);

    response list_prices(request& r);
    response put_prices(request& r);
    response get_price(request& r);
    response put_price(request& r);
    response delete_price(request& r);

    response get_budget(request& r);
    response reset_budget(request& r);
    response credit_budget(request& r);
    response usage(request& r);

    using describer = std::function<nlohmann::json(const update_result&)>;
    // Runs an overlay update; on success answers `describe(result)` plus the new version.
    // Coroutines here take references, and callers pass named objects: GCC 12 mishandles
    // class-type temporaries (closures, strings) in a co_await expression.
    response change(const control_plane::mutation& m, const describer& describe,
                    unsigned success_status = 200);
    // The token with this id (as the client wrote it); throws api_error (400, 404, 409, 503).
    boost::asio::awaitable<auth::token_ref> find_token(const std::string& raw_id);
    // DEL of one stored key, then the version bump that makes every instance forget what it
    // remembers of it (the over-limit cache). Answers {"key", "deleted", "propagated"} or 503.
    response delete_state(const std::string& key);
    boost::asio::awaitable<budget_target> find_budget(request& r, const std::string* token,
                                                      const std::string* client);

    boost::asio::any_io_executor ex_;
    control_plane& rules_;
    auth::token_records tokens_;
};

}  // namespace ratelimit_proxy::admin
