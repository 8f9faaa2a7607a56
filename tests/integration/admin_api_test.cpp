// The admin API (ADMIN_BIND_ADDRESS, Bearer ADMIN_TOKEN) seen from an operator: authentication
// before anything else, validation that changes nothing, and changes made on one instance
// applied by another instance sharing the Redis within a second.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <atomic>
#include <functional>
#include <optional>
#include <set>
#include <thread>

#include "beast_upstream.hpp"
#include "payload.hpp"
#include "proxy_fixture.hpp"
#include "test_helpers.hpp"

using namespace rlp_test;
using namespace std::chrono_literals;
namespace http = boost::beast::http;
using json = nlohmann::json;

namespace {

// Two policies in one tier that is the default: every fresh token gets "base" (100/min).
constexpr const char* two_tier_config = R"({
    "policies": [
        {"name": "base", "algorithm": "token_bucket", "limit": 100, "window": "minute"},
        {"name": "hourly", "algorithm": "fixed_window", "limit": 1000, "window": "hour"}],
    "tiers": {"free": {"policies": ["base"]}, "pro": {"policies": ["base", "hourly"]}},
    "default_tier": "free"})";

struct instance {
    std::unique_ptr<proxy_process> proxy;
    std::uint16_t admin_port = 0;
    std::uint16_t port() const { return proxy->port(); }
};

// The base fixture's Redis and upstream; its instances are started here, several per test.
class AdminApiTest : public proxy_fixture<beast_upstream> {
  protected:
    const std::string admin_token = "adm_" + random_hex(20);

    instance start(const std::optional<std::string>& config = two_tier_config, env_list extra = {},
                   bool with_token = true) {
        instance i;
        i.admin_port = free_port();
        env_list env{{"ADMIN_BIND_ADDRESS", "127.0.0.1:" + std::to_string(i.admin_port)}};
        if (with_token)
            env.emplace_back("ADMIN_TOKEN", admin_token);
        env.insert(env.end(), extra.begin(), extra.end());
        i.proxy = std::make_unique<proxy_process>(
            proxy_options_for({.base_path = "/up", .env = std::move(env), .config = config}));
        if (with_token)
            EXPECT_TRUE(wait_for_port(i.admin_port, 5s)) << i.proxy->log();
        return i;
    }

    http_response admin(const instance& i, http::verb method, const std::string& target,
                        const std::optional<json>& body = std::nullopt) {
        header_list h{{"Authorization", "Bearer " + admin_token}};
        std::string text;
        if (body) {
            h.emplace_back("Content-Type", "application/json");
            text = body->dump();
        }
        return http_request(i.admin_port, method, target, h, text);
    }
    http_response admin_get(const instance& i, const std::string& target) {
        return admin(i, http::verb::get, target);
    }

    http_response call(const instance& i, const std::string& token,
                       const std::string& path = "/api/echo") {
        return http_get(i.port(), path, bearer(token));
    }

    // Polls `check` until it holds or `timeout` passes; returns the milliseconds it took.
    static std::optional<long long> within(std::chrono::milliseconds timeout,
                                           const std::function<bool()>& check) {
        const auto start = std::chrono::steady_clock::now();
        while (true) {
            if (check())
                return elapsed_ms(start);
            if (std::chrono::steady_clock::now() - start > timeout)
                return std::nullopt;
            std::this_thread::sleep_for(20ms);
        }
    }
};

