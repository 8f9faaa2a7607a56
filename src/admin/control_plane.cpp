#include "ratelimit_proxy/admin/control_plane.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/dispatch.hpp>

#include "api_error.hpp"
#include "overlay_state.hpp"
#include "ratelimit_proxy/config/rule_overlay.hpp"
#include "ratelimit_proxy/limit/keys.hpp"
#include "ratelimit_proxy/redis/awaitable.hpp"

namespace ratelimit_proxy::admin {

namespace asio = boost::asio;
using json = nlohmann::json;

namespace {

// KEYS[1] version, KEYS[2] state; ARGV[1] the version the state was read at ("0": none),
// ARGV[2] the new state. Returns {1, new version} or {0, the version found} when someone
// else wrote first. Other instances learn of the change by their overlay poll.
constexpr std::string_view compare_and_set_lua = R"lua(
local v = redis.call('GET', KEYS[1]) or '0'
if v ~= ARGV[1] then
  return {0, v}
end
redis.call('SET', KEYS[2], ARGV[2])
local n = redis.call('INCR', KEYS[1])
return {1, n}
)lua";

const redis::script& compare_and_set() {
    static const redis::script s(compare_and_set_lua);
    return s;
}

redis::connection_options connection_options_for(const config::settings& s) {
    redis::connection_options o;
    o.where = redis::parse_url(s.redis.url);
    // Admin calls and the poll are not on the request path: allow Redis a moment.
    o.command_timeout = std::max<std::chrono::milliseconds>(s.redis.command_timeout,
                                                            std::chrono::milliseconds(1000));
    o.connect_timeout = s.redis.connect_timeout;
    o.reconnect_max = std::chrono::milliseconds(1000);
    return o;
}

}  // namespace

control_plane::control_plane(asio::io_context& io, const config::settings& file, publisher publish)
    : io_(io),
      publish_(std::move(publish)),
      prefix_(file.redis.key_prefix),
      version_key_(limit::admin_version_key(prefix_)),
      state_key_(limit::admin_state_key(prefix_)),
      file_(file),
      redis_(io, connection_options_for(file)),
      timer_(io) {
    auto base = config::build_rule_set(file_, json::object(), 0);
    current_ = base;
    file_rules_ = base;
    overlay_ = std::make_shared<const json>(json::object());
}

control_plane::~control_plane() {
    // Pending Redis handlers run inline from here (the connection's destructor) and do
    // nothing once stopped.
    stopped_ = true;
    timer_.cancel();
    redis_.stop();
}

void control_plane::start() {
    asio::dispatch(io_, [this] {
        if (started_ || stopped_)
            return;
        started_ = true;
        fetch_pending_ = true;
        redis_.start();
        poll();
    });
}

void control_plane::stop() {
    asio::dispatch(io_, [this] {
        if (stopped_)
            return;
        stopped_ = true;
        timer_.cancel();
        redis_.stop();
    });
}

void control_plane::set_runtime_stats(std::function<nlohmann::json()> stats) {
    runtime_stats_ = std::move(stats);
}

std::optional<json> control_plane::runtime_stats() const {
    if (!runtime_stats_)
        return std::nullopt;
    return runtime_stats_();
}

std::shared_ptr<const limit::rule_set> control_plane::current() const {
    std::lock_guard lock(mutex_);
    return current_;
}

rules_snapshot control_plane::snapshot() const {
    std::lock_guard lock(mutex_);
    return {current_, overlay_};
}

std::shared_ptr<const limit::rule_set> control_plane::file_rules() const {
    std::lock_guard lock(mutex_);
    return file_rules_;
}

bool control_plane::tiers_implicit(const json& overlay) const {
    if (!file_.tiers.empty())
        return false;
    auto t = overlay.find("tiers");
    if (t == overlay.end() || !t->is_object())
        return true;
    return std::none_of(t->begin(), t->end(), [](const json& v) { return v.is_object(); });
}

bool control_plane::apply(const json& overlay, std::uint64_t version, std::string_view why) {
    std::shared_ptr<const limit::rule_set> rules;
    try {
        rules = config::build_rule_set(file_, overlay, version);
    } catch (const config::config_error& e) {
        if (failed_version_ != version)
            spdlog::error("admin rules version {} is invalid ({}): keeping version {}", version,
                          e.what(), applied_version_);
        failed_version_ = version;
        return false;
    } catch (const std::exception& e) {
        if (failed_version_ != version)
            spdlog::error("admin rules version {} cannot be built ({}): keeping version {}",
                          version, e.what(), applied_version_);
        failed_version_ = version;
        return false;
    }
    failed_version_.reset();
    install(std::move(rules), std::make_shared<const json>(overlay), why);
    return true;
}

void control_plane::install(std::shared_ptr<const limit::rule_set> rules,
                            std::shared_ptr<const json> overlay, std::string_view why) {
    {
        std::lock_guard lock(mutex_);
        current_ = rules;
        overlay_ = std::move(overlay);
    }
    applied_version_ = rules->version();
    spdlog::info("rules version {} applied ({}): {} policies, {} tiers", rules->version(), why,
                 rules->policies().size(), rules->tiers().size());
    if (publish_ && !stopped_)
        publish_(std::move(rules));
}

