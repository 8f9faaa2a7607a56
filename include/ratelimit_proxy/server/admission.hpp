#pragma once

#include <boost/asio/ip/address.hpp>
#include <boost/beast/http/fields.hpp>
#include <boost/beast/http/verb.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "ratelimit_proxy/auth/token_store.hpp"
#include "ratelimit_proxy/config/config.hpp"
#include "ratelimit_proxy/limit/check_items.hpp"
#include "ratelimit_proxy/limit/concurrency_leases.hpp"
#include "ratelimit_proxy/limit/decision.hpp"
#include "ratelimit_proxy/limit/deny_cache.hpp"
#include "ratelimit_proxy/limit/limiter.hpp"
#include "ratelimit_proxy/limit/rate_limit_headers.hpp"
#include "ratelimit_proxy/limit/rule_set.hpp"
#include "ratelimit_proxy/redis/connection.hpp"
#include "ratelimit_proxy/server/load_monitor.hpp"
#include "ratelimit_proxy/server/local_reply.hpp"
#include "ratelimit_proxy/server/metered_request.hpp"
#include "ratelimit_proxy/server/proxy_metrics.hpp"

namespace ratelimit_proxy::server {

// POST /register's own limit: a token bucket per client address, per_ip_per_minute a minute.
limit::policy registration_policy(const limit::rule_set& rules);

// What admission works with, all of it one worker's (or shared read-only): handed over by
// reference, so a test can put a fake limiter in.
struct admission_context {
    const config::settings& settings;
    auth::token_store& tokens;
    limit::limiter& limiter;
    limit::deny_cache& denials;
    redis::connection& redis;  // GET /ready pings it
    // The rules in force and POST /register's own limit; both change when the rules do.
    const std::shared_ptr<const limit::rule_set>& rules;
    const limit::policy& register_policy;
    const load_monitor& load;
    unsigned worker_index;  // the slot of the policy counters
    worker_metrics& metrics;
    limit::concurrency_leases& leases;  // the worker's, for concurrency policies
};

// The parts of a request admission looks at. Views into the session's request, which stays
// unchanged until the verdict is delivered.
struct request_facts {
    boost::beast::http::verb method = boost::beast::http::verb::unknown;
    std::string_view method_text;  // as sent: keys and logs use it
    std::string_view path;         // the target without its query
    // Read only where needed (Authorization for /api, X-Registration-Secret for /register):
    // a field lookup is a walk down a tree.
    const boost::beast::http::fields* headers = nullptr;
    // The client as resolved through trusted proxies, and as text.
    const boost::asio::ip::address* client = nullptr;
    std::string_view client_text;
};

// Where a verdict goes: the downstream session.
class verdict_handler {
  public:
    // The verdict stays valid until the next admission::decide() or reset().
    virtual void on_verdict(const verdict& v) = 0;
    // The connection is gone: nothing more is decided (or counted) for it.
    virtual bool closed() const = 0;

  protected:
    ~verdict_handler() = default;
};

// Decides what happens to one request: route, registration, authentication, access lists,
// emergency override, policy selection, the limit check; and ends in one verdict, delivered
// to the handler (at once, or after a token lookup or a store's answer). Sockets are not its
// business. One per session; one request at a time.
class admission {
  public:
    explicit admission(const admission_context& ctx) : ctx_(ctx), leases_(ctx.leases) {}

    // After reset(). `request` and the handler are held (the handler kept alive) until the
    // verdict is delivered.
    void decide(const request_facts& request, std::shared_ptr<verdict_handler> handler);

    // Forget the last request: its verdict, identity and limit headers. Before each
    // decide(), and for a request that never gets that far (so its access log line shows none).
    void reset();
    // Between requests: let go of the rules, so an idle connection does not keep old ones.
    void release() { rules_.reset(); }
    // After a read_body verdict: the request's whole body, which admission may rewrite for
    // metering (include_usage, a max tokens field); the handler then gets the final verdict.
    void body_ready(std::string& body, std::shared_ptr<verdict_handler> handler);

