#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ratelimit_proxy/admin/route_table.hpp"
#include "ratelimit_proxy/admin/usage_report.hpp"

namespace admin = ratelimit_proxy::admin;
namespace http = boost::beast::http;

namespace {

using table = admin::route_table<int>;

const table& routes() {
    static const table t{
        {"/admin/policies", http::verb::get, 1},
        {"/admin/policies/{name}", http::verb::get, 2},
        {"/admin/policies/{name}", http::verb::put, 3},
        {"/admin/policies/{name}", http::verb::delete_, 4},
        {"/admin/buckets", http::verb::get, 5},
        {"/admin/buckets", http::verb::delete_, 6},
    };
    return t;
}

std::vector<std::string> path(std::initializer_list<const char*> s) {
    return {s.begin(), s.end()};
}

}  // namespace

TEST(AdminRoutes, FindsTheHandlerOfPathAndMethod) {
    auto m = routes().find(path({"admin", "policies"}), http::verb::get);
    ASSERT_EQ(m.result, table::outcome::found);
    EXPECT_EQ(*m.handler, 1);
    m = routes().find(path({"admin", "buckets"}), http::verb::delete_);
    ASSERT_EQ(m.result, table::outcome::found);
    EXPECT_EQ(*m.handler, 6);
}

TEST(AdminRoutes, HandsTheNamedSegmentToTheHandler) {
    auto m = routes().find(path({"admin", "policies", "daily"}), http::verb::put);
    ASSERT_EQ(m.result, table::outcome::found);
    EXPECT_EQ(*m.handler, 3);
    EXPECT_EQ(m.param, "daily");
    // An empty segment is a name too (the handler rejects it as one).
    m = routes().find(path({"admin", "policies", ""}), http::verb::get);
    ASSERT_EQ(m.result, table::outcome::found);
    EXPECT_EQ(m.param, "");
}

TEST(AdminRoutes, AnswersOtherMethodsWithTheAllowOfTheTable) {
    auto m = routes().find(path({"admin", "policies", "daily"}), http::verb::post);
    EXPECT_EQ(m.result, table::outcome::method_not_allowed);
    EXPECT_EQ(m.handler, nullptr);
    EXPECT_EQ(m.allow, "GET, PUT, DELETE");
    EXPECT_EQ(routes().find(path({"admin", "buckets"}), http::verb::put).allow, "GET, DELETE");
    EXPECT_EQ(routes().find(path({"admin", "policies"}), http::verb::delete_).allow, "GET");
}

TEST(AdminRoutes, UnknownPathsAreNotFound) {
    EXPECT_EQ(routes().find(path({"admin"}), http::verb::get).result, table::outcome::not_found);
    EXPECT_EQ(routes().find(path({"admin", "nope"}), http::verb::get).result,
              table::outcome::not_found);
    EXPECT_EQ(routes().find(path({"admin", "buckets", "x"}), http::verb::get).result,
              table::outcome::not_found);
    EXPECT_EQ(routes().find(path({"admin", "policies", "a", "b"}), http::verb::get).result,
              table::outcome::not_found);
    EXPECT_EQ(routes().find(path({}), http::verb::get).result, table::outcome::not_found);
}

TEST(AdminRoutes, BudgetCreditIsAResourceOfItsOwnBesideTheBudget) {
    const table t{
        {"/admin/budgets/{policy}", http::verb::get, 1},
        {"/admin/budgets/{policy}", http::verb::delete_, 2},
        {"/admin/budgets/{policy}/credit", http::verb::post, 3},
    };
    auto m = t.find(path({"admin", "budgets", "spend", "credit"}), http::verb::post);
    ASSERT_EQ(m.result, table::outcome::found);
    EXPECT_EQ(*m.handler, 3);
    EXPECT_EQ(m.param, "spend");
    EXPECT_EQ(t.find(path({"admin", "budgets", "spend"}), http::verb::post).allow, "GET, DELETE");
    EXPECT_EQ(t.find(path({"admin", "budgets", "spend", "credit"}), http::verb::get).allow, "POST");
}

// ---- The usage export's shaping (admin/usage_report.hpp).

TEST(UsageReport, DaysAreRealUtcDates) {
    EXPECT_EQ(admin::parse_day("1970-01-01"), 0);
    EXPECT_EQ(admin::parse_day("2024-02-29"), 19782);
    EXPECT_EQ(admin::format_day(19782), "2024-02-29");
    for (const char* bad : {"2023-02-29", "2024-13-01", "2024-1-01", "2024-01-01x", "", "24-01-01",
                            "2024/01/01", "2024-00-10"})
        EXPECT_FALSE(admin::parse_day(bad).has_value()) << bad;
}

