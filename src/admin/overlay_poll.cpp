// The admin overlay poll: every control_plane::poll_interval the control thread reads the
// overlay's version and, when it moved, the overlay itself, and applies it. This is how a
// change made on one instance reaches every other one.
#include <spdlog/spdlog.h>

#include <charconv>

#include "overlay_state.hpp"
#include "ratelimit_proxy/admin/control_plane.hpp"

namespace ratelimit_proxy::admin {

using json = nlohmann::json;

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

void control_plane::schedule_poll() {
    if (stopped_)
        return;
    timer_.expires_after(poll_interval);
    timer_.async_wait([this](boost::system::error_code ec) {
        if (!ec)
            poll();
    });
}

// Every poll_interval: GET the version; when it is not the one applied, fetch the state.
// One round at a time; a slow Redis makes the rounds slower, never piles them up.
void control_plane::poll() {
    if (stopped_)
        return;
    if (in_flight_)
        return schedule_poll();
    in_flight_ = true;
    if (fetch_pending_)
        return fetch();
    const std::string_view args[] = {"GET", version_key_};
    redis_.command(args, [this](redis::outcome o, redis::reply&& r) {
        if (stopped_)
            return;
        if (o != redis::outcome::ok) {
            if (!warned_unreachable_)
                spdlog::warn("admin rules: Redis unreachable, keeping rules version {}",
                             applied_version_);
            warned_unreachable_ = true;
            in_flight_ = false;
            return schedule_poll();
        }
        if (warned_unreachable_)
            spdlog::info("admin rules: Redis reachable again");
        warned_unreachable_ = false;
        auto v = parse_version(r);
        if (!v) {
            spdlog::error("admin rules: {} is not a version number", version_key_);
        } else if (*v != applied_version_ && *v != failed_version_) {
            return fetch();
        }
        in_flight_ = false;
        schedule_poll();
    });
}

// MGET version state: both from one moment.
void control_plane::fetch() {
    const std::string_view args[] = {"MGET", version_key_, state_key_};
    redis_.command(args, [this](redis::outcome o, redis::reply&& r) {
        if (stopped_)
            return;
        on_fetched(o, std::move(r));
        in_flight_ = false;
        schedule_poll();
    });
}

void control_plane::on_fetched(redis::outcome o, redis::reply&& r) {
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

}  // namespace ratelimit_proxy::admin
