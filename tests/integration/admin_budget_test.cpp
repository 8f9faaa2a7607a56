// The admin API's prices, budgets and usage export against a real redis-server and daemon:
// prices changed on one instance reach another through the overlay; a budget's state is what
// settle.lua keeps, credited and reset per key; the usage export reads the usage hashes.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <functional>
#include <optional>
#include <thread>

#include "beast_upstream.hpp"
#include "payload.hpp"
#include "proxy_fixture.hpp"
#include "ratelimit_proxy/limit/keys.hpp"
#include "ratelimit_proxy/limit/lua_scripts.hpp"
#include "test_helpers.hpp"

using namespace rlp_test;
using namespace std::chrono_literals;
namespace http = boost::beast::http;
namespace limit = ratelimit_proxy::limit;
using json = nlohmann::json;

namespace {

constexpr const char* budget_config = R"({
    "policies": [
        {"name": "base", "limit": 100, "window": "minute"},
        {"name": "spend", "algorithm": "fixed_window", "meter": "usd", "limit": 10,
         "window": "month"},
        {"name": "toks", "algorithm": "token_bucket", "meter": "tokens", "limit": 100000,
         "window": "minute"},
        {"name": "fleet", "algorithm": "fixed_window", "meter": "tokens", "limit": 50000,
         "window": "day", "key": "global"}],
    "pricing": {"gpt-4o": {"input": 2.5, "output": 10},
                "gpt-4o-mini": {"input": 0.15, "cached_input": 0.075, "output": 0.6}}})";

class AdminBudgetTest : public proxy_fixture<beast_upstream> {
  protected:
    const std::string admin_token = "adm_" + random_hex(20);

    struct instance {
        std::unique_ptr<proxy_process> proxy;
        std::uint16_t admin_port = 0;
    };

    instance start() {
        instance i;
        i.admin_port = free_port();
        env_list env{{"ADMIN_BIND_ADDRESS", "127.0.0.1:" + std::to_string(i.admin_port)},
                     {"ADMIN_TOKEN", admin_token}};
        i.proxy = std::make_unique<proxy_process>(proxy_options_for(
            {.base_path = "/up", .env = std::move(env), .config = std::string(budget_config)}));
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

    static bool within(std::chrono::milliseconds timeout, const std::function<bool()>& check) {
        const auto end = std::chrono::steady_clock::now() + timeout;
        while (std::chrono::steady_clock::now() < end) {
            if (check())
                return true;
            std::this_thread::sleep_for(20ms);
        }
        return check();
    }

    // Charges `amount` to a fixed window budget's current window as a settled request does.
    void spend(const std::string& key, const std::string& limit, const std::string& amount,
               const std::string& flags) {
        const auto r =
            redis.command({"EVAL", std::string(ratelimit_proxy::lua::settle), "1", key, "settle",
                           "", "1", "hold-1", "fw", limit, "86400", "0", amount, amount, flags});
        ASSERT_EQ(r.find("ERR"), std::string::npos) << r;
    }
};

}  // namespace

