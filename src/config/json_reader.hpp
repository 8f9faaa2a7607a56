#pragma once

// Private to src/config: the pieces its readers share to read JSON
// objects strictly (unknown fields and wrong types are config_errors naming the field).

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "ratelimit_proxy/config/config.hpp"

namespace ratelimit_proxy::config::detail {

using json = nlohmann::json;

// Reads one JSON object, each known member through its setter; anything else is an error
// so that a typo in a field name never passes silently.
class object_reader {
  public:
    object_reader(const json& j, std::string path) : j_(j), path_(std::move(path)) {
        if (!j_.is_object())
            throw config_error(path_.empty() ? "config" : path_, "expected an object");
    }

    template <class F>
    object_reader& field(const std::string& name, F&& set) {
        seen_.push_back(name);
        if (auto it = j_.find(name); it != j_.end())
            set(*it, qualified(name));
        return *this;
    }

    // A nested object read by `read_fields(object_reader&)`, with its unknown fields rejected.
    template <class F>
    object_reader& section(const std::string& name, F&& read_fields) {
        return field(name, [&read_fields](const json& v, const std::string& path) {
            object_reader r(v, path);
            read_fields(r);
            r.reject_unknown();
        });
    }

    void reject_unknown() const {
        for (auto it = j_.begin(); it != j_.end(); ++it) {
            if (std::find(seen_.begin(), seen_.end(), it.key()) == seen_.end())
                throw config_error(qualified(it.key()), "unknown field");
        }
    }

    bool has(const std::string& name) const { return j_.contains(name); }

    std::string qualified(const std::string& name) const {
        return path_.empty() ? name : path_ + "." + name;
    }

  private:
    const json& j_;
    std::string path_;
    std::vector<std::string> seen_;
};

inline std::string indexed(const std::string& path, std::size_t i) {
    return path + "[" + std::to_string(i) + "]";
}

inline auto string_into(std::string& out) {
    return [&out](const json& v, const std::string& field) {
        if (!v.is_string())
            throw config_error(field, "expected a string");
        out = v.get<std::string>();
    };
}

inline auto bool_into(bool& out) {
    return [&out](const json& v, const std::string& field) {
        if (!v.is_boolean())
            throw config_error(field, "expected true or false");
        out = v.get<bool>();
    };
}

template <class T>
auto unsigned_into(T& out) {
    return [&out](const json& v, const std::string& field) {
        // Range-checked: 4294967297 must not become 1 in an unsigned.
        if (!v.is_number_integer() || v.get<long long>() < 0 ||
            v.get<unsigned long long>() > std::numeric_limits<T>::max())
            throw config_error(field, "expected a non-negative integer");
        out = static_cast<T>(v.get<unsigned long long>());
    };
}

inline auto millis_into(std::chrono::milliseconds& out, bool allow_zero = false) {
    return [&out, allow_zero](const json& v, const std::string& field) {
        if (!v.is_number_integer() || v.get<long long>() < (allow_zero ? 0 : 1))
            throw config_error(field, allow_zero ? "expected a non-negative integer (milliseconds)"
                                                 : "expected a positive integer (milliseconds)");
        out = std::chrono::milliseconds(v.get<long long>());
    };
}

// A finite number (not a bool); throws naming the field with `problem` otherwise.
inline double finite_number(const json& v, const std::string& field, const std::string& problem) {
    if (!v.is_number() || !std::isfinite(v.get<double>()))
        throw config_error(field, problem);
    return v.get<double>();
}

inline auto positive_number_into(double& out) {
    return [&out](const json& v, const std::string& field) {
        double d = finite_number(v, field, "expected a positive number");
        if (!(d > 0))
            throw config_error(field, "expected a positive number");
        out = d;
    };
}

// ["a", "b"]: every element a string.
inline auto string_list_into(std::vector<std::string>& out) {
    return [&out](const json& v, const std::string& field) {
        if (!v.is_array())
            throw config_error(field, "expected an array of strings");
        out.clear();
        for (std::size_t i = 0; i < v.size(); ++i) {
            if (!v[i].is_string())
                throw config_error(indexed(field, i), "expected a string");
            out.push_back(v[i].get<std::string>());
        }
    };
}

}  // namespace ratelimit_proxy::config::detail
