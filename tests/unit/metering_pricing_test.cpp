// Prices as exact integers (micro-USD per million tokens), costs in nano-USD rounded up, and the
// model -> price lookup (exact name, then the longest "prefix*").
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>

#include "ratelimit_proxy/metering/pricing.hpp"

namespace metering = ratelimit_proxy::metering;

TEST(MeteringPricingTest, PricesWithUpToSixDecimalsBecomeExactMicroUsd) {
    EXPECT_EQ(metering::micro_usd_from(0.15), 150000);
    EXPECT_EQ(metering::micro_usd_from(2.5), 2500000);
    EXPECT_EQ(metering::micro_usd_from(0.075), 75000);
    EXPECT_EQ(metering::micro_usd_from(3.75), 3750000);
    EXPECT_EQ(metering::micro_usd_from(0.000001), 1);
    EXPECT_EQ(metering::micro_usd_from(0.123456), 123456);
    EXPECT_EQ(metering::micro_usd_from(0), 0);
    EXPECT_EQ(metering::micro_usd_from(1e6), 1'000'000'000'000);
}

TEST(MeteringPricingTest, PricesWithMoreThanSixDecimalsOrOutOfRangeAreRejected) {
    EXPECT_EQ(metering::micro_usd_from(0.0000001), std::nullopt);
    EXPECT_EQ(metering::micro_usd_from(0.1234567), std::nullopt);
    EXPECT_EQ(metering::micro_usd_from(2.0000005), std::nullopt);
    EXPECT_EQ(metering::micro_usd_from(-0.15), std::nullopt);
    EXPECT_EQ(metering::micro_usd_from(1e6 + 1), std::nullopt);
    EXPECT_EQ(metering::micro_usd_from(std::nan("")), std::nullopt);
    EXPECT_EQ(metering::micro_usd_from(std::numeric_limits<double>::infinity()), std::nullopt);
}

TEST(MeteringPricingTest, MicroUsdGoBackToTheUsdWritten) {
    EXPECT_EQ(metering::usd_from_micro(150000), 0.15);
    EXPECT_EQ(metering::usd_from_micro(1), 0.000001);
    EXPECT_EQ(metering::usd_from_micro(2500000), 2.5);
    for (double usd : {0.15, 0.075, 3.75, 15.0, 0.000123})
        EXPECT_EQ(metering::usd_from_micro(*metering::micro_usd_from(usd)), usd) << usd;
}

