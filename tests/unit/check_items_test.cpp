#include <gtest/gtest.h>

#include "ratelimit_proxy/limit/check_items.hpp"

namespace limit = ratelimit_proxy::limit;

namespace {

class CheckItemsTest : public ::testing::Test {
  protected:
    static limit::policy make(const char* name, limit::key_kind k, double lim, double burst = 0) {
        limit::policy p;
        p.name = name;
        p.key = k;
        p.numbers.limit = lim;
        p.numbers.window_seconds = 60;
        p.numbers.burst = burst;
        return p;
    }
    limit::check_subject subject() const {
        limit::check_subject s;
        s.key_prefix = "rlp";
        s.token_id = "3f2a9c0d1e4b5a6f";
        s.client_address = "203.0.113.5";
        s.method = "POST";
        s.path = "/api/chat";
        return s;
    }

    limit::policy per_token_ = make("burst", limit::key_kind::token, 10, 20);
    limit::policy per_ip_ = make("ip", limit::key_kind::client_ip, 100);
    limit::policy per_route_ = make("route", limit::key_kind::token_route, 5);
    limit::policy global_ = make("all", limit::key_kind::global, 1000);
    std::vector<limit::check_item> items_;
};

}  // namespace

TEST_F(CheckItemsTest, OneItemPerPolicyInOrderWithTheKeyOfItsKind) {
    const limit::policy* ps[] = {&per_token_, &per_ip_, &per_route_, &global_};
    limit::build_check_items(ps, subject(), items_);
    ASSERT_EQ(items_.size(), 4u);
    for (std::size_t i = 0; i < 4; ++i) {
        EXPECT_EQ(items_[i].source, ps[i]);
        EXPECT_EQ(items_[i].key,
                  limit::bucket_key("rlp", ps[i]->name,
                                    limit::bucket_id(ps[i]->key, "3f2a9c0d1e4b5a6f", "203.0.113.5",
                                                     "POST", "/api/chat")));
    }
    EXPECT_EQ(items_[0].key, "{rlp}:rl:burst:3f2a9c0d1e4b5a6f");
    EXPECT_EQ(items_[0].numbers.limit, 10);
    EXPECT_EQ(items_[0].numbers.burst, 20);
    EXPECT_EQ(items_[0].cost, 1u);
    EXPECT_FALSE(items_[0].shadow);
}

TEST_F(CheckItemsTest, ItemsAndKeyBuffersAreReusedAndExtraItemsDropped) {
    const limit::policy* two[] = {&per_token_, &per_ip_};
    limit::build_check_items(two, subject(), items_);
    const char* first_key = items_[0].key.data();
    const limit::policy* one[] = {&per_ip_};
    limit::build_check_items(one, subject(), items_);
    ASSERT_EQ(items_.size(), 1u);
    EXPECT_EQ(items_[0].source, &per_ip_);
    EXPECT_EQ(items_[0].key.data(), first_key);
    limit::build_check_items({}, subject(), items_);
    EXPECT_TRUE(items_.empty());
}

TEST_F(CheckItemsTest, TokenOverrideReplacesThatPolicysNumbersOnly) {
    limit::token_overrides overrides;
    overrides["burst"].limit = 50;
    auto s = subject();
    s.overrides = &overrides;
    const limit::policy* ps[] = {&per_token_, &per_ip_};
    limit::build_check_items(ps, s, items_);
    EXPECT_EQ(items_[0].numbers.limit, 50);
    EXPECT_EQ(items_[0].numbers.burst, 20);
    EXPECT_EQ(items_[1].numbers.limit, 100);
}

TEST_F(CheckItemsTest, ScaleTightensButLeavesOneRequestPerWindow) {
    auto s = subject();
    s.scale = 0.01;
    const limit::policy* ps[] = {&per_token_, &per_ip_, &global_};
    limit::build_check_items(ps, s, items_);
    EXPECT_EQ(items_[0].numbers.limit, 1);
    EXPECT_EQ(items_[0].numbers.burst, 1);
    EXPECT_EQ(items_[1].numbers.limit, 1);
    EXPECT_EQ(items_[1].numbers.burst, 0);  // no burst stays no burst
    EXPECT_EQ(items_[2].numbers.limit, 10);
    const limit::policy* one[] = {&per_token_};
    s.scale = 0.5;
    limit::build_check_items(one, s, items_);
    EXPECT_EQ(items_[0].numbers.limit, 5);
    s.scale = 1;
    limit::build_check_items(one, s, items_);
    EXPECT_EQ(items_[0].numbers.limit, 10);
}

