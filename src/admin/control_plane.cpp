#include "ratelimit_proxy/admin/control_plane.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/dispatch.hpp>
#include <charconv>

#include "control_plane_impl.hpp"

namespace ratelimit_proxy::admin {

namespace asio = boost::asio;
using json = nlohmann::json;

namespace {

// KEYS[1] version, KEYS[2] state; ARGV[1] the version the state was read at ("0": none),
// ARGV[2] the new state, ARGV[3] the channel to announce the new version on.
// Returns {1, new version} or {0, the version found} when someone else wrote first.
constexpr std::string_view compare_and_set_lua = R"lua(
local v = redis.call('GET', KEYS[1]) or '0'
if v ~= ARGV[1] then
  return {0, v}
end
redis.call('SET', KEYS[2], ARGV[2])
local n = redis.call('INCR', KEYS[1])
redis.call('PUBLISH', ARGV[3], tostring(n))
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

// A version as Redis stores it (INCR): digits. Nil is version 0.
std::optional<std::uint64_t> parse_version(const redis::reply& r) {
    if (r.type == redis::reply_type::nil)
        return 0;
    if (r.type == redis::reply_type::integer)
        return r.integer < 0 ? std::nullopt : std::optional<std::uint64_t>(r.integer);
    if (r.type != redis::reply_type::string)
        return std::nullopt;
    std::uint64_t v = 0;
    auto [end, ec] = std::from_chars(r.str.data(), r.str.data() + r.str.size(), v);
    if (ec != std::errc() || end != r.str.data() + r.str.size())
        return std::nullopt;
    return v;
}

// The stored overlay: nil is an empty overlay; anything else must be a JSON object.
std::optional<json> parse_state(const redis::reply& r, std::string& problem) {
    if (r.type == redis::reply_type::nil)
        return json::object();
    if (r.type != redis::reply_type::string) {
        problem = "not a string";
        return std::nullopt;
    }
    json j = json::parse(r.str, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
        problem = "not a JSON object";
        return std::nullopt;
    }
    return j;
}

std::string problem_text(const config::config_error& e) {
    std::string what = e.what();
    const std::string lead = e.field() + ": ";
    if (what.starts_with(lead))
        what.erase(0, lead.size());
    return what;
}

}  // namespace

json error_body(std::string_view error, std::string_view message, std::string_view field) {
    json j = {{"error", error}};
    if (!field.empty())
        j["field"] = field;
    j["message"] = message;
    return j;
}

json invalid_body(const config::config_error& e) {
    return error_body("invalid", problem_text(e), e.field().empty() ? "body" : e.field());
}

// ---------------------------------------------------------------------------------------
// control_plane::impl

control_plane::impl::impl(asio::io_context& io, const config::settings& file, publisher publish)
    : io_(io),
      publish_(std::move(publish)),
      prefix_(file.redis.key_prefix),
      // One hash tag for both keys: the compare-and-set script touches both, and in a Redis
      // Cluster they must share a slot.
      version_key_("{" + prefix_ + "}:admin:version"),
      state_key_("{" + prefix_ + "}:admin:state"),
      changes_channel_("{" + prefix_ + "}:admin:changes"),
      redis_(io, connection_options_for(file)),
      timer_(io),
      file_(file) {
    auto base = limit::build_rule_set(file_, json::object(), 0);
    current_ = base;
    file_rules_ = base;
    overlay_ = std::make_shared<const json>(json::object());
}

void control_plane::impl::start() {
    if (started_ || stopped_)
        return;
    started_ = true;
    fetch_pending_ = true;
    redis_.start();
    poll();
}

void control_plane::impl::stop() {
    if (stopped_)
        return;
    stopped_ = true;
    timer_.cancel();
    redis_.stop();
}

std::shared_ptr<const limit::rule_set> control_plane::impl::current() const {
    std::lock_guard lock(mutex_);
    return current_;
}

rules_snapshot control_plane::impl::snapshot() const {
    std::lock_guard lock(mutex_);
    return {current_, overlay_};
}

std::shared_ptr<const limit::rule_set> control_plane::impl::file_rules() const {
    std::lock_guard lock(mutex_);
    return file_rules_;
}

bool control_plane::impl::tiers_implicit(const json& overlay) const {
    if (!file_.tiers.empty())
        return false;
    auto t = overlay.find("tiers");
    if (t == overlay.end() || !t->is_object())
        return true;
    return std::none_of(t->begin(), t->end(), [](const json& v) { return v.is_object(); });
}

void control_plane::impl::schedule_poll() {
    if (stopped_)
        return;
    timer_.expires_after(poll_interval);
    timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
        if (!ec)
            self->poll();
    });
}