TEST_F(AdminApiTest, EveryPathNeedsTheAdminTokenBeforeAnythingElse) {
    auto a = start();
    const std::vector<std::pair<http::verb, std::string>> calls = {
        {http::verb::get, "/admin/policies"},
        {http::verb::get, "/admin/policies/base"},
        {http::verb::put, "/admin/policies/base"},
        {http::verb::delete_, "/admin/policies/base"},
        {http::verb::get, "/admin/tiers"},
        {http::verb::get, "/admin/tokens"},
        {http::verb::delete_, "/admin/tokens/0123456789abcdef"},
        {http::verb::get, "/admin/buckets?policy=base&key=global"},
        {http::verb::put, "/admin/override"},
        {http::verb::put, "/admin/registration"},
        {http::verb::get, "/admin/stats"},
        {http::verb::get, "/admin/no-such-thing"},
        {http::verb::post, "/nowhere"},
        {http::verb::get, "/"},
    };
    const std::vector<header_list> wrong = {
        {},
        {{"Authorization", "Bearer wrong-" + admin_token}},
        {{"Authorization", "Bearer " + admin_token.substr(0, admin_token.size() - 1)}},
        {{"Authorization", "Basic " + admin_token}},
        {{"Authorization", admin_token}},
    };
    const std::string body = R"({"algorithm":"token_bucket","limit":1,"window":"minute"})";
    for (const auto& [method, target] : calls) {
        for (const auto& h : wrong) {
            header_list with_type = h;
            with_type.emplace_back("Content-Type", "application/json");
            auto r = http_request(a.admin_port, method, target, with_type, body);
            EXPECT_EQ(r.status, 401u) << http::to_string(method) << " " << target << ": " << r.body;
            EXPECT_EQ(r.header("Content-Type"), "application/json");
            EXPECT_EQ(r.json().value("error", ""), "unauthorized");
        }
    }
    // Nothing was changed by any of them.
    EXPECT_EQ(redis.command({"GET", "{rlp}:admin:version"}), "(nil)");
    auto p = admin_get(a, "/admin/policies/base");
    ASSERT_EQ(p.status, 200u) << p.body;
    EXPECT_EQ(p.json()["limit"], 100);
    // With the token, an unknown path is a plain 404.
    EXPECT_EQ(admin_get(a, "/admin/no-such-thing").status, 404u);
}

TEST_F(AdminApiTest, InvalidPolicyIsRejectedNamingTheFieldAndChangesNothing) {
    auto a = start();
    auto bad = admin(a, http::verb::put, "/admin/policies/base",
                     json{{"algorithm", "token_bucket"}, {"limit", -5}, {"window", "minute"}});
    ASSERT_EQ(bad.status, 400u) << bad.body;
    EXPECT_EQ(bad.json()["error"], "invalid");
    EXPECT_TRUE(contains(bad.json()["field"].get<std::string>(), "limit")) << bad.body;

    auto unknown = admin(
        a, http::verb::put, "/admin/policies/base",
        json{{"algorithm", "token_bucket"}, {"limit", 5}, {"window", "minute"}, {"colour", "red"}});
    ASSERT_EQ(unknown.status, 400u) << unknown.body;
    EXPECT_TRUE(contains(unknown.json()["field"].get<std::string>(), "colour")) << unknown.body;

    auto not_json = http_request(
        a.admin_port, http::verb::put, "/admin/policies/base",
        {{"Authorization", "Bearer " + admin_token}, {"Content-Type", "application/json"}},
        "{\"limit\": ");
    EXPECT_EQ(not_json.status, 400u);
    EXPECT_EQ(not_json.json()["error"], "invalid_json");
    auto form = http_request(a.admin_port, http::verb::put, "/admin/policies/base",
                             {{"Authorization", "Bearer " + admin_token},
                              {"Content-Type", "application/x-www-form-urlencoded"}},
                             "limit=5");
    EXPECT_EQ(form.status, 415u) << form.body;
    auto method = admin(a, http::verb::post, "/admin/policies/base", json::object());
    EXPECT_EQ(method.status, 405u);
    EXPECT_FALSE(method.header("Allow").empty());

    // A tier naming a policy that does not exist: the whole change is refused.
    auto tier = admin(a, http::verb::put, "/admin/tiers/free", json{{"policies", {"nope"}}});
    ASSERT_EQ(tier.status, 400u) << tier.body;
    EXPECT_TRUE(contains(tier.json()["field"].get<std::string>(), "tiers.free")) << tier.body;

    auto after = admin_get(a, "/admin/policies/base");
    ASSERT_EQ(after.status, 200u);
    EXPECT_EQ(after.json()["limit"], 100);
    EXPECT_EQ(after.json()["source"], "config");
    EXPECT_EQ(admin_get(a, "/admin/tiers/free").json()["policies"], json({"base"}));
    EXPECT_EQ(redis.command({"GET", "{rlp}:admin:version"}), "(nil)");
}

