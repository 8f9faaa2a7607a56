#include <gtest/gtest.h>

#include <boost/asio/ip/address.hpp>
#include <nlohmann/json.hpp>

#include "ratelimit_proxy/config/config.hpp"
#include "ratelimit_proxy/config/policy_json.hpp"
#include "ratelimit_proxy/config/rule_overlay.hpp"
#include "ratelimit_proxy/limit/policy.hpp"
#include "ratelimit_proxy/limit/rule_set.hpp"

namespace config = ratelimit_proxy::config;
namespace limit = ratelimit_proxy::limit;
using boost::asio::ip::make_address;
using nlohmann::json;

namespace {

class RuleSetTest : public ::testing::Test {
  protected:
    // free: burst + daily_free; pro: burst + daily_pro + chat (POST /api/chat/completions).
    config::settings file() const {
        auto s = config::parse_json(R"({
            "upstream": {"url": "http://127.0.0.1:1"},
            "policies": [
              {"name": "burst", "limit": 10, "window": "second", "burst": 20},
              {"name": "daily_free", "algorithm": "fixed_window", "limit": 1000, "window": "day"},
              {"name": "daily_pro", "algorithm": "fixed_window", "limit": 100000, "window": "day"},
              {"name": "chat", "limit": 600, "window": "minute", "cost": 10,
               "match": {"method": "POST", "path_prefix": "/api/chat/completions"}}
            ],
            "tiers": {
              "free": {"policies": ["burst", "daily_free"]},
              "pro": {"policies": ["burst", "daily_pro", "chat"]}
            },
            "default_tier": "free"})",
                                    "test.json");
        return s;
    }

    static std::vector<std::string> names(const limit::rule_set& rs, std::string_view tier,
                                          std::string_view method, std::string_view path) {
        std::vector<const limit::policy*> out;
        rs.select(tier, method, path, out);
        std::vector<std::string> n;
        for (const auto* p : out)
            n.push_back(p->name);
        return n;
    }

    // The field of the config_error build_rule_set throws, or "" if it builds.
    static std::string error_field(const config::settings& s, const std::string& overlay = "{}") {
        try {
            config::build_rule_set(s, json::parse(overlay));
        } catch (const config::config_error& e) {
            return e.field();
        }
        return "";
    }
    static std::string error_message(const config::settings& s, const std::string& overlay = "{}") {
        try {
            config::build_rule_set(s, json::parse(overlay));
        } catch (const config::config_error& e) {
            return e.what();
        }
        return "";
    }

    using strings = std::vector<std::string>;
};

}  // namespace

TEST_F(RuleSetTest, SelectsTheTiersPoliciesThatMatchInTierOrder) {
    auto rs = config::build_rule_set(file(), json::object());
    EXPECT_EQ(names(*rs, "pro", "POST", "/api/chat/completions"),
              (strings{"burst", "daily_pro", "chat"}));
    EXPECT_EQ(names(*rs, "pro", "GET", "/api/chat/completions"), (strings{"burst", "daily_pro"}));
    EXPECT_EQ(names(*rs, "pro", "POST", "/api/embeddings"), (strings{"burst", "daily_pro"}));
    EXPECT_EQ(names(*rs, "free", "POST", "/api/chat/completions"),
              (strings{"burst", "daily_free"}));
}

TEST_F(RuleSetTest, UnknownOrEmptyTierUsesTheDefaultTier) {
    auto rs = config::build_rule_set(file(), json::object());
    EXPECT_EQ(names(*rs, "enterprise", "GET", "/api/x"), (strings{"burst", "daily_free"}));
    EXPECT_EQ(names(*rs, "", "GET", "/api/x"), (strings{"burst", "daily_free"}));
}

TEST_F(RuleSetTest, SelectReplacesWhatTheOutputHeld) {
    auto rs = config::build_rule_set(file(), json::object());
    std::vector<const limit::policy*> out;
    rs->select("pro", "POST", "/api/chat/completions", out);
    rs->select("free", "GET", "/", out);
    EXPECT_EQ(out.size(), 2u);
}

