#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <nlohmann/json.hpp>

#include <memory>
#include <optional>

#include "ratelimit_proxy/auth/token.hpp"
#include "ratelimit_proxy/auth/token_store.hpp"
#include "ratelimit_proxy/config/config.hpp"
#include "ratelimit_proxy/config/rule_overlay.hpp"
#include "ratelimit_proxy/limit/limiter.hpp"
#include "ratelimit_proxy/limit/rule_set.hpp"
#include "ratelimit_proxy/server/admission.hpp"

namespace auth = ratelimit_proxy::auth;
namespace config = ratelimit_proxy::config;
namespace limit = ratelimit_proxy::limit;
namespace redis = ratelimit_proxy::redis;
namespace server = ratelimit_proxy::server;
namespace http = boost::beast::http;

namespace {

// Answers every check with `allow` (or the store being away), or holds it until release().
class fake_limiter : public limit::limiter {
  public:
    void check(std::span<const limit::check_item> items, limit::decision_handler done) override {
        ++calls;
        seen.assign(items.begin(), items.end());
        if (hold) {
            pending = std::move(done);
            return;
        }
        done(answer());
    }
    void release() { std::exchange(pending, nullptr)(answer()); }
    void release(const limit::lease_refs& leases) override { released.emplace_back(leases.id); }
    void renew(const limit::lease_refs&, std::chrono::microseconds) override {}
    void settle(std::span<const limit::check_item> items, std::span<const double> actual,
                std::string_view hold_id, const limit::usage_record*) override {
        settled_items += items.size();
        settled_actual.assign(actual.begin(), actual.end());
        settled_hold = hold_id;
    }
    void inspect(std::span<const limit::check_item>, limit::budget_handler done) override {
        done(false, {});
    }
    void read_usage(std::string_view, limit::usage_handler done) override { done(false, {}); }
    std::size_t settled_items = 0;
    std::vector<double> settled_actual;
    std::string settled_hold;
    std::vector<std::string> released;

    limit::decision answer() const {
        limit::decision d;
        d.store_unavailable = unavailable;
        d.decided_locally = locally;
        d.allowed = allow && !unavailable;
        for (const auto& item : seen) {
            limit::policy_result r;
            r.source = item.source;
            r.shadow = item.shadow;
            r.allowed = allow;
            r.remaining = allow ? 9 : 0;
            r.reset_seconds = retry_after;
            r.retry_after_seconds = allow ? 0 : retry_after;
            r.quota = item.numbers.limit;
            r.window_seconds = item.numbers.window_seconds;
            d.results.push_back(r);
        }
        d.choose_tightest();
        return d;
    }

    bool allow = true;
    bool unavailable = false;
    bool locally = false;  // as the Redis limiter's local fallback
    bool hold = false;
    double retry_after = 3;
    int calls = 0;
    std::vector<limit::check_item> seen;
    limit::decision_handler pending;
};

// What the session would be given: a copy of each verdict.
class recording_handler : public server::verdict_handler {
  public:
    void on_verdict(const server::verdict& v) override {
        ++count;
        last = v;
        had_limit_headers = v.limit_headers != nullptr;
        if (v.limit_headers)
            retry_after_header = v.limit_headers->retry_after;
    }
    bool closed() const override { return gone; }