TEST_F(AdminApiTest, PolicyAndTierChangeReachTheSecondInstanceWithinOneSecond) {
    auto a = start();
    auto b = start();
    auto token = register_token(b.port());
    auto before = call(b, token);
    ASSERT_EQ(before.status, 200u) << before.body;
    ASSERT_EQ(header_integer(before, "X-RateLimit-Limit"), 100) << before.headers_text();

    auto put = admin(a, http::verb::put, "/admin/policies/strict",
                     json{{"algorithm", "token_bucket"}, {"limit", 5}, {"window", "minute"}});
    ASSERT_EQ(put.status, 201u) << put.body;
    EXPECT_EQ(put.json()["source"], "admin");
    auto seen = within(1000ms, [&] {
        auto list = admin_get(b, "/admin/policies").json();
        for (const auto& p : list["policies"])
            if (p["name"] == "strict")
                return p["source"] == "admin" && p["limit"] == 5;
        return false;
    });
    EXPECT_TRUE(seen.has_value()) << "instance 2 never listed the new policy";

    auto tier =
        admin(a, http::verb::put, "/admin/tiers/free", json{{"policies", {"base", "strict"}}});
    ASSERT_EQ(tier.status, 200u) << tier.body;
    auto limited = within(1000ms, [&] {
        auto r = call(b, token);
        return r.status == 200 && header_integer(r, "X-RateLimit-Limit") == 5;
    });
    EXPECT_TRUE(limited.has_value()) << "instance 2 never applied the new tier";
    auto tiers = admin_get(b, "/admin/tiers").json();
    EXPECT_EQ(tiers["default_tier"], "free");
    // The first instance applied its own change at once.
    auto own = call(a, token);
    EXPECT_EQ(header_integer(own, "X-RateLimit-Limit"), 5) << own.headers_text();
}

TEST_F(AdminApiTest, DeletingAPolicyInUseOrTheDefaultTierIsAConflict) {
    auto a = start();
    auto in_use = admin(a, http::verb::delete_, "/admin/policies/base");
    EXPECT_EQ(in_use.status, 409u) << in_use.body;
    auto default_tier = admin(a, http::verb::delete_, "/admin/tiers/free");
    EXPECT_EQ(default_tier.status, 409u) << default_tier.body;
    EXPECT_EQ(admin(a, http::verb::delete_, "/admin/policies/missing").status, 404u);
    EXPECT_EQ(admin_get(a, "/admin/tiers/missing").status, 404u);

    // Out of every tier, it can go; then the "pro" tier itself, once "free" is the default.
    ASSERT_EQ(admin(a, http::verb::delete_, "/admin/tiers/pro").status, 200u);
    auto gone = admin(a, http::verb::delete_, "/admin/policies/hourly");
    EXPECT_EQ(gone.status, 200u) << gone.body;
    EXPECT_EQ(admin_get(a, "/admin/policies/hourly").status, 404u);
    // A new default tier.
    auto pro = admin(a, http::verb::put, "/admin/tiers/gold",
                     json{{"policies", {"base"}}, {"default", true}});
    ASSERT_EQ(pro.status, 201u) << pro.body;
    EXPECT_EQ(admin_get(a, "/admin/tiers").json()["default_tier"], "gold");
    EXPECT_EQ(admin(a, http::verb::delete_, "/admin/tiers/free").status, 200u);
}

TEST_F(AdminApiTest, RevokedTokenIsRefusedByTheOtherInstanceWithinOneSecond) {
    auto a = start();
    auto b = start();
    auto token = register_token(a.port());
    ASSERT_EQ(call(b, token).status, 200u);  // instance 2 has it cached now
    ASSERT_EQ(call(b, token).status, 200u);

    auto r = admin(a, http::verb::delete_, "/admin/tokens/" + token_id(token));
    ASSERT_EQ(r.status, 200u) << r.body;
    EXPECT_EQ(r.json()["revoked"], token_id(token));
    EXPECT_EQ(r.json()["propagated"], true);
    auto refused = within(1000ms, [&] { return call(b, token).status == 401; });
    EXPECT_TRUE(refused.has_value()) << "instance 2 still accepts the revoked token";
    EXPECT_EQ(call(a, token).status, 401u);
    EXPECT_EQ(admin_get(a, "/admin/tokens/" + token_id(token)).status, 404u);
    EXPECT_EQ(admin(a, http::verb::delete_, "/admin/tokens/" + token_id(token)).status, 404u);
}

