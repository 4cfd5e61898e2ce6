// Why a connection to schemad failed at the TLS layer. gRPC 1.51 reports
// every TLS failure — wrong CA, wrong server name, a client certificate the
// server wants or refuses, TLS against plaintext and back — as the same
// "tcp handshaker shutdown". When a call fails like that, the SDK makes one
// handshake of its own with OpenSSL and the same settings, and says what
// failed:
//
//   std::string why = DiagnoseTls(settings);   // "" when TLS is not the problem
//   // "TLS handshake with 127.0.0.1:50051 failed: the server requires a client
//   //  certificate (set cert_file and key_file; schemactl --tls-cert/--tls-key)"
//
// Internal to the SDK. Thread-safety: stateless.
#ifndef SCHEMAD_CLIENT_SDK_TLS_DIAGNOSIS_H_
#define SCHEMAD_CLIENT_SDK_TLS_DIAGNOSIS_H_

#include <string>

#include "absl/time/time.h"

namespace schemad::internal {

struct TlsSettings {
  std::string target;       // the gRPC target: host:port, [v6]:port, dns:///host:port
  bool tls = false;         // whether the channel uses TLS
  std::string ca_pem;       // empty: the system's CAs
  std::string cert_pem;     // client certificate, or empty
  std::string key_pem;      // its key
  std::string server_name;  // the name to verify instead of the target's host
  absl::Duration timeout = absl::Seconds(5);  // for connecting, and for each read
};

// The TLS problem, as one sentence starting "TLS handshake with HOST:PORT
// failed: ..." (or, for a plaintext channel to a TLS server, "HOST:PORT
// speaks TLS ..."); "" when the target cannot be reached at all, cannot be
// parsed (unix sockets), or the handshake works.
std::string DiagnoseTls(const TlsSettings& settings);

// "" when `cert_pem` is a PEM certificate and `key_pem` its PEM private key;
// otherwise what is wrong (gRPC would only say "empty address list").
std::string CheckClientCertificate(const std::string& cert_pem, const std::string& key_pem);

// Whether a gRPC error message looks like a failed handshake (the only
// failures DiagnoseTls can explain).
bool LooksLikeHandshakeFailure(const std::string& grpc_message);

}  // namespace schemad::internal

#endif  // SCHEMAD_CLIENT_SDK_TLS_DIAGNOSIS_H_