TEST(UsageReport, OneRowPerModelFromTheHashFields) {
    std::vector<std::pair<std::string, std::string>> fields = {
        {"gpt-4o|requests", "3"},
        {"gpt-4o|input", "1200"},
        {"gpt-4o|cached_input", "100"},
        {"gpt-4o|output", "300"},
        {"gpt-4o|nano_usd", "6250000"},
        {"gpt-4o|estimated", "1"},
        {"a|b|requests", "1"},
        {"-|requests", "2"},
        {"gpt-4o|reasoning", "9"},
        {"junk", "1"},
        {"gpt-4o|cache_write", "notnum"},
    };
    std::vector<admin::usage_row> rows;
    admin::add_usage_fields("2025-01-02", "0123456789abcdef", fields, rows);
    ASSERT_EQ(rows.size(), 3u);
    admin::sort_usage(rows);
    EXPECT_EQ(rows[0].model, "-");
    EXPECT_EQ(rows[0].requests, 2);
    EXPECT_EQ(rows[1].model, "a|b");  // the last '|' separates the what
    const auto& g = rows[2];
    EXPECT_EQ(g.model, "gpt-4o");
    EXPECT_EQ(g.day, "2025-01-02");
    EXPECT_EQ(g.token, "0123456789abcdef");
    EXPECT_EQ(g.requests, 3);
    EXPECT_EQ(g.input, 1200);
    EXPECT_EQ(g.cached_input, 100);
    EXPECT_EQ(g.cache_write, 0);
    EXPECT_EQ(g.output, 300);
    EXPECT_EQ(g.nano_usd, 6250000);
    EXPECT_EQ(g.estimated, 1);
}

TEST(UsageReport, SortsByDayTokenThenModel) {
    std::vector<admin::usage_row> rows(4);
    rows[0] = {.day = "2025-01-02", .token = "a", .model = "m"};
    rows[1] = {.day = "2025-01-01", .token = "b", .model = "m"};
    rows[2] = {.day = "2025-01-01", .token = "a", .model = "z"};
    rows[3] = {.day = "2025-01-01", .token = "a", .model = "b"};
    admin::sort_usage(rows);
    EXPECT_EQ(rows[0].model, "b");
    EXPECT_EQ(rows[1].model, "z");
    EXPECT_EQ(rows[2].token, "b");
    EXPECT_EQ(rows[3].day, "2025-01-02");
}

TEST(UsageReport, UsdIsExactDecimalText) {
    EXPECT_EQ(admin::usd_text(0), "0");
    EXPECT_EQ(admin::usd_text(1), "0.000000001");
    EXPECT_EQ(admin::usd_text(1500000000), "1.5");
    EXPECT_EQ(admin::usd_text(123456789012345), "123456.789012345");
    EXPECT_EQ(admin::usd_text(-250000000), "-0.25");
}

TEST(UsageReport, CsvHasAHeaderQuotesAndDefusesFormulas) {
    std::vector<admin::usage_row> rows(2);
    rows[0] = {.day = "2025-01-01",
               .token = "0123456789abcdef",
               .model = "gpt-4o",
               .requests = 2,
               .input = 10,
               .output = 5,
               .nano_usd = 1250000000,
               .estimated = 1};
    rows[1] = {.day = "2025-01-01", .token = "0123456789abcdef", .model = "=HYPERLINK(\"x\",1)"};
    const auto csv = admin::usage_to_csv(rows);
    EXPECT_EQ(csv,
              "day,token,model,requests,input,cached_input,cache_write,output,usd,estimated\r\n"
              "2025-01-01,0123456789abcdef,gpt-4o,2,10,0,0,5,1.25,1\r\n"
              "2025-01-01,0123456789abcdef,\"'=HYPERLINK(\"\"x\"\",1)\",0,0,0,0,0,0,0\r\n");
    const auto j = admin::usage_to_json(rows);
    ASSERT_EQ(j.size(), 2u);
    EXPECT_EQ(j[0]["usd"], 1.25);
    EXPECT_EQ(j[0]["model"], "gpt-4o");
    EXPECT_EQ(j[1]["model"], "=HYPERLINK(\"x\",1)");  // JSON carries it as it is
}
