#include "client/sdk/tls_diagnosis.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace schemad::internal {
namespace {

struct SslCtxFree {
  void operator()(SSL_CTX* ctx) const { SSL_CTX_free(ctx); }
};
struct SslFree {
  void operator()(SSL* ssl) const { SSL_free(ssl); }
};
struct BioFree {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct KeyFree {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};

class Socket {
 public:
  explicit Socket(int fd) : fd_(fd) {}
  ~Socket() {
    if (fd_ >= 0) {
      close(fd_);
    }
  }
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  int fd() const { return fd_; }

 private:
  int fd_;
};

// host and port of a gRPC target; false for targets that are not TCP.
bool SplitTarget(std::string target, std::string* host, std::string* port) {
  absl::string_view t = target;
  for (absl::string_view scheme : {"dns:///", "dns:", "ipv4:", "ipv6:"}) {
    if (absl::ConsumePrefix(&t, scheme)) {
      break;
    }
  }
  if (t.empty() || absl::StartsWith(t, "unix:") || absl::StrContains(t, ",")) {
    return false;
  }
  if (absl::ConsumePrefix(&t, "[")) {
    const size_t close_bracket = t.find(']');
    if (close_bracket == absl::string_view::npos || close_bracket + 1 >= t.size() ||
        t[close_bracket + 1] != ':') {
      return false;
    }
    *host = std::string(t.substr(0, close_bracket));
    *port = std::string(t.substr(close_bracket + 2));
  } else {
    const size_t colon = t.rfind(':');
    if (colon == absl::string_view::npos) {
      return false;
    }
    *host = std::string(t.substr(0, colon));
    *port = std::string(t.substr(colon + 1));
  }
  return !host->empty() && !port->empty();
}

// A connected TCP socket with send/receive timeouts, or -1.
int ConnectTcp(const std::string& host, const std::string& port, absl::Duration timeout) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), port.c_str(), &hints, &found) != 0) {
    return -1;
  }
  int connected = -1;
  for (addrinfo* a = found; a != nullptr && connected < 0; a = a->ai_next) {
    const int fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
    if (fd < 0) {
      continue;
    }
    const int flags = fcntl(fd, F_GETFL, 0);
    fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    int rc = connect(fd, a->ai_addr, a->ai_addrlen);
    if (rc != 0 && errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      rc = poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(timeout))) == 1 ? 0 : -1;
      int error = 0;
      socklen_t length = sizeof error;
      if (rc == 0 && (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0 || error != 0)) {
        rc = -1;
      }
    }
    if (rc != 0) {
      close(fd);
      continue;
    }
    fcntl(fd, F_SETFL, flags);
    const timeval tv = absl::ToTimeval(timeout);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    connected = fd;
  }
  freeaddrinfo(found);
  return connected;
}

bool IsIpAddress(const std::string& host) {
  unsigned char buffer[sizeof(in6_addr)];
  return inet_pton(AF_INET, host.c_str(), buffer) == 1 ||
         inet_pton(AF_INET6, host.c_str(), buffer) == 1;
}

// OpenSSL's error queue as text (its last reason), and cleared.
std::string TakeOpenSslError() {
  unsigned long last = 0;
  for (unsigned long e = ERR_get_error(); e != 0; e = ERR_get_error()) {
    last = e;
  }
  if (last == 0) {
    return "";
  }
  const char* reason = ERR_reason_error_string(last);
  return reason != nullptr ? reason : "";
}

bool LoadCas(SSL_CTX* ctx, const std::string& pem) {
  if (pem.empty()) {
    return SSL_CTX_set_default_verify_paths(ctx) == 1;
  }
  std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  int loaded = 0;
  while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    X509_STORE_add_cert(store, cert);
    X509_free(cert);
    ++loaded;
  }
  ERR_clear_error();  // the end of the PEM data
  return loaded > 0;
}

