#include "test_helpers.hpp"

#include <sstream>

#include "proxy_process.hpp"

namespace rlp_test {

std::optional<long> header_integer(const http_response& r, std::string_view name) {
    if (!r.has_header(name))
        return std::nullopt;
    std::string v = r.header(name);
    if (v.empty() || v.size() > 18)
        return std::nullopt;
    for (char c : v)
        if (c < '0' || c > '9')
            return std::nullopt;
    return std::stol(v);
}

bool contains(std::string_view haystack, std::string_view needle) {
    return haystack.find(needle) != std::string_view::npos;
}

void count_echo(std::unique_ptr<http_connection>& c, std::uint16_t port, const std::string& token,
                std::atomic<int>& allowed, std::atomic<int>& rejected, std::atomic<int>& other) {
    try {
        if (!c)
            c = std::make_unique<http_connection>(port);
        auto r = c->request(boost::beast::http::verb::get, "/api/echo", bearer(token));
        if (r.status == 200)
            ++allowed;
        else if (r.status == 429)
            ++rejected;
        else
            ++other;
        if (!r.keep_alive)
            c.reset();
    } catch (const std::exception&) {
        ++other;
        c.reset();
    }
}

std::string dump_redis(const redis_server& redis, std::size_t* key_count) {
    std::string keys_text = redis.command({"KEYS", "*"});
    std::vector<std::string> keys;
    std::istringstream ss(keys_text);
    std::string key;
    while (std::getline(ss, key))
        if (!key.empty())
            keys.push_back(key);
    if (key_count)
        *key_count = keys.size();
    std::string out;
    for (const auto& k : keys) {
        std::string type = redis.command({"TYPE", k});
        std::string value;
        if (type == "string")
            value = redis.command({"GET", k});
        else if (type == "hash")
            value = redis.command({"HGETALL", k});
        else if (type == "set")
            value = redis.command({"SMEMBERS", k});
        else if (type == "list")
            value = redis.command({"LRANGE", k, "0", "-1"});
        else if (type == "zset")
            value = redis.command({"ZRANGE", k, "0", "-1", "WITHSCORES"});
        else
            value = redis.command({"DUMP", k});
        out += k + " (" + type + ") => " + value + "\n";
    }
    return out;
}

}  // namespace rlp_test
