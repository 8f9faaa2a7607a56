#include <gtest/gtest.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <csignal>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "process.hpp"
#include "ratelimit_proxy/redis/connection.hpp"
#include "ratelimit_proxy/redis/script.hpp"
#include "redis_server.hpp"

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using ratelimit_proxy::redis::connection;
using ratelimit_proxy::redis::connection_options;
using ratelimit_proxy::redis::outcome;
using ratelimit_proxy::redis::parse_url;
using ratelimit_proxy::redis::reply;
using ratelimit_proxy::redis::reply_type;
using ratelimit_proxy::redis::script;
using steady = std::chrono::steady_clock;

// What one command's handler saw; calls counts invocations so "exactly once" is checkable.
struct result {
    int calls = 0;
    outcome how = outcome::ok;
    reply value;
    steady::time_point at;
};

// A redis-server that demands a password, on its own free port.
struct password_server {
    explicit password_server(std::string pw)
        : password(std::move(pw)),
          port(rlp_test::free_port()),
          dir(rlp_test::temp_dir()),
          process({"redis-server", "--port", std::to_string(port), "--bind", "127.0.0.1", "--save",
                   "", "--appendonly", "no", "--dir", dir, "--requirepass", password},
                  {}, dir + "/redis.log") {
        if (!rlp_test::wait_for_port(port, 10s))
            throw std::runtime_error("password redis-server did not start");
    }
    std::string command(std::vector<std::string> args) const {
        return rlp_test::redis_commands(port, {{"AUTH", password}, std::move(args)});
    }
    std::string password;
    std::uint16_t port;
    std::string dir;
    rlp_test::child_process process;
};

// Resumes a SIGSTOPped server even when an assertion fails halfway.
struct resume_on_exit {
    rlp_test::redis_server& server;
    ~resume_on_exit() { server.resume(); }
};

class RedisConnectionTest : public ::testing::Test {
  protected:
    // hiredis writes with write(2): a peer that died must not kill the test binary.
    static void SetUpTestSuite() { std::signal(SIGPIPE, SIG_IGN); }

    connection_options options(std::uint16_t port) const {
        connection_options o;
        o.where.port = port;
        o.command_timeout = 2s;
        o.connect_timeout = 1s;
        o.reconnect_min = 20ms;
        o.reconnect_max = 300ms;
        return o;
    }

    std::unique_ptr<connection> make(connection_options o) {
        auto c = std::make_unique<connection>(io_, std::move(o));
        c->on_connected([this] { ++connects_; });
        return c;
    }

    // A started connection to the fixture's server, already connected.
    std::unique_ptr<connection> connected() {
        auto c = make(options(server_.port()));
        c->start();
        EXPECT_TRUE(run_until([&] { return c->connected() && connects_ > 0; }));
        return c;
    }

    // Runs the io_context until pred holds or the limit passes; never hangs.
    bool run_until(const std::function<bool()>& pred, std::chrono::milliseconds limit = 5s) {
        auto deadline = steady::now() + limit;
        while (!pred()) {
            if (steady::now() >= deadline)
                return false;
            io_.run_for(2ms);
        }
        return true;
    }

    void run_for(std::chrono::milliseconds d) {
        auto deadline = steady::now() + d;
        while (steady::now() < deadline)
            io_.run_for(2ms);
    }

    std::shared_ptr<result> issue(connection& c, std::vector<std::string> args) {
        auto res = std::make_shared<result>();
        std::vector<std::string_view> views(args.begin(), args.end());
        c.command(views, [res](outcome how, reply&& r) {
            ++res->calls;
            res->how = how;
            res->value = std::move(r);
            res->at = steady::now();
        });
        return res;
    }

    // Pauses the server and queues two PINGs, given 20 ms to go nowhere.
    std::pair<std::shared_ptr<result>, std::shared_ptr<result>> pings_on_paused_server(
        connection& c) {
        server_.pause();
        auto a = issue(c, {"PING"});
        auto b = issue(c, {"PING"});
        io_.run_for(20ms);
        return {a, b};
    }

    // Sends one command and waits for its handler.
    result call(connection& c, std::vector<std::string> args) {
        auto res = issue(c, std::move(args));
        EXPECT_TRUE(run_until([&] { return res->calls > 0; }));
        return *res;
    }

