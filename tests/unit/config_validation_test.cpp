#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <fstream>
#include <set>
#include <string_view>

#include "ratelimit_proxy/config/config.hpp"
#include "ratelimit_proxy/config/rule_overlay.hpp"
#include "ratelimit_proxy/config/settings_table.hpp"
#include "ratelimit_proxy/limit/rule_set.hpp"

namespace config = ratelimit_proxy::config;

namespace {

config::environment minimal_env() {
    return {{"TARGET_API_URL", "https://api.example.com/v1"}};
}

std::string error_of(const config::environment& env, const std::optional<std::string>& json = {}) {
    try {
        if (json) {
            auto s = config::parse_json(*json, "test.json");
            config::apply_environment(s, env);
            config::validate(s);
        } else {
            config::load(std::nullopt, env);
        }
    } catch (const config::config_error& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST(ConfigValidation, DefaultsAreUsableWithOnlyTheUpstreamUrl) {
    auto s = config::load(std::nullopt, minimal_env());
    EXPECT_EQ(s.upstream.url, "https://api.example.com/v1");
    EXPECT_DOUBLE_EQ(s.rate_limit.requests_per_minute, 60);
    EXPECT_DOUBLE_EQ(s.effective_burst(), 60);
    EXPECT_EQ(s.redis.url, "redis://127.0.0.1:6379");
    EXPECT_EQ(s.server.bind_address, "127.0.0.1:3000");
    EXPECT_EQ(s.upstream.api_key_header, "Authorization");
}

TEST(ConfigValidation, MissingUpstreamUrlNamesTheVariable) {
    EXPECT_NE(error_of({}).find("TARGET_API_URL"), std::string::npos);
}

TEST(ConfigValidation, NonNumericRateLimitNamesTheVariableAndValue) {
    auto env = minimal_env();
    env["RATE_LIMIT"] = "abc";
    auto msg = error_of(env);
    EXPECT_NE(msg.find("RATE_LIMIT"), std::string::npos) << msg;
    EXPECT_NE(msg.find("abc"), std::string::npos) << msg;
}

TEST(ConfigValidation, RejectsZeroNegativeAndPartialNumbers) {
    for (const char* bad : {"0", "-5", "10x", "", "nan", "inf"}) {
        auto env = minimal_env();
        env["RATE_LIMIT"] = bad;
        EXPECT_NE(error_of(env).find("RATE_LIMIT"), std::string::npos) << bad;
    }
}

TEST(ConfigValidation, BurstDefaultsToRateAndCanBeSet) {
    auto env = minimal_env();
    env["RATE_LIMIT"] = "5";
    EXPECT_DOUBLE_EQ(config::load(std::nullopt, env).effective_burst(), 5);
    env["BURST"] = "20";
    EXPECT_DOUBLE_EQ(config::load(std::nullopt, env).effective_burst(), 20);
}

TEST(ConfigValidation, RejectsUrlsThatAreNotHttp) {
    for (const char* bad :
         {"ftp://example.com", "example.com", "http://", "https://user:pw@x.com", "not a url"}) {
        auto env = minimal_env();
        env["TARGET_API_URL"] = bad;
        EXPECT_NE(error_of(env).find("TARGET_API_URL"), std::string::npos) << bad;
    }
}

TEST(ConfigValidation, RejectsBadBindAddressThreadsAndLogLevel) {
    auto env = minimal_env();
    env["BIND_ADDRESS"] = "3000";
    EXPECT_NE(error_of(env).find("BIND_ADDRESS"), std::string::npos);
    env = minimal_env();
    env["BIND_ADDRESS"] = "127.0.0.1:99999";
    EXPECT_NE(error_of(env).find("BIND_ADDRESS"), std::string::npos);
    env = minimal_env();
    env["THREADS"] = "two";
    EXPECT_NE(error_of(env).find("THREADS"), std::string::npos);
    env = minimal_env();
    env["LOG_LEVEL"] = "loud";
    EXPECT_NE(error_of(env).find("LOG_LEVEL"), std::string::npos);
}

TEST(ConfigValidation, RejectsNonRedisUrl) {
    auto env = minimal_env();
    env["REDIS_URL"] = "http://localhost:6379";
    EXPECT_NE(error_of(env).find("REDIS_URL"), std::string::npos);
}

TEST(ConfigValidation, KeyFormatMustContainThePlaceholder) {
    auto env = minimal_env();
    env["TARGET_API_KEY"] = "sk-test";
    env["TARGET_API_KEY_FORMAT"] = "Bearer";
    EXPECT_NE(error_of(env).find("TARGET_API_KEY_FORMAT"), std::string::npos);
}

TEST(ConfigValidation, KeyHeaderMustBeAValidHeaderName) {
    auto env = minimal_env();
    env["TARGET_API_KEY_HEADER"] = "x api key";
    EXPECT_NE(error_of(env).find("TARGET_API_KEY_HEADER"), std::string::npos);
}

TEST(ConfigValidation, KeyHeaderMustNotBeOneTheProxyManages) {
    for (const char* name : {"host", "X-Forwarded-For", "x-forwarded-proto", "Connection",
                             "Transfer-Encoding", "Content-Length"}) {
        auto env = minimal_env();
        env["TARGET_API_KEY_HEADER"] = name;
        const auto error = error_of(env);
        EXPECT_NE(error.find("TARGET_API_KEY_HEADER"), std::string::npos) << name;
        EXPECT_NE(error.find("sets or removes itself"), std::string::npos) << name << ": " << error;
    }
    auto env = minimal_env();
    env["TARGET_API_KEY_HEADER"] = "x-api-key";
    EXPECT_EQ(error_of(env), "");
}

TEST(ConfigValidation, JsonFileSetsNestedFields) {
    auto s = config::parse_json(R"({
        "upstream": {"url": "http://127.0.0.1:8080/base", "api_key_header": "x-api-key",
                     "api_key_format": "{key}", "response_timeout_ms": 1500},
        "rate_limit": {"requests_per_minute": 120, "burst": 10},
        "server": {"bind_address": "0.0.0.0:4000", "threads": 3, "max_body_bytes": 1048576},
        "redis": {"url": "redis://:pw@10.0.0.1:6380/2", "key_prefix": "app"},
        "log_level": "debug"})",
                                "test.json");
    EXPECT_EQ(s.upstream.url, "http://127.0.0.1:8080/base");
    EXPECT_EQ(s.upstream.api_key_header, "x-api-key");
    EXPECT_EQ(s.upstream.response_timeout.count(), 1500);
    EXPECT_DOUBLE_EQ(s.rate_limit.requests_per_minute, 120);
    EXPECT_DOUBLE_EQ(s.effective_burst(), 10);
    EXPECT_EQ(s.server.threads, 3u);
    EXPECT_EQ(s.server.max_body_bytes, 1048576u);
    EXPECT_EQ(s.redis.key_prefix, "app");
    EXPECT_EQ(s.log_level, "debug");
}

TEST(ConfigValidation, EnvironmentOverridesTheFile) {
    auto s = config::parse_json(R"({"upstream": {"url": "http://file.example"},
                                    "rate_limit": {"requests_per_minute": 10}})",
                                "test.json");
    config::apply_environment(s, {{"TARGET_API_URL", "http://env.example"}, {"RATE_LIMIT", "7"}});
    EXPECT_EQ(s.upstream.url, "http://env.example");
    EXPECT_DOUBLE_EQ(s.rate_limit.requests_per_minute, 7);
}