    int count = 0;
    bool gone = false;
    server::verdict last;
    bool had_limit_headers = false;
    std::string retry_after_header;
};

class AdmissionTest : public ::testing::Test {
  protected:
    AdmissionTest() {
        settings_ = config::parse_json(R"({
            "upstream": {"url": "http://127.0.0.1:1"},
            "policies": [
              {"name": "burst", "limit": 10, "window": "second", "burst": 20},
              {"name": "chat", "limit": 600, "window": "minute", "cost": 10,
               "match": {"method": "POST", "path_prefix": "/api/chat"}}
            ],
            "tiers": {"free": {"policies": ["burst"]}, "pro": {"policies": ["burst", "chat"]}},
            "default_tier": "free"})",
                                       "test.json");
        set_rules("{}");
        // Redis is never reached: with the breaker open, a token this process has seen
        // before is found without it.
        breaker_.record_failure();
    }

    void set_rules(const std::string& overlay) {
        rules_ = config::build_rule_set(settings_, nlohmann::json::parse(overlay));
        register_policy_ = server::registration_policy(*rules_);
    }

    // A token known to this process, in `tier`.
    std::string known_token(const std::string& tier, const char* id = "0123456789abcdef") {
        auto token = auth::generate_token();
        auth::identity who;
        who.id = id;
        who.tier = tier;
        known_.remember(auth::sha256(token), who);
        return token;
    }

    const server::verdict& decide(http::verb method, std::string_view path,
                                  std::string_view authorization = {},
                                  std::string_view secret = {}) {
        method_text_ = std::string(http::to_string(method));
        headers_.clear();
        if (!authorization.empty())
            headers_.set(http::field::authorization, authorization);
        if (!secret.empty())
            headers_.set("X-Registration-Secret", secret);
        auto& f = facts_;
        f.method = method;
        f.method_text = method_text_;
        f.path = path;
        f.headers = &headers_;
        f.client = &client_;
        f.client_text = client_text_;
        handler_->count = 0;
        admission_.reset();
        admission_.decide(f, handler_);
        return handler_->last;
    }
    std::string bearer(const std::string& token) { return "Bearer " + token; }

    config::settings settings_;
    boost::asio::io_context io_;
    redis::connection redis_{io_, redis::connection_options{{"127.0.0.1", 1}}};
    redis::circuit_breaker breaker_{1, std::chrono::hours(1)};
    auth::known_tokens known_{100};
    auth::token_store tokens_{redis_, breaker_, known_, "rlp", std::chrono::seconds(10), 100};
    fake_limiter limiter_;
    limit::deny_cache denials_;
    std::shared_ptr<const limit::rule_set> rules_;
    limit::policy register_policy_;
    server::load_monitor load_{server::load_rule{}, 1};
    server::worker_metrics metrics_{0};
    limit::concurrency_leases leases_{limiter_, 0, std::chrono::seconds(60)};
    server::admission_context ctx_{settings_,        tokens_, limiter_, denials_, redis_, rules_,
                                   register_policy_, load_,   0,        metrics_, leases_};
    server::admission admission_{ctx_};
    std::shared_ptr<recording_handler> handler_ = std::make_shared<recording_handler>();
    boost::asio::ip::address client_ = boost::asio::ip::make_address("203.0.113.5");
    std::string client_text_ = "203.0.113.5";
    std::string method_text_;
    http::fields headers_;
    server::request_facts facts_;
};

}  // namespace

TEST_F(AdmissionTest, UnknownPathIsA404NamingTheApiPrefix) {
    const auto& v = decide(http::verb::get, "/apix");
    EXPECT_EQ(handler_->count, 1);
    EXPECT_EQ(v.what, server::verdict::kind::local);
    EXPECT_EQ(v.status, http::status::not_found);
    EXPECT_EQ(v.error, "not_found");
    EXPECT_EQ(v.message, "no such endpoint; proxied paths start with /api");
}

TEST_F(AdmissionTest, WrongMethodIsA405WithTheRoutesMethodsInAllow) {
    EXPECT_EQ(decide(http::verb::get, "/register").allow, "POST");
    EXPECT_EQ(handler_->last.status, http::status::method_not_allowed);
    EXPECT_EQ(handler_->last.message, "use POST /register");
    EXPECT_EQ(decide(http::verb::post, "/health").allow, "GET, HEAD");
    EXPECT_EQ(decide(http::verb::delete_, "/ready").allow, "GET, HEAD");
    EXPECT_EQ(decide(http::verb::trace, "/api/x").allow,
              "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS");
    EXPECT_EQ(handler_->last.message, "TRACE and CONNECT are not relayed");
    EXPECT_EQ(decide(http::verb::connect, "/api").status, http::status::method_not_allowed);
    EXPECT_EQ(limiter_.calls, 0);
}

