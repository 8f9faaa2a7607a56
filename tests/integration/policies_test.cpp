// The policy engine seen from a client: several policies per request decided in one call,
// routes and costs, per-IP keys behind trusted proxies, tiers, bypass and block lists,
// shadow mode, registration control, load-aware limits and SIGHUP reloads.
#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>
#include <thread>

#include "payload.hpp"
#include "proxy_fixture.hpp"
#include "test_helpers.hpp"

using namespace rlp_test;
using namespace std::chrono_literals;
namespace http = boost::beast::http;

namespace {

class PoliciesTest : public proxy_fixture<beast_upstream> {
  protected:
    void start(const std::string& config, env_list env = {}) {
        start_proxy({.base_path = "/up", .env = std::move(env), .config = config});
    }
    http_response call(const std::string& token, const std::string& path = "/api/echo",
                       header_list extra = {}, http::verb method = http::verb::get) {
        header_list h = bearer(token);
        h.insert(h.end(), extra.begin(), extra.end());
        return http_request(proxy->port(), method, path, h);
    }
    int count_allowed(const std::string& token, int attempts, const std::string& path = "/api/echo",
                      header_list extra = {}, http::verb method = http::verb::get) {
        int allowed = 0;
        for (int i = 0; i < attempts; ++i) {
            auto r = call(token, path, extra, method);
            if (r.status == 200)
                ++allowed;
            else
                EXPECT_EQ(r.status, 429u) << r.body;
        }
        return allowed;
    }
};

TEST_F(PoliciesTest, EveryPolicyAppliesAndTheTightestIsReported) {
    start(R"({"policies": [
        {"name": "burst", "algorithm": "token_bucket", "limit": 100, "window": "minute"},
        {"name": "daily", "algorithm": "fixed_window", "limit": 3, "window": "day"}]})");
    auto token = register_token(proxy->port());
    auto first = call(token);
    ASSERT_EQ(first.status, 200u) << first.body;
    EXPECT_EQ(header_integer(first, "X-RateLimit-Limit"), 3) << first.headers_text();
    EXPECT_EQ(header_integer(first, "X-RateLimit-Remaining"), 2) << first.headers_text();
    EXPECT_EQ(first.header("RateLimit-Policy"), "\"burst\";q=100;w=60, \"daily\";q=3;w=86400");
    EXPECT_TRUE(first.header("RateLimit").starts_with("\"daily\";r=2;t=")) << first.headers_text();
    EXPECT_EQ(call(token).status, 200u);
    EXPECT_EQ(call(token).status, 200u);
    auto denied = call(token);
    ASSERT_EQ(denied.status, 429u);
    // The daily quota comes back at the next midnight UTC.
    const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    const long until_midnight = 86400 - now % 86400;
    auto retry = header_integer(denied, "Retry-After");
    ASSERT_TRUE(retry.has_value()) << denied.headers_text();
    EXPECT_NEAR(*retry, until_midnight, 5);
}

TEST_F(PoliciesTest, DeniedRequestConsumesNothingFromAnyPolicy) {
    start(R"({"policies": [
        {"name": "short", "algorithm": "token_bucket", "limit": 2, "window": "hour"},
        {"name": "hourly", "algorithm": "fixed_window", "limit": 50, "window": "hour"}]})");
    auto token = register_token(proxy->port());
    EXPECT_EQ(count_allowed(token, 6), 2);
    const std::string key = "{rlp}:rl:hourly:" + token_id(token);
    EXPECT_EQ(redis.command({"HGET", key, "c"}), "2") << dump_redis(redis);
}