TEST_F(CheckItemsTest, OverrideIsScaledToo) {
    limit::token_overrides overrides;
    overrides["ip"].limit = 400;
    auto s = subject();
    s.overrides = &overrides;
    s.scale = 0.5;
    const limit::policy* ps[] = {&per_ip_};
    limit::build_check_items(ps, s, items_);
    EXPECT_EQ(items_[0].numbers.limit, 200);
}

TEST_F(CheckItemsTest, ShadowComesFromThePolicyOrTheRulesShadowMode) {
    per_ip_.shadow = true;
    per_ip_.cost = 3;
    const limit::policy* ps[] = {&per_token_, &per_ip_};
    limit::build_check_items(ps, subject(), items_);
    EXPECT_FALSE(items_[0].shadow);
    EXPECT_TRUE(items_[1].shadow);
    EXPECT_EQ(items_[1].cost, 3u);
    auto s = subject();
    s.shadow_all = true;
    limit::build_check_items(ps, s, items_);
    EXPECT_TRUE(items_[0].shadow);
}

TEST_F(CheckItemsTest, WithoutATokenTheClientAddressStillKeysPerIpPolicies) {
    auto s = subject();
    s.token_id = {};
    const limit::policy* ps[] = {&per_ip_};
    limit::build_check_items(ps, s, items_);
    EXPECT_EQ(items_[0].key, "{rlp}:rl:ip:203.0.113.5");
}

TEST_F(CheckItemsTest, MeteredItemsCostTheirReservationNotThePolicyCost) {
    limit::policy tokens = make("tokens", limit::key_kind::token, 100000);
    tokens.what = limit::meter::tokens;
    tokens.algo = limit::algorithm::fixed_window;
    limit::policy usd = make("usd", limit::key_kind::token, 5e9);
    usd.what = limit::meter::usd;
    usd.algo = limit::algorithm::fixed_window;
    per_token_.cost = 3;
    const limit::policy* ps[] = {&per_token_, &tokens, &usd};
    const double reservations[] = {999, 4096 + 120, 2.5e6};
    auto s = subject();
    s.metered_costs = reservations;
    s.hold_id = "inst:1:42";
    s.hold_seconds = 900;
    limit::build_check_items(ps, s, items_);
    ASSERT_EQ(items_.size(), 3u);
    EXPECT_FALSE(items_[0].metered);
    EXPECT_EQ(items_[0].cost, 3);  // requests: the policy's cost, whatever the span says
    EXPECT_EQ(items_[0].hold_id, "");
    EXPECT_EQ(items_[0].hold_seconds, 0);
    for (std::size_t i : {1u, 2u}) {
        EXPECT_TRUE(items_[i].metered) << i;
        EXPECT_EQ(items_[i].cost, reservations[i]) << i;
        EXPECT_EQ(items_[i].hold_id, "inst:1:42") << i;
        EXPECT_EQ(items_[i].hold_seconds, 900) << i;
    }
    EXPECT_EQ(items_[2].numbers.limit, 5e9);
}

TEST_F(CheckItemsTest, ReusedItemsForgetTheHoldOfTheRequestBefore) {
    limit::policy tokens = make("tokens", limit::key_kind::token, 100000);
    tokens.what = limit::meter::tokens;
    const limit::policy* metered[] = {&tokens};
    const double reservation[] = {500};
    auto s = subject();
    s.metered_costs = reservation;
    s.hold_id = "h1";
    s.hold_seconds = 60;
    limit::build_check_items(metered, s, items_);
    ASSERT_TRUE(items_[0].metered);
    const limit::policy* plain[] = {&per_token_};
    limit::build_check_items(plain, subject(), items_);
    ASSERT_EQ(items_.size(), 1u);
    EXPECT_FALSE(items_[0].metered);
    EXPECT_EQ(items_[0].cost, 1);
    EXPECT_EQ(items_[0].hold_id, "");
    EXPECT_EQ(items_[0].hold_seconds, 0);
}

TEST_F(CheckItemsTest, AMeteredPolicyWithoutAReservationReservesNothing) {
    limit::policy tokens = make("tokens", limit::key_kind::token, 100000);
    tokens.what = limit::meter::tokens;
    tokens.cost = 7;
    const limit::policy* ps[] = {&per_token_, &tokens};
    const double only_first[] = {1};
    auto s = subject();
    s.metered_costs = only_first;
    limit::build_check_items(ps, s, items_);
    ASSERT_EQ(items_.size(), 2u);
    EXPECT_TRUE(items_[1].metered);
    EXPECT_EQ(items_[1].cost, 0);
}