TEST_F(RuleSetTest, PathPrefixMatchesOnSegmentBoundariesAfterDecoding) {
    limit::policy p;
    p.match.path_prefix = "/api/chat";
    EXPECT_TRUE(p.matches("GET", "/api/chat"));
    EXPECT_TRUE(p.matches("GET", "/api/chat/completions"));
    EXPECT_TRUE(p.matches("GET", "/api/chat?stream=true"));
    EXPECT_FALSE(p.matches("GET", "/api/chatx"));
    EXPECT_FALSE(p.matches("GET", "/api/cha"));
    EXPECT_FALSE(p.matches("GET", "/API/chat"));
    // Percent-encoding does not dodge a policy...
    EXPECT_TRUE(p.matches("GET", "/api/ch%61t/completions"));
    EXPECT_TRUE(p.matches("GET", "/%61pi/chat"));
    // ...but an encoded slash is data inside a segment, not a separator.
    EXPECT_FALSE(p.matches("GET", "/api%2Fchat"));
    EXPECT_FALSE(p.matches("GET", "/api/chat%2fx"));
    // Malformed escapes are compared as they are.
    EXPECT_FALSE(p.matches("GET", "/api/ch%zzat"));
    EXPECT_FALSE(p.matches("GET", "/api/chat%"));

    limit::policy dir;
    dir.match.path_prefix = "/api/";
    EXPECT_TRUE(dir.matches("GET", "/api/anything"));
    EXPECT_FALSE(dir.matches("GET", "/api"));
    limit::policy any;
    EXPECT_TRUE(any.matches("DELETE", "/whatever"));
}

TEST_F(RuleSetTest, MethodMatchIsExactUpperCase) {
    limit::policy p;
    p.match.method = "POST";
    EXPECT_TRUE(p.matches("POST", "/x"));
    EXPECT_FALSE(p.matches("post", "/x"));
    EXPECT_FALSE(p.matches("GET", "/x"));
}

TEST_F(RuleSetTest, BucketKeysCarryTheHashTagAndTheKindsPart) {
    EXPECT_EQ(limit::bucket_key("rlp", "daily", "3f2a9c0d1e4b5a6f"),
              "{rlp}:rl:daily:3f2a9c0d1e4b5a6f");
    const char* tok = "3f2a9c0d1e4b5a6f";
    EXPECT_EQ(limit::bucket_id(limit::key_kind::global, tok, "1.2.3.4", "GET", "/a"), "global");
    EXPECT_EQ(limit::bucket_id(limit::key_kind::client_ip, tok, "1.2.3.4", "GET", "/a"), "1.2.3.4");
    EXPECT_EQ(limit::bucket_id(limit::key_kind::token, tok, "1.2.3.4", "GET", "/a"), tok);
    EXPECT_EQ(
        limit::bucket_id(limit::key_kind::token_route, tok, "1.2.3.4", "POST", "/api/chat?x=1"),
        "3f2a9c0d1e4b5a6f POST /api/chat");
    // Spelling the same path differently does not buy a second bucket.
    EXPECT_EQ(limit::bucket_id(limit::key_kind::token_route, tok, "", "GET", "/api/ch%61t"),
              limit::bucket_id(limit::key_kind::token_route, tok, "", "GET", "/api/chat"));
}

TEST_F(RuleSetTest, NamesRoundTripThroughStrings) {
    for (auto a : {limit::algorithm::token_bucket, limit::algorithm::gcra,
                   limit::algorithm::sliding_window, limit::algorithm::fixed_window})
        EXPECT_EQ(limit::algorithm_from(limit::to_string(a)), a);
    for (auto k : {limit::key_kind::global, limit::key_kind::client_ip, limit::key_kind::token,
                   limit::key_kind::token_route})
        EXPECT_EQ(limit::key_kind_from(limit::to_string(k)), k);
    EXPECT_EQ(limit::to_string(limit::key_kind::client_ip), "ip");
    EXPECT_FALSE(limit::algorithm_from("Token_Bucket").has_value());
    EXPECT_FALSE(limit::key_kind_from("client_ip").has_value());
}