TEST_F(PoliciesTest, RoutePolicyAppliesOnlyToItsRouteWithItsCost) {
    start(R"({"policies": [
        {"name": "general", "algorithm": "token_bucket", "limit": 100, "window": "minute"},
        {"name": "chat", "algorithm": "fixed_window", "limit": 20, "window": "hour", "cost": 10,
         "match": {"method": "POST", "path_prefix": "/api/chat"}}]})");
    auto token = register_token(proxy->port());
    EXPECT_EQ(count_allowed(token, 3, "/api/chat/completions", {}, http::verb::post), 2);
    // Encoded or not, the route is the same route.
    EXPECT_EQ(call(token, "/api/ch%61t/completions", {}, http::verb::post).status, 429u);
    // Other methods and paths do not pay for the chat route.
    auto get = call(token, "/api/chat/completions");
    EXPECT_EQ(get.status, 200u);
    EXPECT_EQ(get.header("RateLimit-Policy"), "\"general\";q=100;w=60");
    EXPECT_EQ(call(token, "/api/chatter", {}, http::verb::post).status, 200u);
}

TEST_F(PoliciesTest, ChecksOfTwoItemsAndOfOneAlternateOnOneWorker) {
    // The route adds a second item to the check: two items, one, two... in turn on one worker.
    start(R"({"policies": [
        {"name": "general", "algorithm": "token_bucket", "limit": 40, "window": "minute"},
        {"name": "chat", "algorithm": "fixed_window", "limit": 3, "window": "hour",
         "match": {"path_prefix": "/api/chat"}}]})",
          {{"THREADS", "1"}});
    auto token = register_token(proxy->port());
    for (int i = 0; i < 4; ++i) {
        auto chat = call(token, "/api/chat");
        EXPECT_EQ(chat.status, i < 3 ? 200u : 429u) << i;
        EXPECT_EQ(header_integer(chat, "X-RateLimit-Limit"), 3) << chat.headers_text();
        auto other = call(token, "/api/other");
        EXPECT_EQ(other.status, 200u) << i;
        EXPECT_EQ(other.header("RateLimit-Policy"), "\"general\";q=40;w=60");
    }
}

TEST_F(PoliciesTest, PerIpLimitIgnoresForwardedForFromAnUntrustedPeer) {
    start(R"({"policies": [{"name": "per_ip", "algorithm": "sliding_window", "limit": 2,
                             "window": "hour", "key": "ip"}]})");
    auto a = register_token(proxy->port());
    auto b = register_token(proxy->port());
    // Two tokens, one address, spoofed X-Forwarded-For: one bucket.
    EXPECT_EQ(call(a, "/api/echo", {{"X-Forwarded-For", "203.0.113.1"}}).status, 200u);
    EXPECT_EQ(call(b, "/api/echo", {{"X-Forwarded-For", "203.0.113.2"}}).status, 200u);
    EXPECT_EQ(call(a, "/api/echo", {{"X-Forwarded-For", "203.0.113.3"}}).status, 429u);
}

TEST_F(PoliciesTest, PerIpLimitUsesForwardedForFromATrustedProxy) {
    start(R"({"server": {"trusted_proxies": ["127.0.0.0/8"]},
              "policies": [{"name": "per_ip", "algorithm": "fixed_window", "limit": 2,
                            "window": "hour", "key": "ip"}]})");
    auto token = register_token(proxy->port());
    const header_list first_client{{"X-Forwarded-For", "198.51.100.7, 203.0.113.10"}};
    const header_list second_client{{"X-Forwarded-For", "203.0.113.11"}};
    EXPECT_EQ(count_allowed(token, 3, "/api/echo", first_client), 2);
    EXPECT_EQ(count_allowed(token, 3, "/api/echo", second_client), 2);
    // The rightmost untrusted address is the client: the spoofable left part is not.
    EXPECT_EQ(redis.command({"HGET", "{rlp}:rl:per_ip:203.0.113.10", "c"}), "2")
        << dump_redis(redis);
}