TEST_F(AdmissionTest, HealthIsAnsweredWithItsJsonBody) {
    const auto& v = decide(http::verb::head, "/health");
    EXPECT_EQ(v.status, http::status::ok);
    EXPECT_TRUE(v.error.empty());
    EXPECT_EQ(v.message, R"({"status":"ok"})");
    EXPECT_TRUE(v.allow.empty());
}

TEST_F(AdmissionTest, ApiWithoutABearerTokenIs401) {
    const auto& v = decide(http::verb::get, "/api/echo", "Basic dXNlcjpwdw==");
    EXPECT_EQ(v.status, http::status::unauthorized);
    EXPECT_EQ(v.error, "unauthorized");
    EXPECT_STREQ(v.label, "unauthenticated");
}

TEST_F(AdmissionTest, TokenRedisCannotVerifyIs503) {
    const auto& v = decide(http::verb::get, "/api/echo", bearer(auth::generate_token()));
    EXPECT_EQ(v.status, http::status::service_unavailable);
    EXPECT_EQ(v.message, "cannot verify the token: Redis is unreachable");
    EXPECT_STREQ(v.label, "unavailable");
}

TEST_F(AdmissionTest, AllowedRequestIsForwardedWithTheLimitHeadersOfItsTiersPolicies) {
    const auto& v = decide(http::verb::post, "/api/chat/x", bearer(known_token("pro")));
    EXPECT_EQ(v.what, server::verdict::kind::forward);
    EXPECT_STREQ(v.label, "allowed");
    EXPECT_TRUE(handler_->had_limit_headers);
    ASSERT_EQ(limiter_.seen.size(), 2u);
    EXPECT_EQ(limiter_.seen[0].key, "{rlp}:rl:burst:0123456789abcdef");
    EXPECT_EQ(limiter_.seen[1].source->name, "chat");
    EXPECT_EQ(limiter_.seen[1].cost, 10u);
    EXPECT_EQ(admission_.who().id, "0123456789abcdef");
    EXPECT_EQ(admission_.who().tier, "pro");
}

TEST_F(AdmissionTest, DenialIsA429QuotingRetryAfterAndTheNextIsAnsweredFromTheDenyCache) {
    limiter_.allow = false;
    const auto token = bearer(known_token("free"));
    const auto& v = decide(http::verb::get, "/api/echo", token);
    EXPECT_EQ(v.status, http::status::too_many_requests);
    EXPECT_EQ(v.error, "rate_limit_exceeded");
    EXPECT_EQ(v.message, "rate limit exceeded; retry after 3 seconds");
    EXPECT_EQ(handler_->retry_after_header, "3");
    EXPECT_STREQ(v.label, "denied");
    EXPECT_EQ(limiter_.calls, 1);

    decide(http::verb::get, "/api/echo", token);
    EXPECT_EQ(handler_->last.status, http::status::too_many_requests);
    EXPECT_STREQ(handler_->last.label, "denied-cached");
    EXPECT_EQ(limiter_.calls, 1);
}

TEST_F(AdmissionTest, StoreAwayAndFailingClosedIsA503WithRetryAfterOne) {
    limiter_.unavailable = true;
    const auto& v = decide(http::verb::get, "/api/echo", bearer(known_token("free")));
    EXPECT_EQ(v.status, http::status::service_unavailable);
    EXPECT_EQ(v.retry_after, "1");
    EXPECT_FALSE(handler_->had_limit_headers);
    EXPECT_STREQ(v.label, "unavailable");
}

TEST_F(AdmissionTest, EmergencyBlockIsA503WithoutAnyCheck) {
    set_rules(R"({"override": {"block_all": true}})");
    const auto& v = decide(http::verb::get, "/api/echo", bearer(known_token("free")));
    EXPECT_EQ(v.status, http::status::service_unavailable);
    EXPECT_EQ(v.error, "emergency_block");
    EXPECT_EQ(v.retry_after, "60");
    EXPECT_EQ(limiter_.calls, 0);
}

TEST_F(AdmissionTest, EmergencyFactorScalesTheCheckedNumbers) {
    set_rules(R"({"override": {"factor": 0.5}})");
    decide(http::verb::get, "/api/echo", bearer(known_token("free")));
    ASSERT_EQ(limiter_.seen.size(), 1u);
    EXPECT_EQ(limiter_.seen[0].numbers.limit, 5);
    EXPECT_EQ(limiter_.seen[0].numbers.burst, 10);
}

