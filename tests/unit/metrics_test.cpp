// The metrics' parts: cells and histograms as the scrape sums them, the text exposition, the
// upstream quota headers, the per-client sketch and the name slots.
#include <gtest/gtest.h>

#include <boost/beast/http/fields.hpp>

#include <string>

#include "ratelimit_proxy/limit/name_slots.hpp"
#include "ratelimit_proxy/metrics/exposition.hpp"
#include "ratelimit_proxy/server/proxy_metrics.hpp"

namespace metrics = ratelimit_proxy::metrics;
namespace server = ratelimit_proxy::server;
namespace limit = ratelimit_proxy::limit;
namespace http = boost::beast::http;

namespace {

bool has_line(const std::string& text, const std::string& line) {
    return text.find(line + "\n") != std::string::npos;
}

}  // namespace

TEST(HistogramCell, ValueOnABoundGoesIntoThatBucketAndTheRestIntoInf) {
    static constexpr double bounds[] = {1, 2};
    metrics::histogram_cell h(bounds);
    h.observe(1);
    h.observe(1.5);
    h.observe(7);
    metrics::histogram_totals t;
    h.add_to(t);
    h.add_to(t);  // a second worker's cell with the same samples
    EXPECT_EQ(t.buckets[0], 2u);
    EXPECT_EQ(t.buckets[1], 2u);
    EXPECT_EQ(t.buckets[2], 2u);
    EXPECT_EQ(t.count, 6u);
    EXPECT_DOUBLE_EQ(t.sum, 19);
}

TEST(Exposition, WritesFamiliesOnceWithCumulativeBucketsAndTheirType) {
    metrics::exposition out;
    out.counter("x_requests_total", "Requests", {{"policy", "a"}}, 3);
    out.gauge("x_limit", "Limit", {}, 60);
    out.counter("x_requests_total", "Requests", {{"policy", "b\"q"}}, 4);
    static constexpr double bounds[] = {0.1, 1};
    metrics::histogram_totals t;
    t.buckets = {1, 2, 3};
    t.count = 6;
    t.sum = 9.5;
    out.histogram("x_seconds", "Time", {}, bounds, t);
    const auto text = out.text();
    EXPECT_TRUE(has_line(text, "# TYPE x_requests_total counter")) << text;
    EXPECT_TRUE(has_line(text, "x_requests_total{policy=\"a\"} 3")) << text;
    EXPECT_TRUE(has_line(text, "x_requests_total{policy=\"b\\\"q\"} 4")) << text;
    EXPECT_TRUE(has_line(text, "# TYPE x_limit gauge")) << text;
    EXPECT_TRUE(has_line(text, "x_seconds_bucket{le=\"0.1\"} 1")) << text;
    EXPECT_TRUE(has_line(text, "x_seconds_bucket{le=\"1\"} 3")) << text;
    EXPECT_TRUE(has_line(text, "x_seconds_bucket{le=\"+Inf\"} 6")) << text;
    EXPECT_TRUE(has_line(text, "x_seconds_count 6")) << text;
    EXPECT_TRUE(has_line(text, "x_seconds_sum 9.5")) << text;
    // One TYPE line per family, however its series were added.
    EXPECT_EQ(text.find("# TYPE x_requests_total"), text.rfind("# TYPE x_requests_total"));
}

TEST(UpstreamQuota, ReadsOpenAiStyleAndIetfHeaders) {
    http::fields f;
    f.set("x-ratelimit-remaining-requests", "4999");
    f.set("X-RateLimit-Limit-Requests", "5000");
    f.set("x-ratelimit-remaining-tokens", "159000");
    f.set("RateLimit", "\"hourly\";r=50;t=30");
    f.set("Content-Type", "application/json");
    server::upstream_quota q;
    q.observe(f);
    ASSERT_EQ(q.size(), 3u);
    auto find = [&](std::string_view name) -> const server::upstream_quota::entry* {
        for (std::size_t i = 0; i < q.size(); ++i)
            if (std::string_view(q.at(i).name.data(), q.at(i).length) == name)
                return &q.at(i);
        return nullptr;
    };
    ASSERT_NE(find("requests"), nullptr);
    EXPECT_EQ(find("requests")->remaining.value(), 4999);
    EXPECT_EQ(find("requests")->limit.value(), 5000);
    ASSERT_NE(find("tokens"), nullptr);
    EXPECT_EQ(find("tokens")->has_limit.value(), 0);
    ASSERT_NE(find("hourly"), nullptr);
    EXPECT_EQ(find("hourly")->remaining.value(), 50);
}

TEST(UpstreamQuota, IgnoresGarbageAndKeepsAFixedNumberOfNames) {
    http::fields f;
    f.set("x-ratelimit-remaining-requests", "soon");
    f.set("x-ratelimit-remaining-Bad Name!", "3");
    f.set("x-ratelimitremaining", "3");
    server::upstream_quota q;
    q.observe(f);
    EXPECT_EQ(q.size(), 0u);
    for (int i = 0; i < 20; ++i) {
        http::fields one;
        one.set("x-ratelimit-remaining-n" + std::to_string(i), "1");
        q.observe(one);
    }
    EXPECT_EQ(q.size(), server::upstream_quota::max_names);
}

TEST(ClientTally, KeepsTheHeavyHitterWhenManyClientsComeAndGo) {
    server::client_tally tally(1);  // room for 64 clients
    for (int round = 0; round < 50; ++round) {
        tally.add("heavy", true);
        for (int i = 0; i < 10; ++i)
            tally.add("once-" + std::to_string(round * 10 + i), false);
    }
    server::client_tally::counts all;
    const auto clients = tally.snapshot(all);
    EXPECT_LE(clients.size(), 64u);
    EXPECT_EQ(all.allowed, 50u);
    EXPECT_EQ(all.denied, 500u);
    bool found = false;
    for (const auto& [name, c] : clients)
        if (name == "heavy") {
            found = true;
            EXPECT_GT(c.allowed, 0u);
        }
    EXPECT_TRUE(found);
}

TEST(ClientTally, IsOffWithoutTopN) {
    server::client_tally tally(0);
    EXPECT_FALSE(tally.enabled());
}

TEST(NameSlots, ANameKeepsItsSlotAndOverflowSharesTheLast) {
    limit::name_slots slots(4);
    const auto a = slots.slot("a");
    EXPECT_EQ(a, 1);
    EXPECT_EQ(slots.slot("b"), 2);
    EXPECT_EQ(slots.slot("a"), a);
    EXPECT_EQ(slots.slot("c"), 3);
    EXPECT_EQ(slots.slot("d"), 3);
    const auto names = slots.names();
    ASSERT_EQ(names.size(), 4u);
    EXPECT_EQ(names[1], "a");
    EXPECT_EQ(names[3], "other");
}