    // Retries until the command succeeds: for the moments right after a reconnect.
    result call_until_ok(connection& c, std::vector<std::string> args,
                         std::chrono::milliseconds limit = 5s) {
        auto deadline = steady::now() + limit;
        result last;
        do {
            last = call(c, args);
            if (last.how == outcome::ok)
                return last;
            run_for(20ms);
        } while (steady::now() < deadline);
        return last;
    }

    std::string key() { return "rlp-test:" + rlp_test::random_hex(8); }

    asio::io_context io_;
    asio::executor_work_guard<asio::io_context::executor_type> work_{io_.get_executor()};
    rlp_test::redis_server server_;
    int connects_ = 0;
};

TEST_F(RedisConnectionTest, ConnectsAndCallsOnConnected) {
    auto c = connected();
    EXPECT_TRUE(c->connected());
    EXPECT_EQ(connects_, 1);
}

TEST_F(RedisConnectionTest, ConnectsByHostName) {
    auto o = options(server_.port());
    o.where = parse_url("redis://localhost:" + std::to_string(server_.port()));
    auto c = make(o);
    c->start();
    // localhost may resolve to ::1 first, where nothing listens: the next address is tried.
    ASSERT_TRUE(run_until([&] { return connects_ == 1; }));
    EXPECT_EQ(call(*c, {"PING"}).value.str, "PONG");
}

TEST_F(RedisConnectionTest, KeepsRetryingWhenHostDoesNotResolve) {
    auto o = options(server_.port());
    o.where.host = "no-such-host.invalid";
    auto c = make(o);
    c->start();
    run_for(300ms);
    EXPECT_FALSE(c->connected());
    EXPECT_EQ(call(*c, {"PING"}).how, outcome::disconnected);
}

TEST_F(RedisConnectionTest, RoundTripsSetAndGet) {
    auto c = connected();
    auto k = key();
    std::string value("binary\0value\r\n", 14);
    auto set = call(*c, {"SET", k, value});
    ASSERT_EQ(set.how, outcome::ok);
    EXPECT_EQ(set.value.type, reply_type::status);
    EXPECT_EQ(set.value.str, "OK");
    auto get = call(*c, {"GET", k});
    ASSERT_EQ(get.how, outcome::ok);
    EXPECT_EQ(get.value.type, reply_type::string);
    EXPECT_EQ(get.value.str, value);
}

TEST_F(RedisConnectionTest, CopiesIntegerNilArrayAndErrorReplies) {
    auto c = connected();
    auto k = key();

    auto incr = call(*c, {"INCRBY", k, "41"});
    ASSERT_EQ(incr.how, outcome::ok);
    EXPECT_EQ(incr.value.type, reply_type::integer);
    EXPECT_EQ(incr.value.integer, 41);

    auto nil = call(*c, {"GET", key()});
    ASSERT_EQ(nil.how, outcome::ok);
    EXPECT_EQ(nil.value.type, reply_type::nil);

    auto list = key();
    call(*c, {"RPUSH", list, "a", "b", "c"});
    auto range = call(*c, {"LRANGE", list, "0", "-1"});
    ASSERT_EQ(range.how, outcome::ok);
    ASSERT_EQ(range.value.type, reply_type::array);
    ASSERT_EQ(range.value.elements.size(), 3u);
    EXPECT_EQ(range.value.elements[2].str, "c");

    auto nested = call(*c, {"EVAL", "return {1, {2, 'x'}, false}", "0"});
    ASSERT_EQ(nested.how, outcome::ok);
    ASSERT_EQ(nested.value.type, reply_type::array);
    ASSERT_EQ(nested.value.elements.size(), 3u);
    EXPECT_EQ(nested.value.elements[0].integer, 1);
    ASSERT_EQ(nested.value.elements[1].type, reply_type::array);
    EXPECT_EQ(nested.value.elements[1].elements[0].integer, 2);
    EXPECT_EQ(nested.value.elements[1].elements[1].str, "x");
    EXPECT_EQ(nested.value.elements[2].type, reply_type::nil);

    auto error = call(*c, {"INCR", list});
    ASSERT_EQ(error.how, outcome::ok);
    EXPECT_EQ(error.value.type, reply_type::error);
    EXPECT_TRUE(error.value.str.starts_with("WRONGTYPE")) << error.value.str;
}