TEST_F(AdminApiTest, TokenListShowsIdsAndTiersButNeverTheToken) {
    auto a = start();
    std::vector<std::string> tokens;
    for (int i = 0; i < 5; ++i)
        tokens.push_back(register_token(a.port()));
    ASSERT_EQ(call(a, tokens[0]).status, 200u);

    // Page by page with a small page size, following the cursor.
    std::set<std::string> ids;
    std::string all_pages;
    std::string cursor = "0";
    for (int page = 0; page < 50; ++page) {
        auto r = admin_get(a, "/admin/tokens?count=2&cursor=" + cursor);
        ASSERT_EQ(r.status, 200u) << r.body;
        all_pages += r.body;
        auto j = r.json();
        for (const auto& t : j["tokens"]) {
            ids.insert(t["id"].get<std::string>());
            EXPECT_EQ(t["tier"], "free");
            EXPECT_TRUE(t["created_at"].is_number_integer()) << t.dump();
            EXPECT_FALSE(t.contains("digest"));
        }
        cursor = j["cursor"].get<std::string>();
        if (j["complete"] == true)
            break;
    }
    EXPECT_EQ(cursor, "0");
    for (const auto& t : tokens) {
        EXPECT_TRUE(ids.contains(token_id(t))) << token_id(t);
        EXPECT_FALSE(contains(all_pages, t));
        EXPECT_FALSE(contains(all_pages, sha256_hex(t)));
        EXPECT_FALSE(contains(all_pages, t.substr(4, 12)));
    }

    auto one = admin_get(a, "/admin/tokens/" + token_id(tokens[0]));
    ASSERT_EQ(one.status, 200u) << one.body;
    EXPECT_EQ(one.json()["id"], token_id(tokens[0]));
    EXPECT_FALSE(contains(one.body, tokens[0]));
    EXPECT_FALSE(contains(one.body, sha256_hex(tokens[0])));
    EXPECT_EQ(admin_get(a, "/admin/tokens/not-an-id").status, 400u);
    EXPECT_EQ(admin_get(a, "/admin/tokens/0000000000000000").status, 404u);
}

TEST_F(AdminApiTest, PatchedTierAndOverridesApplyOnEveryInstance) {
    auto a = start();
    auto b = start();
    auto token = register_token(a.port());
    ASSERT_EQ(header_integer(call(b, token), "X-RateLimit-Limit"), 100);
    const std::string path = "/admin/tokens/" + token_id(token);

    auto bad_tier = admin(a, http::verb::patch, path, json{{"tier", "platinum"}});
    EXPECT_EQ(bad_tier.status, 400u);
    EXPECT_EQ(bad_tier.json()["field"], "tier");
    auto bad_policy =
        admin(a, http::verb::patch, path, json{{"overrides", {{"nope", {{"limit", 5}}}}}});
    EXPECT_EQ(bad_policy.status, 400u) << bad_policy.body;
    EXPECT_EQ(bad_policy.json()["field"], "overrides.nope");
    auto bad_field = admin(a, http::verb::patch, path, json{{"owner", "me"}});
    EXPECT_EQ(bad_field.status, 400u);
    EXPECT_EQ(bad_field.json()["field"], "owner");

    auto ok = admin(a, http::verb::patch, path,
                    json{{"tier", "pro"}, {"overrides", {{"base", {{"limit", 7}}}}}});
    ASSERT_EQ(ok.status, 200u) << ok.body;
    EXPECT_EQ(ok.json()["tier"], "pro");
    EXPECT_EQ(ok.json()["overrides"]["base"]["limit"], 7);
    // Instance 2 had the token cached with its old tier: the version bump drops that.
    auto applied = within(1000ms, [&] {
        auto r = call(b, token);
        return r.status == 200 && contains(r.header("RateLimit-Policy"), "\"hourly\"") &&
               contains(r.header("RateLimit-Policy"), "\"base\";q=7");
    });
    EXPECT_TRUE(applied.has_value()) << call(b, token).headers_text();
}