TEST_F(RuleSetTest, WithoutTiersAnImplicitDefaultTierHoldsEveryPolicy) {
    auto s = file();
    s.tiers.clear();
    s.default_tier = "basic";
    auto rs = config::build_rule_set(s, json::object());
    ASSERT_NE(rs->find_tier("basic"), nullptr);
    EXPECT_EQ(rs->find_tier("basic")->policies.size(), 4u);
    EXPECT_EQ(names(*rs, "anything", "POST", "/api/chat/completions"),
              (strings{"burst", "daily_free", "daily_pro", "chat"}));
}

TEST_F(RuleSetTest, WithoutPoliciesTheDefaultPolicyComesFromRateLimit) {
    auto s =
        config::parse_json(R"({"rate_limit": {"requests_per_minute": 30, "burst": 5}})", "t.json");
    auto rs = config::build_rule_set(s, json());
    ASSERT_EQ(rs->policies().size(), 1u);
    const auto& p = rs->policies()[0];
    EXPECT_EQ(p.name, "default");
    EXPECT_EQ(p.algo, limit::algorithm::token_bucket);
    EXPECT_EQ(p.key, limit::key_kind::token);
    EXPECT_DOUBLE_EQ(p.numbers.limit, 30);
    EXPECT_DOUBLE_EQ(p.numbers.window_seconds, 60);
    EXPECT_DOUBLE_EQ(p.numbers.capacity(), 5);
    EXPECT_EQ(names(*rs, "default", "GET", "/api/x"), (strings{"default"}));
}

TEST_F(RuleSetTest, OverlayAddsReplacesAndDeletesPolicies) {
    auto rs = config::build_rule_set(file(), json::parse(R"({
        "policies": {
          "burst": {"limit": 2, "window": 1},
          "chat": null,
          "per_ip": {"algorithm": "sliding_window", "limit": 100, "window": "minute", "key": "ip"}
        },
        "tiers": {"pro": {"policies": ["burst", "daily_pro", "per_ip"]}}
    })"),
                                     7);
    EXPECT_EQ(rs->version(), 7u);
    EXPECT_EQ(rs->find_policy("chat"), nullptr);
    ASSERT_NE(rs->find_policy("burst"), nullptr);
    EXPECT_DOUBLE_EQ(rs->find_policy("burst")->numbers.limit, 2);
    EXPECT_DOUBLE_EQ(rs->find_policy("burst")->numbers.burst, 0);  // replaced, not merged
    ASSERT_NE(rs->find_policy("per_ip"), nullptr);
    EXPECT_EQ(rs->find_policy("per_ip")->name, "per_ip");  // named by its key
    // Replaced in place: the order of the file is kept, new ones go last.
    EXPECT_EQ(rs->policies().front().name, "burst");
    EXPECT_EQ(rs->policies().back().name, "per_ip");
    EXPECT_EQ(names(*rs, "pro", "POST", "/api/chat/completions"),
              (strings{"burst", "daily_pro", "per_ip"}));
}

TEST_F(RuleSetTest, OverlayDeletingAPolicyATierStillNamesIsRejected) {
    auto msg = error_message(file(), R"({"policies": {"daily_pro": null}})");
    EXPECT_NE(msg.find("tiers.pro.policies"), std::string::npos) << msg;
    EXPECT_NE(msg.find("daily_pro"), std::string::npos) << msg;
}

TEST_F(RuleSetTest, OverlayAddsAndDeletesTiersAndSetsTheDefault) {
    auto rs = config::build_rule_set(file(), json::parse(R"({
        "tiers": {"enterprise": {"policies": ["burst"]}, "free": null},
        "default_tier": "pro"})"));
    EXPECT_EQ(rs->find_tier("free"), nullptr);
    EXPECT_EQ(rs->default_tier(), "pro");
    EXPECT_EQ(names(*rs, "enterprise", "GET", "/"), (strings{"burst"}));
    EXPECT_EQ(names(*rs, "free", "GET", "/"), (strings{"burst", "daily_pro"}));  // default now
    EXPECT_EQ(error_field(file(), R"({"tiers": {"free": null}})"), "default_tier");
}