TEST(ConfigValidation, UnknownJsonFieldIsNamedWithItsPath) {
    auto msg = error_of(minimal_env(), R"({"server": {"bind_adress": "127.0.0.1:1"}})");
    EXPECT_NE(msg.find("server.bind_adress"), std::string::npos) << msg;
    msg = error_of(minimal_env(), R"({"colour": "blue"})");
    EXPECT_NE(msg.find("colour"), std::string::npos) << msg;
}

TEST(ConfigValidation, WrongJsonTypesAreNamed) {
    auto msg = error_of(minimal_env(), R"({"upstream": {"connect_timeout_ms": "fast"}})");
    EXPECT_NE(msg.find("upstream.connect_timeout_ms"), std::string::npos) << msg;
    msg = error_of(minimal_env(), R"({"rate_limit": {"burst": -1}})");
    EXPECT_NE(msg.find("rate_limit.burst"), std::string::npos) << msg;
    msg = error_of(minimal_env(), R"({"upstream": {"verify_tls": "yes"}})");
    EXPECT_NE(msg.find("upstream.verify_tls"), std::string::npos) << msg;
}

TEST(ConfigValidation, MalformedJsonIsReported) {
    auto msg = error_of(minimal_env(), "{not json");
    EXPECT_NE(msg.find("invalid JSON"), std::string::npos) << msg;
}