TEST_F(AdminBudgetTest, PricesAreListedChangedAndDeletedOnEveryInstance) {
    auto a = start();
    auto b = start();
    auto list = admin(a, http::verb::get, "/admin/prices");
    ASSERT_EQ(list.status, 200u) << list.body;
    EXPECT_EQ(list.json()["prices"]["gpt-4o"],
              json::parse(R"({"input": 2.5, "cached_input": 2.5, "cache_write": 2.5,
                              "output": 10})"));
    EXPECT_EQ(list.json()["prices"]["gpt-4o-mini"]["cached_input"], 0.075);

    auto put = admin(a, http::verb::put, "/admin/prices/claude-*",
                     json{{"input", 3}, {"output", 15}, {"cache_write", 3.75}});
    ASSERT_EQ(put.status, 201u) << put.body;
    EXPECT_EQ(put.json()["source"], "admin");
    EXPECT_EQ(put.json()["cache_write"], 3.75);
    EXPECT_TRUE(within(1500ms, [&] {
        auto got = admin(b, http::verb::get, "/admin/prices/claude-*");
        return got.status == 200u && got.json()["output"] == 15;
    })) << "the other instance never saw the new price";
    auto replaced =
        admin(a, http::verb::put, "/admin/prices/claude-*", json{{"input", 3}, {"output", 16}});
    EXPECT_EQ(replaced.status, 200u) << replaced.body;

    // Invalid: answered 400 naming the field, nothing changed.
    auto bad = admin(a, http::verb::put, "/admin/prices/o1", json{{"input", 15}});
    EXPECT_EQ(bad.status, 400u);
    EXPECT_EQ(bad.json()["field"], "pricing.o1.output") << bad.body;
    auto bad_name =
        admin(a, http::verb::put, "/admin/prices/o*1", json{{"input", 1}, {"output", 1}});
    EXPECT_EQ(bad_name.status, 400u);
    EXPECT_EQ(bad_name.json()["field"], "model") << bad_name.body;
    EXPECT_EQ(admin(a, http::verb::get, "/admin/prices/o1").status, 404u);

    // A price of the config file can be deleted too; everywhere.
    auto del = admin(a, http::verb::delete_, "/admin/prices/gpt-4o");
    ASSERT_EQ(del.status, 200u) << del.body;
    EXPECT_EQ(admin(a, http::verb::get, "/admin/prices/gpt-4o").status, 404u);
    EXPECT_EQ(admin(a, http::verb::delete_, "/admin/prices/gpt-4o").status, 404u);
    EXPECT_TRUE(within(
        1500ms, [&] { return admin(b, http::verb::get, "/admin/prices/gpt-4o").status == 404u; }));
    EXPECT_EQ(admin(b, http::verb::get, "/admin/prices/gpt-4o-mini").status, 200u);
}

TEST_F(AdminBudgetTest, TheWholeTableIsReplacedOrNothingChanges) {
    auto a = start();
    auto bad = admin(a, http::verb::put, "/admin/prices",
                     json::parse(R"({"prices": {"o1": {"input": 15, "output": 60},
                                                "o3": {"input": -1, "output": 1}}})"));
    EXPECT_EQ(bad.status, 400u);
    EXPECT_EQ(bad.json()["field"], "pricing.o3.input") << bad.body;
    EXPECT_EQ(admin(a, http::verb::get, "/admin/prices").json()["prices"].size(), 2u);

    auto put = admin(a, http::verb::put, "/admin/prices",
                     json::parse(R"({"prices": {"o1": {"input": 15, "output": 60}}})"));
    ASSERT_EQ(put.status, 200u) << put.body;
    EXPECT_EQ(put.json()["prices"], json::parse(R"({"o1": {"input": 15, "cached_input": 15,
                                                         "cache_write": 15, "output": 60}})"));
    auto list = admin(a, http::verb::get, "/admin/prices").json()["prices"];
    EXPECT_EQ(list.size(), 1u) << list.dump();
    EXPECT_TRUE(list.contains("o1"));
    EXPECT_EQ(admin(a, http::verb::put, "/admin/prices", json{{"o1", json::object()}}).status,
              400u);
}

