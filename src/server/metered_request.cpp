#include "ratelimit_proxy/server/metered_request.hpp"

#include <algorithm>

namespace ratelimit_proxy::server {

namespace {

// A token is at least a byte of text, and usually about four: an estimate of the tokens in
// `bytes`, capped by the bound already reserved for them.
std::int64_t estimate_tokens(std::uint64_t bytes, std::int64_t bound) {
    const auto estimate = static_cast<std::int64_t>((bytes + 3) / 4);
    return std::min(estimate, bound);
}

}  // namespace

void metered_request::reset() {
    active_ = false;
    settled_ = false;
    dialect_ = metering::dialect::none;
    info_ = {};
    input_bound_ = 0;
    output_bound_ = 0;
    price_.reset();
    status_ = 0;
    reader_.reset();
    response_bytes_ = 0;
    sent_ = false;
}

void metered_request::begin(metering::dialect d, metering::request_info info,
                            std::int64_t default_max_output) {
    active_ = true;
    settled_ = false;
    dialect_ = d;
    info_ = std::move(info);
    input_bound_ = info_.input_bound;
    output_bound_ =
        d == metering::dialect::embeddings ? 0 : metering::output_bound(info_, default_max_output);
}

void metered_request::set_price(const metering::price* p) {
    if (p)
        price_ = *p;
    else
        price_.reset();
}

double metered_request::reservation(const limit::policy& p) const {
    switch (p.what) {
        case limit::meter::requests:
            return p.cost;
        case limit::meter::tokens:
            switch (p.counts) {
                case limit::token_count::input:
                    return static_cast<double>(input_bound_);
                case limit::token_count::output:
                    return static_cast<double>(output_bound_);
                case limit::token_count::total:
                    break;
            }
            return static_cast<double>(input_bound_ + output_bound_);
        case limit::meter::usd:
            return price_ ? static_cast<double>(
                                metering::bound_nano_usd(*price_, input_bound_, output_bound_))
                          : 0.0;
    }
    return 0;
}

void metered_request::response_started(unsigned status, bool event_stream) {
    status_ = status;
    if (status >= 200 && status < 300)
        reader_.emplace(dialect_, event_stream, metering::hides_usage_chunk(info_));
}

metered_ending metered_request::ending() const {
    // Sent and then no answer (the client left, the upstream timed out or broke off): the
    // upstream may well bill it, so it is estimated, not forgiven.
    if (status_ == 0)
        return sent_ ? metered_ending::estimated : metered_ending::upstream_error;
    if (status_ >= 400 || status_ < 200)
        return metered_ending::upstream_error;
    if (reader_ && reader_->complete())
        return metered_ending::usage_seen;
    return metered_ending::estimated;
}

metering::usage metered_request::charged_usage(std::uint64_t request_body_bytes) const {
    switch (ending()) {
        case metered_ending::usage_seen:
            return reader_->result();
        case metered_ending::upstream_error:
            return {};
        case metered_ending::estimated:
            break;
    }
    // Whatever usage the stream did show (Anthropic's message_start carries the input) is
    // kept; the rest is estimated from the bytes, never beyond what was reserved.
    metering::usage u = reader_ ? reader_->result() : metering::usage{};
    if (u.all_input() == 0)
        u.input = estimate_tokens(request_body_bytes, input_bound_);
    u.output = std::max(u.output, estimate_tokens(response_bytes_, output_bound_));
    u.output = std::min(u.output, std::max<std::int64_t>(output_bound_, 0));
    return u;
}

std::int64_t metered_request::nano_usd(const metering::usage& u) const {
    return price_ ? metering::cost_nano_usd(*price_, u) : 0;
}

double metered_request::amount(const limit::policy& p, const metering::usage& u) const {
    switch (p.what) {
        case limit::meter::requests:
            return p.cost;
        case limit::meter::tokens:
            switch (p.counts) {
                case limit::token_count::input:
                    return static_cast<double>(u.all_input());
                case limit::token_count::output:
                    return static_cast<double>(u.output);
                case limit::token_count::total:
                    break;
            }
            return static_cast<double>(u.total());
        case limit::meter::usd:
            return static_cast<double>(nano_usd(u));
    }
    return 0;
}

}  // namespace ratelimit_proxy::server
