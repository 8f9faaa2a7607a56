// GET /metrics as Prometheus sees it: the text format promtool accepts, counters that add up
// after a known sequence of requests, the unauthenticated metrics listener, the upstream's own
// quota headers, opt-in per-client series, and the shipped dashboard and alert rules naming
// only metrics the proxy exports.
#include <gtest/gtest.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "beast_upstream.hpp"
#include "payload.hpp"
#include "proxy_fixture.hpp"
#include "test_helpers.hpp"

using namespace rlp_test;
using namespace std::chrono_literals;
namespace http = boost::beast::http;

namespace {

// Three policies in the implicit default tier: "base" allows 3 a minute per token, "trial"
// (shadow) 1 an hour, "chat" only applies under /api/chat.
constexpr const char* metrics_config = R"({
    "policies": [
        {"name": "base", "algorithm": "token_bucket", "limit": 3, "window": "minute"},
        {"name": "trial", "algorithm": "fixed_window", "limit": 1, "window": "hour",
         "shadow": true},
        {"name": "chat", "algorithm": "token_bucket", "limit": 100, "window": "minute",
         "match": {"path_prefix": "/api/chat"}}]})";

// Runs a shell command; its exit code, with stdout and stderr into *output.
int run_command(const std::string& command, std::string* output) {
    FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
    if (!pipe)
        return -1;
    char buffer[4096];
    std::size_t n;
    while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0)
        output->append(buffer, n);
    const int status = ::pclose(pipe);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string write_temp(const std::string& text) {
    const auto path = temp_dir() + "/scrape.txt";
    std::ofstream(path) << text;
    return path;
}

// "name{labels}" -> value, for every sample line of a scrape.
std::map<std::string, double> samples(const std::string& text) {
    std::map<std::string, double> out;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        if (line.empty() || line.front() == '#')
            continue;
        const auto space = line.rfind(' ');
        out[line.substr(0, space)] = std::stod(line.substr(space + 1));
    }
    return out;
}

class MetricsTest : public proxy_fixture<beast_upstream> {
  protected:
    const std::string admin_token = "adm_" + random_hex(20);
    std::uint16_t admin_port = 0;
    std::uint16_t metrics_port = 0;

    void start(env_list extra = {}) {
        admin_port = free_port();
        metrics_port = free_port();
        env_list env{{"ADMIN_TOKEN", admin_token},
                     {"ADMIN_BIND_ADDRESS", "127.0.0.1:" + std::to_string(admin_port)},
                     {"METRICS_BIND_ADDRESS", "127.0.0.1:" + std::to_string(metrics_port)}};
        env.insert(env.end(), extra.begin(), extra.end());
        start_proxy({.base_path = "/up", .env = std::move(env), .config = metrics_config});
        ASSERT_TRUE(wait_for_port(metrics_port, 5s)) << proxy->log();
    }

