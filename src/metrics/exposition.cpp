#include "ratelimit_proxy/metrics/exposition.hpp"

#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include <limits>
#include <map>
#include <sstream>
#include <vector>

namespace ratelimit_proxy::metrics {

struct exposition::impl {
    std::vector<prometheus::MetricFamily> families;
    std::map<std::string, std::size_t, std::less<>> by_name;

    prometheus::ClientMetric& add(std::string_view name, std::string_view help,
                                  prometheus::MetricType type, labels l) {
        auto it = by_name.find(name);
        if (it == by_name.end()) {
            prometheus::MetricFamily f;
            f.name = std::string(name);
            f.help = std::string(help);
            f.type = type;
            families.push_back(std::move(f));
            it = by_name.emplace(std::string(name), families.size() - 1).first;
        }
        auto& metric = families[it->second].metric.emplace_back();
        for (const auto& one : l)
            metric.label.push_back({std::string(one.name), std::string(one.value)});
        return metric;
    }
};

exposition::exposition() : impl_(std::make_unique<impl>()) {}
exposition::~exposition() = default;

void exposition::counter(std::string_view name, std::string_view help, labels l, double value) {
    impl_->add(name, help, prometheus::MetricType::Counter, l).counter.value = value;
}

void exposition::gauge(std::string_view name, std::string_view help, labels l, double value) {
    impl_->add(name, help, prometheus::MetricType::Gauge, l).gauge.value = value;
}

void exposition::histogram(std::string_view name, std::string_view help, labels l,
                           bucket_bounds bounds, const histogram_totals& totals) {
    auto& h = impl_->add(name, help, prometheus::MetricType::Histogram, l).histogram;
    h.sample_count = totals.count;
    h.sample_sum = totals.sum;
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < bounds.size(); ++i) {
        cumulative += totals.buckets[i];
        h.bucket.push_back({cumulative, bounds[i]});
    }
    h.bucket.push_back({totals.count, std::numeric_limits<double>::infinity()});
}

std::string exposition::text() const {
    std::ostringstream out;
    prometheus::TextSerializer{}.Serialize(out, impl_->families);
    return out.str();
}

}  // namespace ratelimit_proxy::metrics
