#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "ratelimit_proxy/config/config.hpp"
#include "ratelimit_proxy/config/policy_json.hpp"
#include "ratelimit_proxy/config/rule_overlay.hpp"
#include "ratelimit_proxy/limit/policy.hpp"

namespace config = ratelimit_proxy::config;
namespace limit = ratelimit_proxy::limit;
using nlohmann::json;

namespace {

class PolicyJsonTest : public ::testing::Test {
  protected:
    static limit::policy read(const std::string& text) {
        return config::policy_from_json(json::parse(text), "policies.p");
    }
    // The config_error's full message, or "" if none was thrown.
    static std::string error_of(const std::string& text) {
        try {
            read(text);
        } catch (const config::config_error& e) {
            return e.what();
        }
        return "";
    }
    static std::string field_of(const std::string& text) {
        try {
            read(text);
        } catch (const config::config_error& e) {
            return e.field();
        }
        return "";
    }
};

}  // namespace

TEST_F(PolicyJsonTest, ReadsEveryField) {
    auto p = read(R"({"name": "chat", "algorithm": "gcra", "limit": 600, "window": "minute",
                      "burst": 100, "key": "token_route",
                      "match": {"method": "post", "path_prefix": "/api/chat/completions"},
                      "cost": 10, "shadow": true, "fail_closed": true})");
    EXPECT_EQ(p.name, "chat");
    EXPECT_EQ(p.algo, limit::algorithm::gcra);
    EXPECT_DOUBLE_EQ(p.numbers.limit, 600);
    EXPECT_DOUBLE_EQ(p.numbers.window_seconds, 60);
    EXPECT_DOUBLE_EQ(p.numbers.burst, 100);
    EXPECT_EQ(p.key, limit::key_kind::token_route);
    EXPECT_EQ(p.match.method, "POST");  // upper-cased on read
    EXPECT_EQ(p.match.path_prefix, "/api/chat/completions");
    EXPECT_EQ(p.cost, 10u);
    EXPECT_TRUE(p.shadow);
    ASSERT_TRUE(p.fail_closed.has_value());
    EXPECT_TRUE(*p.fail_closed);
}

TEST_F(PolicyJsonTest, DefaultsAreTokenBucketPerTokenCostOneAndFailClosedUnset) {
    auto p = read(R"({"limit": 5, "window": 1})");
    EXPECT_EQ(p.name, "");  // left to the caller
    EXPECT_EQ(p.algo, limit::algorithm::token_bucket);
    EXPECT_EQ(p.key, limit::key_kind::token);
    EXPECT_EQ(p.cost, 1u);
    EXPECT_FALSE(p.shadow);
    EXPECT_FALSE(p.fail_closed.has_value());
}

TEST_F(PolicyJsonTest, WindowNamesBecomeSeconds) {
    const std::pair<const char*, double> units[] = {
        {"second", 1}, {"minute", 60}, {"hour", 3600}, {"day", 86400}};
    for (auto [unit, seconds] : units) {
        auto p = read(std::string(R"({"limit": 5, "window": ")") + unit + "\"}");
        EXPECT_DOUBLE_EQ(p.numbers.window_seconds, seconds) << unit;
        EXPECT_EQ(p.numbers.period, limit::calendar::none) << unit;
    }
    EXPECT_DOUBLE_EQ(read(R"({"limit": 5, "window": 2.5})").numbers.window_seconds, 2.5);
}

TEST_F(PolicyJsonTest, MonthIsACalendarMonthForFixedWindowsOnly) {
    auto p = read(R"({"algorithm": "fixed_window", "limit": 10000, "window": "month"})");
    EXPECT_EQ(p.numbers.period, limit::calendar::month);
    auto msg = error_of(R"({"algorithm": "sliding_window", "limit": 5, "window": "month"})");
    EXPECT_NE(msg.find("policies.p.window"), std::string::npos) << msg;
    EXPECT_NE(msg.find("fixed_window"), std::string::npos) << msg;
    // The default algorithm is a token bucket: no month either.
    EXPECT_EQ(field_of(R"({"limit": 5, "window": "month"})"), "policies.p.window");
}