TEST_F(PoliciesTest, TierDecidesWhichPoliciesApply) {
    const std::string config = R"({
        "auth": {"token_cache_ttl_ms": 100},
        "policies": [
          {"name": "free_daily", "algorithm": "fixed_window", "limit": 2, "window": "day"},
          {"name": "pro_daily", "algorithm": "fixed_window", "limit": 5, "window": "day"}],
        "tiers": {"free": {"policies": ["free_daily"]}, "pro": {"policies": ["pro_daily"]}},
        "default_tier": "free"})";
    start(config);
    auto free_token = register_token(proxy->port());
    EXPECT_EQ(count_allowed(free_token, 4), 2);
    auto pro_token = register_token(proxy->port());
    redis.command({"HSET", "rlp:token:{" + sha256_hex(pro_token) + "}", "tier", "pro"});
    std::this_thread::sleep_for(300ms);  // past the token cache TTL
    auto r = call(pro_token);
    EXPECT_EQ(header_integer(r, "X-RateLimit-Limit"), 5) << r.headers_text();
    EXPECT_EQ(count_allowed(pro_token, 5), 4);
    // A tier that no longer exists falls back to the default tier.
    auto lost = register_token(proxy->port());
    redis.command({"HSET", "rlp:token:{" + sha256_hex(lost) + "}", "tier", "gone"});
    std::this_thread::sleep_for(300ms);
    EXPECT_EQ(header_integer(call(lost), "X-RateLimit-Limit"), 2);
}

TEST_F(PoliciesTest, AlternatingTiersOnOneWorkerKeepTheirOwnLimits) {
    // One worker decides both tokens' requests in turn, so each check's numbers differ from
    // the previous one's.
    start(R"({
        "auth": {"token_cache_ttl_ms": 100},
        "policies": [
          {"name": "small", "algorithm": "token_bucket", "limit": 3, "window": "hour"},
          {"name": "large", "algorithm": "token_bucket", "limit": 50, "window": "minute"}],
        "tiers": {"free": {"policies": ["small"]}, "pro": {"policies": ["large"]}},
        "default_tier": "free"})",
          {{"THREADS", "1"}});
    auto free_token = register_token(proxy->port());
    auto pro_token = register_token(proxy->port());
    redis.command({"HSET", "rlp:token:{" + sha256_hex(pro_token) + "}", "tier", "pro"});
    std::this_thread::sleep_for(300ms);  // past the token cache TTL
    for (int i = 0; i < 5; ++i) {
        auto f = call(free_token);
        EXPECT_EQ(f.status, i < 3 ? 200u : 429u) << i;
        EXPECT_EQ(header_integer(f, "X-RateLimit-Limit"), 3) << f.headers_text();
        auto p = call(pro_token);
        EXPECT_EQ(p.status, 200u) << i;
        EXPECT_EQ(header_integer(p, "X-RateLimit-Limit"), 50) << p.headers_text();
        EXPECT_EQ(header_integer(p, "X-RateLimit-Remaining"), 49 - i) << p.headers_text();
    }
}

TEST_F(PoliciesTest, BypassedClientsSkipLimitsButStillAuthenticate) {
    start(R"({"policies": [{"name": "tiny", "algorithm": "token_bucket", "limit": 1,
                            "window": "hour"}],
              "bypass": {"cidrs": ["127.0.0.0/8"]}})");
    auto token = register_token(proxy->port());
    for (int i = 0; i < 5; ++i) {
        auto r = call(token);
        ASSERT_EQ(r.status, 200u) << r.body;
        EXPECT_FALSE(r.has_header("X-RateLimit-Limit")) << r.headers_text();
    }
    EXPECT_EQ(call("rlp_" + std::string(43, 'A')).status, 401u);
    EXPECT_TRUE(contains(proxy->log(), "decision=bypass")) << proxy->log();
}

TEST_F(PoliciesTest, BlockedTokensAndNetworksAreRefusedWith403) {
    start("{}");
    auto blocked = register_token(proxy->port());
    auto fine = register_token(proxy->port());
    proxy.reset();
    start(R"({"block": {"tokens": [")" + token_id(blocked) + R"("]}})");
    auto r = call(blocked);
    EXPECT_EQ(r.status, 403u) << r.body;
    EXPECT_NO_THROW(r.json());
    EXPECT_EQ(call(fine).status, 200u);
    EXPECT_EQ(upstream.request_count(), 1u);

    proxy.reset();
    start(R"({"block": {"cidrs": ["127.0.0.1/32"]}})");
    EXPECT_EQ(call(fine).status, 403u);
    EXPECT_EQ(http_request(proxy->port(), http::verb::post, "/register").status, 403u);
    EXPECT_EQ(http_get(proxy->port(), "/health").status, 200u);
}

