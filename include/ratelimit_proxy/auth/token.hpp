#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ratelimit_proxy::auth {

using digest = std::array<std::uint8_t, 32>;

inline constexpr std::string_view token_prefix = "rlp_";

// "rlp_" + 32 CSPRNG bytes in unpadded base64url (43 characters).
std::string generate_token();

digest sha256(std::string_view data);
std::string to_hex(const digest& d);

// Constant-time: the time taken does not depend on where the digests differ.
bool digests_equal(const digest& a, const digest& b);

// The token from an "Authorization: Bearer <token>" value, or nothing if the value is not
// a well-formed bearer credential.
std::optional<std::string_view> bearer_token(std::string_view authorization);

// Shape check before any lookup: prefix, length, base64url alphabet.
bool looks_like_token(std::string_view token);

}  // namespace ratelimit_proxy::auth