TEST_F(RedisConnectionTest, AnswersThousandCommandsIssuedInOneLoopTurn) {
    auto c = connected();
    auto k = key();
    std::vector<std::shared_ptr<result>> results;
    for (int i = 0; i < 1000; ++i)
        results.push_back(issue(*c, {"INCR", k}));
    ASSERT_TRUE(run_until([&] { return results.back()->calls > 0; }));
    for (int i = 0; i < 1000; ++i) {
        ASSERT_EQ(results[i]->calls, 1);
        ASSERT_EQ(results[i]->how, outcome::ok);
        // Replies come back in order, each to its own handler.
        ASSERT_EQ(results[i]->value.integer, i + 1);
    }
    EXPECT_EQ(server_.command({"GET", k}), "1000");
}

TEST_F(RedisConnectionTest, CommandsIssuedInOneLoopTurnShareOneWrite) {
    auto c = connected();
    auto k = key();
    const auto& stats = c->stats();
    const auto commands_before = stats.commands.value();
    const auto writes_before = stats.writes.value();
    std::vector<std::shared_ptr<result>> results;
    for (int i = 0; i < 200; ++i)
        results.push_back(issue(*c, {"INCR", k}));
    ASSERT_TRUE(run_until([&] { return results.back()->calls > 0; }));
    EXPECT_EQ(stats.commands.value() - commands_before, 200u);
    // Automatic pipelining: one write for the whole turn (a second only if the kernel took
    // part of it).
    EXPECT_LE(stats.writes.value() - writes_before, 2u);
    EXPECT_GE(stats.writes.value() - writes_before, 1u);
}

TEST_F(RedisConnectionTest, CompletesWithDisconnectedBeforeStartButNeverInline) {
    auto c = make(options(server_.port()));
    auto res = issue(*c, {"PING"});
    EXPECT_EQ(res->calls, 0);
    ASSERT_TRUE(run_until([&] { return res->calls > 0; }));
    EXPECT_EQ(res->how, outcome::disconnected);
}

TEST_F(RedisConnectionTest, AnswersEmptyCommandWithErrorReply) {
    auto c = connected();
    std::optional<reply> got;
    c->command({}, [&](outcome, reply&& r) { got = std::move(r); });
    EXPECT_FALSE(got);
    ASSERT_TRUE(run_until([&] { return got.has_value(); }));
    EXPECT_EQ(got->type, reply_type::error);
}

TEST_F(RedisConnectionTest, ReportsDisconnectedWhileServerIsUnreachable) {
    auto c = make(options(rlp_test::free_port()));
    c->start();
    run_for(200ms);
    EXPECT_FALSE(c->connected());
    EXPECT_EQ(connects_, 0);
    auto res = call(*c, {"PING"});
    EXPECT_EQ(res.how, outcome::disconnected);
}

TEST_F(RedisConnectionTest, TimesOutWhenServerIsPausedAndDropsTheLateReply) {
    auto o = options(server_.port());
    o.command_timeout = 100ms;
    o.connect_timeout = 5s;  // keep the stalled connection: the late reply must arrive on it
    auto c = make(o);
    c->start();
    ASSERT_TRUE(run_until([&] { return c->connected(); }));
    auto k = key();

    server_.pause();
    resume_on_exit resume{server_};
    auto sent = steady::now();
    auto res = issue(*c, {"INCR", k});
    ASSERT_TRUE(run_until([&] { return res->calls > 0; }, 3s));
    EXPECT_EQ(res->how, outcome::timeout);
    auto waited = res->at - sent;
    EXPECT_GE(waited, 95ms);
    EXPECT_LT(waited, 600ms);

    server_.resume();
    auto after = call(*c, {"INCR", k});
    ASSERT_EQ(after.how, outcome::ok);
    // The timed-out INCR did run on the server, but its reply went to nobody.
    EXPECT_EQ(after.value.integer, 2);
    EXPECT_EQ(res->calls, 1);
    EXPECT_EQ(res->how, outcome::timeout);
    EXPECT_EQ(connects_, 1);
}