TEST_F(AdmissionTest, BlockedNetworkIs403AndBypassedTokenIsForwardedUnchecked) {
    set_rules(R"({"block": {"cidrs": ["203.0.113.0/24"]}})");
    EXPECT_EQ(decide(http::verb::get, "/api/echo").status, http::status::forbidden);
    EXPECT_EQ(handler_->last.message, "this client is blocked");
    EXPECT_EQ(decide(http::verb::post, "/register").status, http::status::forbidden);

    set_rules(R"({"bypass": {"tokens": ["0123456789abcdef"]}})");
    const auto& v = decide(http::verb::get, "/api/echo", bearer(known_token("free")));
    EXPECT_EQ(v.what, server::verdict::kind::forward);
    EXPECT_STREQ(v.label, "bypass");
    EXPECT_FALSE(handler_->had_limit_headers);
    EXPECT_EQ(limiter_.calls, 0);
}

TEST_F(AdmissionTest, TierWithoutMatchingPoliciesIsForwardedUnlimited) {
    set_rules(R"({"tiers": {"chat_only": {"policies": ["chat"]}}})");
    const auto& v = decide(http::verb::get, "/api/echo", bearer(known_token("chat_only")));
    EXPECT_EQ(v.what, server::verdict::kind::forward);
    EXPECT_STREQ(v.label, "unlimited");
    EXPECT_EQ(limiter_.calls, 0);
}

TEST_F(AdmissionTest, NoVerdictForAConnectionThatWentAwayDuringTheCheck) {
    limiter_.hold = true;
    decide(http::verb::get, "/api/echo", bearer(known_token("free")));
    EXPECT_EQ(handler_->count, 0);
    handler_->gone = true;
    limiter_.release();
    EXPECT_EQ(handler_->count, 0);
    EXPECT_EQ(rules_->find_policy("burst")->counters->sum().allowed, 0u);
}

TEST_F(AdmissionTest, VerdictNamesTheDecidingPolicyAndTheRoute) {
    const auto& v = decide(http::verb::post, "/api/chat/x", bearer(known_token("pro")));
    ASSERT_NE(v.deciding.source, nullptr);
    EXPECT_EQ(v.deciding.remaining, 9);
    EXPECT_EQ(v.route, "chat");
    limiter_.allow = false;
    const auto& denied = decide(http::verb::get, "/api/echo", bearer(known_token("free")));
    ASSERT_NE(denied.deciding.source, nullptr);
    EXPECT_FALSE(denied.deciding.allowed);
    EXPECT_TRUE(denied.route.empty());
    admission_.reset();
    EXPECT_EQ(admission_.result().deciding.source, nullptr);
}

TEST_F(AdmissionTest, DecisionsAreCountedPerPolicy) {
    decide(http::verb::get, "/api/echo", bearer(known_token("free")));
    EXPECT_EQ(rules_->find_policy("burst")->counters->sum().allowed, 1u);
}

TEST_F(AdmissionTest, RegistrationIsLimitedPerClientAddress) {
    limiter_.allow = false;
    const auto& v = decide(http::verb::post, "/register");
    ASSERT_EQ(limiter_.seen.size(), 1u);
    EXPECT_EQ(limiter_.seen[0].key, "{rlp}:rl:register:203.0.113.5");
    EXPECT_EQ(v.status, http::status::too_many_requests);
    EXPECT_EQ(v.message, "too many registrations from this address; retry after 3 seconds");
    EXPECT_STREQ(v.label, "denied");
}

TEST_F(AdmissionTest, RegistrationThatCannotBeStoredIs503) {
    const auto& v = decide(http::verb::post, "/register");
    EXPECT_EQ(v.status, http::status::service_unavailable);
    EXPECT_EQ(v.message, "cannot store the token: Redis is unreachable");
}