TEST_F(PolicyJsonTest, RejectsBadWindows) {
    for (const char* w : {"0", "-1", "\"fortnight\"", "\"\"", "true", "null", "[60]"})
        EXPECT_EQ(field_of(std::string(R"({"limit": 5, "window": )") + w + "}"),
                  "policies.p.window")
            << w;
}

TEST_F(PolicyJsonTest, LimitMustBeAPositiveNumber) {
    for (const char* l : {"0", "-3", "\"10\"", "true", "null"}) {
        auto msg = error_of(std::string(R"({"window": 60, "limit": )") + l + "}");
        EXPECT_EQ(msg, "policies.p.limit: must be a positive number") << l;
    }
}

TEST_F(PolicyJsonTest, LimitAndWindowAreRequired) {
    EXPECT_EQ(error_of(R"({"window": 60})"), "policies.p.limit: is required");
    EXPECT_EQ(error_of(R"({"limit": 60})"), "policies.p.window: is required");
    // A wrong value is reported before a missing neighbour.
    EXPECT_EQ(field_of(R"({"limit": -1})"), "policies.p.limit");
}

TEST_F(PolicyJsonTest, BurstOnlyForTokenBucketAndGcraAndAtLeastOne) {
    EXPECT_DOUBLE_EQ(read(R"({"limit": 5, "window": 1, "burst": 1})").numbers.burst, 1);
    auto msg = error_of(R"({"algorithm": "fixed_window", "limit": 5, "window": 1, "burst": 9})");
    EXPECT_NE(msg.find("policies.p.burst"), std::string::npos) << msg;
    EXPECT_NE(msg.find("token_bucket or gcra"), std::string::npos) << msg;
    EXPECT_EQ(field_of(R"({"algorithm": "sliding_window", "limit": 5, "window": 1, "burst": 9})"),
              "policies.p.burst");
    EXPECT_EQ(field_of(R"({"algorithm": "gcra", "limit": 5, "window": 1, "burst": 0.5})"),
              "policies.p.burst");
    EXPECT_EQ(field_of(R"({"limit": 5, "window": 1, "burst": "big"})"), "policies.p.burst");
}

TEST_F(PolicyJsonTest, CostIsAnIntegerFromOneToAMillion) {
    EXPECT_EQ(read(R"({"limit": 2000000, "window": 1, "cost": 1000000})").cost, 1000000u);
    for (const char* c : {"0", "-1", "1.5", "1000001", "\"10\""})
        EXPECT_EQ(field_of(std::string(R"({"limit": 2000000, "window": 1, "cost": )") + c + "}"),
                  "policies.p.cost")
            << c;
}

TEST_F(PolicyJsonTest, CostAboveCapacityIsRejectedBecauseNothingCouldPass) {
    auto msg = error_of(R"({"limit": 5, "window": 1, "cost": 10})");
    EXPECT_NE(msg.find("policies.p.cost"), std::string::npos) << msg;
    EXPECT_NE(msg.find("capacity"), std::string::npos) << msg;
    // The burst is the capacity of a token bucket.
    EXPECT_NO_THROW(read(R"({"limit": 5, "window": 1, "burst": 10, "cost": 10})"));
}

TEST_F(PolicyJsonTest, UnknownFieldsAreNamedAtEveryLevel) {
    EXPECT_EQ(field_of(R"({"limit": 5, "window": 1, "limt": 5})"), "policies.p.limt");
    EXPECT_EQ(field_of(R"({"limit": 5, "window": 1, "match": {"verb": "GET"}})"),
              "policies.p.match.verb");
}

TEST_F(PolicyJsonTest, RejectsUnknownAlgorithmKeyAndWrongTypes) {
    EXPECT_EQ(field_of(R"({"limit": 5, "window": 1, "algorithm": "leaky"})"),
              "policies.p.algorithm");
    EXPECT_EQ(field_of(R"({"limit": 5, "window": 1, "key": "user"})"), "policies.p.key");
    EXPECT_EQ(field_of(R"({"limit": 5, "window": 1, "shadow": "yes"})"), "policies.p.shadow");
    EXPECT_EQ(field_of(R"({"limit": 5, "window": 1, "fail_closed": 1})"), "policies.p.fail_closed");
    EXPECT_EQ(field_of(R"({"limit": 5, "window": 1, "match": "POST /x"})"), "policies.p.match");
    EXPECT_EQ(field_of(R"([1])"), "policies.p");
}