    std::string scrape() {
        auto r = http_get(metrics_port, "/metrics");
        EXPECT_EQ(r.status, 200u) << r.body;
        EXPECT_EQ(r.header("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
        return r.body;
    }

    unsigned call(const std::string& token, const std::string& path = "/api/echo") {
        return http_get(port(), path, bearer(token)).status;
    }
};

}  // namespace

TEST_F(MetricsTest, CountersAddUpAfterAKnownSequenceAndPromtoolAcceptsTheScrape) {
    start();
    const auto first = register_token(port());
    const auto second = register_token(port());
    // base: 3 allowed, then a denial from Redis, then one from the over-limit cache. trial
    // (shadow, 1 an hour) allows the first and would deny every later one.
    // One connection, so one worker and its over-limit cache.
    http_connection c(port());
    for (int i = 0; i < 3; ++i)
        EXPECT_EQ(c.request(http::verb::get, "/api/echo", bearer(first)).status, 200u);
    EXPECT_EQ(c.request(http::verb::get, "/api/echo", bearer(first)).status, 429u);
    EXPECT_EQ(c.request(http::verb::get, "/api/echo", bearer(first)).status, 429u);
    EXPECT_EQ(call(second, "/api/chat/completions"), 200u);
    EXPECT_EQ(http_get(port(), "/api/echo").status, 401u);
    EXPECT_EQ(call("rlp_" + random_hex(24)), 401u);

    const auto text = scrape();
    const auto s = samples(text);
    auto at = [&](const std::string& key) {
        auto it = s.find(key);
        return it == s.end() ? -1.0 : it->second;
    };
    const std::string d = "ratelimit_proxy_decisions_total";
    EXPECT_EQ(at(d + R"({policy="base",tier="default",decision="allowed"})"), 4) << text;
    EXPECT_EQ(at(d + R"({policy="base",tier="default",decision="denied"})"), 1) << text;
    EXPECT_EQ(at(d + R"({policy="base",tier="default",decision="denied-cached"})"), 1) << text;
    EXPECT_EQ(at(d + R"({policy="trial",tier="default",decision="allowed"})"), 2) << text;
    EXPECT_EQ(at(d + R"({policy="trial",tier="default",decision="shadow-denied"})"), 4) << text;
    EXPECT_EQ(at(d + R"({policy="chat",tier="default",decision="allowed"})"), 1) << text;
    EXPECT_EQ(at(d + R"({policy="register",tier="none",decision="allowed"})"), 2) << text;
    // base's third request left it fully used; trial's first did too.
    EXPECT_EQ(at(R"(ratelimit_proxy_near_limit_total{policy="base",tier="default"})"), 1);
    EXPECT_EQ(at(R"(ratelimit_proxy_near_limit_total{policy="trial",tier="default"})"), 2);
    EXPECT_EQ(at(R"(ratelimit_proxy_policy_limit{policy="base"})"), 3);
    EXPECT_EQ(at(R"(ratelimit_proxy_policy_window_seconds{policy="trial"})"), 3600);
    const std::string r = "ratelimit_proxy_responses_total";
    EXPECT_EQ(at(r + R"({route="other",status_class="2xx",source="upstream"})"), 3) << text;
    EXPECT_EQ(at(r + R"({route="other",status_class="4xx",source="proxy"})"), 4) << text;
    EXPECT_EQ(at(r + R"({route="chat",status_class="2xx",source="upstream"})"), 1) << text;
    EXPECT_EQ(at(r + R"({route="register",status_class="2xx",source="proxy"})"), 2) << text;
    EXPECT_EQ(at(R"(ratelimit_proxy_request_duration_seconds_count{source="upstream"})"), 4);
    EXPECT_EQ(at("ratelimit_proxy_upstream_response_header_seconds_count"), 4);
    EXPECT_EQ(at("ratelimit_proxy_overhead_seconds_count"), 4);
    EXPECT_EQ(at("ratelimit_proxy_tokens_registered_total"), 2);
    EXPECT_EQ(at(R"(ratelimit_proxy_auth_failures_total{reason="missing"})"), 1);
    EXPECT_EQ(at(R"(ratelimit_proxy_auth_failures_total{reason="unknown"})"), 1);
    EXPECT_EQ(at("ratelimit_proxy_redis_up"), 1);
    EXPECT_EQ(at(R"(ratelimit_proxy_redis_breaker_state{state="closed"})"), 2);
    EXPECT_GE(at("ratelimit_proxy_redis_commands_total"), 8);
    EXPECT_GE(at("ratelimit_proxy_redis_command_duration_seconds_count"), 8);
    EXPECT_GE(at("ratelimit_proxy_upstream_connections_opened_total"), 1);
    EXPECT_EQ(at("ratelimit_proxy_upstream_connections_opened_total") +
                  at("ratelimit_proxy_upstream_connections_reused_total"),
              4);
    EXPECT_TRUE(contains(text, "ratelimit_proxy_build_info{version=\"" RLP_VERSION "\",commit=\""))
        << text;
    // No token, token id or client address as a label unless per-client series are asked for.
    EXPECT_FALSE(contains(text, first.substr(0, 12)));
    EXPECT_FALSE(contains(text, sha256_hex(first).substr(0, 16)));
    EXPECT_FALSE(contains(text, "127.0.0.1"));

    std::string output;
    EXPECT_EQ(run_command("promtool check metrics < " + write_temp(text), &output), 0) << output;
}

TEST_F(MetricsTest, ReloadsAreCountedWithTheTimeOfTheLastGoodOne) {
    start();
    const double before =
        samples(scrape())["ratelimit_proxy_config_last_reload_success_timestamp_seconds"];
    EXPECT_GT(before, 1.7e9);
    std::this_thread::sleep_for(1100ms);
    ::kill(proxy->pid(), SIGHUP);
    std::map<std::string, double> s;
    for (int i = 0; i < 100; ++i) {
        s = samples(scrape());
        if (s[R"(ratelimit_proxy_config_reloads_total{result="ok"})"] == 1)
            break;
        std::this_thread::sleep_for(20ms);
    }
    EXPECT_EQ(s[R"(ratelimit_proxy_config_reloads_total{result="ok"})"], 1);
    EXPECT_EQ(s[R"(ratelimit_proxy_config_reloads_total{result="failed"})"], 0);
    EXPECT_GT(s["ratelimit_proxy_config_last_reload_success_timestamp_seconds"], before);
}

TEST_F(MetricsTest, MetricsListenerNeedsNoTokenAndServesNothingElse) {
    start();
    EXPECT_EQ(http_get(metrics_port, "/admin/policies").status, 404u);
    EXPECT_EQ(http_request(metrics_port, http::verb::post, "/metrics").status, 405u);
    const auto head = http_request(metrics_port, http::verb::head, "/metrics");
    EXPECT_EQ(head.status, 200u);
    EXPECT_TRUE(head.body.empty());
    // On the admin listener /metrics is one more admin call: the token is needed.
    EXPECT_EQ(http_get(admin_port, "/metrics").status, 401u);
    const auto r = http_get(admin_port, "/metrics", {{"Authorization", "Bearer " + admin_token}});
    EXPECT_EQ(r.status, 200u);
    EXPECT_TRUE(contains(r.body, "# TYPE ratelimit_proxy_decisions_total counter")) << r.body;
}

TEST_F(MetricsTest, TheUpstreamsOwnQuotaAndItsThrottlingAreExported) {
    start();
    const auto token = register_token(port());
    EXPECT_EQ(call(token, "/api/hop"), 200u);
    EXPECT_EQ(call(token, "/api/status?code=429"), 429u);
    auto s = samples(scrape());
    EXPECT_EQ(s[R"(ratelimit_proxy_upstream_ratelimit_remaining{limit="requests"})"], 99);
    EXPECT_EQ(s[R"(ratelimit_proxy_upstream_ratelimit_limit{limit="requests"})"], 100);
    EXPECT_EQ(s["ratelimit_proxy_upstream_throttled_total"], 1);
    // The upstream's 429 is the upstream's, not the proxy's.
    EXPECT_EQ(
        s[R"(ratelimit_proxy_responses_total{route="other",status_class="4xx",source="upstream"})"],
        1);
}

TEST_F(MetricsTest, DashboardAndAlertRulesNameOnlyExportedMetrics) {
    start();
    const auto token = register_token(port());
    // Every family the files use shows once there has been traffic, the upstream's quota too.
    EXPECT_EQ(call(token, "/api/hop"), 200u);
    const auto path = write_temp(scrape());
    std::string output;
    EXPECT_EQ(run_command(
                  "python3 " RLP_SOURCE_DIR "/tests/deploy/check_deploy_files.py --metrics " + path,
                  &output),
              0)
        << output;
}

TEST_F(MetricsTest, PerClientSeriesOnlyWhenAskedAndCappedWithTheRestAsOther) {
    start({{"METRICS_PER_CLIENT_TOP_N", "1"}});
    const auto busy = register_token(port());
    const auto quiet = register_token(port());
    for (int i = 0; i < 4; ++i)
        call(busy);
    call(quiet);
    const auto id = sha256_hex(busy).substr(0, 16);
    auto s = samples(scrape());
    const std::string c = "ratelimit_proxy_client_requests_total";
    EXPECT_EQ(s[c + "{client=\"" + id + "\",decision=\"allowed\"}"], 3);
    EXPECT_EQ(s[c + "{client=\"" + id + "\",decision=\"denied\"}"], 1);
    // The quiet token and the two registrations (by address) fold into "other".
    EXPECT_EQ(s[c + R"({client="other",decision="allowed"})"], 3);
    EXPECT_EQ(
        s.count(c + "{client=\"" + sha256_hex(quiet).substr(0, 16) + "\",decision=\"allowed\"}"),
        0u);
}

TEST_F(MetricsTest, ScrapesWhileRequestsRunSeeCountersOnlyGrow) {
    start();
    const auto token = register_token(port());
    std::atomic<bool> done{false};
    std::thread traffic([&] {
        http_connection a(port());
        http_connection b(port());
        for (int i = 0; i < 200; ++i) {
            a.request(http::verb::get, "/api/echo", bearer(token));
            b.request(http::verb::get, "/api/chat/x", bearer(token));
        }
        done = true;
    });
    const std::string key =
        R"(ratelimit_proxy_decisions_total{policy="base",tier="default",decision="denied"})";
    double last = 0;
    while (!done) {
        const double now = samples(scrape())[key];
        EXPECT_GE(now, last);
        last = now;
    }
    traffic.join();
    auto s = samples(scrape());
    const double allowed =
        s[R"(ratelimit_proxy_decisions_total{policy="base",tier="default",decision="allowed"})"];
    // Every one of the 400 requests was decided for base: allowed, denied, or cached denial.
    EXPECT_EQ(
        allowed + s[key] +
            s[R"(ratelimit_proxy_decisions_total{policy="base",tier="default",decision="denied-cached"})"],
        400);
}
