#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ratelimit_proxy/limit/decision.hpp"
#include "ratelimit_proxy/limit/policy.hpp"
#include "ratelimit_proxy/metering/pricing.hpp"
#include "ratelimit_proxy/metering/request_info.hpp"
#include "ratelimit_proxy/metering/usage_reader.hpp"

namespace ratelimit_proxy::server {

// How a metered request ended, which decides what it is charged.
enum class metered_ending {
    usage_seen,      // the response's usage: charged exactly
    upstream_error,  // never sent, or an error status: nothing charged
    estimated,       // no usage (cut, timed out, client gone): an estimate within the hold
};

// The metering of one request whose policies count tokens or money: what its body says,
// the bounds its reservation holds, the usage read from its response, and what it is
// finally charged. One per session, reused from request to request.
class metered_request {
  public:
    // Forget the last request.
    void reset();

    // After the body was read: its dialect and what it says (read_request accepted it).
    void begin(metering::dialect d, metering::request_info info, std::int64_t default_max_output);
    bool active() const { return active_; }
    const metering::request_info& info() const { return info_; }
    std::int64_t input_bound() const { return input_bound_; }
    std::int64_t output_bound() const { return output_bound_; }

    // The model's price (needed when a usd policy applies); null: none known.
    void set_price(const metering::price* p);
    bool priced() const { return price_.has_value(); }

    // What a policy of this meter reserves for this request: its upper bound.
    double reservation(const limit::policy& p) const;

    // The response: its status and whether it is an event stream; starts reading usage.
    void response_started(unsigned status, bool event_stream);
    // Null until the response started, and for an error response.
    metering::usage_reader* reader() { return reader_ ? &*reader_ : nullptr; }
    void count_response_bytes(std::uint64_t n) { response_bytes_ += n; }
    // The whole request is out to the upstream: from now on it may be billed whatever
    // becomes of the answer.
    void request_sent() { sent_ = true; }

    // How it ended, and the usage charged (exact, nothing, or the estimate).
    metered_ending ending() const;
    metering::usage charged_usage(std::uint64_t request_body_bytes) const;
    // What usage `u` costs under policy p's meter.
    double amount(const limit::policy& p, const metering::usage& u) const;
    std::int64_t nano_usd(const metering::usage& u) const;

    // The hold is settled once; every ending may ask.
    bool take_settlement() {
        if (!active_ || settled_)
            return false;
        settled_ = true;
        return true;
    }

  private:
    bool active_ = false;
    bool settled_ = false;
    metering::dialect dialect_ = metering::dialect::none;
    metering::request_info info_;
    std::int64_t input_bound_ = 0;
    std::int64_t output_bound_ = 0;
    std::optional<metering::price> price_;
    unsigned status_ = 0;  // 0: no response
    std::optional<metering::usage_reader> reader_;
    std::uint64_t response_bytes_ = 0;
    bool sent_ = false;
};

}  // namespace ratelimit_proxy::server