TEST_F(RuleSetTest, OverlayPolicyNameMustMatchItsKey) {
    EXPECT_EQ(error_field(file(), R"({"policies": {"a": {"name": "b", "limit": 1, "window": 1}}})"),
              "policies.a.name");
}

TEST_F(RuleSetTest, OverlayErrorsNameTheField) {
    EXPECT_EQ(error_message(file(), R"({"policies": {"burst": {"limit": 0, "window": 1}}})"),
              "policies.burst.limit: must be a positive number");
    EXPECT_EQ(error_field(file(), R"({"policies": {"bad name": {"limit": 1, "window": 1}}})"),
              "policies.bad name");
    EXPECT_EQ(error_field(file(), R"({"policies": []})"), "policies");
    EXPECT_EQ(error_field(file(), R"({"tiers": {"pro": {"policies": ["nope"]}}})"),
              "tiers.pro.policies");
    EXPECT_EQ(error_field(file(), R"({"default_tier": "gold"})"), "default_tier");
    EXPECT_EQ(error_field(file(), R"({"override": {"factor": 0}})"), "override.factor");
    EXPECT_EQ(error_field(file(), R"({"override": {"factor": 1.01}})"), "override.factor");
    EXPECT_EQ(error_field(file(), R"({"bypass": {"cidrs": ["10.0.0.0/40"]}})"), "bypass.cidrs[0]");
    EXPECT_EQ(error_field(file(), R"({"block": {"tokens": ["xyz"]}})"), "block.tokens[0]");
    EXPECT_EQ(error_field(file(), R"({"registration": {"mode": "secret"}})"),
              "registration.secret");
    EXPECT_EQ(error_field(file(), R"({"shadow_mode": 1})"), "shadow_mode");
    EXPECT_EQ(error_field(file(), R"({"polices": {}})"), "polices");
    EXPECT_EQ(error_field(file(), R"([])"), "overlay");
}

TEST_F(RuleSetTest, FileValidationCatchesWhatTheStructsAllow) {
    auto s = file();
    s.policies.push_back(s.policies[0]);
    EXPECT_EQ(error_field(s), "policies.burst");

    s = file();
    s.tiers[1].policies.push_back("burst");
    EXPECT_NE(error_message(s).find("twice"), std::string::npos);

    s = file();
    s.tiers.push_back({"free", {"burst"}});
    EXPECT_EQ(error_field(s), "tiers.free");

    s = file();
    s.policies[1].numbers.burst = 5;  // a fixed window has no burst
    EXPECT_EQ(error_field(s), "policies.daily_free.burst");

    s = file();
    s.policies[0].name = "with space";
    EXPECT_EQ(error_field(s), "policies[0].name");

    s = file();
    s.registration.mode = limit::registration_mode::secret;
    EXPECT_EQ(error_field(s), "registration.secret");
    s.registration.secret = "letmein";
    EXPECT_EQ(error_field(s), "");
}

TEST_F(RuleSetTest, EveryBuildHasFreshCounters) {
    auto s = file();
    auto a = config::build_rule_set(s, json::object());
    auto b = config::build_rule_set(s, json::object());
    for (const auto& p : a->policies())
        ASSERT_NE(p.counters, nullptr) << p.name;
    a->find_policy("burst")->counters->add(limit::policy_counters::allowed, 0, 3);
    EXPECT_EQ(a->find_policy("burst")->counters->sum().allowed, 3u);
    EXPECT_EQ(b->find_policy("burst")->counters->sum().allowed, 0u);
    EXPECT_NE(a->find_policy("burst")->counters, a->find_policy("chat")->counters);
}