TEST_F(PoliciesTest, ShadowPolicyIsCountedAndLoggedButNeverEnforced) {
    start(R"({"policies": [
        {"name": "enforced", "algorithm": "token_bucket", "limit": 100, "window": "minute"},
        {"name": "trial", "algorithm": "fixed_window", "limit": 1, "window": "hour",
         "shadow": true}]})");
    auto token = register_token(proxy->port());
    for (int i = 0; i < 4; ++i) {
        auto r = call(token);
        ASSERT_EQ(r.status, 200u) << r.body;
        EXPECT_EQ(r.header("RateLimit-Policy"), "\"enforced\";q=100;w=60") << r.headers_text();
        EXPECT_EQ(header_integer(r, "X-RateLimit-Remaining"), 99 - i);
    }
    EXPECT_TRUE(contains(proxy->log(), "shadow: policy \"trial\" would deny")) << proxy->log();
}

TEST_F(PoliciesTest, GlobalShadowModeEnforcesNothing) {
    start(R"({"policies": [{"name": "tiny", "algorithm": "gcra", "limit": 1, "window": "hour"}]})",
          {{"SHADOW_MODE", "true"}});
    auto token = register_token(proxy->port());
    for (int i = 0; i < 4; ++i) {
        auto r = call(token);
        ASSERT_EQ(r.status, 200u) << r.body;
        EXPECT_FALSE(r.has_header("RateLimit-Policy")) << r.headers_text();
    }
    EXPECT_TRUE(contains(proxy->log(), "shadow: policy \"tiny\" would deny")) << proxy->log();
}

TEST_F(PoliciesTest, EachAlgorithmEnforcesItsBurst) {
    for (const std::string algo : {"token_bucket", "gcra", "sliding_window", "fixed_window"}) {
        SCOPED_TRACE(algo);
        proxy.reset();
        start(R"({"policies": [{"name": "p", "algorithm": ")" + algo +
              R"(", "limit": 3, "window": "hour"}]})");
        auto token = register_token(proxy->port());
        EXPECT_EQ(count_allowed(token, 5), 3);
        auto r = call(token);
        EXPECT_EQ(r.status, 429u);
        EXPECT_TRUE(header_integer(r, "Retry-After").has_value()) << r.headers_text();
    }
}

// The evalsha calls Redis has counted so far.
long evalsha_calls(const redis_server& redis) {
    const auto stats = redis.command({"INFO", "commandstats"});
    const auto at = stats.find("cmdstat_evalsha:calls=");
    if (at == std::string::npos)
        return 0;
    return std::stol(stats.substr(at + std::string("cmdstat_evalsha:calls=").size()));
}

TEST_F(PoliciesTest, RequestsOverTheLimitAreDeniedWithoutAskingRedisAgain) {
    start(R"({"policies": [{"name": "p", "algorithm": "token_bucket", "limit": 2,
                            "window": "hour"}]})");
    auto token = register_token(proxy->port());
    EXPECT_EQ(count_allowed(token, 2), 2);
    const long before = evalsha_calls(redis);
    for (int i = 0; i < 100; ++i) {
        auto r = call(token);
        ASSERT_EQ(r.status, 429u);
        // The same answer as the store's: the policy, and a retry time counting down.
        EXPECT_EQ(r.header("RateLimit-Policy"), "\"p\";q=2;w=3600");
        EXPECT_NEAR(header_integer(r, "Retry-After").value_or(0), 1800, 5);
    }
    // At most one store call per worker thread (THREADS=2) learns that the key is over.
    EXPECT_LE(evalsha_calls(redis) - before, 2) << "Redis calls for 100 denied requests";
    EXPECT_TRUE(contains(proxy->log(), "decision=denied-cached")) << proxy->log();
}

