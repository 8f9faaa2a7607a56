#include "ratelimit_proxy/metering/pricing.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace ratelimit_proxy::metering {

namespace {

using wide = __int128;

constexpr std::int64_t nano_per_micro_per_million = 1000;  // tokens × µUSD/M ÷ 1000 = nano-USD

// Each factor is held to [0, 2^62], so a sum of four products stays below 2^127: negative ones
// count as 0 (a usage or a price is never negative; a bad one must not lower a cost), and
// absurdly large ones saturate the result anyway.
std::int64_t factor(std::int64_t v) {
    return std::clamp<std::int64_t>(v, 0, std::int64_t{1} << 62);
}

// tokens × µUSD per million tokens: nano-USD × 1000.
wide product(std::int64_t tokens, std::int64_t micro_per_million) {
    return static_cast<wide>(factor(tokens)) * static_cast<wide>(factor(micro_per_million));
}

std::int64_t nano_rounded_up(wide thousandths) {
    const wide nano = (thousandths + (nano_per_micro_per_million - 1)) / nano_per_micro_per_million;
    const wide max = std::numeric_limits<std::int64_t>::max();
    return static_cast<std::int64_t>(nano > max ? max : nano);
}

using table = std::map<std::string, price, std::less<>>;

// The exact entry, else the longest "prefix*" whose prefix starts `model`.
table::const_iterator entry_of(const table& prices, std::string_view model) {
    if (const auto it = prices.find(model); it != prices.end())
        return it;
    auto best = prices.end();
    for (auto it = prices.begin(); it != prices.end(); ++it) {
        const std::string& key = it->first;
        if (key.empty() || key.back() != '*')
            continue;
        if (model.starts_with(std::string_view(key).substr(0, key.size() - 1)) &&
            (best == prices.end() || key.size() > best->first.size()))
            best = it;
    }
    return best;
}

}  // namespace

std::optional<std::int64_t> micro_usd_from(double usd_per_million) {
    if (!std::isfinite(usd_per_million) || usd_per_million < 0 || usd_per_million > 1e6)
        return std::nullopt;
    const long long micro = std::llround(usd_per_million * 1e6);
    // More than 6 decimals: the micro-USD integer would not be the price that was written.
    const double back = static_cast<double>(micro) / 1e6;
    if (std::fabs(back - usd_per_million) > 1e-9 * std::fabs(usd_per_million))
        return std::nullopt;
    return static_cast<std::int64_t>(micro);
}

double usd_from_micro(std::int64_t micro_usd_per_million) {
    return static_cast<double>(micro_usd_per_million) / 1e6;
}

std::int64_t cost_nano_usd(const price& p, const usage& u) {
    return nano_rounded_up(product(u.input, p.input) + product(u.cached_input, p.cached_input) +
                           product(u.cache_write, p.cache_write) + product(u.output, p.output));
}

std::int64_t bound_nano_usd(const price& p, std::int64_t input_tokens, std::int64_t output_tokens) {
    const std::int64_t dearest_input = std::max({p.input, p.cached_input, p.cache_write});
    return nano_rounded_up(product(input_tokens, dearest_input) + product(output_tokens, p.output));
}

bool price_table::erase(std::string_view model) {
    const auto it = prices_.find(model);
    if (it == prices_.end())
        return false;
    prices_.erase(it);
    return true;
}

const price* price_table::find(std::string_view model) const {
    const auto it = entry_of(prices_, model);
    return it == prices_.end() ? nullptr : &it->second;
}

std::string_view price_table::entry_for(std::string_view model) const {
    const auto it = entry_of(prices_, model);
    return it == prices_.end() ? std::string_view() : std::string_view(it->first);
}

}  // namespace ratelimit_proxy::metering