TEST(ConfigValidation, MissingConfigFileIsReported) {
    try {
        config::load(std::string("/nonexistent/ratelimit.json"), minimal_env());
        FAIL() << "expected config_error";
    } catch (const config::config_error& e) {
        EXPECT_EQ(e.field(), "--config");
    }
}

TEST(ConfigValidation, ShippedExampleConfigIsValid) {
    const std::string path = std::string(RLP_SOURCE_DIR) + "/config/ratelimit-proxy.json";
    std::ifstream probe(path);
    ASSERT_TRUE(probe.good()) << path;
    EXPECT_NO_THROW(config::load(path, {}));
}

TEST(ConfigValidation, ReadsEveryDocumentedVariableFromTheProcessEnvironment) {
    const char* documented[] = {"TARGET_API_URL",
                                "TARGET_API_KEY",
                                "TARGET_API_KEY_HEADER",
                                "TARGET_API_KEY_FORMAT",
                                "TARGET_CA_FILE",
                                "RATE_LIMIT",
                                "BURST",
                                "REDIS_URL",
                                "BIND_ADDRESS",
                                "THREADS",
                                "LOG_LEVEL",
                                "REDIS_TIMEOUT_MS",
                                "FALLBACK_INSTANCES",
                                "FAIL_CLOSED",
                                "DEFAULT_TIER",
                                "SHADOW_MODE",
                                "REGISTRATION_MODE",
                                "REGISTRATION_SECRET",
                                "TRUSTED_PROXIES",
                                "ADMIN_BIND_ADDRESS",
                                "ADMIN_TOKEN",
                                "STORE"};
    for (const char* name : documented)
        ::setenv(name, "probe", 1);
    auto env = config::process_environment();
    for (const char* name : documented) {
        EXPECT_EQ(env[name], "probe") << name;
        ::unsetenv(name);
    }
}

TEST(ConfigValidation, FaultSettingsComeFromTheEnvironment) {
    auto env = minimal_env();
    env["REDIS_TIMEOUT_MS"] = "300";
    env["FALLBACK_INSTANCES"] = "4";
    env["FAIL_CLOSED"] = "true";
    auto s = config::load(std::nullopt, env);
    EXPECT_EQ(s.redis.command_timeout.count(), 300);
    EXPECT_EQ(s.rate_limit.fallback_instances, 4u);
    EXPECT_TRUE(s.rate_limit.fail_closed);
    env["FALLBACK_INSTANCES"] = "0";
    EXPECT_NE(error_of(env).find("FALLBACK_INSTANCES"), std::string::npos);
}

TEST(ConfigValidation, OutOfRangeNumbersAreConfigErrorsNotCrashes) {
    // Found by fuzz_config: 1e999 made nlohmann throw out_of_range, which escaped.
    auto msg = error_of(minimal_env(), R"({"rate_limit": {"burst": 1e999}})");
    EXPECT_FALSE(msg.empty());
    msg = error_of(minimal_env(), R"({"server": {"threads": 99999999999999999999999}})");
    EXPECT_FALSE(msg.empty());
    // Fits 64 bits, not the unsigned it goes into: an error, not a wrapped-around 1.
    msg = error_of(minimal_env(), R"({"server": {"threads": 4294967297}})");
    EXPECT_NE(msg.find("server.threads"), std::string::npos) << msg;
}

