// Concurrency policies (algorithm "concurrency") seen from clients: slots held from admission
// to the last response byte, given back on every ending, leases that outlive a killed
// instance only for the lease time, shared by instances on one Redis, renewed for long
// streams, in the memory store too, and managed through the admin API.
#include <gtest/gtest.h>
#include <signal.h>

#include <functional>
#include <future>
#include <nlohmann/json.hpp>
#include <thread>

#include "payload.hpp"
#include "proxy_fixture.hpp"
#include "test_helpers.hpp"

using namespace rlp_test;
using namespace std::chrono_literals;
namespace http = boost::beast::http;
using nlohmann::json;

namespace {

std::string slots_config(int limit, const std::string& extra_policies = "",
                         const std::string& extra_settings = "") {
    return R"({"policies": [{"name": "slots", "algorithm": "concurrency", "limit": )" +
           std::to_string(limit) + R"(, "key": "token"})" + extra_policies + "]" + extra_settings +
           "}";
}

class ConcurrencyTest : public proxy_fixture<beast_upstream> {
  protected:
    void start(const std::string& config, env_list env = {}) {
        start_proxy({.base_path = "/up", .env = std::move(env), .config = config});
        token = register_token(proxy->port());
    }
    http_response call(const std::string& path = "/api/echo", std::uint16_t on = 0) {
        return http_get(on ? on : proxy->port(), path, bearer(token));
    }
    // A request on its own thread; status 0 when the connection failed.
    std::future<unsigned> in_background(const std::string& path, std::uint16_t on = 0) {
        const auto p = on ? on : proxy->port();
        return std::async(std::launch::async, [p, path, t = token] {
            try {
                return http_request(p, http::verb::get, path, bearer(t), {}, 15s).status;
            } catch (const std::exception&) {
                return 0u;
            }
        });
    }
    std::string lease_key() const { return "{rlp}:rl:slots:" + token_id(token); }
    long long leases() { return std::stoll(redis.command({"ZCARD", lease_key()})); }
    static bool within(std::chrono::milliseconds timeout, const std::function<bool()>& check) {
        const auto until = std::chrono::steady_clock::now() + timeout;
        while (!check()) {
            if (std::chrono::steady_clock::now() > until)
                return false;
            std::this_thread::sleep_for(10ms);
        }
        return true;
    }
    bool leases_become(long long n, std::chrono::milliseconds timeout = 3s) {
        return within(timeout, [&] { return leases() == n; });
    }
};

TEST_F(ConcurrencyTest, RequestsInFlightHoldSlotsAndOneMoreIsRefusedUntilTheyFinish) {
    start(slots_config(2));
    auto a = in_background("/api/slow?ms=1500");
    auto b = in_background("/api/slow?ms=1500");
    ASSERT_TRUE(leases_become(2)) << proxy->log();

    auto refused = call();
    ASSERT_EQ(refused.status, 429u) << refused.body;
    EXPECT_EQ(refused.header("Retry-After"), "1");
    EXPECT_EQ(header_integer(refused, "X-RateLimit-Limit"), 2) << refused.headers_text();
    EXPECT_EQ(header_integer(refused, "X-RateLimit-Remaining"), 0);
    EXPECT_EQ(refused.header("RateLimit-Policy"), "\"slots\";q=2");
    const auto body = refused.json();
    EXPECT_EQ(body["error"]["code"], "rate_limit_exceeded");
    EXPECT_EQ(body["policy"], "slots");
    EXPECT_EQ(body["scope"], "token");
    EXPECT_EQ(body["limit"], 2);
    EXPECT_FALSE(body.contains("window_seconds")) << refused.body;
    EXPECT_EQ(body["retry_after"], 1);
    EXPECT_TRUE(contains(body["error"]["message"].get<std::string>(), "2 requests in flight"))
        << refused.body;
    // Not remembered: asked again at once, the store decides again (and still refuses).
    EXPECT_EQ(call().status, 429u);

    EXPECT_EQ(a.get(), 200u);
    EXPECT_EQ(b.get(), 200u);
    ASSERT_TRUE(leases_become(0));
    auto after = call();
    EXPECT_EQ(after.status, 200u) << after.body;
    EXPECT_EQ(header_integer(after, "X-RateLimit-Remaining"), 1) << after.headers_text();
}

TEST_F(ConcurrencyTest, DecisionMetricsCountTheConcurrencyPolicy) {
    const auto metrics_port = free_port();
    start(slots_config(1), {{"METRICS_BIND_ADDRESS", "127.0.0.1:" + std::to_string(metrics_port)}});
    ASSERT_TRUE(wait_for_port(metrics_port, 5s));
    auto slow = in_background("/api/slow?ms=1000");
    ASSERT_TRUE(leases_become(1));
    EXPECT_EQ(call().status, 429u);
    EXPECT_EQ(call().status, 429u);
    EXPECT_EQ(slow.get(), 200u);
    const auto text = http_get(metrics_port, "/metrics").body;
    const std::string d = "ratelimit_proxy_decisions_total{policy=\"slots\",tier=\"default\",";
    EXPECT_TRUE(contains(text, d + "decision=\"allowed\"} 1")) << text;
    // Both refusals went to the store: none was answered from the over-limit cache.
    EXPECT_TRUE(contains(text, d + "decision=\"denied\"} 2")) << text;
    EXPECT_TRUE(contains(text, "ratelimit_proxy_policy_limit{policy=\"slots\"} 1")) << text;
    EXPECT_FALSE(contains(text, "ratelimit_proxy_policy_window_seconds{policy=\"slots\"}"));
}

TEST_F(ConcurrencyTest, SlotIsGivenBackOnEveryEnding) {
    start(slots_config(1, "", R"(, "upstream": {"response_timeout_ms": 500})"));
    // A normal answer.
    ASSERT_EQ(call().status, 200u);
    EXPECT_TRUE(leases_become(0));
    // The upstream closes without answering: 502.
    EXPECT_EQ(call("/api/drop").status, 502u);
    EXPECT_TRUE(leases_become(0));
    // The upstream does not answer in time: 504.
    EXPECT_EQ(call("/api/never").status, 504u);
    EXPECT_TRUE(leases_become(0));
    // The client goes away before the answer.
    {
        http_connection c(proxy->port());
        c.send_raw("GET /api/hold?ms=5000 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token +
                   "\r\n\r\n");
        ASSERT_TRUE(leases_become(1));
    }
    EXPECT_TRUE(leases_become(0));
    // The client goes away in the middle of a streamed response.
    {
        http_connection c(proxy->port());
        c.send_raw("GET /api/drip?ms=3000 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token +
                   "\r\n\r\n");
        c.set_timeout(1000ms);  // the header and "data: 1", then the client gives up
        std::string first;
        long long held_mid_stream = -1;
        EXPECT_THROW(c.read_response_streaming([&](std::string_view d) {
            first.append(d);
            if (contains(first, "data: 1") && held_mid_stream < 0)
                held_mid_stream = leases();
        }),
                     std::runtime_error);
        EXPECT_TRUE(contains(first, "data: 1")) << first;
        EXPECT_EQ(held_mid_stream, 1);
    }
    // Noticed at the latest when the next chunk cannot be written.
    EXPECT_TRUE(leases_become(0, 5s));
    EXPECT_EQ(call().status, 200u);
    EXPECT_TRUE(leases_become(0)) << proxy->log();
}

TEST_F(ConcurrencyTest, RequestRefusedByAnotherPolicyTakesNoSlot) {
    start(slots_config(
        1, R"(, {"name": "hourly", "algorithm": "fixed_window", "limit": 2, "window": "hour"})"));
    auto slow = in_background("/api/slow?ms=1000");
    ASSERT_TRUE(leases_become(1));
    auto busy = call();  // refused by slots: consumes nothing from hourly either
    ASSERT_EQ(busy.status, 429u);
    EXPECT_EQ(busy.json()["policy"], "slots");
    EXPECT_EQ(slow.get(), 200u);
    ASSERT_TRUE(leases_become(0));
    EXPECT_EQ(call().status, 200u);  // hourly's second
    auto spent = call();
    ASSERT_EQ(spent.status, 429u);
    EXPECT_EQ(spent.json()["policy"], "hourly");
    EXPECT_EQ(leases(), 0);
}

TEST_F(ConcurrencyTest, KilledInstanceSlotComesBackAfterTheLeaseTime) {
    const auto config = slots_config(1, "", R"(, "rate_limit": {"concurrency_lease_ms": 1500})");
    start(config);
    auto held = in_background("/api/slow?ms=8000");
    ASSERT_TRUE(leases_become(1));
    const auto taken = std::chrono::steady_clock::now();
    ASSERT_EQ(::kill(proxy->pid(), SIGKILL), 0);
    EXPECT_EQ(held.get(), 0u);
    start_proxy({.base_path = "/up", .config = config});
    if (std::chrono::steady_clock::now() - taken < 1200ms)
        EXPECT_EQ(call().status, 429u);  // the dead instance's lease still counts
    // The dead lease's expiry, on Redis's clock (ZRANGE ... WITHSCORES: member, score).
    const auto listed = redis.command({"ZRANGE", lease_key(), "0", "-1", "WITHSCORES"});
    const auto expiry = std::stoll(listed.substr(listed.find('\n') + 1));
    ASSERT_TRUE(within(3s, [&] { return call().status == 200; })) << proxy->log();
    // Not before the lease ran out: TIME is seconds, then microseconds.
    const auto time = redis.command({"TIME"});
    const auto now_us = std::stoll(time) * 1'000'000 + std::stoll(time.substr(time.find('\n') + 1));
    EXPECT_GT(now_us, expiry);
}

TEST_F(ConcurrencyTest, TwoInstancesOnOneRedisShareTheSlots) {
    start(slots_config(2));
    proxy_process second(proxy_options_for({.base_path = "/up", .config = slots_config(2)}));
    auto a = in_background("/api/slow?ms=1500");
    auto b = in_background("/api/slow?ms=1500", second.port());
    ASSERT_TRUE(leases_become(2));
    EXPECT_EQ(call().status, 429u);
    EXPECT_EQ(call("/api/echo", second.port()).status, 429u);
    EXPECT_EQ(a.get(), 200u);
    EXPECT_EQ(b.get(), 200u);
    ASSERT_TRUE(leases_become(0));
    EXPECT_EQ(call("/api/echo", second.port()).status, 200u);
}

TEST_F(ConcurrencyTest, MemoryStoreHoldsAndGivesBackSlotsToo) {
    start(slots_config(1), {{"STORE", "memory"}});
    auto slow = in_background("/api/slow?ms=1000");
    std::this_thread::sleep_for(300ms);
    auto refused = call();
    EXPECT_EQ(refused.status, 429u) << refused.body;
    EXPECT_EQ(refused.header("Retry-After"), "1");
    EXPECT_EQ(slow.get(), 200u);
    EXPECT_EQ(call().status, 200u);
    EXPECT_EQ(call().status, 200u);  // each gave its slot back
    EXPECT_EQ(redis.command({"EXISTS", lease_key()}), "0");
}

TEST_F(ConcurrencyTest, RenewalKeepsALongStreamsSlotPastTheLeaseTime) {
    start(slots_config(1, "", R"(, "rate_limit": {"concurrency_lease_ms": 1000})"));
    auto stream = in_background("/api/slow?ms=3000");
    ASSERT_TRUE(leases_become(1));
    std::this_thread::sleep_for(2000ms);  // twice the lease time
    auto refused = call();
    EXPECT_EQ(refused.status, 429u) << refused.body;
    EXPECT_EQ(leases(), 1);
    EXPECT_EQ(stream.get(), 200u);
    ASSERT_TRUE(leases_become(0));
    EXPECT_EQ(call().status, 200u);
}

TEST_F(ConcurrencyTest, AdminApiSetsAConcurrencyPolicyShowsAndResetsItsLeases) {
    const std::string admin_token = "adm_" + random_hex(20);
    const auto admin_port = free_port();
    start(R"({"policies": [{"name": "slots", "algorithm": "token_bucket", "limit": 100,
                            "window": "minute"}]})",
          {{"ADMIN_BIND_ADDRESS", "127.0.0.1:" + std::to_string(admin_port)},
           {"ADMIN_TOKEN", admin_token}});
    ASSERT_TRUE(wait_for_port(admin_port, 5s));
    auto admin = [&](http::verb v, const std::string& target, const std::string& body = "") {
        header_list h{{"Authorization", "Bearer " + admin_token}};
        if (!body.empty())
            h.emplace_back("Content-Type", "application/json");
        return http_request(admin_port, v, target, h, body);
    };
    auto put = admin(http::verb::put, "/admin/policies/slots",
                     R"({"algorithm": "concurrency", "limit": 1})");
    ASSERT_TRUE(put.status == 200u || put.status == 201u) << put.status << put.body;
    auto shown = admin(http::verb::get, "/admin/policies/slots");
    EXPECT_EQ(shown.json()["algorithm"], "concurrency") << shown.body;
    EXPECT_FALSE(shown.json().contains("window")) << shown.body;
    auto bad = admin(http::verb::put, "/admin/policies/slots",
                     R"({"algorithm": "concurrency", "limit": 1, "window": 60})");
    EXPECT_EQ(bad.status, 400u) << bad.body;

    ASSERT_TRUE(within(2s, [&] { return header_integer(call(), "X-RateLimit-Limit") == 1; }));
    // The probes' releases are unanswered ZREMs: let the last one land first.
    ASSERT_TRUE(leases_become(0));
    auto slow = in_background("/api/slow?ms=4000");
    ASSERT_TRUE(leases_become(1));
    auto bucket = admin(http::verb::get, "/admin/buckets?policy=slots&key=" + token_id(token));
    ASSERT_EQ(bucket.status, 200u) << bucket.body;
    EXPECT_EQ(bucket.json()["type"], "zset");
    EXPECT_EQ(bucket.json()["state"]["leases"].size(), 1u) << bucket.body;
    EXPECT_EQ(call().status, 429u);
    auto reset = admin(http::verb::delete_, "/admin/buckets?policy=slots&key=" + token_id(token));
    ASSERT_EQ(reset.status, 200u) << reset.body;
    EXPECT_EQ(reset.json()["deleted"], true);
    EXPECT_EQ(call().status, 200u);  // the held slot was reset away
    EXPECT_EQ(slow.get(), 200u);
}

}  // namespace