TEST_F(RedisConnectionTest, TimesOutEveryCommandOfABurstExactlyOnce) {
    auto o = options(server_.port());
    o.command_timeout = 50ms;
    o.connect_timeout = 5s;
    auto c = make(o);
    c->start();
    ASSERT_TRUE(run_until([&] { return c->connected(); }));

    server_.pause();
    resume_on_exit resume{server_};
    std::vector<std::shared_ptr<result>> results;
    for (int i = 0; i < 100; ++i) {
        results.push_back(issue(*c, {"PING"}));
        if (i % 10 == 0)
            io_.run_for(5ms);  // spread the deadlines over several timer wakes
    }
    ASSERT_TRUE(run_until([&] { return results.back()->calls > 0; }, 3s));
    server_.resume();
    run_for(200ms);
    for (const auto& r : results) {
        EXPECT_EQ(r->calls, 1);
        EXPECT_EQ(r->how, outcome::timeout);
    }
}

TEST_F(RedisConnectionTest, ReplacesAConnectionThatStopsAnswering) {
    auto o = options(server_.port());
    o.command_timeout = 50ms;
    o.connect_timeout = 300ms;
    auto c = make(o);
    c->start();
    ASSERT_TRUE(run_until([&] { return connects_ == 1; }));

    server_.pause();
    resume_on_exit resume{server_};
    auto res = issue(*c, {"PING"});
    // A paused server still completes TCP handshakes, so the fresh connection comes up.
    ASSERT_TRUE(run_until([&] { return connects_ == 2; }, 3s));
    EXPECT_EQ(res->calls, 1);
    EXPECT_EQ(res->how, outcome::timeout);
    server_.resume();
    EXPECT_EQ(call_until_ok(*c, {"PING"}).value.str, "PONG");
}

TEST_F(RedisConnectionTest, ReportsDisconnectedWhenServerIsKilledAndReconnectsAfterRestart) {
    auto c = connected();
    auto k = key();
    server_.pause();
    auto pending = issue(*c, {"INCR", k});
    io_.run_for(20ms);  // the command is on the wire
    server_.kill_hard();
    ASSERT_TRUE(run_until([&] { return pending->calls > 0; }));
    EXPECT_EQ(pending->how, outcome::disconnected);
    ASSERT_TRUE(run_until([&] { return !c->connected(); }));
    EXPECT_EQ(call(*c, {"PING"}).how, outcome::disconnected);

    run_for(300ms);  // a few failed reconnects
    server_.restart();
    ASSERT_TRUE(run_until([&] { return connects_ == 2; }, 5s));
    auto after = call_until_ok(*c, {"INCR", k});
    ASSERT_EQ(after.how, outcome::ok);
    EXPECT_EQ(after.value.integer, 1);  // a fresh server: the lost INCR never ran
    EXPECT_EQ(pending->calls, 1);
}

TEST_F(RedisConnectionTest, ReconnectsAfterClientKill) {
    auto c = connected();
    EXPECT_EQ(server_.command({"CLIENT", "KILL", "TYPE", "normal"}), "1");
    ASSERT_TRUE(run_until([&] { return connects_ == 2; }));
    EXPECT_EQ(call_until_ok(*c, {"PING"}).value.str, "PONG");
}

TEST_F(RedisConnectionTest, StopFailsPendingCommandsAndDoesNotReconnect) {
    auto c = connected();
    resume_on_exit resume{server_};
    auto [a, b] = pings_on_paused_server(*c);
    c->stop();
    EXPECT_EQ(a->calls, 1);
    EXPECT_EQ(b->calls, 1);
    EXPECT_EQ(a->how, outcome::disconnected);
    EXPECT_FALSE(c->connected());
    server_.resume();
    run_for(300ms);
    EXPECT_EQ(connects_, 1);
    EXPECT_FALSE(c->connected());
    EXPECT_EQ(call(*c, {"PING"}).how, outcome::disconnected);
    EXPECT_EQ(a->calls, 1);
}

