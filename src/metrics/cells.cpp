#include "ratelimit_proxy/metrics/cells.hpp"

namespace ratelimit_proxy::metrics {

void histogram_cell::add_to(histogram_totals& t) const {
    for (std::size_t i = 0; i <= bounds_.size(); ++i) {
        const auto n = counts_[i].value();
        t.buckets[i] += n;
        t.count += n;
    }
    t.sum += sum_.value();
}

}  // namespace ratelimit_proxy::metrics