TEST_F(AdminBudgetTest, UsageExportReadsThePerTokenDailyRecords) {
    auto a = start();
    const std::string t1 = "0123456789abcdef", t2 = "fedcba9876543210";
    auto record = [&](const std::string& token, const std::string& day, const std::string& model,
                      std::initializer_list<std::pair<const char*, const char*>> fields) {
        const auto key = limit::usage_key("rlp", token, day);
        for (const auto& [what, n] : fields)
            redis.command({"HINCRBY", key, model + "|" + what, n});
        redis.command({"SADD", limit::usage_days_key("rlp", day), token});
    };
    record(t2, "2025-03-01", "gpt-4o",
           {{"requests", "2"}, {"input", "1000"}, {"output", "200"}, {"nano_usd", "4500000"}});
    record(t1, "2025-03-01", "gpt-4o-mini",
           {{"requests", "1"},
            {"input", "10"},
            {"cached_input", "5"},
            {"output", "7"},
            {"nano_usd", "6570"},
            {"estimated", "1"}});
    record(t1, "2025-03-01", "gpt-4o", {{"requests", "1"}, {"output", "3"}});
    record(t1, "2025-03-02", "gpt-4o", {{"requests", "4"}, {"nano_usd", "1500000000"}});
    record(t1, "2025-04-01", "gpt-4o", {{"requests", "9"}});  // outside the range

    auto r = admin(a, http::verb::get, "/admin/usage?from=2025-03-01&to=2025-03-31");
    ASSERT_EQ(r.status, 200u) << r.body;
    const auto rows = r.json()["usage"];
    ASSERT_EQ(rows.size(), 4u) << rows.dump();
    auto at = [&](std::size_t i) {
        return rows[i]["day"].get<std::string>() + " " + rows[i]["token"].get<std::string>() + " " +
               rows[i]["model"].get<std::string>();
    };
    EXPECT_EQ(at(0), "2025-03-01 " + t1 + " gpt-4o");
    EXPECT_EQ(at(1), "2025-03-01 " + t1 + " gpt-4o-mini");
    EXPECT_EQ(at(2), "2025-03-01 " + t2 + " gpt-4o");
    EXPECT_EQ(at(3), "2025-03-02 " + t1 + " gpt-4o");
    EXPECT_EQ(rows[1]["cached_input"], 5);
    EXPECT_EQ(rows[1]["estimated"], 1);
    EXPECT_EQ(rows[1]["usd"], 0.00000657);
    EXPECT_EQ(rows[3]["usd"], 1.5);
    EXPECT_EQ(rows[3]["requests"], 4);

    auto one = admin(a, http::verb::get, "/admin/usage?from=2025-03-01&to=2025-03-01&token=" + t2);
    ASSERT_EQ(one.status, 200u) << one.body;
    ASSERT_EQ(one.json()["usage"].size(), 1u);
    EXPECT_EQ(one.json()["usage"][0]["input"], 1000);

    auto csv = admin(a, http::verb::get, "/admin/usage?from=2025-03-02&to=2025-03-02&format=csv");
    ASSERT_EQ(csv.status, 200u) << csv.body;
    EXPECT_EQ(csv.header("Content-Type").rfind("text/csv", 0), 0u) << csv.header("Content-Type");
    EXPECT_EQ(csv.body,
              "day,token,model,requests,input,cached_input,cache_write,output,usd,estimated\r\n"
              "2025-03-02," +
                  t1 + ",gpt-4o,4,0,0,0,0,1.5,0\r\n");

    const std::pair<const char*, const char*> refused[] = {
        {"/admin/usage?from=2025-03-01", "to"},
        {"/admin/usage?from=2025-02-30&to=2025-03-01", "from"},
        {"/admin/usage?from=2025-03-02&to=2025-03-01", "to"},
        {"/admin/usage?from=2024-01-01&to=2025-03-01", "to"},  // over 400 days
        {"/admin/usage?from=2025-03-01&to=2025-03-01&format=xml", "format"},
        {"/admin/usage?from=2025-03-01&to=2025-03-01&token=nope", "token"},
    };
    for (auto [target, field] : refused) {
        auto e = admin(a, http::verb::get, target);
        EXPECT_EQ(e.status, 400u) << target;
        EXPECT_EQ(e.json()["field"], field) << target << ": " << e.body;
    }
    // From and to count: 2024-02-01 .. 2025-03-06 is exactly 400 days (2024 is a leap year).
    EXPECT_EQ(admin(a, http::verb::get, "/admin/usage?from=2024-02-01&to=2025-03-06").status, 200u);
    EXPECT_EQ(admin(a, http::verb::get, "/admin/usage?from=2024-02-01&to=2025-03-07").status, 400u);
}