TEST_F(PolicyJsonTest, RejectsBadMatch) {
    EXPECT_EQ(field_of(R"({"limit": 5, "window": 1, "match": {"method": "PO ST"}})"),
              "policies.p.match.method");
    EXPECT_EQ(field_of(R"({"limit": 5, "window": 1, "match": {"path_prefix": "api"}})"),
              "policies.p.match.path_prefix");
    EXPECT_EQ(field_of(R"({"limit": 5, "window": 1, "match": {"path_prefix": "/a?b=1"}})"),
              "policies.p.match.path_prefix");
}

TEST_F(PolicyJsonTest, NamesAreShortAndSafeForHeadersAndRedisKeys) {
    EXPECT_TRUE(config::is_valid_name("daily.v2_free-tier"));
    EXPECT_TRUE(config::is_valid_name(std::string(64, 'a')));
    for (std::string bad :
         {std::string(), std::string(65, 'a'), std::string("a b"), std::string("a\"b"),
          std::string("a:b"), std::string("{x}"), std::string("é")})
        EXPECT_FALSE(config::is_valid_name(bad)) << bad;
    EXPECT_EQ(field_of(R"({"name": "a b", "limit": 5, "window": 1})"), "policies.p.name");
    EXPECT_EQ(field_of(R"({"name": 7, "limit": 5, "window": 1})"), "policies.p.name");
}

TEST_F(PolicyJsonTest, PolicyRoundTripsThroughJson) {
    const char* texts[] = {
        R"({"name": "a", "algorithm": "gcra", "limit": 10, "window": 1, "burst": 20,
            "key": "global", "cost": 2, "fail_closed": false})",
        R"({"name": "b", "algorithm": "fixed_window", "limit": 10000, "window": "month",
            "key": "ip", "shadow": true})",
        R"({"name": "c", "algorithm": "sliding_window", "limit": 100, "window": 60.5,
            "key": "token_route", "match": {"method": "GET", "path_prefix": "/api/"}})",
    };
    for (const char* text : texts) {
        auto p = read(text);
        auto again = config::policy_from_json(config::policy_to_json(p), "x");
        EXPECT_EQ(config::policy_to_json(again), config::policy_to_json(p)) << text;
        EXPECT_EQ(again.name, p.name);
        EXPECT_EQ(again.numbers.period, p.numbers.period);
        EXPECT_DOUBLE_EQ(again.numbers.window_seconds, p.numbers.window_seconds);
        EXPECT_EQ(again.fail_closed, p.fail_closed);
    }
    EXPECT_EQ(config::policy_to_json(read(texts[1]))["window"], "month");
    EXPECT_FALSE(config::policy_to_json(read(texts[1])).contains("fail_closed"));
}

TEST_F(PolicyJsonTest, TierNeedsValidPolicyNames) {
    auto t = config::tier_from_json("pro", json::parse(R"({"policies": ["burst", "daily"]})"),
                                    "tiers.pro");
    EXPECT_EQ(t.name, "pro");
    EXPECT_EQ(t.policies, (std::vector<std::string>{"burst", "daily"}));
    EXPECT_EQ(config::tier_to_json(t), json::parse(R"({"policies": ["burst", "daily"]})"));
    auto field = [](const std::string& name, const std::string& text) {
        try {
            config::tier_from_json(name, json::parse(text), "tiers." + name);
        } catch (const config::config_error& e) {
            return e.field();
        }
        return std::string();
    };
    EXPECT_EQ(field("pro", R"({"policies": ["ok", "not ok"]})"), "tiers.pro.policies[1]");
    EXPECT_EQ(field("pro", R"({"policies": [3]})"), "tiers.pro.policies[0]");
    EXPECT_EQ(field("pro", R"({})"), "tiers.pro.policies");
    EXPECT_EQ(field("pro", R"({"policies": [], "extra": 1})"), "tiers.pro.extra");
    EXPECT_EQ(field("p r o", R"({"policies": []})"), "tiers.p r o");
}