// "" when the client certificate and key are usable, else what is wrong.
std::string LoadClientCertificate(SSL_CTX* ctx, const std::string& cert_pem,
                                  const std::string& key_pem) {
  std::unique_ptr<BIO, BioFree> bio(
      BIO_new_mem_buf(cert_pem.data(), static_cast<int>(cert_pem.size())));
  std::unique_ptr<X509, X509Free> cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (cert == nullptr || SSL_CTX_use_certificate(ctx, cert.get()) != 1) {
    ERR_clear_error();
    return "the client certificate (cert_file, --tls-cert) is not a PEM certificate";
  }
  while (X509* extra = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    SSL_CTX_add_extra_chain_cert(ctx, extra);  // takes ownership
  }
  ERR_clear_error();
  std::unique_ptr<BIO, BioFree> key_bio(
      BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size())));
  std::unique_ptr<EVP_PKEY, KeyFree> key(
      PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
  if (key == nullptr) {
    ERR_clear_error();
    return "the client key (key_file, --tls-key) is not a PEM private key";
  }
  if (SSL_CTX_use_PrivateKey(ctx, key.get()) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
    ERR_clear_error();
    return "the client key (key_file, --tls-key) does not belong to the client certificate";
  }
  return "";
}

// The CA names a server's CertificateRequest listed ("CN=test-ca, ..."),
// or "" when it asked for no client certificate (or named no CA).
std::string RequestedCas(SSL* ssl) {
  STACK_OF(X509_NAME)* names = SSL_get_client_CA_list(ssl);
  std::string out;
  for (int i = 0; names != nullptr && i < sk_X509_NAME_num(names); ++i) {
    char buffer[256] = {};
    X509_NAME_oneline(sk_X509_NAME_value(names, i), buffer, sizeof buffer - 1);
    absl::StrAppend(&out, out.empty() ? "" : ", ", absl::StripPrefix(buffer, "/"));
  }
  return out;
}

// What a failed handshake or first read says, in words.
std::string Explain(SSL* ssl, const TlsSettings& s, const std::string& name,
                    const std::string& error) {
  const long verify = SSL_get_verify_result(ssl);
  if (verify != X509_V_OK) {
    if (verify == X509_V_ERR_HOSTNAME_MISMATCH || verify == X509_V_ERR_IP_ADDRESS_MISMATCH) {
      return absl::StrCat("the server's certificate is not for \"", name,
                          "\"; set tls_server_name (schemactl --tls-server-name) to a name it "
                          "holds");
    }
    const std::string reason = X509_verify_cert_error_string(verify);
    if (verify == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
        verify == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT ||
        verify == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN ||
        verify == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT) {
      return absl::StrCat("the server's certificate is not signed by a CA ",
                          s.ca_pem.empty() ? "this system trusts" : "in root_ca_file (--tls-ca)",
                          " (", reason, ")");
    }
    return absl::StrCat("the server's certificate did not verify (", reason, ")");
  }
  const std::string lower = absl::AsciiStrToLower(error);
  if (absl::StrContains(lower, "wrong version number") ||
      absl::StrContains(lower, "packet length too long") ||
      absl::StrContains(lower, "http request")) {
    return "the server does not speak TLS (it answered in plaintext); connect without TLS or to "
           "its TLS port";
  }
  if (absl::StrContains(lower, "certificate required") ||
      (s.cert_pem.empty() && absl::StrContains(lower, "handshake failure"))) {
    return "the server requires a client certificate; set cert_file and key_file (schemactl "
           "--tls-cert and --tls-key)";
  }
  if (absl::StrContains(lower, "alert")) {
    if (!s.cert_pem.empty()) {
      return absl::StrCat("the server refused the client certificate (", error,
                          "): it must be signed by a CA in the server's tls.client_ca_file");
    }
    return absl::StrCat("the server refused the handshake (", error, ")");
  }
  if (error.empty() || absl::StrContains(lower, "unexpected eof")) {
    // gRPC's server hangs up without an alert when it does not like the
    // client's certificate (or its absence).
    const std::string cas = RequestedCas(ssl);
    if (!cas.empty() && s.cert_pem.empty()) {
      return absl::StrCat("the server requires a client certificate (signed by ", cas,
                          "); set cert_file and key_file (schemactl --tls-cert and --tls-key)");
    }
    if (!cas.empty()) {
      return absl::StrCat("the server refused the client certificate: it must be signed by ", cas,
                          " (the server's tls.client_ca_file)");
    }
    return "the server closed the connection during the handshake";
  }
  return error;
}

}  // namespace