TEST_F(PoliciesTest, AdminBucketResetEndsAKnownDenialOnEveryWorkerAtOnce) {
    const auto admin_port = free_port();
    const std::string admin_token = "an-admin-token-of-some-length";
    start(R"({"policies": [{"name": "p", "algorithm": "token_bucket", "limit": 1,
                            "window": "hour"}]})",
          {{"ADMIN_TOKEN", admin_token},
           {"ADMIN_BIND_ADDRESS", "127.0.0.1:" + std::to_string(admin_port)}});
    auto token = register_token(proxy->port());
    EXPECT_EQ(count_allowed(token, 6), 1);  // both workers have learnt the denial
    auto reset = http_request(admin_port, http::verb::delete_,
                              "/admin/buckets?policy=p&key=" + token_id(token),
                              {{"Authorization", "Bearer " + admin_token}});
    ASSERT_EQ(reset.status, 200u) << reset.body;
    // Whichever worker takes the next request, it asks the store again.
    bool allowed = false;
    for (int i = 0; i < 20 && !allowed; ++i) {
        allowed = call(token).status == 200;
        if (!allowed)
            std::this_thread::sleep_for(50ms);
    }
    EXPECT_TRUE(allowed) << proxy->log();

    // The admin stats show the Redis commands the workers sent and the writes that carried
    // them.
    auto stats = http_request(admin_port, http::verb::get, "/admin/stats",
                              {{"Authorization", "Bearer " + admin_token}});
    ASSERT_EQ(stats.status, 200u) << stats.body;
    const auto runtime = stats.json()["runtime"];
    EXPECT_GE(runtime["redis_commands"].get<long>(), 3) << stats.body;
    EXPECT_GE(runtime["redis_writes"].get<long>(), 1) << stats.body;
    EXPECT_LE(runtime["redis_writes"].get<long>(), runtime["redis_commands"].get<long>());
}

TEST_F(PoliciesTest, MemoryStoreLimitsWithoutAskingRedis) {
    start(R"({"store": "memory", "policies": [{"name": "p", "algorithm": "sliding_window",
                                                "limit": 3, "window": "hour"}]})");
    auto token = register_token(proxy->port());
    EXPECT_EQ(count_allowed(token, 5), 3);
    const auto stats = redis.command({"INFO", "commandstats"});
    EXPECT_FALSE(contains(stats, "cmdstat_evalsha")) << stats;
    EXPECT_FALSE(contains(stats, "cmdstat_eval:")) << stats;
}

TEST_F(PoliciesTest, RegistrationCanBeClosedOrNeedASecret) {
    start(R"({"registration": {"mode": "closed"}})");
    auto closed = http_request(proxy->port(), http::verb::post, "/register");
    EXPECT_EQ(closed.status, 403u) << closed.body;

    proxy.reset();
    start(R"({"registration": {"mode": "secret", "secret": "let-me-in-please"}})");
    EXPECT_EQ(http_request(proxy->port(), http::verb::post, "/register").status, 403u);
    EXPECT_EQ(http_request(proxy->port(), http::verb::post, "/register",
                           {{"X-Registration-Secret", "wrong"}})
                  .status,
              403u);
    auto ok = http_request(proxy->port(), http::verb::post, "/register",
                           {{"X-Registration-Secret", "let-me-in-please"}});
    ASSERT_EQ(ok.status, 201u) << ok.body;
    EXPECT_EQ(call(ok.json()["token"].get<std::string>()).status, 200u);
}

TEST_F(PoliciesTest, RegistrationIsLimitedPerClientAddress) {
    start(R"({"registration": {"mode": "open", "per_ip_per_minute": 2}})");
    EXPECT_EQ(http_request(proxy->port(), http::verb::post, "/register").status, 201u);
    EXPECT_EQ(http_request(proxy->port(), http::verb::post, "/register").status, 201u);
    auto r = http_request(proxy->port(), http::verb::post, "/register");
    EXPECT_EQ(r.status, 429u) << r.body;
    EXPECT_TRUE(header_integer(r, "Retry-After").has_value()) << r.headers_text();
}