TEST_F(PolicyJsonTest, AccessListChecksTokenIdsAndCidrs) {
    auto a = config::access_list_from_json(
        json::parse(R"({"tokens": ["0123456789abcdef"], "cidrs": ["10.0.0.0/8", "::1"]})"),
        "bypass");
    EXPECT_EQ(a.token_ids.size(), 1u);
    EXPECT_EQ(a.cidrs.size(), 2u);
    EXPECT_EQ(config::access_list_from_json(config::access_list_to_json(a), "x").cidrs, a.cidrs);
    auto field = [](const std::string& text) {
        try {
            config::access_list_from_json(json::parse(text), "block");
        } catch (const config::config_error& e) {
            return e.field();
        }
        return std::string();
    };
    EXPECT_EQ(field(R"({"tokens": ["0123456789ABCDEF"]})"), "block.tokens[0]");
    EXPECT_EQ(field(R"({"tokens": ["0123456789abcdef", "0123"]})"), "block.tokens[1]");
    EXPECT_EQ(field(R"({"cidrs": ["10.0.0.0/33"]})"), "block.cidrs[0]");
    EXPECT_EQ(field(R"({"cidrs": ["nope"]})"), "block.cidrs[0]");
    EXPECT_EQ(field(R"({"ips": []})"), "block.ips");
}

TEST_F(PolicyJsonTest, OverrideFactorMustBeInZeroToOne) {
    auto o = config::override_from_json(json::parse(R"({"factor": 0.25})"), "override");
    EXPECT_DOUBLE_EQ(o.factor, 0.25);
    EXPECT_TRUE(o.active());
    EXPECT_FALSE(config::override_from_json(json::parse(R"({"factor": 1})"), "override").active());
    EXPECT_TRUE(
        config::override_from_json(json::parse(R"({"block_all": true})"), "override").active());
    for (const char* bad :
         {R"({"factor": 0})", R"({"factor": 1.5})", R"({"factor": -1})", R"({"factor": "half"})"}) {
        try {
            config::override_from_json(json::parse(bad), "override");
            ADD_FAILURE() << bad;
        } catch (const config::config_error& e) {
            EXPECT_EQ(e.field(), "override.factor") << bad;
        }
    }
    auto back = config::override_from_json(config::override_to_json(o), "override");
    EXPECT_DOUBLE_EQ(back.factor, 0.25);
}

TEST_F(PolicyJsonTest, TokenOverridesReplaceOnlyTheNumbersGiven) {
    auto o = config::token_overrides_from_json(
        json::parse(R"({"daily": {"limit": 5000}, "burst": {"burst": 50, "window": "minute"}})"),
        "overrides");
    limit::limits base;
    base.limit = 1000;
    base.window_seconds = 86400;
    auto daily = o.at("daily").apply(base);
    EXPECT_DOUBLE_EQ(daily.limit, 5000);
    EXPECT_DOUBLE_EQ(daily.window_seconds, 86400);
    auto burst = o.at("burst").apply(base);
    EXPECT_DOUBLE_EQ(burst.limit, 1000);
    EXPECT_DOUBLE_EQ(burst.window_seconds, 60);
    EXPECT_DOUBLE_EQ(burst.burst, 50);
    auto back = config::token_overrides_from_json(config::token_overrides_to_json(o), "o");
    EXPECT_DOUBLE_EQ(*back.at("burst").burst, 50);
    EXPECT_FALSE(back.at("daily").burst.has_value());
    try {
        config::token_overrides_from_json(json::parse(R"({"daily": {"limit": -1}})"), "overrides");
        ADD_FAILURE();
    } catch (const config::config_error& e) {
        EXPECT_EQ(e.field(), "overrides.daily.limit");
    }
}

TEST_F(PolicyJsonTest, OverridingTheWindowOfAMonthlyQuotaDropsTheCalendar) {
    limit::limits base;
    base.period = limit::calendar::month;
    limit::limits_override o;
    o.window_seconds = 3600;
    EXPECT_EQ(o.apply(base).period, limit::calendar::none);
}

