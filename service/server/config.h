// schemad's configuration: the YAML file, read into the proto schema
// (proto/schemad/v1/config.proto), validated, defaults filled in, relative
// paths resolved, and each database's DSN read from its environment variable
// or file.
//
//   ASSIGN_OR_RETURN(LoadedConfig config, LoadConfigFile("/etc/schemad/schemad.yaml"));
//   for (int i = 0; i < config.proto.databases_size(); ++i) {
//     OpenPqDatabase(config.dsns[i], ...);   // the only place DSNs go
//   }
//
// Every error names the key path, e.g.
//   `databases[1].dsn_env: environment variable SITE_B_DSN is not set`,
//   `databases[0].lable: unknown key`.
// DSNs are secrets: they are never put in a message or a log line. Each is
// parsed here (service/common/dsn.h), so a DSN libpq would mis-parse, or
// with a bad value, is an error naming the database. Also refused: values
// outside their bounds (kMax* below), an unauthenticated non-loopback
// `listen` without insecure_allow_unauthenticated, and a tokens_file or
// dsn_file other users may read (without allow_insecure_secret_files);
// a group-readable one is a warning in LoadedConfig::warnings.
// Migration sets are only checked for a name and a directory here; loading
// them (and their graph errors) is the registry's job.
//
// Thread-safety: stateless functions.
#ifndef SCHEMAD_SERVICE_SERVER_CONFIG_H_
#define SCHEMAD_SERVICE_SERVER_CONFIG_H_

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "schemad/v1/config.pb.h"

namespace schemad::server {

// Defaults, filled into LoadedConfig::proto where the file leaves a value unset.
inline constexpr absl::Duration kDefaultLockWait = absl::Seconds(60);
inline constexpr absl::Duration kDefaultConnectTimeout = absl::Seconds(10);
inline constexpr absl::Duration kDefaultShutdownGrace = absl::Seconds(30);
inline constexpr absl::Duration kDefaultOperationRetention = absl::Hours(24);
inline constexpr int kDefaultMaxRetainedOperations = 1000;
inline constexpr int kDefaultMaxSessionsPerDatabase = 8;
inline constexpr int kDefaultMinIdleSessions = 1;
inline constexpr int kDefaultRpcWorkers = 16;
inline constexpr int kDefaultOperationWorkers = 8;
inline constexpr absl::Duration kDefaultMetricsRefresh = absl::Seconds(30);
inline constexpr absl::Duration kDefaultIdleSessionTimeout = absl::Minutes(10);
inline constexpr absl::Duration kDefaultControlLease = absl::Seconds(15);

// The configuration file and every file it names (tokens, TLS, DSN files)
// are read only when they are regular files of at most this many bytes.
inline constexpr size_t kMaxConfigFileBytes = 1 << 20;

// Bounds: a value outside them stops the start, naming the key.
inline constexpr int kMaxPoolSize = 1024;  // each of pools.*
inline constexpr int kMaxRetainedOperationsLimit = 100000;
inline constexpr int kMaxMigrationSets = 1000;
inline constexpr int kMaxDatabases = 10000;
inline constexpr int kMaxLabels = 64;          // per database
inline constexpr size_t kMaxLabelBytes = 256;  // each key and value
inline constexpr absl::Duration kMaxLockWait = absl::Hours(24);
inline constexpr absl::Duration kMaxStatementTimeout = absl::Hours(24 * 7);  // and lock_timeout
inline constexpr absl::Duration kMaxConnectTimeout = absl::Hours(1);
inline constexpr absl::Duration kMaxShutdownGrace = absl::Hours(24);
inline constexpr absl::Duration kMaxOperationRetention = absl::Hours(24 * 30);
inline constexpr absl::Duration kMaxIdleSessionTimeout = absl::Hours(24 * 7);
inline constexpr absl::Duration kMinMetricsRefresh = absl::Seconds(1);
inline constexpr absl::Duration kMaxMetricsRefresh = absl::Hours(24);
inline constexpr absl::Duration kMinControlLease = absl::Seconds(2);
inline constexpr absl::Duration kMaxControlLease = absl::Hours(1);
inline constexpr size_t kMaxReplicaNameBytes = 128;

struct LoadedConfig {
  // Validated; every default filled in (timeouts, pools, grace, retention,
  // each database's allow_ensure_head_apply, timeouts and version_table);
  // paths absolute.
  v1::ServerConfig proto;
  // dsns[i] is the DSN of proto.databases(i), parsed once already (so it
  // parses). Secret: never log or return it.
  std::vector<std::string> dsns;
  // The dev server of Drift: "local", a DSN (secret, as dsns), or "" when
  // none is configured.
  std::string dev_dsn;
  // The DSN of control_database, or "" when none is configured (secret, as
  // dsns).
  std::string control_dsn;
  // What is accepted but worth a log line at start (a group-readable
  // secret file, say). Never holds a secret.
  std::vector<std::string> warnings;
};

// Where configuration values come from, as a seam for tests.
struct ConfigSources {
  // Relative paths in the file are resolved against this directory.
  std::string base_dir = ".";
  // Environment lookup for dsn_env; nullopt when the variable is not set.
  std::function<std::optional<std::string>(const std::string&)> getenv;
};

// Parses and validates YAML text. INVALID_ARGUMENT naming the key path (or
// the YAML line and column for syntax errors); NOT_FOUND / INVALID_ARGUMENT
// for unreadable files named by the config, with the key path.
absl::StatusOr<LoadedConfig> ParseConfig(absl::string_view yaml, const ConfigSources& sources);

// Reads `path` and parses it with the process environment, relative paths
// resolved against the file's directory. Errors are prefixed with `path`.
absl::StatusOr<LoadedConfig> LoadConfigFile(const std::string& path);

// Whether `listen` (host:port, [v6]:port, unix:path) only accepts local
// connections: 127.0.0.0/8, ::1, localhost, a Unix socket.
bool IsLoopbackListen(absl::string_view listen);

// INVALID_ARGUMENT naming `--listen` when serving `listen` (an override of
// the configured address) would expose an unauthenticated server: no
// tokens_file, no tls.require_client_cert, not loopback, and no
// insecure_allow_unauthenticated. ParseConfig checks the configured address.
absl::Status CheckListenExposure(const v1::ServerConfig& config, const std::string& listen);

// FAILED_PRECONDITION naming the first key whose value differs between the
// running configuration and a reloaded one when only a restart can change
// it: listen, tls, metrics, reflection, log_format, pools, shutdown_grace,
// operation_retention, max_retained_operations, dev_server,
// control_database, replica_name. Everything else (migration
// sets, databases, tokens_file, timeouts, the secret-file and
// unauthenticated-exposure switches) reloads.
absl::Status CheckReloadable(const v1::ServerConfig& running, const v1::ServerConfig& reloaded);

// `replica_name` when the configuration sets one, else `<hostname>-<pid>`
// (characters a replica name may not hold become '-').
std::string ReplicaNameOf(const v1::ServerConfig& config);

// The duration grammar of configuration values (and of revision files'
// lock_timeout): `<number><unit>` terms, units us, ms, s, min, m, h, d; `0`
// means zero. INVALID_ARGUMENT otherwise.
absl::StatusOr<absl::Duration> ParseConfigDuration(absl::string_view text);

}  // namespace schemad::server

#endif  // SCHEMAD_SERVICE_SERVER_CONFIG_H_