TEST(PolicyCountersTest, SumsWhatEveryWorkerCounted) {
    limit::policy_counters c(2);
    c.add(limit::policy_counters::allowed, 0);
    c.add(limit::policy_counters::allowed, 1, 4);
    c.add(limit::policy_counters::denied, 1);
    c.add(limit::policy_counters::shadow_denied, 0, 2);
    c.add(limit::policy_counters::allowed, 5);  // more workers than slots: they share one
    const auto t = c.sum();
    EXPECT_EQ(t.allowed, 6u);
    EXPECT_EQ(t.denied, 1u);
    EXPECT_EQ(t.shadow_denied, 2u);
}

TEST_F(RuleSetTest, BlockBeatsBypassForTokensAndNetworks) {
    auto rs = config::build_rule_set(file(), json::parse(R"({
        "bypass": {"tokens": ["aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"], "cidrs": ["10.0.0.0/8"]},
        "block": {"tokens": ["bbbbbbbbbbbbbbbb"], "cidrs": ["10.9.0.0/16"]}})"));
    auto outside = make_address("203.0.113.1");
    EXPECT_EQ(rs->classify("aaaaaaaaaaaaaaaa", outside), limit::access::bypass);
    EXPECT_EQ(rs->classify("bbbbbbbbbbbbbbbb", outside), limit::access::block);
    EXPECT_EQ(rs->classify("cccccccccccccccc", outside), limit::access::normal);
    EXPECT_EQ(rs->classify("", make_address("10.1.1.1")), limit::access::bypass);
    EXPECT_EQ(rs->classify("aaaaaaaaaaaaaaaa", make_address("10.9.1.1")), limit::access::block);
    EXPECT_TRUE(rs->address_blocked(make_address("10.9.1.1")));
    EXPECT_FALSE(rs->address_blocked(make_address("10.1.1.1")));
}

TEST_F(RuleSetTest, Ipv4MappedClientsHitIpv4Lists) {
    auto s = file();
    s.block.cidrs = {"192.0.2.0/24"};
    s.bypass.cidrs = {"198.51.100.0/24"};
    auto rs = config::build_rule_set(s, json::object());
    EXPECT_EQ(rs->classify("", make_address("::ffff:192.0.2.10")), limit::access::block);
    EXPECT_TRUE(rs->address_blocked(make_address("::ffff:192.0.2.10")));
    EXPECT_EQ(rs->classify("", make_address("::ffff:198.51.100.1")), limit::access::bypass);
}

TEST_F(RuleSetTest, OverlayReplacesAccessListsRegistrationShadowAndOverride) {
    auto s = file();
    s.bypass.cidrs = {"10.0.0.0/8"};
    auto rs = config::build_rule_set(s, json::parse(R"({
        "bypass": {"tokens": [], "cidrs": []},
        "override": {"factor": 0.5},
        "registration": {"mode": "closed"},
        "shadow_mode": true})"));
    EXPECT_EQ(rs->classify("", make_address("10.1.1.1")), limit::access::normal);
    EXPECT_DOUBLE_EQ(rs->override_state().factor, 0.5);
    EXPECT_TRUE(rs->override_state().active());
    EXPECT_EQ(rs->registration().mode, limit::registration_mode::closed);
    EXPECT_TRUE(rs->shadow_all());

    auto plain = config::build_rule_set(s, json::object());
    EXPECT_FALSE(plain->override_state().active());
    EXPECT_FALSE(plain->shadow_all());
    EXPECT_EQ(plain->classify("", make_address("10.1.1.1")), limit::access::bypass);
}

TEST_F(RuleSetTest, FileSecretSurvivesAnOverlayThatOnlyChangesOtherThings) {
    auto s = file();
    s.registration.mode = limit::registration_mode::secret;
    s.registration.secret = "from-env";
    auto rs = config::build_rule_set(s, json::parse(R"({"shadow_mode": false})"));
    EXPECT_EQ(rs->registration().secret, "from-env");
}