TEST_F(AdminBudgetTest, BudgetStateIsReadCreditedAndResetPerToken) {
    auto a = start();
    const std::string token = register_token(a.proxy->port());
    const std::string id = sha256_hex(token).substr(0, 16);
    const std::string key = limit::bucket_key("rlp", "spend", id);

    auto fresh = admin(a, http::verb::get, "/admin/budgets/spend?token=" + id);
    ASSERT_EQ(fresh.status, 200u) << fresh.body;
    auto s = fresh.json();
    EXPECT_EQ(s["unit"], "usd");
    EXPECT_EQ(s["limit"], 10);
    EXPECT_EQ(s["used"], 0);
    EXPECT_EQ(s["held"], 0);
    EXPECT_EQ(s["remaining"], 10);
    EXPECT_EQ(s["window"], "month");
    EXPECT_EQ(s["key"], key);
    EXPECT_EQ(s["token"], id);
    EXPECT_GT(s["reset_seconds"].get<double>(), 0);

    spend(key, "10000000000", "2500000000", "m");  // USD 2.50 settled this month
    s = admin(a, http::verb::get, "/admin/budgets/spend?token=" + id).json();
    EXPECT_EQ(s["used"], 2.5) << s.dump();
    EXPECT_EQ(s["remaining"], 7.5);

    auto credit = admin(a, http::verb::post, "/admin/budgets/spend/credit",
                        json{{"token", id}, {"amount", 1.25}});
    ASSERT_EQ(credit.status, 200u) << credit.body;
    EXPECT_EQ(credit.json()["credited"], 1.25);
    EXPECT_EQ(credit.json()["used"], 1.25);
    EXPECT_EQ(admin(a, http::verb::get, "/admin/budgets/spend?token=" + id).json()["used"], 1.25);

    auto too_fine = admin(a, http::verb::post, "/admin/budgets/spend/credit",
                          json{{"token", id}, {"amount", 0.0000000001}});
    EXPECT_EQ(too_fine.status, 400u);
    EXPECT_EQ(too_fine.json()["field"], "amount");
    auto bucket = admin(a, http::verb::post, "/admin/budgets/toks/credit",
                        json{{"token", id}, {"amount", 100}});
    EXPECT_EQ(bucket.status, 400u);
    EXPECT_EQ(bucket.json()["field"], "policy");
    EXPECT_NE(bucket.json()["message"].get<std::string>().find("fixed_window"), std::string::npos)
        << bucket.body;

    auto reset = admin(a, http::verb::delete_, "/admin/budgets/spend?token=" + id);
    ASSERT_EQ(reset.status, 200u) << reset.body;
    EXPECT_EQ(reset.json()["deleted"], true);
    EXPECT_EQ(redis.command({"EXISTS", key}), "0");
    EXPECT_EQ(admin(a, http::verb::get, "/admin/budgets/spend?token=" + id).json()["used"], 0);
}

TEST_F(AdminBudgetTest, BudgetsOfOtherKeysAndMistakesAreAnsweredClearly) {
    auto a = start();
    auto fleet = admin(a, http::verb::get, "/admin/budgets/fleet");
    ASSERT_EQ(fleet.status, 200u) << fleet.body;
    EXPECT_EQ(fleet.json()["unit"], "tokens");
    EXPECT_EQ(fleet.json()["limit"], 50000);
    spend(limit::bucket_key("rlp", "fleet", "global"), "50000", "1234", "");
    auto credit = admin(a, http::verb::post, "/admin/budgets/fleet/credit", json{{"amount", 234}});
    ASSERT_EQ(credit.status, 200u) << credit.body;
    EXPECT_EQ(credit.json()["used"], 1000);
    EXPECT_EQ(credit.json()["remaining"], 49000);
    EXPECT_EQ(admin(a, http::verb::post, "/admin/budgets/fleet/credit", json{{"amount", 1.5}})
                  .json()["field"],
              "amount");

    auto toks = admin(a, http::verb::get, "/admin/budgets/toks?token=0123456789abcdef");
    ASSERT_EQ(toks.status, 200u) << toks.body;
    EXPECT_EQ(toks.json()["limit"], 100000);
    EXPECT_EQ(toks.json()["algorithm"], "token_bucket");

    const std::pair<const char*, const char*> refused[] = {
        {"/admin/budgets/base?token=0123456789abcdef", "policy"},  // meter requests
        {"/admin/budgets/spend", "token"},
        {"/admin/budgets/spend?token=xyz", "token"},
    };
    for (auto [target, field] : refused) {
        auto e = admin(a, http::verb::get, target);
        EXPECT_EQ(e.status, 400u) << target << ": " << e.body;
        EXPECT_EQ(e.json()["field"], field) << target << ": " << e.body;
    }
    EXPECT_EQ(admin(a, http::verb::get, "/admin/budgets/nope").status, 404u);
    EXPECT_EQ(admin(a, http::verb::put, "/admin/budgets/spend").status, 405u);
}