TEST(MeteringPricingTest, OneTokenAtFifteenCentsPerMillionCostsOneHundredFiftyNanoUsd) {
    const metering::price p{
        .input = 150000, .cached_input = 75000, .cache_write = 0, .output = 600000};
    metering::usage u;
    u.input = 1;
    EXPECT_EQ(metering::cost_nano_usd(p, u), 150);
    u.input = 1000;
    u.cached_input = 2000;
    u.output = 500;
    // 1000*0.15 + 2000*0.075 + 500*0.6 USD per million = 600 micro-USD
    EXPECT_EQ(metering::cost_nano_usd(p, u), 600'000);
}

TEST(MeteringPricingTest, CostsRoundUpOnceOverTheSumOfTheParts) {
    const metering::price p{.input = 1, .cached_input = 1, .cache_write = 1, .output = 1};
    metering::usage u;
    u.input = 1;  // 0.001 nano-USD
    EXPECT_EQ(metering::cost_nano_usd(p, u), 1);
    u.output = 1;  // 0.002: still 1, not 1 per part
    EXPECT_EQ(metering::cost_nano_usd(p, u), 1);
    u.input = 1000;
    u.output = 0;
    EXPECT_EQ(metering::cost_nano_usd(p, u), 1);
    u.input = 1001;
    EXPECT_EQ(metering::cost_nano_usd(p, u), 2);
    EXPECT_EQ(metering::cost_nano_usd(p, metering::usage{}), 0);
}

TEST(MeteringPricingTest, LargeCostsAreExactAndAbsurdOnesSaturate) {
    const metering::price p{.input = 1'000'000,
                            .cached_input = 0,
                            .cache_write = 0,
                            .output = 1'000'000};  // 1 USD per million
    metering::usage u;
    u.input = 1'000'000'000'000;  // a million USD
    EXPECT_EQ(metering::cost_nano_usd(p, u), 1'000'000'000'000'000);
    u.output = 3;
    EXPECT_EQ(metering::cost_nano_usd(p, u), 1'000'000'000'003'000);
    const metering::price dearest{.input = 1'000'000'000'000,
                                  .cached_input = 0,
                                  .cache_write = 0,
                                  .output = 1'000'000'000'000};
    u.input = std::numeric_limits<std::int64_t>::max();
    EXPECT_EQ(metering::cost_nano_usd(dearest, u), std::numeric_limits<std::int64_t>::max());
    // A negative count never lowers a cost.
    u.input = -5;
    u.output = 1;
    EXPECT_EQ(metering::cost_nano_usd(p, u), 1000);
}

TEST(MeteringPricingTest, BoundChargesEveryInputTokenAtTheDearestInputPrice) {
    const metering::price p{.input = 3'000'000,
                            .cached_input = 300'000,
                            .cache_write = 3'750'000,
                            .output = 15'000'000};
    // 1000 * 3.75 + 200 * 15 USD per million = 6750 micro-USD
    EXPECT_EQ(metering::bound_nano_usd(p, 1000, 200), 6'750'000);
    metering::usage actual;
    actual.input = 400;
    actual.cached_input = 300;
    actual.cache_write = 300;
    actual.output = 200;
    EXPECT_LE(metering::cost_nano_usd(p, actual), metering::bound_nano_usd(p, 1000, 200));
    EXPECT_EQ(metering::bound_nano_usd(metering::price{.input = 1}, 1, 0), 1);
}

TEST(MeteringPricingTest, ExactNameBeatsPrefixAndTheLongestPrefixWins) {
    metering::price_table table;
    EXPECT_TRUE(table.empty());
    table.set("gpt-4o*", {.input = 2'500'000});
    table.set("gpt-4o-mini*", {.input = 150'000});
    table.set("gpt-4o-mini-2024-07-18", {.input = 140'000});
    table.set("*", {.input = 99});
    table.set("claude-sonnet-4-20250514", {.input = 3'000'000});

    EXPECT_EQ(table.entry_for("gpt-4o-mini-2024-07-18"), "gpt-4o-mini-2024-07-18");
    EXPECT_EQ(table.find("gpt-4o-mini-2024-07-18")->input, 140'000);
    EXPECT_EQ(table.entry_for("gpt-4o-mini-search-preview"), "gpt-4o-mini*");
    EXPECT_EQ(table.find("gpt-4o-mini-search-preview")->input, 150'000);
    EXPECT_EQ(table.entry_for("gpt-4o-mini"), "gpt-4o-mini*");  // the prefix alone matches
    EXPECT_EQ(table.entry_for("gpt-4o-2024-08-06"), "gpt-4o*");
    EXPECT_EQ(table.find("gpt-4o-2024-08-06")->input, 2'500'000);
    EXPECT_EQ(table.entry_for("o3-mini"), "*");
    EXPECT_EQ(table.find("o3-mini")->input, 99);

    EXPECT_TRUE(table.erase("*"));
    EXPECT_FALSE(table.erase("*"));
    EXPECT_EQ(table.find("o3-mini"), nullptr);
    EXPECT_EQ(table.entry_for("o3-mini"), "");
    // A prefix entry does not match a model shorter than its prefix, nor an exact name a longer.
    EXPECT_EQ(table.find("gpt-4"), nullptr);
    EXPECT_EQ(table.find("claude-sonnet-4-20250514-v2"), nullptr);
    EXPECT_TRUE(table.erase("gpt-4o-mini*"));
    EXPECT_EQ(table.entry_for("gpt-4o-mini-search-preview"), "gpt-4o*");
    EXPECT_EQ(table.entries().size(), 3u);
}