TEST_F(PolicyJsonTest, RegistrationReadsModeAndNeverWritesTheSecret) {
    auto r = config::registration_from_json(
        json::parse(R"({"mode": "secret", "secret": "s3cret", "per_ip_per_minute": 3})"),
        "registration");
    EXPECT_EQ(r.mode, limit::registration_mode::secret);
    EXPECT_EQ(r.secret, "s3cret");
    EXPECT_DOUBLE_EQ(r.per_ip_per_minute, 3);
    auto j = config::registration_to_json(r);
    EXPECT_EQ(j["mode"], "secret");
    EXPECT_EQ(j.dump().find("s3cret"), std::string::npos) << j.dump();
    try {
        config::registration_from_json(json::parse(R"({"mode": "invite"})"), "registration");
        ADD_FAILURE();
    } catch (const config::config_error& e) {
        EXPECT_EQ(e.field(), "registration.mode");
    }
}

TEST_F(PolicyJsonTest, ConcurrencyNeedsOnlyALimitAndWritesNoWindow) {
    auto p = read(R"({"algorithm": "concurrency", "limit": 4, "key": "token"})");
    EXPECT_EQ(p.algo, limit::algorithm::concurrency);
    EXPECT_DOUBLE_EQ(p.numbers.limit, 4);
    EXPECT_EQ(p.cost, 1u);
    const auto j = config::policy_to_json(p);
    EXPECT_EQ(j.at("algorithm"), "concurrency");
    EXPECT_FALSE(j.contains("window"));
    EXPECT_FALSE(j.contains("burst"));
}

TEST_F(PolicyJsonTest, ConcurrencyRefusesWindowBurstAndCostOtherThanOne) {
    EXPECT_EQ(field_of(R"({"algorithm": "concurrency", "limit": 4, "window": 60})"),
              "policies.p.window");
    EXPECT_NE(error_of(R"({"algorithm": "concurrency", "limit": 4, "window": 60})")
                  .find("concurrency_lease_ms"),
              std::string::npos);
    EXPECT_EQ(field_of(R"({"algorithm": "concurrency", "limit": 4, "burst": 2})"),
              "policies.p.burst");
    EXPECT_EQ(field_of(R"({"algorithm": "concurrency", "limit": 4, "cost": 2})"),
              "policies.p.cost");
    EXPECT_NE(error_of(R"({"algorithm": "concurrency", "limit": 4, "cost": 2})").find("one slot"),
              std::string::npos);
    EXPECT_EQ(field_of(R"({"algorithm": "concurrency"})"), "policies.p.limit");
    EXPECT_EQ(field_of(R"({"algorithm": "concurrency", "limit": 0})"), "policies.p.limit");
}

// ---- Metered policies: tokens and usd budgets.

TEST_F(PolicyJsonTest, MeterDefaultsToRequestsWithTotalCount) {
    auto p = read(R"({"limit": 5, "window": 1})");
    EXPECT_EQ(p.what, limit::meter::requests);
    EXPECT_EQ(p.counts, limit::token_count::total);
    EXPECT_FALSE(p.metered());
    EXPECT_TRUE(p.match.model.empty());
}

TEST_F(PolicyJsonTest, ReadsATokensBudgetWithItsCountAndModel) {
    auto p = read(R"({"algorithm": "sliding_window", "meter": "tokens", "count": "output",
                      "limit": 100000, "window": "hour", "match": {"model": "gpt-4o*"}})");
    EXPECT_EQ(p.what, limit::meter::tokens);
    EXPECT_EQ(p.counts, limit::token_count::output);
    EXPECT_EQ(p.match.model, "gpt-4o*");
    EXPECT_DOUBLE_EQ(p.numbers.limit, 100000);
    EXPECT_TRUE(p.metered());
    EXPECT_TRUE(p.needs_body());
}

TEST_F(PolicyJsonTest, TokensWorkWithEveryWindowAlgorithm) {
    for (const char* algo : {"token_bucket", "gcra", "sliding_window", "fixed_window"})
        EXPECT_EQ(error_of(std::string(R"({"meter": "tokens", "limit": 1000, "window": 60,
                                           "algorithm": ")") +
                           algo + "\"}"),
                  "")
            << algo;
}