std::string CheckClientCertificate(const std::string& cert_pem, const std::string& key_pem) {
  std::unique_ptr<SSL_CTX, SslCtxFree> ctx(SSL_CTX_new(TLS_client_method()));
  return ctx == nullptr ? "" : LoadClientCertificate(ctx.get(), cert_pem, key_pem);
}

bool LooksLikeHandshakeFailure(const std::string& grpc_message) {
  const std::string lower = absl::AsciiStrToLower(grpc_message);
  for (absl::string_view sign :
       {"handshake", "socket closed", "ssl", "peer name", "peer certificate", "settings frame"}) {
    if (absl::StrContains(lower, sign)) {
      return true;
    }
  }
  return false;
}

std::string DiagnoseTls(const TlsSettings& s) {
  std::string host;
  std::string port;
  if (!SplitTarget(s.target, &host, &port)) {
    return "";
  }
  const Socket socket(ConnectTcp(host, port, s.timeout));
  if (socket.fd() < 0) {
    return "";  // not reachable at all: not a TLS problem
  }
  const std::string where = absl::StrCat(host, ":", port);
  const std::string failed = absl::StrCat("TLS handshake with ", where, " failed: ");
  std::unique_ptr<SSL_CTX, SslCtxFree> ctx(SSL_CTX_new(TLS_client_method()));
  if (ctx == nullptr) {
    return "";
  }
  static const unsigned char kAlpn[] = {2, 'h', '2'};
  if (!s.tls) {
    // A plaintext channel: does the server want TLS?
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
    std::unique_ptr<SSL, SslFree> ssl(SSL_new(ctx.get()));
    SSL_set_fd(ssl.get(), socket.fd());
    SSL_set_alpn_protos(ssl.get(), kAlpn, sizeof kAlpn);
    const int rc = SSL_connect(ssl.get());
    const std::string error = TakeOpenSslError();
    if (rc == 1 || absl::StrContains(absl::AsciiStrToLower(error), "alert")) {
      return absl::StrCat(where,
                          " speaks TLS, but this client connects in plaintext; use TLS "
                          "(ClientOptions tls or root_ca_file; schemactl --tls or --tls-ca)");
    }
    return "";
  }
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  if (!LoadCas(ctx.get(), s.ca_pem)) {
    return absl::StrCat(failed, "root_ca_file (--tls-ca) holds no PEM certificate");
  }
  if (!s.cert_pem.empty()) {
    const std::string problem = LoadClientCertificate(ctx.get(), s.cert_pem, s.key_pem);
    if (!problem.empty()) {
      return absl::StrCat(failed, problem);
    }
  }
  std::unique_ptr<SSL, SslFree> ssl(SSL_new(ctx.get()));
  SSL_set_fd(ssl.get(), socket.fd());
  SSL_set_alpn_protos(ssl.get(), kAlpn, sizeof kAlpn);
  const std::string name = s.server_name.empty() ? host : s.server_name;
  if (IsIpAddress(name)) {
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl.get()), name.c_str());
  } else {
    // SSL_set_tlsext_host_name is a macro with a C cast.
    SSL_ctrl(ssl.get(), SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
             const_cast<char*>(name.c_str()));
    SSL_set1_host(ssl.get(), name.c_str());
  }
  if (SSL_connect(ssl.get()) != 1) {
    return absl::StrCat(failed, Explain(ssl.get(), s, name, TakeOpenSslError()));
  }
  // Under TLS 1.3 the server judges the client's certificate after the
  // handshake: its verdict is the first thing to read (an alert, or the
  // server's HTTP/2 settings when all is well).
  char byte = 0;
  const int rc = SSL_read(ssl.get(), &byte, 1);
  if (rc > 0) {
    return "";
  }
  const int saved_errno = errno;
  const int kind = SSL_get_error(ssl.get(), rc);
  const std::string error = TakeOpenSslError();
  if (kind == SSL_ERROR_WANT_READ || (kind == SSL_ERROR_SYSCALL && error.empty() &&
                                      (saved_errno == EAGAIN || saved_errno == EWOULDBLOCK))) {
    return "";  // nothing within the timeout: TLS works, something else failed
  }
  // An alert, or the server hanging up (a clean close, or a reset when our
  // first bytes were still unread on its side).
  return absl::StrCat(failed, Explain(ssl.get(), s, name, error));
}

}  // namespace schemad::internal