TEST(ConfigValidation, WithoutPoliciesLoadAddsADefaultPolicyFromRateLimitAndBurst) {
    auto env = minimal_env();
    env["RATE_LIMIT"] = "30";
    env["BURST"] = "5";
    auto s = config::load(std::nullopt, env);
    ASSERT_EQ(s.policies.size(), 1u);
    const auto& p = s.policies[0];
    EXPECT_EQ(p.name, "default");
    EXPECT_EQ(p.algo, ratelimit_proxy::limit::algorithm::token_bucket);
    EXPECT_EQ(p.key, ratelimit_proxy::limit::key_kind::token);
    EXPECT_DOUBLE_EQ(p.numbers.limit, 30);
    EXPECT_DOUBLE_EQ(p.numbers.window_seconds, 60);
    EXPECT_DOUBLE_EQ(p.numbers.burst, 5);
    EXPECT_FALSE(p.fail_closed.has_value());
    EXPECT_TRUE(s.tiers.empty());
    EXPECT_EQ(s.default_tier, "default");
}

TEST(ConfigValidation, PoliciesTiersAndListsComeFromTheFile) {
    auto s = config::parse_json(R"({
        "policies": [
          {"name": "burst", "limit": 10, "window": "second", "burst": 20},
          {"name": "daily", "algorithm": "fixed_window", "limit": 1000, "window": "day"}],
        "tiers": {"free": {"policies": ["burst", "daily"]}, "pro": {"policies": ["burst"]}},
        "default_tier": "free",
        "bypass": {"tokens": ["0123456789abcdef"], "cidrs": ["10.0.0.0/8"]},
        "block": {"cidrs": ["192.0.2.0/24"]},
        "shadow_mode": true,
        "registration": {"mode": "secret", "secret": "open sesame", "per_ip_per_minute": 2},
        "store": "memory",
        "server": {"trusted_proxies": ["127.0.0.1", "10.0.0.0/8"]},
        "admin": {"bind_address": "127.0.0.1:4001", "token": "0123456789abcdefXYZ"},
        "load_aware": {"enabled": true, "error_rate": 0.25, "latency_ms": 800, "window_ms": 5000,
                       "min_requests": 50, "scale": 0.3}})",
                                "test.json");
    config::apply_environment(s, minimal_env());
    EXPECT_NO_THROW(config::validate(s));
    ASSERT_EQ(s.policies.size(), 2u);
    EXPECT_EQ(s.policies[1].name, "daily");
    ASSERT_EQ(s.tiers.size(), 2u);
    EXPECT_EQ(s.default_tier, "free");
    EXPECT_EQ(s.bypass.token_ids, std::vector<std::string>{"0123456789abcdef"});
    EXPECT_EQ(s.block.cidrs, std::vector<std::string>{"192.0.2.0/24"});
    EXPECT_TRUE(s.shadow_mode);
    EXPECT_EQ(s.registration.mode, ratelimit_proxy::limit::registration_mode::secret);
    EXPECT_EQ(s.registration.secret, "open sesame");
    EXPECT_EQ(s.store, "memory");
    EXPECT_EQ(s.server.trusted_proxies.size(), 2u);
    EXPECT_EQ(s.admin.bind_address, "127.0.0.1:4001");
    EXPECT_EQ(s.admin.token, "0123456789abcdefXYZ");
    EXPECT_TRUE(s.load_aware.enabled);
    EXPECT_DOUBLE_EQ(s.load_aware.error_rate, 0.25);
    EXPECT_EQ(s.load_aware.latency.count(), 800);
    EXPECT_EQ(s.load_aware.window.count(), 5000);
    EXPECT_EQ(s.load_aware.min_requests, 50u);
    EXPECT_DOUBLE_EQ(s.load_aware.scale, 0.3);
}