TEST_F(PolicyJsonTest, UsdLimitIsUsdInJsonAndExactNanoUsdInside) {
    const std::pair<const char*, double> amounts[] = {
        {"1.5", 1.5e9}, {"0.1", 1e8}, {"0.000000001", 1}, {"25", 25e9},
        {"1e-3", 1e6},  {"0.3", 3e8}, {"9000000", 9e15},  {"123.456789012", 123456789012}};
    for (auto [text, nano] : amounts) {
        auto p = read(std::string(R"({"algorithm": "fixed_window", "meter": "usd", "window":
                                      "month", "limit": )") +
                      text + "}");
        EXPECT_EQ(p.numbers.limit, nano) << text;  // exact, not merely close
        auto back = config::policy_to_json(p);
        EXPECT_EQ(back["limit"], json::parse(text)) << text;
    }
}

TEST_F(PolicyJsonTest, UsdLimitRejectsMoreThanNineDecimalsAndNonsense) {
    for (const char* bad :
         {"0.0000000001", "1.0000000001", "0", "-1", "9000000.5", "1e7", "\"5\"", "true"}) {
        auto msg = error_of(std::string(R"({"algorithm": "fixed_window", "meter": "usd",
                                            "window": "day", "limit": )") +
                            bad + "}");
        EXPECT_NE(msg.find("policies.p.limit: "), std::string::npos) << bad << ": " << msg;
        EXPECT_NE(msg.find("9 decimals"), std::string::npos) << bad << ": " << msg;
    }
}

TEST_F(PolicyJsonTest, UsdNeedsAFixedWindow) {
    for (const char* algo : {"token_bucket", "gcra", "sliding_window"}) {
        auto msg = error_of(std::string(R"({"meter": "usd", "limit": 5, "window": 60,
                                            "algorithm": ")") +
                            algo + "\"}");
        EXPECT_NE(msg.find("policies.p.meter: "), std::string::npos) << algo << ": " << msg;
        EXPECT_NE(msg.find("fixed_window"), std::string::npos) << msg;
    }
    for (const char* window : {"\"day\"", "\"week\"", "\"month\"", "\"lifetime\"", "3600"})
        EXPECT_EQ(error_of(std::string(R"({"meter": "usd", "limit": 5, "algorithm":
                                           "fixed_window", "window": )") +
                           window + "}"),
                  "")
            << window;
}

TEST_F(PolicyJsonTest, ConcurrencyIsNeverMetered) {
    EXPECT_EQ(field_of(R"({"algorithm": "concurrency", "meter": "tokens", "limit": 4})"),
              "policies.p.meter");
    EXPECT_EQ(field_of(R"({"algorithm": "concurrency", "meter": "usd", "limit": 4})"),
              "policies.p.meter");
}

TEST_F(PolicyJsonTest, CostIsInvalidOnAMeteredPolicy) {
    auto msg = error_of(R"({"cost": 2, "meter": "tokens", "limit": 1000, "window": 60})");
    EXPECT_NE(msg.find("policies.p.cost: "), std::string::npos) << msg;
    EXPECT_NE(msg.find("meter tokens"), std::string::npos) << msg;
    EXPECT_EQ(field_of(R"({"meter": "usd", "algorithm": "fixed_window", "limit": 1,
                           "window": "day", "cost": 1})"),
              "policies.p.cost");
    // Built otherwise (the overlay merge checks structs too).
    limit::policy p;
    p.name = "x";
    p.what = limit::meter::tokens;
    p.cost = 3;
    p.numbers.limit = 1000;
    try {
        config::validate_policy(p, "policies.x");
        ADD_FAILURE();
    } catch (const config::config_error& e) {
        EXPECT_EQ(e.field(), "policies.x.cost");
    }
}

