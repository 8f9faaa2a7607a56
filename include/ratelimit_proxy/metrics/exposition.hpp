#pragma once

#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>

#include "ratelimit_proxy/metrics/cells.hpp"

namespace ratelimit_proxy::metrics {

// What a scrape answers with: Prometheus 3 refuses a scrape without a valid Content-Type.
inline constexpr std::string_view content_type = "text/plain; version=0.0.4; charset=utf-8";

struct label {
    std::string_view name;
    std::string_view value;
};
using labels = std::initializer_list<label>;

// One scrape's samples, gathered family by family and written in the Prometheus text format
// (prometheus-cpp's TextSerializer). Series of one family may be added in any order; a
// family's type and help are those of its first series. Names are given whole: counters end
// in _total here, the serializer adds nothing.
class exposition {
  public:
    exposition();
    ~exposition();
    exposition(const exposition&) = delete;
    exposition& operator=(const exposition&) = delete;

    void counter(std::string_view name, std::string_view help, labels l, double value);
    void gauge(std::string_view name, std::string_view help, labels l, double value);
    void histogram(std::string_view name, std::string_view help, labels l, bucket_bounds bounds,
                   const histogram_totals& totals);

    std::string text() const;

  private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

}  // namespace ratelimit_proxy::metrics