TEST(ConfigValidation, NewDefaultsKeepAdminOffAndRedisAsStore) {
    auto s = config::load(std::nullopt, minimal_env());
    EXPECT_TRUE(s.admin.token.empty());
    EXPECT_EQ(s.admin.bind_address, "127.0.0.1:3001");
    EXPECT_EQ(s.store, "redis");
    EXPECT_FALSE(s.shadow_mode);
    EXPECT_FALSE(s.load_aware.enabled);
    EXPECT_EQ(s.load_aware.latency.count(), 0);
    EXPECT_TRUE(s.server.trusted_proxies.empty());
    EXPECT_EQ(s.registration.mode, ratelimit_proxy::limit::registration_mode::open);
}

TEST(ConfigValidation, GivenPoliciesRateLimitIsIgnoredButStillValidated) {
    const std::string json = R"({"policies": [{"name": "p", "limit": 5, "window": 1}]})";
    auto env = minimal_env();
    env["RATE_LIMIT"] = "1000";
    auto s = config::parse_json(json, "test.json");
    config::apply_environment(s, env);
    config::validate(s);
    ASSERT_EQ(s.policies.size(), 1u);
    EXPECT_EQ(s.policies[0].name, "p");
    env["RATE_LIMIT"] = "-1";
    EXPECT_NE(error_of(env, json).find("RATE_LIMIT"), std::string::npos);
}

TEST(ConfigValidation, PolicyErrorsNameThePolicyAndField) {
    auto msg = error_of(minimal_env(), R"({"policies": [{"name": "daily", "limit": 0,
                                                         "window": "day"}]})");
    EXPECT_EQ(msg, "policies.daily.limit: must be a positive number");
    msg = error_of(minimal_env(), R"({"policies": [{"name": "a", "limit": 1, "window": 1},
                                                   {"limit": 1, "window": 1}]})");
    EXPECT_EQ(msg, "policies[1].name: is required");
    msg = error_of(minimal_env(), R"({"policies": [{"name": "a b", "limit": 1, "window": 1}]})");
    EXPECT_NE(msg.find("policies[0].name"), std::string::npos) << msg;
    msg = error_of(minimal_env(), R"({"policies": {"a": {}}})");
    EXPECT_NE(msg.find("policies: expected an array"), std::string::npos) << msg;
    msg = error_of(minimal_env(), R"({"policies": [{"name": "a", "limit": 1, "window": 1},
                                                   {"name": "a", "limit": 2, "window": 1}]})");
    EXPECT_NE(msg.find("policies.a"), std::string::npos) << msg;
}

TEST(ConfigValidation, TierNamingAMissingPolicyIsAStartUpError) {
    auto msg = error_of(minimal_env(), R"({
        "policies": [{"name": "burst", "limit": 1, "window": 1}],
        "tiers": {"default": {"policies": ["burst"]}, "pro": {"policies": ["burst", "dialy"]}}})");
    EXPECT_NE(msg.find("tiers.pro.policies"), std::string::npos) << msg;
    EXPECT_NE(msg.find("dialy"), std::string::npos) << msg;
}

TEST(ConfigValidation, DefaultTierMustExistAndIsNamedByItsVariable) {
    const std::string json = R"({
        "policies": [{"name": "burst", "limit": 1, "window": 1}],
        "tiers": {"free": {"policies": ["burst"]}}})";
    auto msg = error_of(minimal_env(), json);  // "default" is not among the tiers
    EXPECT_NE(msg.find("default_tier"), std::string::npos) << msg;
    auto env = minimal_env();
    env["DEFAULT_TIER"] = "free";
    EXPECT_EQ(error_of(env, json), "");
    env["DEFAULT_TIER"] = "gold";
    msg = error_of(env, json);
    EXPECT_NE(msg.find("DEFAULT_TIER"), std::string::npos) << msg;
    EXPECT_NE(msg.find("free"), std::string::npos) << msg;  // lists the tiers there are
}