// Every poll_interval: GET the version; when it is not the one applied, fetch the state.
// One round at a time; a slow Redis makes the rounds slower, never piles them up.
void control_plane::impl::poll() {
    if (stopped_)
        return;
    if (in_flight_)
        return schedule_poll();
    in_flight_ = true;
    if (fetch_pending_)
        return fetch();
    const std::string_view args[] = {"GET", version_key_};
    redis_.command(args, [self = shared_from_this()](redis::outcome o, redis::reply&& r) {
        if (self->stopped_)
            return;
        if (o != redis::outcome::ok) {
            if (!self->warned_unreachable_)
                spdlog::warn("admin rules: Redis unreachable, keeping rules version {}",
                             self->applied_version_);
            self->warned_unreachable_ = true;
            self->in_flight_ = false;
            return self->schedule_poll();
        }
        if (self->warned_unreachable_)
            spdlog::info("admin rules: Redis reachable again");
        self->warned_unreachable_ = false;
        auto v = parse_version(r);
        if (!v) {
            spdlog::error("admin rules: {} is not a version number", self->version_key_);
        } else if (*v != self->applied_version_ && *v != self->failed_version_) {
            return self->fetch();
        }
        self->in_flight_ = false;
        self->schedule_poll();
    });
}

// MGET version state: both from one moment.
void control_plane::impl::fetch() {
    const std::string_view args[] = {"MGET", version_key_, state_key_};
    redis_.command(args, [self = shared_from_this()](redis::outcome o, redis::reply&& r) {
        if (self->stopped_)
            return;
        self->on_fetched(o, std::move(r));
        self->in_flight_ = false;
        self->schedule_poll();
    });
}

void control_plane::impl::on_fetched(redis::outcome o, redis::reply&& r) {
    if (o != redis::outcome::ok)
        return;  // fetch_pending_ stays: tried again next round
    if (r.type != redis::reply_type::array || r.elements.size() != 2) {
        spdlog::error("admin rules: unexpected reply to MGET: {}", r.str);
        return;
    }
    fetch_pending_ = false;
    auto v = parse_version(r.elements[0]);
    if (!v) {
        spdlog::error("admin rules: {} is not a version number", version_key_);
        return;
    }
    std::string problem;
    auto overlay = parse_state(r.elements[1], problem);
    if (!overlay) {
        if (failed_version_ != *v)
            spdlog::error("admin rules: {} is {}; keeping rules version {}", state_key_, problem,
                          applied_version_);
        failed_version_ = *v;
        return;
    }
    if (*v == applied_version_ && *overlay == *snapshot().overlay)
        return;
    apply(*overlay, *v, "admin change");
}

