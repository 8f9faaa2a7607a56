#pragma once

// Resource pattern + method -> handler, for the admin API. A pattern is a path of segments,
// "{name}" standing for any one segment (handed to the handler). A path that matches some
// pattern but not with this method is answered 405, with the Allow the table gives.

#include <boost/beast/http/verb.hpp>
#include <cstddef>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

namespace ratelimit_proxy::admin {

template <class Handler>
class route_table {
  public:
    struct route {
        std::string_view pattern;  // e.g. "/admin/policies/{name}"
        boost::beast::http::verb method;
        Handler handler;
    };

    enum class outcome { found, method_not_allowed, not_found };

    struct match {
        outcome result = outcome::not_found;
        const Handler* handler = nullptr;  // found
        std::string param;                 // found: the "{...}" segment, if the pattern has one
        std::string allow;                 // method_not_allowed: "GET, PUT, DELETE"
    };

    // Listed per resource in the order Allow names the methods.
    route_table(std::initializer_list<route> routes) : routes_(routes) {}

    match find(const std::vector<std::string>& segments, boost::beast::http::verb method) const {
        match m;
        for (const auto& r : routes_) {
            std::string param;
            if (!matches(r.pattern, segments, param))
                continue;
            if (r.method == method) {
                m.result = outcome::found;
                m.handler = &r.handler;
                m.param = std::move(param);
                m.allow.clear();
                return m;
            }
            m.result = outcome::method_not_allowed;
            if (!m.allow.empty())
                m.allow += ", ";
            m.allow += boost::beast::http::to_string(r.method);
        }
        return m;
    }

  private:
    static bool matches(std::string_view pattern, const std::vector<std::string>& segments,
                        std::string& param) {
        std::size_t i = 0;
        while (!pattern.empty()) {
            pattern.remove_prefix(1);  // the '/'
            const auto end = pattern.find('/');
            const auto want = pattern.substr(0, end);
            pattern = end == std::string_view::npos ? std::string_view() : pattern.substr(end);
            if (i == segments.size())
                return false;
            if (want.starts_with('{'))
                param = segments[i];
            else if (want != segments[i])
                return false;
            ++i;
        }
        return i == segments.size();
    }

    std::vector<route> routes_;
};

}  // namespace ratelimit_proxy::admin
