// The "pricing" section of the config file and of the admin overlay: USD per million tokens
// per model (or model prefix*), held as exact micro-USD per million.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "ratelimit_proxy/config/config.hpp"
#include "ratelimit_proxy/config/policy_json.hpp"
#include "ratelimit_proxy/config/rule_overlay.hpp"

namespace config = ratelimit_proxy::config;
namespace metering = ratelimit_proxy::metering;
using nlohmann::json;

namespace {

config::settings with_pricing(const std::string& pricing) {
    return config::parse_json(
        R"({"upstream": {"url": "http://127.0.0.1:1"}, "pricing": )" + pricing + "}", "test.json");
}

std::string field_of(const std::string& pricing) {
    try {
        with_pricing(pricing);
    } catch (const config::config_error& e) {
        return e.field();
    }
    return "";
}

std::string message_of(const std::string& pricing) {
    try {
        with_pricing(pricing);
    } catch (const config::config_error& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST(PricingConfig, ReadsUsdPerMillionTokensAsExactMicroUsd) {
    auto s = with_pricing(R"({"gpt-4o-mini": {"input": 0.15, "cached_input": 0.075,
                                              "cache_write": 0.1875, "output": 0.60},
                              "claude-*": {"input": 3, "output": 15}})");
    const auto& e = s.pricing.entries();
    ASSERT_EQ(e.size(), 2u);
    const auto& mini = e.at("gpt-4o-mini");
    EXPECT_EQ(mini.input, 150000);
    EXPECT_EQ(mini.cached_input, 75000);
    EXPECT_EQ(mini.cache_write, 187500);
    EXPECT_EQ(mini.output, 600000);
    EXPECT_EQ(e.at("claude-*").output, 15000000);
}

TEST(PricingConfig, CachedInputAndCacheWriteDefaultToTheInputPrice) {
    auto s = with_pricing(R"({"m": {"input": 2.5, "output": 10}})");
    const auto& p = s.pricing.entries().at("m");
    EXPECT_EQ(p.cached_input, p.input);
    EXPECT_EQ(p.cache_write, p.input);
    EXPECT_EQ(p.input, 2500000);
}

TEST(PricingConfig, InputAndOutputAreRequiredAndNamed) {
    EXPECT_EQ(field_of(R"({"gpt-4o": {"input": 2.5}})"), "pricing.gpt-4o.output");
    EXPECT_EQ(field_of(R"({"gpt-4o": {"output": 10}})"), "pricing.gpt-4o.input");
    EXPECT_NE(message_of(R"({"gpt-4o": {"input": 2.5}})").find("is required"), std::string::npos);
}

TEST(PricingConfig, EveryBadPriceNamesItsField) {
    const std::pair<const char*, const char*> cases[] = {
        {R"({"gpt-4o": {"input": -1, "output": 10}})", "pricing.gpt-4o.input"},
        {R"({"gpt-4o": {"input": 1, "output": "10"}})", "pricing.gpt-4o.output"},
        {R"({"gpt-4o": {"input": 1, "output": 0.0000001}})", "pricing.gpt-4o.output"},
        {R"({"gpt-4o": {"input": 1, "output": 2, "cached_input": true}})",
         "pricing.gpt-4o.cached_input"},
        {R"({"gpt-4o": {"input": 1, "output": 2, "cache_write": 2000000}})",
         "pricing.gpt-4o.cache_write"},
        {R"({"gpt-4o": {"input": 1, "output": 2, "reasoning": 3}})", "pricing.gpt-4o.reasoning"},
        {R"({"gpt-4o": 2.5})", "pricing.gpt-4o"},
        {R"([])", "pricing"},
    };
    for (auto [text, field] : cases)
        EXPECT_EQ(field_of(text), field) << text;
}

TEST(PricingConfig, ModelNamesAreShortPrintableAndStarOnlyAtTheEnd) {
    EXPECT_EQ(field_of(R"({"": {"input": 1, "output": 2}})"), "pricing.");
    EXPECT_EQ(field_of(R"({"gpt*mini": {"input": 1, "output": 2}})"), "pricing.gpt*mini");
    EXPECT_EQ(field_of(R"({"a\u0001b": {"input": 1, "output": 2}})"),
              "pricing.a\x01"
              "b");
    EXPECT_EQ(field_of(R"({")" + std::string(129, 'm') + R"(": {"input": 1, "output": 2}})"),
              "pricing." + std::string(129, 'm'));
    EXPECT_EQ(field_of(R"({"openai/gpt-4.1*": {"input": 1, "output": 2}})"), "");
}

TEST(PricingConfig, PricesRoundTripThroughJsonInUsd) {
    auto s = with_pricing(R"({"gpt-4o-mini": {"input": 0.15, "cached_input": 0.075,
                                              "cache_write": 0.1875, "output": 0.6},
                              "o1": {"input": 15, "output": 60}})");
    const auto j = config::pricing_to_json(s.pricing);
    EXPECT_EQ(j["gpt-4o-mini"]["input"], 0.15);
    EXPECT_EQ(j["gpt-4o-mini"]["cache_write"], 0.1875);
    EXPECT_EQ(j["o1"]["output"], 60);
    EXPECT_EQ(j["o1"]["cached_input"], 15);
    auto again = config::pricing_from_json(j, "pricing");
    EXPECT_EQ(config::pricing_to_json(again), j);
}