    // The request has ended, however (every ending calls it; only the first does anything):
    // its concurrency slots go back, and a metered request is settled: charged what its
    // response says it used (or an estimate within its hold), its hold released.
    void end_request();

    // The metering of the request (active() when a metered policy allowed it).
    metered_request& metering() { return metered_; }

    const verdict& result() const { return verdict_; }
    const auth::identity& who() const { return identity_; }
    // The request's route for the metrics: the policy slot of rule_set::route_of, the
    // registration policy's for POST /register; 0 ("other") for anything else.
    std::uint16_t route_slot() const { return route_slot_; }

  private:
    using handler_ptr = std::shared_ptr<verdict_handler>;

    // By reference down the chain; a callback that waits moves the handler into itself.
    void handle_ready(handler_ptr& h);
    void handle_register(handler_ptr& h);
    void on_register_decision(limit::decision&& d, handler_ptr& h);
    void handle_api(handler_ptr& h);
    void on_lookup(const auth::lookup_result& result, handler_ptr& h);
    void check_limit(handler_ptr& h);
    // With the body read: the policies that apply to its model, its reservation per metered
    // policy, the body's rewrite. False when the request was answered (a 400) instead.
    bool prepare_metering(handler_ptr& h);
    void settle_metered();
    // The answer of a request a budget refused.
    void deny_budget(const limit::policy_result& r, const limit::check_item& item, handler_ptr& h);
    // GET /budget: the token's budgets and today's usage (after authentication).
    void answer_budget(handler_ptr& h);
    // known_denial: answered by the over-limit cache, not by the store.
    void on_decision(limit::decision&& d, bool known_denial, handler_ptr& h);
    void count_decision(const limit::decision& d, bool known_denial);
    // A decision made before any policy was checked (bypass, blocked).
    void count_request(decision_kind k);
    // The request's part of its check items (no token, no overrides, no scaling).
    limit::check_subject subject() const;
    void set_limit_headers(const limit::decision& d);
    // The verdict's deciding policy (the decision's tightest) and check time.
    void record_decision(const limit::decision& d);
    void deliver(handler_ptr& h) { h->on_verdict(verdict_); }

    const admission_context& ctx_;

    // Per request: reset() clears the identity, limit headers and verdict; decide()
    // overwrites the rest. Strings and vectors keep their capacity from one to the next.
    const request_facts* request_ = nullptr;
    std::shared_ptr<const limit::rule_set> rules_;  // held while a check refers to its policies
    auth::identity identity_;
    std::vector<const limit::policy*> selected_;
    std::vector<limit::check_item> items_;
    double scale_ = 1;             // the factor this request's limits were multiplied by
    std::uint16_t tier_slot_ = 0;  // the token's tier, for the metrics (0: not known yet)
    std::uint16_t route_slot_ = 0;
    std::chrono::steady_clock::time_point check_started_;
    std::optional<limit::rate_limit_headers> limit_headers_;
    verdict verdict_;
    limit::lease_hold leases_;  // the request's concurrency slots, until end_request()
    // Metered requests: the body (the session's, after read_body), one reservation per
    // selected policy, and the metering state until the request is settled.
    std::string* body_ = nullptr;
    std::vector<double> reservations_;
    std::string hold_id_;
    metered_request metered_;
    // The request's metered items, kept for settlement (items_ is reused by GET /budget).
    std::vector<limit::check_item> held_items_;
    std::vector<double> settle_amounts_;
    std::vector<char> consumed_;  // per item of an allowed metered request: it took its cost
    std::string usage_key_, usage_days_key_;
    bool budget_request_ = false;  // GET /budget: authenticated, then answered, not relayed
    std::vector<limit::budget_state> budget_states_;
};

}  // namespace ratelimit_proxy::server