TEST(ConfigValidation, NewSettingsComeFromTheEnvironment) {
    auto env = minimal_env();
    env["SHADOW_MODE"] = "true";
    env["REGISTRATION_MODE"] = "secret";
    env["REGISTRATION_SECRET"] = "hunter22";
    env["TRUSTED_PROXIES"] = " 10.0.0.0/8, ,::1 ";
    env["ADMIN_BIND_ADDRESS"] = "0.0.0.0:9001";
    env["ADMIN_TOKEN"] = "an-admin-token-long-enough";
    env["STORE"] = "memory";
    env["DEFAULT_TIER"] = "basic";
    auto s = config::load(std::nullopt, env);
    EXPECT_TRUE(s.shadow_mode);
    EXPECT_EQ(s.registration.mode, ratelimit_proxy::limit::registration_mode::secret);
    EXPECT_EQ(s.registration.secret, "hunter22");
    EXPECT_EQ(s.server.trusted_proxies, (std::vector<std::string>{"10.0.0.0/8", "::1"}));
    EXPECT_EQ(s.admin.bind_address, "0.0.0.0:9001");
    EXPECT_EQ(s.admin.token, "an-admin-token-long-enough");
    EXPECT_EQ(s.store, "memory");
    EXPECT_EQ(s.default_tier, "basic");  // the implicit tier takes its name
}

TEST(ConfigValidation, BadNewVariablesAreNamed) {
    const std::pair<const char*, const char*> cases[] = {
        {"SHADOW_MODE", "maybe"},
        {"REGISTRATION_MODE", "invite"},
        {"TRUSTED_PROXIES", "10.0.0.0/8,bogus"},
        {"ADMIN_BIND_ADDRESS", "nowhere"},
        {"ADMIN_TOKEN", "short"},
        {"ADMIN_TOKEN", "has a space in the middle"},
        {"STORE", "etcd"},
        {"DEFAULT_TIER", "no spaces allowed"},
    };
    for (auto [name, value] : cases) {
        auto env = minimal_env();
        env[name] = value;
        auto msg = error_of(env);
        EXPECT_NE(msg.find(name), std::string::npos) << name << "=" << value << ": " << msg;
    }
    auto env = minimal_env();
    env["TRUSTED_PROXIES"] = "10.0.0.0/8,bogus";
    EXPECT_NE(error_of(env).find("bogus"), std::string::npos);
}

TEST(ConfigValidation, SecretRegistrationWithoutASecretNamesTheVariable) {
    auto env = minimal_env();
    env["REGISTRATION_MODE"] = "secret";
    auto msg = error_of(env);
    EXPECT_NE(msg.find("REGISTRATION_SECRET"), std::string::npos) << msg;
}

TEST(ConfigValidation, AdminListenerMustNotShareTheProxyAddress) {
    auto env = minimal_env();
    env["ADMIN_TOKEN"] = "an-admin-token-long-enough";
    env["ADMIN_BIND_ADDRESS"] = "127.0.0.1:3000";
    EXPECT_NE(error_of(env).find("ADMIN_BIND_ADDRESS"), std::string::npos);
}

TEST(ConfigValidation, LoadAwareNumbersAreChecked) {
    const std::pair<const char*, const char*> cases[] = {
        {R"({"load_aware": {"error_rate": 0}})", "load_aware.error_rate"},
        {R"({"load_aware": {"error_rate": 1.5}})", "load_aware.error_rate"},
        {R"({"load_aware": {"scale": 1}})", "load_aware.scale"},
        {R"({"load_aware": {"scale": 0}})", "load_aware.scale"},
        {R"({"load_aware": {"scale": "half"}})", "load_aware.scale"},
        {R"({"load_aware": {"min_requests": 0}})", "load_aware.min_requests"},
        {R"({"load_aware": {"window_ms": 0}})", "load_aware.window_ms"},
        {R"({"load_aware": {"latency_ms": -1}})", "load_aware.latency_ms"},
        {R"({"load_aware": {"enabled": "yes"}})", "load_aware.enabled"},
        {R"({"load_aware": {"threshold": 1}})", "load_aware.threshold"},
        {R"({"admin": {"token": 5}})", "admin.token"},
        {R"({"server": {"trusted_proxies": "10.0.0.0/8"}})", "server.trusted_proxies"},
        {R"({"server": {"trusted_proxies": [1]}})", "server.trusted_proxies[0]"},
        {R"({"tiers": {"pro": {"policies": "burst"}}})", "tiers.pro.policies"},
        {R"({"bypass": {"tokens": ["ABC"]}})", "bypass.tokens[0]"},
        {R"({"store": 1})", "store"},
    };
    for (auto [json, field] : cases) {
        auto msg = error_of(minimal_env(), std::string(json));
        EXPECT_NE(msg.find(field), std::string::npos) << json << ": " << msg;
    }
    EXPECT_EQ(error_of(minimal_env(), R"({"load_aware": {"latency_ms": 0, "error_rate": 1}})"), "");
}