TEST_F(AdminApiTest, BucketCanBeShownAndReset) {
    auto a = start(R"({"policies": [
        {"name": "perminute", "algorithm": "fixed_window", "limit": 3, "window": "minute"},
        {"name": "smooth", "algorithm": "gcra", "limit": 100, "window": "minute"}]})");
    auto token = register_token(a.port());
    ASSERT_EQ(call(a, token).status, 200u);
    ASSERT_EQ(call(a, token).status, 200u);
    const std::string query = "?policy=perminute&key=" + token_id(token);

    auto shown = admin_get(a, "/admin/buckets" + query);
    ASSERT_EQ(shown.status, 200u) << shown.body;
    auto j = shown.json();
    EXPECT_EQ(j["key"], "{rlp}:rl:perminute:" + token_id(token));
    EXPECT_EQ(j["algorithm"], "fixed_window");
    EXPECT_EQ(j["exists"], true);
    EXPECT_EQ(j["state"]["c"], "2") << j.dump();
    EXPECT_GT(j["ttl_ms"].get<long long>(), 0);
    auto gcra = admin_get(a, "/admin/buckets?policy=smooth&key=" + token_id(token));
    ASSERT_EQ(gcra.status, 200u) << gcra.body;
    EXPECT_EQ(gcra.json()["type"], "string") << gcra.body;

    auto reset = admin(a, http::verb::delete_, "/admin/buckets" + query);
    ASSERT_EQ(reset.status, 200u) << reset.body;
    EXPECT_EQ(reset.json()["deleted"], true);
    EXPECT_EQ(admin_get(a, "/admin/buckets" + query).json()["exists"], false);
    auto after = call(a, token);
    EXPECT_EQ(header_integer(after, "X-RateLimit-Remaining"), 2) << after.headers_text();

    EXPECT_EQ(admin_get(a, "/admin/buckets?policy=nope&key=global").status, 404u);
    auto no_key = admin_get(a, "/admin/buckets?policy=perminute");
    EXPECT_EQ(no_key.status, 400u);
    EXPECT_EQ(no_key.json()["field"], "key");
}

TEST_F(AdminApiTest, OverrideFactorShowsInTheLimitOfTheOtherInstanceWithinOneSecond) {
    auto a = start();
    auto b = start();
    auto token = register_token(a.port());
    ASSERT_EQ(header_integer(call(b, token), "X-RateLimit-Limit"), 100);

    EXPECT_EQ(admin(a, http::verb::put, "/admin/override", json{{"factor", 0}}).status, 400u);
    auto on = admin(a, http::verb::put, "/admin/override", json{{"factor", 0.5}});
    ASSERT_EQ(on.status, 200u) << on.body;
    EXPECT_EQ(on.json()["active"], true);
    auto halved =
        within(1000ms, [&] { return header_integer(call(b, token), "X-RateLimit-Limit") == 50; });
    EXPECT_TRUE(halved.has_value()) << call(b, token).headers_text();
    EXPECT_EQ(admin_get(b, "/admin/override").json()["active"], true);

    ASSERT_EQ(admin(a, http::verb::delete_, "/admin/override").status, 200u);
    auto lifted =
        within(1000ms, [&] { return header_integer(call(b, token), "X-RateLimit-Limit") == 100; });
    EXPECT_TRUE(lifted.has_value());
}

TEST_F(AdminApiTest, ClosedRegistrationIsRefusedByTheOtherInstance) {
    auto a = start();
    auto b = start();
    ASSERT_NO_THROW(register_token(b.port()));
    auto closed = admin(a, http::verb::put, "/admin/registration", json{{"mode", "closed"}});
    ASSERT_EQ(closed.status, 200u) << closed.body;
    EXPECT_EQ(closed.json()["mode"], "closed");
    auto refused = within(1000ms, [&] {
        return http_request(b.port(), http::verb::post, "/register").status == 403;
    });
    EXPECT_TRUE(refused.has_value());

    const std::string secret = "reg-" + random_hex(12);
    auto with_secret = admin(a, http::verb::put, "/admin/registration",
                             json{{"mode", "secret"}, {"secret", secret}});
    ASSERT_EQ(with_secret.status, 200u) << with_secret.body;
    EXPECT_FALSE(contains(with_secret.body, secret));
    auto shown = admin_get(b, "/admin/registration");
    EXPECT_FALSE(contains(shown.body, secret));
    EXPECT_EQ(admin(a, http::verb::put, "/admin/registration", json{{"mode", "sometimes"}}).status,
              400u);
}

