#include <gtest/gtest.h>

#include <string>

#include "ratelimit_proxy/config/config.hpp"

namespace config = ratelimit_proxy::config;

namespace {

config::environment env_with(std::string name, std::string value) {
    return {{"TARGET_API_URL", "https://api.example.com/v1"}, {std::move(name), std::move(value)}};
}

}  // namespace

TEST(ObservabilitySettings, DefaultsAreTextLogsAndExposedLimits) {
    auto s = config::load(std::nullopt, {{"TARGET_API_URL", "https://api.example.com/v1"}});
    EXPECT_EQ(s.log_format, "text");
    EXPECT_TRUE(s.expose_limit_details);
}

TEST(ObservabilitySettings, LogFormatIsTextOrJson) {
    EXPECT_EQ(config::load(std::nullopt, env_with("LOG_FORMAT", "json")).log_format, "json");
    try {
        config::load(std::nullopt, env_with("LOG_FORMAT", "xml"));
        FAIL() << "LOG_FORMAT=xml was accepted";
    } catch (const config::config_error& e) {
        EXPECT_EQ(e.field(), "LOG_FORMAT (log_format)");
        EXPECT_NE(std::string(e.what()).find("expected text or json"), std::string::npos);
    }
}

TEST(ObservabilitySettings, LimitDetailsCanBeHiddenFromFileOrEnvironment) {
    EXPECT_FALSE(
        config::load(std::nullopt, env_with("EXPOSE_LIMIT_DETAILS", "false")).expose_limit_details);
    auto s = config::parse_json(R"({"upstream": {"url": "https://api.example.com"},
                                    "log_format": "json", "errors": {"expose_limits": false}})",
                                "test.json");
    EXPECT_EQ(s.log_format, "json");
    EXPECT_FALSE(s.expose_limit_details);
    EXPECT_THROW(config::load(std::nullopt, env_with("EXPOSE_LIMIT_DETAILS", "maybe")),
                 config::config_error);
}
