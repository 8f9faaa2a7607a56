#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "ratelimit_proxy/metering/usage.hpp"

namespace ratelimit_proxy::metering {

// One model's prices, exact: micro-USD per million tokens (USD per million tokens × 10^6, so
// 0.15 is 150000). Costs are in nano-USD.
struct price {
    std::int64_t input = 0;
    std::int64_t cached_input = 0;
    std::int64_t cache_write = 0;
    std::int64_t output = 0;
};

constexpr std::int64_t nano_usd_per_usd = 1'000'000'000;

// USD per million tokens (a JSON number such as 0.15) to micro-USD per million; nullopt if it
// is negative, not finite, above 1e6, or has more than 6 decimals.
std::optional<std::int64_t> micro_usd_from(double usd_per_million);
// The reverse, for JSON answers: 150000 -> 0.15.
double usd_from_micro(std::int64_t micro_usd_per_million);

// What `u` costs at `p`, in nano-USD, rounded up.
std::int64_t cost_nano_usd(const price& p, const usage& u);
// The most `input_tokens` + `output_tokens` can cost at `p`: every input token at the dearest
// input price (plain, cached or cache write), rounded up.
std::int64_t bound_nano_usd(const price& p, std::int64_t input_tokens, std::int64_t output_tokens);

// Prices by model: exact name first, then the longest "prefix*" entry.
class price_table {
  public:
    void set(std::string model, price p) { prices_[std::move(model)] = p; }
    bool erase(std::string_view model);
    // The entry that prices `model` (exact, then longest prefix*), or null.
    const price* find(std::string_view model) const;
    // The name of the entry find() uses (for answers and logs), or empty.
    std::string_view entry_for(std::string_view model) const;
    const std::map<std::string, price, std::less<>>& entries() const { return prices_; }
    bool empty() const { return prices_.empty(); }

  private:
    std::map<std::string, price, std::less<>> prices_;
};

}  // namespace ratelimit_proxy::metering