TEST_F(RedisConnectionTest, StartsAgainAfterStop) {
    auto c = connected();
    c->stop();
    c->start();
    ASSERT_TRUE(run_until([&] { return connects_ == 2; }));
    EXPECT_EQ(call(*c, {"PING"}).value.str, "PONG");
}

TEST_F(RedisConnectionTest, DestructorCallsPendingHandlersExactlyOnce) {
    auto c = connected();
    resume_on_exit resume{server_};
    auto [a, b] = pings_on_paused_server(*c);
    c.reset();
    EXPECT_EQ(a->calls, 1);
    EXPECT_EQ(b->calls, 1);
    EXPECT_EQ(b->how, outcome::disconnected);
    server_.resume();
    run_for(100ms);
    EXPECT_EQ(a->calls, 1);
    EXPECT_EQ(b->calls, 1);
}

TEST_F(RedisConnectionTest, DestructorIsSafeAfterIoContextStopped) {
    auto c = connected();
    auto a = issue(*c, {"PING"});  // queued in hiredis, write wait outstanding
    io_.stop();
    c.reset();
    EXPECT_EQ(a->calls, 1);
    EXPECT_EQ(a->how, outcome::disconnected);
    io_.restart();
    run_for(50ms);  // aborted waits drain without touching the freed context
    EXPECT_EQ(a->calls, 1);
}

TEST_F(RedisConnectionTest, HandlerMayDestroyTheConnection) {
    auto c = connected();
    int calls = 0;
    outcome second = outcome::ok;
    std::string_view ping[] = {"PING"};
    c->command(ping, [&](outcome, reply&&) {
        ++calls;
        c.reset();
    });
    c->command(ping, [&](outcome how, reply&&) {
        ++calls;
        second = how;
    });
    ASSERT_TRUE(run_until([&] { return calls == 2; }));
    // The reply may already be in the same read, but the connection is gone.
    EXPECT_EQ(second, outcome::disconnected);
    run_for(50ms);
    EXPECT_EQ(calls, 2);
}

TEST_F(RedisConnectionTest, HandlerMayIssueCommandsOnDisconnect) {
    auto c = connected();
    server_.pause();
    resume_on_exit resume{server_};
    std::shared_ptr<result> follow_up;
    std::string_view ping[] = {"PING"};
    int calls = 0;
    c->command(ping, [&](outcome, reply&&) {
        ++calls;
        follow_up = issue(*c, {"PING"});
        // Not inline, even while the connection is going down.
        EXPECT_EQ(follow_up->calls, 0);
    });
    io_.run_for(20ms);
    c->stop();
    ASSERT_EQ(calls, 1);
    ASSERT_TRUE(run_until([&] { return follow_up->calls > 0; }));
    EXPECT_EQ(follow_up->how, outcome::disconnected);
}

TEST_F(RedisConnectionTest, AuthenticatesWithPasswordAndSelectsDatabase) {
    password_server auth("pw-" + rlp_test::random_hex(8));
    auto o = options(auth.port);
    o.where =
        parse_url("redis://:" + auth.password + "@127.0.0.1:" + std::to_string(auth.port) + "/3");
    auto c = make(o);
    c->start();
    ASSERT_TRUE(run_until([&] { return connects_ == 1; }));
    auto k = key();
    ASSERT_EQ(call(*c, {"SET", k, "in-three"}).how, outcome::ok);
    EXPECT_EQ(
        rlp_test::redis_commands(auth.port, {{"AUTH", auth.password}, {"SELECT", "3"}, {"GET", k}}),
        "in-three");
    EXPECT_EQ(auth.command({"GET", k}), "(nil)");  // not in db 0
}

TEST_F(RedisConnectionTest, AuthenticatesAsAclUser) {
    password_server auth("pw-" + rlp_test::random_hex(8));
    std::string user_pw = "secret-" + rlp_test::random_hex(4);
    ASSERT_EQ(auth.command({"ACL", "SETUSER", "alice", "on", ">" + user_pw, "~*", "+@all"}), "OK");
    auto o = options(auth.port);
    o.where = parse_url("redis://alice:" + user_pw + "@127.0.0.1:" + std::to_string(auth.port));
    auto c = make(o);
    c->start();
    ASSERT_TRUE(run_until([&] { return connects_ == 1; }));
    EXPECT_EQ(call(*c, {"ACL", "WHOAMI"}).value.str, "alice");
}

