#include <gtest/gtest.h>

#include <fstream>

#include "ratelimit_proxy/config/config.hpp"

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
                                "FAIL_CLOSED"};
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
}
