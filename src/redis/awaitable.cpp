#include "ratelimit_proxy/redis/awaitable.hpp"

#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <memory>

namespace ratelimit_proxy::redis {

namespace asio = boost::asio;

namespace {

// Issues the commands through `issue(callback)` and completes with their answers once all
// have come back. The completion handler is move-only and reply_handler a
// std::function, hence the shared state.
template <class Issue>
asio::awaitable<std::vector<answer>> await_all(std::size_t count, Issue issue) {
    // Only references and scalars in the co_await expression (GCC 12, see admin_api.hpp).
    const asio::any_io_executor ex = co_await asio::this_coro::executor;
    auto answers =
        co_await asio::async_initiate<const asio::use_awaitable_t<>&, void(std::vector<answer>)>(
            [&ex, count, &issue](auto handler) {
                struct state {
                    decltype(handler) done;
                    std::vector<answer> answers;
                    std::size_t pending;
                };
                auto st = std::make_shared<state>(state{std::move(handler), {}, count});
                st->answers.resize(count);
                for (std::size_t i = 0; i < count; ++i)
                    issue(i, [ex, st, i](outcome o, reply&& r) {
                        st->answers[i] = answer{o, std::move(r)};
                        if (--st->pending > 0)
                            return;
                        asio::post(ex, [st] { std::move(st->done)(std::move(st->answers)); });
                    });
            },
            asio::use_awaitable);
    co_return answers;
}

}  // namespace

asio::awaitable<answer> await_command(connection& conn, std::span<const std::string_view> args) {
    // Named, not a temporary in the co_await expression (GCC 12, see admin_api.hpp).
    const auto issue = [&](std::size_t, reply_handler h) { conn.command(args, std::move(h)); };
    auto answers = co_await await_all(1, issue);
    co_return std::move(answers.front());
}

asio::awaitable<answer> await_script(const script& s, connection& conn,
                                     std::span<const std::string_view> keys,
                                     std::span<const std::string_view> args) {
    const auto issue = [&](std::size_t, reply_handler h) { s.run(conn, keys, args, std::move(h)); };
    auto answers = co_await await_all(1, issue);
    co_return std::move(answers.front());
}

asio::awaitable<std::vector<answer>> await_pipeline(
    connection& conn, const std::vector<std::vector<std::string>>& commands) {
    if (commands.empty())
        co_return std::vector<answer>{};
    const auto issue = [&](std::size_t i, reply_handler h) {
        std::vector<std::string_view> args(commands[i].begin(), commands[i].end());
        conn.command(args, std::move(h));
    };
    auto answers = co_await await_all(commands.size(), issue);
    co_return answers;
}

}  // namespace ratelimit_proxy::redis
