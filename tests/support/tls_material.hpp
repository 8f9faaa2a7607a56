#pragma once

#include <string>

namespace rlp_test {

// A throw-away CA and a server certificate it signed, for 127.0.0.1 and localhost
// (SAN IP:127.0.0.1, DNS:localhost), made with the openssl CLI in a fresh temp directory.
struct tls_material {
    std::string dir;
    std::string ca_cert;      // PEM
    std::string server_cert;  // PEM
    std::string server_key;   // PEM, unencrypted

    static tls_material generate();
};

}  // namespace rlp_test