void control_plane::reload_file(const config::settings& file) {
    asio::dispatch(io_, [this, file] { rebuild_from_file(file); });
}

void control_plane::rebuild_from_file(const config::settings& file) {
    std::shared_ptr<const limit::rule_set> base;
    try {
        base = config::build_rule_set(file, json::object(), 0);
    } catch (const std::exception& e) {
        spdlog::error("config reload: the rules do not build ({}); keeping the current rules",
                      e.what());
        return;
    }
    const json overlay = *snapshot().overlay;
    std::shared_ptr<const limit::rule_set> rules;
    try {
        rules = config::build_rule_set(file, overlay, applied_version_);
    } catch (const std::exception& e) {
        spdlog::error(
            "config reload: the new file conflicts with the admin changes ({}); keeping the "
            "current rules",
            e.what());
        return;
    }
    file_ = file;
    {
        std::lock_guard lock(mutex_);
        file_rules_ = base;
    }
    // A version that failed against the old file may build against the new one.
    failed_version_.reset();
    install(std::move(rules), std::make_shared<const json>(overlay), "config file reloaded");
}

// ---------------------------------------------------------------------------------------
// The read-modify-write of the overlay.

asio::awaitable<update_result> control_plane::update(const mutation& m) {
    auto fail = [](unsigned status, json body) {
        update_result r;
        r.status = status;
        r.body = std::move(body);
        return r;
    };
    for (int attempt = 0;; ++attempt) {
        if (stopped_)
            co_return fail(503, error_body("unavailable", "the admin API is shutting down"));
        const std::string_view mget[] = {"MGET", version_key_, state_key_};
        auto read = co_await redis::await_command(redis_, mget);
        if (!read.ok())
            co_return fail(503, error_body("unavailable", "Redis did not answer"));
        const auto& r = read.reply;
        if (r.type != redis::reply_type::array || r.elements.size() != 2)
            co_return fail(503, error_body("unavailable", "Redis refused the read: " + r.str));
        auto read_version = parse_version(r.elements[0]);
        std::string problem;
        auto overlay = parse_state(r.elements[1], problem);
        if (!read_version || !overlay)
            co_return fail(
                500, error_body("corrupt", "the stored admin state is " +
                                               (read_version ? problem : "an invalid version")));
        // The rules the overlay as read gives (what the mutation decides from).
        std::shared_ptr<const limit::rule_set> before;
        try {
            before = config::build_rule_set(file_, *overlay, *read_version);
        } catch (const std::exception&) {
            before = current();  // the stored state is broken: decide from what runs
        }
        json next = *overlay;
        try {
            m(next, *before);
        } catch (const api_error& e) {
            co_return fail(e.status, e.body);
        } catch (const config::config_error& e) {
            co_return fail(400, invalid_body(e));
        } catch (const json::exception& e) {
            co_return fail(400, error_body("invalid", e.what(), "body"));
        }
        if (!next.is_object())
            next = json::object();
        // Validate before anything is written: a change that fails changes nothing.
        std::shared_ptr<const limit::rule_set> rules;
        try {
            rules = config::build_rule_set(file_, next, *read_version + 1);
        } catch (const config::config_error& e) {
            co_return fail(400, invalid_body(e));
        } catch (const std::exception& e) {
            co_return fail(400, error_body("invalid", e.what(), "body"));
        }
        const std::string expected = std::to_string(*read_version);
        const std::string state = next.dump();
        const std::string_view keys[] = {version_key_, state_key_};
        const std::string_view argv[] = {expected, state};
        auto written = co_await redis::await_script(compare_and_set(), redis_, keys, argv);
        if (!written.ok())
            co_return fail(503, error_body("unavailable",
                                           "Redis did not answer; the change may or may not "
                                           "have been stored"));
        const auto& w = written.reply;
        if (w.type != redis::reply_type::array || w.elements.size() != 2 ||
            w.elements[0].type != redis::reply_type::integer)
            co_return fail(503, error_body("unavailable", "Redis refused the write: " + w.str));
        if (w.elements[0].integer == 0) {
            if (attempt + 1 < max_update_attempts)
                continue;
            co_return fail(409, error_body("conflict",
                                           "the admin state kept changing under this request; "
                                           "try again"));
        }
        auto version = parse_version(w.elements[1]);
        if (!version)
            co_return fail(503, error_body("unavailable", "unexpected reply from Redis"));
        if (*version != *read_version + 1) {  // cannot happen: the script compared
            try {
                rules = config::build_rule_set(file_, next, *version);
            } catch (const std::exception&) {
            }
        }
        // Applied here at once (replies on this connection come in order, so no poll has
        // seen this version yet); the other instances see it within one poll.
        failed_version_.reset();
        install(rules, std::make_shared<const json>(std::move(next)), "admin API");
        auto snap = snapshot();
        update_result result;
        result.version = *version;
        result.rules = std::move(snap.rules);
        result.overlay = std::move(snap.overlay);
        co_return result;
    }
}

asio::awaitable<update_result> control_plane::bump_version() {
    static const mutation nothing = [](json&, const limit::rule_set&) {};
    auto result = co_await update(nothing);
    co_return result;
}

}  // namespace ratelimit_proxy::admin