TEST_F(AdmissionTest, ClosedOrSecretRegistrationIsRefusedBeforeAnyCheck) {
    set_rules(R"({"registration": {"mode": "closed"}})");
    EXPECT_EQ(decide(http::verb::post, "/register").error, "registration_closed");
    set_rules(R"({"registration": {"mode": "secret", "secret": "s3cret"}})");
    EXPECT_EQ(decide(http::verb::post, "/register", {}, "wrong").error, "registration_refused");
    EXPECT_STREQ(handler_->last.label, "registration-refused");
    EXPECT_EQ(limiter_.calls, 0);
    decide(http::verb::post, "/register", {}, "s3cret");
    EXPECT_EQ(limiter_.calls, 1);
}

TEST_F(AdmissionTest, ResetForgetsTheLastRequest) {
    decide(http::verb::get, "/api/echo", bearer(known_token("free")));
    admission_.reset();
    EXPECT_STREQ(admission_.result().label, "-");
    EXPECT_EQ(admission_.result().limit_headers, nullptr);
    EXPECT_TRUE(admission_.who().id.empty());
}

TEST(LocalReply, TooManyRequestsWithoutLimitHeadersIsStillA429) {
    // A store reply that denies with no enforced result leaves no headers to quote.
    server::verdict v;
    v.too_many_requests("too many registrations from this address");
    EXPECT_EQ(v.status, http::status::too_many_requests);
    EXPECT_EQ(v.error, "rate_limit_exceeded");
    EXPECT_EQ(v.message, "too many registrations from this address; retry after  seconds");
}

namespace {
std::uint64_t decisions_of(const server::worker_metrics& m, const limit::rule_set& rules,
                           std::string_view policy, std::string_view tier,
                           server::decision_kind d) {
    const auto p = policy == "none" ? 0 : rules.find_policy(policy)->slot;
    const auto t = tier == "none" ? 0 : rules.find_tier(tier)->slot;
    return m.decisions(p, t, static_cast<std::size_t>(d));
}
}  // namespace

TEST_F(AdmissionTest, MetricsCountEachPolicysDecisionUnderTheTokensTier) {
    const auto token = bearer(known_token("pro"));
    decide(http::verb::post, "/api/chat/completions", token);
    limiter_.allow = false;
    decide(http::verb::post, "/api/chat/completions", token);
    decide(http::verb::post, "/api/chat/completions", token);  // from the deny cache
    using server::decision_kind;
    EXPECT_EQ(decisions_of(metrics_, *rules_, "burst", "pro", decision_kind::allowed), 1u);
    EXPECT_EQ(decisions_of(metrics_, *rules_, "chat", "pro", decision_kind::allowed), 1u);
    EXPECT_EQ(decisions_of(metrics_, *rules_, "burst", "pro", decision_kind::denied), 1u);
    EXPECT_EQ(decisions_of(metrics_, *rules_, "chat", "pro", decision_kind::denied_cached), 1u);
    EXPECT_EQ(decisions_of(metrics_, *rules_, "burst", "free", decision_kind::allowed), 0u);
    // The route is the policy whose match the path meets.
    EXPECT_EQ(admission_.route_slot(), rules_->find_policy("chat")->slot);
}

TEST_F(AdmissionTest, MetricsCountFallbackAndFailClosedApart) {
    const auto token = bearer(known_token("free"));
    limiter_.locally = true;
    decide(http::verb::get, "/api/echo", token);
    limiter_.allow = false;
    decide(http::verb::get, "/api/echo", token);
    limiter_.unavailable = true;
    decide(http::verb::get, "/api/other", token);
    using server::decision_kind;
    EXPECT_EQ(decisions_of(metrics_, *rules_, "burst", "free", decision_kind::fallback_allowed),
              1u);
    EXPECT_EQ(decisions_of(metrics_, *rules_, "burst", "free", decision_kind::fallback_denied), 1u);
    EXPECT_EQ(decisions_of(metrics_, *rules_, "burst", "free", decision_kind::fail_closed), 1u);
    EXPECT_EQ(decisions_of(metrics_, *rules_, "burst", "free", decision_kind::allowed), 0u);
    EXPECT_EQ(decisions_of(metrics_, *rules_, "burst", "free", decision_kind::denied), 0u);
}

