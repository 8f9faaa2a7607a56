// libFuzzer target: the JSON configuration file. config::parse_json then config::validate on
// arbitrary text. Their contract is to throw config_error (naming the field) for anything
// wrong; any other exception escaping is a crash, as are memory errors and undefined behaviour.
#include "ratelimit_proxy/config/config.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <string>
#include <typeinfo>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    namespace config = ratelimit_proxy::config;
    const std::string text(reinterpret_cast<const char*>(data), size);
    try {
        config::settings s = config::parse_json(text, "fuzz.json");
        config::validate(s);
        // Settings that passed validation must make sense.
        if (!(s.rate_limit.requests_per_minute > 0) || !(s.effective_burst() > 0)) {
            std::fprintf(stderr,
                         "fuzz_config: validated settings with a rate that is not positive\n");
            __builtin_trap();
        }
    } catch (const config::config_error& e) {
        // The message names the field: never empty.
        if (e.field().empty() && std::string(e.what()).empty())
            __builtin_trap();
    } catch (const std::exception& e) {
        // e.g. a nlohmann::json type_error or out_of_range leaking out
        std::fprintf(stderr, "fuzz_config: %s escaped parse_json/validate: %s\n", typeid(e).name(),
                     e.what());
        __builtin_trap();
    } catch (...) {
        std::fprintf(stderr, "fuzz_config: a non-std exception escaped parse_json/validate\n");
        __builtin_trap();
    }
    return 0;
}
