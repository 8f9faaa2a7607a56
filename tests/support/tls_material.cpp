#include "tls_material.hpp"

#include <fstream>
#include <stdexcept>

#include "process.hpp"

namespace rlp_test {

namespace {
void run_openssl(const std::string& dir, std::vector<std::string> args) {
    args.insert(args.begin(), "openssl");
    child_process p(args, {}, dir + "/openssl.log");
    int code = p.wait_exit(std::chrono::seconds(30));
    if (code != 0)
        throw std::runtime_error("openssl " + args.at(1) + " failed (" + std::to_string(code) +
                                 "): " + p.read_log());
}
}  // namespace

tls_material tls_material::generate() {
    tls_material m;
    m.dir = temp_dir();
    m.ca_cert = m.dir + "/ca.pem";
    m.server_cert = m.dir + "/server.pem";
    m.server_key = m.dir + "/server.key";
    const std::string ca_key = m.dir + "/ca.key";
    const std::string csr = m.dir + "/server.csr";
    const std::string ext = m.dir + "/server.ext";
    {
        std::ofstream out(ext);
        out << "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
               "basicConstraints=critical,CA:FALSE\n"
               "keyUsage=critical,digitalSignature,keyEncipherment\n"
               "extendedKeyUsage=serverAuth\n";
    }
    run_openssl(m.dir,
                {"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                 "-nodes", "-keyout", ca_key, "-out", m.ca_cert, "-days", "2", "-subj",
                 "/CN=rlp test CA " + random_hex(4), "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign"});
    run_openssl(m.dir, {"req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", m.server_key, "-out", csr, "-subj", "/CN=localhost"});
    run_openssl(m.dir, {"x509", "-req", "-in", csr, "-CA", m.ca_cert, "-CAkey", ca_key,
                        "-CAcreateserial", "-out", m.server_cert, "-days", "2", "-extfile", ext});
    return m;
}

}  // namespace rlp_test
