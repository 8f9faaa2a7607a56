#include "ratelimit_proxy/limit/concurrency_leases.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

namespace limit = ratelimit_proxy::limit;
using namespace std::chrono_literals;

namespace {

// Records what the bookkeeping asks of the store.
class recording_store : public limit::limiter {
  public:
    void check(std::span<const limit::check_item>, limit::decision_handler done) override {
        done(limit::decision{});
    }
    void release(const limit::lease_refs& l) override { released.push_back(describe(l)); }
    void renew(const limit::lease_refs& l, std::chrono::microseconds by) override {
        renewed.push_back(describe(l) + " +" + std::to_string(by.count()));
    }
    void settle(std::span<const limit::check_item>, std::span<const double>, std::string_view,
                const limit::usage_record*) override {}
    void inspect(std::span<const limit::check_item>, limit::budget_handler done) override {
        done(false, {});
    }
    void read_usage(std::string_view, limit::usage_handler done) override { done(false, {}); }
    static std::string describe(const limit::lease_refs& l) {
        std::string s(l.id);
        for (const auto& k : l.keys)
            s += " " + k;
        if (l.local)
            s += " local";
        return s;
    }
    std::vector<std::string> released, renewed;
};

class ConcurrencyLeasesTest : public ::testing::Test {
  protected:
    ConcurrencyLeasesTest() {
        slots_.name = "slots";
        slots_.algo = limit::algorithm::concurrency;
        daily_.name = "daily";
        daily_.algo = limit::algorithm::fixed_window;
    }
    std::vector<limit::check_item> items() {
        limit::check_item a, b;
        a.source = &slots_;
        a.key = "k:slots";
        b.source = &daily_;
        b.key = "k:daily";
        return {a, b};
    }
    static limit::decision allowed(bool both = true) {
        limit::decision d;
        d.allowed = both;
        d.results.resize(2);
        d.results[0].allowed = true;
        d.results[1].allowed = both;
        return d;
    }
    recording_store store_;
    limit::concurrency_leases leases_{store_, 3, 3000ms};
    limit::policy slots_, daily_;
};

}  // namespace

TEST_F(ConcurrencyLeasesTest, IdsAreUniquePerRequestAndNameInstanceAndWorker) {
    limit::lease_hold h(leases_);
    const std::string first(h.new_id());
    const std::string second(h.new_id());
    EXPECT_NE(first, second);
    EXPECT_EQ(first.rfind(std::string(limit::instance_id()) + ":3:", 0), 0u) << first;
    EXPECT_EQ(limit::instance_id().size(), 16u);
}

TEST_F(ConcurrencyLeasesTest, AllowedRequestHoldsOnlyItsConcurrencyItemsAndReleasesOnce) {
    limit::lease_hold h(leases_);
    const std::string id(h.new_id());
    const auto it = items();
    h.take(it, allowed());
    EXPECT_TRUE(h.holding());
    EXPECT_EQ(leases_.holding(), 1u);
    h.end();
    h.end();  // every ending calls it; only the first gives back
    ASSERT_EQ(store_.released.size(), 1u);
    EXPECT_EQ(store_.released[0], id + " k:slots");
    EXPECT_EQ(leases_.holding(), 0u);
}

TEST_F(ConcurrencyLeasesTest, DeniedOrUnavailableRequestHoldsNothing) {
    limit::lease_hold h(leases_);
    h.new_id();
    const auto it = items();
    h.take(it, allowed(false));
    EXPECT_FALSE(h.holding());
    auto d = allowed();
    d.store_unavailable = true;
    h.take(it, d);
    EXPECT_FALSE(h.holding());
    h.end();
    EXPECT_TRUE(store_.released.empty());
}

TEST_F(ConcurrencyLeasesTest, RenewsEveryLiveHoldByAThirdOfTheLease) {
    limit::lease_hold a(leases_), b(leases_), c(leases_);
    const auto it = items();
    const std::string ida(a.new_id()), idb(b.new_id()), idc(c.new_id());
    a.take(it, allowed());
    auto local = allowed();
    local.decided_locally = true;
    b.take(it, local);
    c.take(it, allowed());
    a.end();  // swap-removed: b and c still renewed
    EXPECT_EQ(leases_.renew_interval(), 1000ms);
    leases_.renew_all();
    ASSERT_EQ(store_.renewed.size(), 2u);
    std::sort(store_.renewed.begin(), store_.renewed.end());
    std::vector<std::string> want{idb + " k:slots local +1000000", idc + " k:slots +1000000"};
    std::sort(want.begin(), want.end());
    EXPECT_EQ(store_.renewed, want);
}

TEST_F(ConcurrencyLeasesTest, ReleaseAllGivesEverythingBackAndLaterEndsAreQuiet) {
    auto h = std::make_unique<limit::lease_hold>(leases_);
    h->new_id();
    const auto it = items();
    h->take(it, allowed());
    leases_.release_all();
    EXPECT_EQ(store_.released.size(), 1u);
    h.reset();  // its session goes after the worker let go
    EXPECT_EQ(store_.released.size(), 1u);
    leases_.renew_all();
    EXPECT_TRUE(store_.renewed.empty());
}