TEST(ConfigValidation, ShippedExampleConfigHasFreeAndProTiers) {
    auto s = config::load(std::string(RLP_SOURCE_DIR) + "/config/ratelimit-proxy.json", {});
    auto rs = config::build_rule_set(s, nlohmann::json());
    ASSERT_NE(rs->find_tier("free"), nullptr);
    ASSERT_NE(rs->find_tier("pro"), nullptr);
    for (const char* name : {"burst", "daily_free", "daily_pro", "global", "per_ip"})
        EXPECT_NE(rs->find_policy(name), nullptr) << name;
    std::vector<const ratelimit_proxy::limit::policy*> applied;
    rs->select("pro", "POST", "/api/chat/completions", applied);
    bool costly = false;
    for (const auto* p : applied)
        costly = costly || p->cost > 1;
    EXPECT_TRUE(costly);
}

TEST(ConfigValidation, EveryVariableHasOneRowAndHelpText) {
    std::set<std::string_view> variables;
    std::set<std::string_view> paths;
    for (const auto& row : config::settings_table()) {
        EXPECT_TRUE(paths.insert(row.path).second) << row.path;
        if (row.variable.empty()) {
            EXPECT_FALSE(row.read_variable) << row.path;
            continue;
        }
        EXPECT_TRUE(variables.insert(row.variable).second) << row.variable;
        EXPECT_TRUE(row.read_variable) << row.variable;
        EXPECT_FALSE(row.help.empty()) << row.variable;
    }
    EXPECT_EQ(variables.size(), 27u);
}

TEST(ConfigValidation, LabelsComeFromTheTable) {
    EXPECT_EQ(config::label_of("rate_limit.requests_per_minute"),
              "RATE_LIMIT (rate_limit.requests_per_minute)");
    EXPECT_EQ(config::label_of("server.max_header_bytes"), "server.max_header_bytes");
    EXPECT_EQ(config::label_of("registration.secret"), "REGISTRATION_SECRET (registration.secret)");
    EXPECT_EQ(config::label_of("policies.daily.limit"), "policies.daily.limit");
}

TEST(ConfigValidation, ValidatedSettingsCarryTheParsedListenAddresses) {
    auto env = minimal_env();
    env["BIND_ADDRESS"] = "[::1]:4000";
    env["ADMIN_BIND_ADDRESS"] = "*:4001";
    auto s = config::load(std::nullopt, env);
    EXPECT_EQ(s.server.listen, (config::host_port{"::1", 4000}));
    EXPECT_EQ(s.admin.listen, (config::host_port{"*", 4001}));
    EXPECT_EQ(config::load(std::nullopt, minimal_env()).server.listen,
              (config::host_port{"127.0.0.1", 3000}));
}

TEST(ConfigValidation, BadPortsAreConfigErrorsWithTheirText) {
    auto env = minimal_env();
    env["BIND_ADDRESS"] = "127.0.0.1:99999999999999999999";
    EXPECT_EQ(error_of(env),
              "BIND_ADDRESS (server.bind_address): invalid port in "
              "\"127.0.0.1:99999999999999999999\"");
    env = minimal_env();
    env["ADMIN_BIND_ADDRESS"] = ":3001";
    EXPECT_EQ(error_of(env),
              "ADMIN_BIND_ADDRESS (admin.bind_address): expected host:port, got \":3001\"");
}