TEST_F(AdminApiTest, AccessListsShadowModeAndStatsRoundTrip) {
    auto a = start();
    auto token = register_token(a.port());
    ASSERT_EQ(call(a, token).status, 200u);

    auto bad = admin(a, http::verb::put, "/admin/access",
                     json{{"block", {{"tokens", json::array()}, {"cidrs", {"10.0.0.0/99"}}}}});
    EXPECT_EQ(bad.status, 400u) << bad.body;
    auto block = admin(a, http::verb::put, "/admin/access",
                       json{{"block", {{"tokens", {token_id(token)}}, {"cidrs", json::array()}}}});
    ASSERT_EQ(block.status, 200u) << block.body;
    EXPECT_EQ(call(a, token).status, 403u);
    EXPECT_EQ(admin_get(a, "/admin/access").json()["block"]["tokens"], json({token_id(token)}));

    EXPECT_EQ(admin_get(a, "/admin/shadow").json()["enabled"], false);
    ASSERT_EQ(admin(a, http::verb::put, "/admin/shadow", json{{"enabled", true}}).status, 200u);
    EXPECT_EQ(admin_get(a, "/admin/shadow").json()["enabled"], true);
    EXPECT_EQ(admin(a, http::verb::put, "/admin/shadow", json{{"enabled", "yes"}}).status, 400u);

    auto stats = admin_get(a, "/admin/stats");
    ASSERT_EQ(stats.status, 200u) << stats.body;
    auto j = stats.json();
    EXPECT_GE(j["version"].get<long long>(), 2);
    ASSERT_TRUE(j["policies"].is_array());
    EXPECT_FALSE(j["policies"].empty());
    EXPECT_TRUE(j["policies"][0].contains("allowed"));
}

TEST_F(AdminApiTest, AdminApiIsOffWithoutAnAdminToken) {
    auto a = start(two_tier_config, {}, false);
    ASSERT_TRUE(wait_for_port(a.port(), 2s));
    EXPECT_THROW(admin_get(a, "/admin/policies"), std::exception);
    EXPECT_FALSE(wait_for_port(a.admin_port, 300ms));
    EXPECT_TRUE(contains(a.proxy->log(), "admin API disabled: ADMIN_TOKEN not set"))
        << a.proxy->log();
    // The proxy itself works.
    auto token = register_token(a.port());
    EXPECT_EQ(call(a, token).status, 200u);
}

TEST_F(AdminApiTest, ConcurrentChangesOnTwoInstancesAreAllKept) {
    auto a = start();
    auto b = start();
    constexpr int per_instance = 8;
    std::atomic<int> failures{0};
    auto writer = [&](const instance& i, const std::string& prefix) {
        for (int n = 0; n < per_instance; ++n) {
            const json body{{"algorithm", "token_bucket"}, {"limit", 10 + n}, {"window", "minute"}};
            unsigned status = 0;
            // 409 means "the state kept moving under this request": the caller tries again.
            for (int attempt = 0; attempt < 5 && (status == 0 || status == 409); ++attempt)
                status =
                    admin(i, http::verb::put, "/admin/policies/" + prefix + std::to_string(n), body)
                        .status;
            if (status != 201)
                ++failures;
        }
    };
    std::thread t1(writer, std::cref(a), "from_a_");
    std::thread t2(writer, std::cref(b), "from_b_");
    t1.join();
    t2.join();
    EXPECT_EQ(failures.load(), 0);
    auto all = within(1000ms, [&] {
        std::set<std::string> names;
        for (const auto* i : {&a, &b}) {
            const json list = admin_get(*i, "/admin/policies").json();
            for (const auto& p : list["policies"])
                names.insert(p["name"].get<std::string>() + "@" + std::to_string(i->admin_port));
        }
        return names.size() == 2 * (2 * per_instance + 2);
    });
    EXPECT_TRUE(all.has_value()) << admin_get(a, "/admin/policies").body << "\n"
                                 << admin_get(b, "/admin/policies").body;
    EXPECT_EQ(redis.command({"GET", "{rlp}:admin:version"}), std::to_string(2 * per_instance));
}

TEST_F(AdminApiTest, ChangesSurviveARestartOfTheInstance) {
    {
        auto a = start();
        ASSERT_EQ(admin(a, http::verb::put, "/admin/policies/strict",
                        json{{"algorithm", "gcra"}, {"limit", 9}, {"window", "minute"}})
                      .status,
                  201u);
    }
    auto b = start();
    auto loaded =
        within(2000ms, [&] { return admin_get(b, "/admin/policies/strict").status == 200; });
    EXPECT_TRUE(loaded.has_value());
}

}  // namespace