TEST_F(PoliciesTest, LimitsShrinkWhileTheUpstreamFailsAndRecoverAfter) {
    start(R"({"policies": [{"name": "steady", "algorithm": "token_bucket", "limit": 40,
                            "window": "hour"}],
              "load_aware": {"enabled": true, "error_rate": 0.5, "window_ms": 2000,
                             "min_requests": 5, "scale": 0.25}})");
    auto failing = register_token(proxy->port());
    for (int i = 0; i < 10; ++i)
        EXPECT_EQ(call(failing, "/api/status?code=503").status, 503u);
    // Evaluated once a second: the next window sees the failures.
    // X-RateLimit-Limit is the capacity in force, whether the probe is allowed or not.
    auto probe = register_token(proxy->port());
    bool scaled = false;
    for (int i = 0; i < 40 && !scaled; ++i) {
        std::this_thread::sleep_for(100ms);
        scaled = header_integer(call(probe), "X-RateLimit-Limit") == 10;
    }
    EXPECT_TRUE(scaled) << proxy->log();
    EXPECT_TRUE(contains(proxy->log(), "upstream struggling")) << proxy->log();
    // Without failures in the window the limit comes back.
    bool recovered = false;
    for (int i = 0; i < 60 && !recovered; ++i) {
        std::this_thread::sleep_for(100ms);
        recovered = header_integer(call(probe), "X-RateLimit-Limit") == 40;
    }
    EXPECT_TRUE(recovered) << proxy->log();
}

TEST_F(PoliciesTest, ReloadDuringARedisOutageKeepsKnownClientsIn) {
    const std::string path =
        ::testing::TempDir() + "rlp-outage-" + std::to_string(::getpid()) + ".json";
    std::ofstream(path) << R"({"policies": [{"name": "p", "algorithm": "token_bucket",
                                             "limit": 50, "window": "hour"}]})";
    start_proxy({.base_path = "/up", .args = {"--config", path}});
    auto token = register_token(proxy->port());
    for (int i = 0; i < 4; ++i)  // seen by both workers
        ASSERT_EQ(call(token).status, 200u);
    redis.kill_hard();
    ::kill(proxy->pid(), SIGHUP);
    std::this_thread::sleep_for(300ms);
    // New rules make every worker look tokens up again, but while Redis is away a token seen
    // before is still accepted and limited locally.
    for (int i = 0; i < 4; ++i) {
        auto r = call(token);
        EXPECT_EQ(r.status, 200u) << r.body;
    }
    EXPECT_TRUE(contains(proxy->log(), "decision=allowed-local")) << proxy->log();
    std::remove(path.c_str());
}

TEST_F(PoliciesTest, SighupReloadsPoliciesAndKeepsThemWhenTheFileIsBad) {
    const std::string path =
        ::testing::TempDir() + "rlp-reload-" + std::to_string(::getpid()) + ".json";
    auto write = [&](const std::string& text) { std::ofstream(path) << text; };
    write(
        R"({"policies": [{"name": "p", "algorithm": "token_bucket", "limit": 2, "window": "hour"}]})");
    start_proxy({.base_path = "/up", .args = {"--config", path}});
    auto token = register_token(proxy->port());
    EXPECT_EQ(header_integer(call(token), "X-RateLimit-Limit"), 2);

    write(
        R"({"policies": [{"name": "p", "algorithm": "token_bucket", "limit": 7, "window": "hour"}]})");
    ::kill(proxy->pid(), SIGHUP);
    bool reloaded = false;
    for (int i = 0; i < 50 && !reloaded; ++i) {
        std::this_thread::sleep_for(50ms);
        reloaded = header_integer(call(token), "X-RateLimit-Limit") == 7;
    }
    EXPECT_TRUE(reloaded) << proxy->log();

    write(R"({"policies": [{"name": "p", "algorithm": "token_bucket", "limit": -1}]})");
    ::kill(proxy->pid(), SIGHUP);
    std::this_thread::sleep_for(300ms);
    EXPECT_TRUE(contains(proxy->log(), "policies")) << proxy->log();
    EXPECT_TRUE(contains(proxy->log(), "not reloaded")) << proxy->log();
    EXPECT_EQ(header_integer(call(token), "X-RateLimit-Limit"), 7);
    std::remove(path.c_str());
}

}  // namespace