TEST_F(PolicyJsonTest, CountIsOnlyForTokensAndNamedWhenWrong) {
    EXPECT_EQ(field_of(R"({"count": "input", "limit": 5, "window": 1})"), "policies.p.count");
    EXPECT_EQ(field_of(R"({"meter": "usd", "algorithm": "fixed_window", "count": "input",
                           "limit": 5, "window": 1})"),
              "policies.p.count");
    EXPECT_EQ(field_of(R"({"meter": "tokens", "count": "reasoning", "limit": 5, "window": 1})"),
              "policies.p.count");
    EXPECT_EQ(field_of(R"({"meter": "joules", "limit": 5, "window": 1})"), "policies.p.meter");
    EXPECT_EQ(field_of(R"({"meter": 1, "limit": 5, "window": 1})"), "policies.p.meter");
    limit::policy p;
    p.name = "x";
    p.counts = limit::token_count::output;
    EXPECT_THROW(config::validate_policy(p, "policies.x"), config::config_error);
}

TEST_F(PolicyJsonTest, TokensLimitsAreWholeTokens) {
    EXPECT_EQ(field_of(R"({"meter": "tokens", "limit": 1000.5, "window": 60})"),
              "policies.p.limit");
    EXPECT_EQ(field_of(R"({"meter": "tokens", "limit": 1000, "burst": 2.5, "window": 60})"),
              "policies.p.burst");
    EXPECT_EQ(error_of(R"({"meter": "tokens", "limit": 1000, "burst": 5000, "window": 60})"), "");
}

TEST_F(PolicyJsonTest, WeekAndLifetimeAreCalendarWindowsOfFixedWindowsOnly) {
    auto week = read(R"({"algorithm": "fixed_window", "limit": 10, "window": "week"})");
    EXPECT_EQ(week.numbers.period, limit::calendar::week);
    EXPECT_DOUBLE_EQ(week.numbers.window_seconds, 7 * 86400);
    auto life = read(R"({"algorithm": "fixed_window", "limit": 10, "window": "lifetime"})");
    EXPECT_EQ(life.numbers.period, limit::calendar::lifetime);
    for (const char* w : {"week", "lifetime"}) {
        auto msg =
            error_of(std::string(R"({"algorithm": "gcra", "limit": 10, "window": ")") + w + "\"}");
        EXPECT_NE(msg.find("policies.p.window: "), std::string::npos) << msg;
        EXPECT_NE(msg.find(w), std::string::npos) << msg;
        EXPECT_NE(msg.find("fixed_window"), std::string::npos) << msg;
    }
    limit::policy p;
    p.name = "x";
    p.numbers.period = limit::calendar::lifetime;  // a token bucket
    try {
        config::validate_policy(p, "policies.x");
        ADD_FAILURE();
    } catch (const config::config_error& e) {
        EXPECT_EQ(e.field(), "policies.x.window");
    }
}

TEST_F(PolicyJsonTest, ModelMatchIsANameOrAPrefixWithATrailingStar) {
    EXPECT_EQ(
        read(R"({"limit": 5, "window": 1, "match": {"model": "claude-3-5-sonnet"}})").match.model,
        "claude-3-5-sonnet");
    EXPECT_TRUE(config::is_valid_model_pattern("openai/gpt-4o-mini"));
    EXPECT_TRUE(config::is_valid_model_pattern("gpt-*"));
    EXPECT_TRUE(config::is_valid_model_pattern(std::string(128, 'm')));
    for (std::string bad : {std::string(), std::string(129, 'm'), std::string("gpt*4o"),
                            std::string("**"), std::string("gpt\n4o"), std::string("a\x7f")})
        EXPECT_FALSE(config::is_valid_model_pattern(bad)) << bad;
    for (const char* bad : {R"("")", R"("g*pt")", "7"})
        EXPECT_EQ(
            field_of(std::string(R"({"limit": 5, "window": 1, "match": {"model": )") + bad + "}}"),
            "policies.p.match.model")
            << bad;
}