TEST_F(AdmissionTest, MetricsCountBypassBlockAndAuthFailuresWithoutAPolicy) {
    set_rules(R"({"bypass": {"tokens": ["0123456789abcdef"]}})");
    decide(http::verb::get, "/api/echo", bearer(known_token("free")));
    decide(http::verb::get, "/api/echo");
    set_rules(R"({"block": {"cidrs": ["203.0.113.0/24"]}})");
    decide(http::verb::get, "/api/echo");
    using server::decision_kind;
    EXPECT_EQ(decisions_of(metrics_, *rules_, "none", "free", decision_kind::bypass), 1u);
    EXPECT_EQ(decisions_of(metrics_, *rules_, "none", "none", decision_kind::blocked), 1u);
    EXPECT_EQ(metrics_.auth_failures(static_cast<std::size_t>(server::auth_failure::missing)), 1u);
    EXPECT_EQ(limiter_.calls, 0);
}

TEST_F(AdmissionTest, NearLimitIsCountedFromTheConfiguredShareUsed) {
    // The fake limiter leaves 9 of each limit: burst (10) is 10% used, below 0.8.
    const auto token = bearer(known_token("free"));
    decide(http::verb::get, "/api/echo", token);
    const auto burst = rules_->find_policy("burst")->slot;
    const auto free = rules_->find_tier("free")->slot;
    EXPECT_EQ(metrics_.near_limit(burst, free), 0u);
    settings_.metrics.near_limit_ratio = 0.05;
    decide(http::verb::get, "/api/echo", token);
    EXPECT_EQ(metrics_.near_limit(burst, free), 1u);
}

TEST_F(AdmissionTest, ConcurrencyLeaseIsTakenWhenAllowedAndGivenBackOnceWhenTheRequestEnds) {
    settings_ = config::parse_json(R"({
        "upstream": {"url": "http://127.0.0.1:1"},
        "policies": [{"name": "slots", "algorithm": "concurrency", "limit": 2}]})",
                                   "test.json");
    set_rules("{}");
    const auto token = bearer(known_token("default"));
    EXPECT_EQ(decide(http::verb::get, "/api/echo", token).what, server::verdict::kind::forward);
    ASSERT_EQ(limiter_.seen.size(), 1u);
    const std::string id(limiter_.seen[0].lease_id);
    EXPECT_FALSE(id.empty());
    EXPECT_DOUBLE_EQ(limiter_.seen[0].numbers.window_seconds, 60);  // the lease time
    admission_.end_request();
    admission_.end_request();
    ASSERT_EQ(limiter_.released.size(), 1u);
    EXPECT_EQ(limiter_.released[0], id);

    // Refused: nothing held, nothing given back, and the next request asks the store again.
    limiter_.allow = false;
    limiter_.retry_after = 1;
    EXPECT_EQ(decide(http::verb::get, "/api/echo", token).status, http::status::too_many_requests);
    EXPECT_EQ(handler_->retry_after_header, "1");
    EXPECT_NE(std::string(limiter_.seen[0].lease_id), id);  // one id per request
    admission_.end_request();
    EXPECT_EQ(limiter_.released.size(), 1u);
    const int calls = limiter_.calls;
    decide(http::verb::get, "/api/echo", token);
    EXPECT_EQ(limiter_.calls, calls + 1);
}

TEST_F(AdmissionTest, ConcurrencyLeaseOfAClientGoneBeforeTheAnswerIsGivenBackAtOnce) {
    settings_ = config::parse_json(R"({
        "upstream": {"url": "http://127.0.0.1:1"},
        "policies": [{"name": "slots", "algorithm": "concurrency", "limit": 2}]})",
                                   "test.json");
    set_rules("{}");
    limiter_.hold = true;
    decide(http::verb::get, "/api/echo", bearer(known_token("default")));
    handler_->gone = true;
    limiter_.release();  // the store answers: allowed
    EXPECT_EQ(handler_->count, 0);
    EXPECT_EQ(limiter_.released.size(), 1u);
}
