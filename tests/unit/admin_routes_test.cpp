#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "ratelimit_proxy/admin/route_table.hpp"

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