TEST_F(PolicyJsonTest, MeteredPoliciesRoundTripThroughJson) {
    const char* texts[] = {
        R"({"name": "spend", "algorithm": "fixed_window", "meter": "usd", "limit": 12.345,
            "window": "month", "key": "token", "fail_closed": true})",
        R"({"name": "life", "algorithm": "fixed_window", "meter": "usd", "limit": 100,
            "window": "lifetime", "key": "global"})",
        R"({"name": "toks", "algorithm": "token_bucket", "meter": "tokens", "count": "input",
            "limit": 60000, "window": "minute", "burst": 90000,
            "match": {"path_prefix": "/api/v1/chat", "model": "gpt-4o*"}})",
        R"({"name": "weekly", "algorithm": "fixed_window", "meter": "tokens", "limit": 5000000,
            "window": "week"})",
    };
    for (const char* text : texts) {
        auto p = read(text);
        const auto j = config::policy_to_json(p);
        auto again = config::policy_from_json(j, "x");
        EXPECT_EQ(config::policy_to_json(again), j) << text;
        EXPECT_EQ(again.what, p.what);
        EXPECT_EQ(again.counts, p.counts);
        EXPECT_EQ(again.numbers.limit, p.numbers.limit);
        EXPECT_EQ(again.numbers.period, p.numbers.period);
        EXPECT_EQ(again.match.model, p.match.model);
        EXPECT_FALSE(j.contains("cost")) << j.dump();
    }
    const auto spend = config::policy_to_json(read(texts[0]));
    EXPECT_EQ(spend["meter"], "usd");
    EXPECT_EQ(spend["limit"], 12.345);  // in USD again
    EXPECT_FALSE(spend.contains("count"));
    EXPECT_EQ(config::policy_to_json(read(texts[1]))["window"], "lifetime");
    EXPECT_EQ(config::policy_to_json(read(texts[2]))["count"], "input");
    EXPECT_EQ(config::policy_to_json(read(texts[2]))["match"]["model"], "gpt-4o*");
    EXPECT_EQ(config::policy_to_json(read(texts[3]))["window"], "week");
    // A requests policy still says what it costs.
    EXPECT_EQ(config::policy_to_json(read(R"({"limit": 5, "window": 1})"))["cost"], 1);
    EXPECT_EQ(config::policy_to_json(read(R"({"limit": 5, "window": 1})"))["meter"], "requests");
}

TEST_F(PolicyJsonTest, UsdOverridesAreUsdInJsonAndNanoUsdInside) {
    auto s = config::parse_json(R"({
        "upstream": {"url": "http://127.0.0.1:1"},
        "policies": [
          {"name": "spend", "algorithm": "fixed_window", "meter": "usd", "limit": 10,
           "window": "month"},
          {"name": "toks", "algorithm": "fixed_window", "meter": "tokens", "limit": 1000,
           "window": "day"},
          {"name": "reqs", "limit": 10, "window": 60}]})",
                                "test.json");
    auto rules = config::build_rule_set(s, json());
    auto o = config::token_overrides_from_json(
        json::parse(
            R"({"spend": {"limit": 2.5}, "toks": {"limit": 5000}, "reqs": {"limit": 0.5}})"),
        "overrides", rules.get());
    EXPECT_EQ(*o.at("spend").limit, 2.5e9);
    EXPECT_EQ(*o.at("toks").limit, 5000);
    EXPECT_EQ(*o.at("reqs").limit, 0.5);
    const auto out = config::token_overrides_to_json(o, rules.get());
    EXPECT_EQ(out["spend"]["limit"], 2.5);
    EXPECT_EQ(out["toks"]["limit"], 5000);
    // Without the rules the numbers are as kept (the token records' stored form).
    const auto stored = config::token_overrides_to_json(o);
    EXPECT_EQ(stored["spend"]["limit"], 2500000000LL);
    EXPECT_EQ(*config::token_overrides_from_json(stored, "o").at("spend").limit, 2.5e9);
    auto field = [&](const char* text) {
        try {
            config::token_overrides_from_json(json::parse(text), "overrides", rules.get());
        } catch (const config::config_error& e) {
            return e.field();
        }
        return std::string();
    };
    EXPECT_EQ(field(R"({"spend": {"limit": 0.0000000001}})"), "overrides.spend.limit");
    EXPECT_EQ(field(R"({"toks": {"limit": 10.5}})"), "overrides.toks.limit");
    EXPECT_EQ(field(R"({"spend": {"limit": 1.25}})"), "");
}