TEST(PricingConfig, TheFilePricesReachTheRuleSet) {
    auto s = with_pricing(R"({"gpt-4o": {"input": 2.5, "output": 10}})");
    config::validate(s);
    auto rules = config::build_rule_set(s, json());
    ASSERT_EQ(rules->pricing().entries().size(), 1u);
    EXPECT_EQ(rules->pricing().entries().at("gpt-4o").output, 10000000);
}

TEST(PricingConfig, TheOverlaySetsReplacesAndDeletesPricesOverTheFile) {
    auto s = with_pricing(R"({"gpt-4o": {"input": 2.5, "output": 10},
                              "o1": {"input": 15, "output": 60}})");
    auto rules = config::build_rule_set(s, json::parse(R"({"pricing": {
        "gpt-4o": {"input": 2, "output": 8},
        "o1": null,
        "claude-*": {"input": 3, "output": 15}}})"));
    const auto& e = rules->pricing().entries();
    ASSERT_EQ(e.size(), 2u);
    EXPECT_EQ(e.at("gpt-4o").output, 8000000);
    EXPECT_EQ(e.at("claude-*").input, 3000000);
    EXPECT_EQ(e.count("o1"), 0u);
}

TEST(PricingConfig, ABadOverlayPriceIsRefusedNamingItsField) {
    auto s = with_pricing(R"({})");
    try {
        config::build_rule_set(s, json::parse(R"({"pricing": {"m": {"input": 1}}})"));
        ADD_FAILURE();
    } catch (const config::config_error& e) {
        EXPECT_EQ(e.field(), "pricing.m.output");
    }
    try {
        config::build_rule_set(s, json::parse(R"({"pricing": {"m*x": null}})"));
        ADD_FAILURE();
    } catch (const config::config_error& e) {
        EXPECT_EQ(e.field(), "pricing.m*x");
    }
}

TEST(PricingConfig, AStructBuiltTableIsValidatedToo) {
    metering::price_table t;
    t.set("ok", metering::price{1, 1, 1, 1});
    EXPECT_NO_THROW(config::validate_pricing(t, "pricing"));
    t.set("neg", metering::price{1, -1, 1, 1});
    try {
        config::validate_pricing(t, "pricing");
        ADD_FAILURE();
    } catch (const config::config_error& e) {
        EXPECT_EQ(e.field(), "pricing.neg.cached_input");
    }
}