TEST(ConfigValidation, ConcurrencyLeaseDefaultsToAMinuteAndRefusesTinyValues) {
    auto env = minimal_env();
    EXPECT_EQ(config::load(std::nullopt, env).rate_limit.concurrency_lease.count(), 60000);
    auto s = config::parse_json(R"({"rate_limit": {"concurrency_lease_ms": 1500}})", "test.json");
    config::apply_environment(s, env);
    config::validate(s);
    EXPECT_EQ(s.rate_limit.concurrency_lease.count(), 1500);
    EXPECT_NE(error_of(env, R"({"rate_limit": {"concurrency_lease_ms": 100}})")
                  .find("rate_limit.concurrency_lease_ms"),
              std::string::npos);
}

TEST(ConfigValidation, BudgetSettingsHaveDefaultsAndComeFromTheFileOnly) {
    auto s = config::load(std::nullopt, minimal_env());
    EXPECT_EQ(s.budget.default_max_output_tokens, 4096);
    EXPECT_EQ(s.budget.max_body_bytes, 8u * 1024 * 1024);
    EXPECT_EQ(s.budget.hold_time, std::chrono::milliseconds(900000));
    auto f = config::parse_json(R"({"budget": {"default_max_output_tokens": 1000,
                                               "max_body_bytes": 2048, "hold_time_ms": 5000}})",
                                "test.json");
    EXPECT_EQ(f.budget.default_max_output_tokens, 1000);
    EXPECT_EQ(f.budget.max_body_bytes, 2048u);
    EXPECT_EQ(f.budget.hold_time, std::chrono::milliseconds(5000));
    for (const auto& row : config::settings_table())
        if (row.path.starts_with("budget.") || row.path == "pricing")
            EXPECT_TRUE(row.variable.empty()) << row.path;
}

TEST(ConfigValidation, BudgetSettingsOutOfRangeAreNamed) {
    const std::pair<const char*, const char*> cases[] = {
        {R"({"budget": {"default_max_output_tokens": 0}})", "budget.default_max_output_tokens"},
        {R"({"budget": {"default_max_output_tokens": 10000001}})",
         "budget.default_max_output_tokens"},
        {R"({"budget": {"default_max_output_tokens": -5}})", "budget.default_max_output_tokens"},
        {R"({"budget": {"default_max_output_tokens": 1.5}})", "budget.default_max_output_tokens"},
        {R"({"budget": {"max_body_bytes": 1023}})", "budget.max_body_bytes"},
        {R"({"budget": {"max_body_bytes": 67108865}})", "budget.max_body_bytes"},
        {R"({"budget": {"hold_time_ms": 999}})", "budget.hold_time_ms"},
        {R"({"budget": {"hold": 1000}})", "budget.hold"},
    };
    for (auto [json, field] : cases) {
        auto msg = error_of(minimal_env(), std::string(json));
        EXPECT_EQ(msg.rfind(std::string(field) + ": ", 0), 0u) << json << ": " << msg;
    }
    EXPECT_EQ(error_of(minimal_env(), R"({"budget": {"default_max_output_tokens": 10000000,
                                                     "max_body_bytes": 67108864,
                                                     "hold_time_ms": 1000}})"),
              "");
}

TEST(ConfigValidation, BudgetPolicyErrorsNameThePolicyAndField) {
    auto msg = error_of(minimal_env(), R"({"policies": [
        {"name": "spend", "meter": "usd", "limit": 5, "window": "day"}]})");
    EXPECT_EQ(msg.rfind("policies.spend.meter: ", 0), 0u) << msg;
    msg = error_of(minimal_env(), R"({"policies": [
        {"name": "spend", "algorithm": "fixed_window", "meter": "usd", "limit": 5.0000000001,
         "window": "day"}]})");
    EXPECT_EQ(msg.rfind("policies.spend.limit: ", 0), 0u) << msg;
    EXPECT_EQ(error_of(minimal_env(), R"({"policies": [
        {"name": "spend", "algorithm": "fixed_window", "meter": "usd", "limit": 5,
         "window": "month"}],
        "pricing": {"gpt-4o": {"input": 2.5, "output": 10}}})"),
              "");
}