TEST_F(RedisConnectionTest, WrongPasswordNeverCountsAsConnected) {
    password_server auth("pw-" + rlp_test::random_hex(8));
    auto o = options(auth.port);
    o.where.password = "wrong";
    auto c = make(o);
    c->start();
    run_for(300ms);  // several rejected attempts
    EXPECT_FALSE(c->connected());
    EXPECT_EQ(connects_, 0);
    EXPECT_EQ(call(*c, {"PING"}).how, outcome::disconnected);
}

TEST_F(RedisConnectionTest, RejectsBadDatabaseAndKeepsRetrying) {
    auto o = options(server_.port());
    o.where.db = 999;  // redis-server has 16 databases
    auto c = make(o);
    c->start();
    run_for(200ms);
    EXPECT_FALSE(c->connected());
    EXPECT_EQ(connects_, 0);
}

TEST_F(RedisConnectionTest, ScriptSha1MatchesRedis) {
    script s("return redis.call('PING')");
    EXPECT_EQ(s.sha1(), server_.command({"SCRIPT", "LOAD", s.source()}));
    EXPECT_EQ(script("return 1").sha1(), "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
}

TEST_F(RedisConnectionTest, RunsScriptAndRecoversFromScriptFlush) {
    auto c = connected();
    script s("redis.call('SET', KEYS[1], ARGV[1]); return redis.call('GET', KEYS[1]) .. ARGV[2]");
    auto run = [&](const std::string& k, const std::string& value) {
        std::optional<result> got;
        {
            // The spans die right after run(): the NOSCRIPT retry must use its own copies.
            std::vector<std::string> keys{k};
            std::vector<std::string> args{value, "!"};
            std::vector<std::string_view> key_views(keys.begin(), keys.end());
            std::vector<std::string_view> arg_views(args.begin(), args.end());
            s.run(*c, key_views, arg_views, [&](outcome how, reply&& r) {
                got = result{1, how, std::move(r), steady::now()};
            });
            for (auto& a : args)
                a.assign(a.size(), '#');
            keys[0].assign(keys[0].size(), '#');
        }
        EXPECT_TRUE(run_until([&] { return got.has_value(); }));
        return got.value_or(result{});
    };

    auto k = key();
    auto first = run(k, "one");  // NOSCRIPT: never loaded yet
    ASSERT_EQ(first.how, outcome::ok);
    EXPECT_EQ(first.value.str, "one!");
    EXPECT_EQ(server_.command({"SCRIPT", "EXISTS", s.sha1()}), "1");

    EXPECT_EQ(run(k, "two").value.str, "two!");  // EVALSHA hit

    EXPECT_EQ(server_.command({"SCRIPT", "FLUSH"}), "OK");
    auto after_flush = run(k, "three");
    ASSERT_EQ(after_flush.how, outcome::ok);
    EXPECT_EQ(after_flush.value.type, reply_type::string);
    EXPECT_EQ(after_flush.value.str, "three!");
    EXPECT_EQ(server_.command({"GET", k}), "three");
}

TEST_F(RedisConnectionTest, PassesScriptErrorsOn) {
    auto c = connected();
    script s("return redis.error_reply('LIMIT boom')");
    std::optional<reply> got;
    s.run(*c, {}, {}, [&](outcome how, reply&& r) {
        EXPECT_EQ(how, outcome::ok);
        got = std::move(r);
    });
    ASSERT_TRUE(run_until([&] { return got.has_value(); }));
    EXPECT_EQ(got->type, reply_type::error);
    EXPECT_EQ(got->str, "LIMIT boom");
}

TEST_F(RedisConnectionTest, ScriptReportsDisconnected) {
    auto c = make(options(server_.port()));
    script s("return 1");
    std::optional<outcome> got;
    s.run(*c, {}, {}, [&](outcome how, reply&&) { got = how; });
    ASSERT_TRUE(run_until([&] { return got.has_value(); }));
    EXPECT_EQ(*got, outcome::disconnected);
}

}  // namespace
