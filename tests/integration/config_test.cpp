// Black-box tests of the daemon's command line and configuration handling.
#include <gtest/gtest.h>

#include <regex>

#include "beast_upstream.hpp"
#include "proxy_fixture.hpp"
#include "test_helpers.hpp"

using namespace rlp_test;
namespace http = boost::beast::http;

namespace {

class ConfigTest : public ::testing::Test {
  protected:
    // A complete, valid environment except for what a test overrides.
    env_list valid_env() const {
        return {{"TARGET_API_URL", "http://127.0.0.1:" + std::to_string(free_port()) + "/"},
                {"REDIS_URL", "redis://127.0.0.1:" + std::to_string(free_port())},
                {"BIND_ADDRESS", "127.0.0.1:" + std::to_string(free_port())},
                {"THREADS", "1"}};
    }
    static env_list with(env_list env, const std::string& key, const std::string& value) {
        env.emplace_back(key, value);
        return env;
    }
};

TEST_F(ConfigTest, ExitsWithCode2WhenRateLimitIsNotANumber) {
    auto r = run_proxy_to_exit({}, with(valid_env(), "RATE_LIMIT", "abc"));
    EXPECT_EQ(r.code, 2) << r.output;
    EXPECT_TRUE(contains(r.output, "RATE_LIMIT")) << r.output;
}

TEST_F(ConfigTest, ExitsWithCode2WhenBurstIsNotANumber) {
    auto r = run_proxy_to_exit({}, with(valid_env(), "BURST", "lots"));
    EXPECT_EQ(r.code, 2) << r.output;
    EXPECT_TRUE(contains(r.output, "BURST")) << r.output;
}

TEST_F(ConfigTest, ExitsWithCode2WhenTargetUrlIsNotHttp) {
    auto r = run_proxy_to_exit({}, with(valid_env(), "TARGET_API_URL", "ftp://x"));
    EXPECT_EQ(r.code, 2) << r.output;
    EXPECT_TRUE(contains(r.output, "TARGET_API_URL")) << r.output;
}

TEST_F(ConfigTest, ExitsWithCode2WhenTargetUrlIsMissing) {
    env_list env;
    for (auto& kv : valid_env())
        if (kv.first != "TARGET_API_URL")
            env.push_back(kv);
    auto r = run_proxy_to_exit({}, env);
    EXPECT_EQ(r.code, 2) << r.output;
    EXPECT_TRUE(contains(r.output, "TARGET_API_URL")) << r.output;
}

TEST_F(ConfigTest, ExitsWithCode2OnUnknownFieldInConfigFile) {
    std::string path = write_temp_file(
        "config.json", R"({"upstream":{"connect_timeout_ms":1000,"no_such_option":1}})");
    auto r = run_proxy_to_exit({"--config", path}, valid_env());
    EXPECT_EQ(r.code, 2) << r.output;
    EXPECT_TRUE(contains(r.output, "no_such_option")) << r.output;
}

TEST_F(ConfigTest, ExitsWithCode2OnUnknownSectionInConfigFile) {
    std::string path = write_temp_file("config.json", R"({"ratelimit":{"requests_per_minute":5}})");
    auto r = run_proxy_to_exit({"--config", path}, valid_env());
    EXPECT_EQ(r.code, 2) << r.output;
    EXPECT_TRUE(contains(r.output, "ratelimit")) << r.output;
}

TEST_F(ConfigTest, ExitsWithCode2OnConfigFileThatIsNotJson) {
    std::string path = write_temp_file("config.json", "upstream: {url: nope");
    auto r = run_proxy_to_exit({"--config", path}, valid_env());
    EXPECT_EQ(r.code, 2) << r.output;
    EXPECT_FALSE(r.output.empty());
}

TEST_F(ConfigTest, ExitsWithCode2WhenConfigFileIsMissing) {
    std::string path = temp_dir() + "/does-not-exist.json";
    auto r = run_proxy_to_exit({"--config", path}, valid_env());
    EXPECT_EQ(r.code, 2) << r.output;
    EXPECT_TRUE(contains(r.output, "does-not-exist.json")) << r.output;
}

TEST_F(ConfigTest, ExitsWithCode2OnWrongTypeInConfigFile) {
    std::string path =
        write_temp_file("config.json", R"({"rate_limit":{"requests_per_minute":"fast"}})");
    auto r = run_proxy_to_exit({"--config", path}, valid_env());
    EXPECT_EQ(r.code, 2) << r.output;
    EXPECT_TRUE(contains(r.output, "requests_per_minute")) << r.output;
}

TEST_F(ConfigTest, ExitsWithCode2OnUnknownOption) {
    auto r = run_proxy_to_exit({"--no-such-flag"}, valid_env());
    EXPECT_EQ(r.code, 2) << r.output;
    EXPECT_TRUE(contains(r.output, "--no-such-flag")) << r.output;
}

// One bad variable at a time: exit code 2 and a message that names it.
struct bad_variable {
    const char* name;
    const char* value;
};

void PrintTo(const bad_variable& v, std::ostream* os) {
    *os << v.name << "=" << v.value;
}

class InvalidVariableTest : public ConfigTest,
                            public ::testing::WithParamInterface<bad_variable> {};

TEST_P(InvalidVariableTest, ExitsWithCode2NamingTheVariable) {
    auto [name, value] = GetParam();
    auto r = run_proxy_to_exit({}, with(valid_env(), name, value));
    EXPECT_EQ(r.code, 2) << name << "=" << value << "\n" << r.output;
    EXPECT_TRUE(contains(r.output, name)) << r.output;
}

INSTANTIATE_TEST_SUITE_P(
    Config, InvalidVariableTest,
    ::testing::Values(bad_variable{"RATE_LIMIT", "abc"}, bad_variable{"RATE_LIMIT", "0"},
                      bad_variable{"RATE_LIMIT", "-5"}, bad_variable{"BURST", "-1"},
                      bad_variable{"TARGET_API_URL", "not a url"},
                      bad_variable{"TARGET_API_URL", "http://"},
                      bad_variable{"REDIS_URL", "http://127.0.0.1:6379"},
                      bad_variable{"BIND_ADDRESS", "nowhere"}, bad_variable{"THREADS", "many"},
                      bad_variable{"LOG_LEVEL", "chatty"},
                      bad_variable{"TARGET_CA_FILE", "/nonexistent/ca.pem"}),
    [](const ::testing::TestParamInfo<bad_variable>& info) {
        std::string n = std::string(info.param.name) + "_" + std::to_string(info.index);
        return n;
    });

TEST_F(ConfigTest, PrintsVersionAndExitsZero) {
    auto r = run_proxy_to_exit({"--version"}, {});
    EXPECT_EQ(r.code, 0) << r.output;
    EXPECT_TRUE(std::regex_search(r.output, std::regex(R"(\d+\.\d+\.\d+)"))) << r.output;
}

TEST_F(ConfigTest, PrintsHelpAndExitsZero) {
    auto r = run_proxy_to_exit({"--help"}, {});
    EXPECT_EQ(r.code, 0) << r.output;
    EXPECT_TRUE(contains(r.output, "--config")) << r.output;
    EXPECT_TRUE(contains(r.output, "TARGET_API_URL")) << r.output;
}

// Settings come from the file when the environment does not name them, and the environment
// wins over the file. The base fixture's Redis and upstream; each test starts its proxy itself,
// the first with nothing but a config file (no TARGET_API_URL, no REDIS_URL).
class ConfigLayeringTest : public proxy_fixture<beast_upstream> {};

TEST_F(ConfigLayeringTest, UsesConfigFileValuesWhenEnvironmentIsSilent) {
    std::string config = R"({"upstream":{"url":")" + upstream.url("/base") +
                         R"("},"rate_limit":{"requests_per_minute":7,"burst":4},"redis":{"url":")" +
                         redis.url() + R"("}})";
    proxy_process proxy({.config = config});
    auto token = register_token(proxy.port());
    auto r = http_get(proxy.port(), "/api/echo", bearer(token));
    ASSERT_EQ(r.status, 200u) << r.body;
    EXPECT_EQ(r.header("X-RateLimit-Limit"), "4");
    EXPECT_EQ(r.header("X-RateLimit-Remaining"), "3");
    ASSERT_EQ(upstream.request_count(), 1u);
    EXPECT_EQ(upstream.requests()[0].target, "/base/echo");
}

TEST_F(ConfigLayeringTest, EnvironmentOverridesConfigFile) {
    std::string config = R"({"upstream":{"url":"http://127.0.0.1:1/wrong"},)"
                         R"("rate_limit":{"requests_per_minute":100}})";
    proxy_process proxy({.target_url = upstream.url("/right"),
                         .redis_url = redis.url(),
                         .env = {{"RATE_LIMIT", "3"}},
                         .config = config});
    auto token = register_token(proxy.port());
    auto r = http_get(proxy.port(), "/api/echo", bearer(token));
    ASSERT_EQ(r.status, 200u) << r.body;
    // RATE_LIMIT=3 from the environment wins over the file's 100 (and BURST defaults to it).
    EXPECT_EQ(r.header("X-RateLimit-Limit"), "3") << r.headers_text();
    EXPECT_EQ(r.header("X-RateLimit-Remaining"), "2") << r.headers_text();
    ASSERT_EQ(upstream.request_count(), 1u);
    EXPECT_EQ(upstream.requests()[0].target, "/right/echo");
}

}  // namespace