bool control_plane::impl::apply(const json& overlay, std::uint64_t version, std::string_view why) {
    std::shared_ptr<const limit::rule_set> rules;
    try {
        rules = limit::build_rule_set(file_, overlay, version);
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

void control_plane::impl::install(std::shared_ptr<const limit::rule_set> rules,
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

void control_plane::impl::reload_file(const config::settings& file) {
    std::shared_ptr<const limit::rule_set> base;
    try {
        base = limit::build_rule_set(file, json::object(), 0);
    } catch (const std::exception& e) {
        spdlog::error("config reload: the rules do not build ({}); keeping the current rules",
                      e.what());
        return;
    }
    const json overlay = *snapshot().overlay;
    std::shared_ptr<const limit::rule_set> rules;
    try {
        rules = limit::build_rule_set(file, overlay, applied_version_);
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

void control_plane::impl::update(mutation m, std::function<void(update_result)> done) {
    attempt_update(std::make_shared<mutation>(std::move(m)),
                   std::make_shared<std::function<void(update_result)>>(std::move(done)), 0);
}

void control_plane::impl::attempt_update(std::shared_ptr<mutation> m,
                                         std::shared_ptr<std::function<void(update_result)>> done,
                                         int attempt) {
    auto fail = [done](unsigned status, json body) {
        update_result r;
        r.status = status;
        r.body = std::move(body);
        (*done)(std::move(r));
    };
    if (stopped_)
        return fail(503, error_body("unavailable", "the admin API is shutting down"));
    const std::string_view args[] = {"MGET", version_key_, state_key_};
    redis_.command(args, [self = shared_from_this(), m, done, fail, attempt](redis::outcome o,
                                                                             redis::reply&& r) {
        if (o != redis::outcome::ok)
            return fail(503, error_body("unavailable", "Redis did not answer"));
        if (r.type != redis::reply_type::array || r.elements.size() != 2)
            return fail(503, error_body("unavailable", "Redis refused the read: " + r.str));
        auto read_version = parse_version(r.elements[0]);
        std::string problem;
        auto overlay = parse_state(r.elements[1], problem);
        if (!read_version || !overlay)
            return fail(500,
                        error_body("corrupt", "the stored admin state is " +
                                                  (read_version ? problem : "an invalid version")));
        // The rules the overlay as read gives (what the mutation decides from).
        std::shared_ptr<const limit::rule_set> before;
        try {
            before = limit::build_rule_set(self->file_, *overlay, *read_version);
        } catch (const std::exception&) {
            before = self->current();  // the stored state is broken: decide from what runs
        }
        json next = *overlay;
        try {
            (*m)(next, *before);
        } catch (const api_error& e) {
            return fail(e.status, e.body);
        } catch (const config::config_error& e) {
            return fail(400, invalid_body(e));
        } catch (const json::exception& e) {
            return fail(400, error_body("invalid", e.what(), "body"));
        }
        if (!next.is_object())
            next = json::object();
        // Validate before anything is written: a change that fails changes nothing.
        std::shared_ptr<const limit::rule_set> rules;
        try {
            rules = limit::build_rule_set(self->file_, next, *read_version + 1);
        } catch (const config::config_error& e) {
            return fail(400, invalid_body(e));
        } catch (const std::exception& e) {
            return fail(400, error_body("invalid", e.what(), "body"));
        }
        const std::string expected = std::to_string(*read_version);
        const std::string state = next.dump();
        const std::string_view keys[] = {self->version_key_, self->state_key_};
        const std::string_view argv[] = {expected, state, self->changes_channel_};
        compare_and_set().run(
            self->redis_, keys, argv,
            [self, m, done, fail, attempt, rules, next = std::move(next),
             read_version = *read_version](redis::outcome o, redis::reply&& r) mutable {
                if (o != redis::outcome::ok)
                    return fail(503, error_body("unavailable",
                                                "Redis did not answer; the change may or may "
                                                "not have been stored"));
                if (r.type != redis::reply_type::array || r.elements.size() != 2 ||
                    r.elements[0].type != redis::reply_type::integer)
                    return fail(503,
                                error_body("unavailable", "Redis refused the write: " + r.str));
                if (r.elements[0].integer == 0) {
                    if (attempt + 1 < max_update_attempts)
                        return self->attempt_update(m, done, attempt + 1);
                    return fail(409, error_body("conflict",
                                                "the admin state kept changing under this "
                                                "request; try again"));
                }
                auto version = parse_version(r.elements[1]);
                if (!version)
                    return fail(503, error_body("unavailable", "unexpected reply from Redis"));
                if (*version != read_version + 1) {  // cannot happen: the script compared
                    try {
                        rules = limit::build_rule_set(self->file_, next, *version);
                    } catch (const std::exception&) {
                    }
                }
                // Applied here at once (replies on this connection come in order, so no poll
                // has seen this version yet); the other instances see it within one poll.
                self->failed_version_.reset();
                self->install(rules, std::make_shared<const json>(std::move(next)), "admin API");
                update_result result;
                result.version = *version;
                result.rules = self->current();
                (*done)(std::move(result));
            });
    });
}

// ---------------------------------------------------------------------------------------
// control_plane

void control_plane::set_runtime_stats(std::function<nlohmann::json()> stats) {
    impl_->runtime_stats_ = std::move(stats);
}

control_plane::control_plane(asio::io_context& io, const config::settings& file, publisher publish)
    : impl_(std::make_shared<impl>(io, file, std::move(publish))) {}

control_plane::~control_plane() {
    // Pending Redis callbacks hold the impl; after stop() they publish nothing.
    impl_->stop();
}

std::shared_ptr<const limit::rule_set> control_plane::current() const {
    return impl_->current();
}

void control_plane::start() {
    asio::dispatch(impl_->io(), [i = impl_] { i->start(); });
}

void control_plane::stop() {
    asio::dispatch(impl_->io(), [i = impl_] { i->stop(); });
}

void control_plane::reload_file(const config::settings& file) {
    asio::dispatch(impl_->io(), [i = impl_, file] { i->reload_file(file); });
}

}  // namespace ratelimit_proxy::admin
