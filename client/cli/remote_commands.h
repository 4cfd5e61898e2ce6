// schemactl --server: the database verbs through a schemad server (the C++
// SDK, client/sdk/schemad/client.h) instead of on a DSN, plus the verbs that
// only exist remotely: `dbs` and `ops list|watch|cancel`. Output, JSON shapes
// and exit codes follow the direct verbs (docs/cli.md, "Remote mode").
//
//   RemoteOptions remote;
//   remote.server = "schemad.ops:50051";
//   remote.database = "site-a";
//   int code = RunRemoteEnsureHead(global, remote, EnsureHeadOptions{}, out, err);
//
// Ctrl-C (GlobalOptions::cancelled) stops watching a running operation; the
// operation goes on on the server (`ops watch ID` follows it again, `ops
// cancel ID` stops it).
//
// Thread-safety: the functions share no state; each call opens its own channel.
#ifndef SCHEMAD_CLIENT_CLI_REMOTE_COMMANDS_H_
#define SCHEMAD_CLIENT_CLI_REMOTE_COMMANDS_H_

#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "client/cli/commands.h"

namespace schemad::cli {

// How to reach the server (flags and environment: see main.cc).
struct RemoteOptions {
  std::string server;    // --server, SCHEMAD_SERVER; empty: direct mode
  std::string database;  // --database, SCHEMAD_DATABASE: the configured database name
  std::string token;     // --token, SCHEMAD_TOKEN (or --token-file, SCHEMAD_TOKEN_FILE)
  std::string token_file;
  bool tls = false;                            // --tls: TLS with the system's CAs
  std::string tls_ca;                          // --tls-ca, SCHEMAD_TLS_CA
  std::string tls_cert;                        // --tls-cert, SCHEMAD_TLS_CERT (mutual TLS)
  std::string tls_key;                         // --tls-key, SCHEMAD_TLS_KEY
  std::string tls_server_name;                 // --tls-server-name, SCHEMAD_TLS_SERVER_NAME
  absl::Duration timeout = absl::Seconds(30);  // --timeout: unary calls
  bool lock_wait_set = false;  // --lock-wait was given: sent as the operation's lock wait
};

int RunRemoteUpgrade(const GlobalOptions& global, const RemoteOptions& remote,
                     const UpgradeOptions& options, std::ostream& out, std::ostream& err);
int RunRemoteDowngrade(const GlobalOptions& global, const RemoteOptions& remote,
                       const DowngradeOptions& options, std::ostream& out, std::ostream& err);
int RunRemoteStamp(const GlobalOptions& global, const RemoteOptions& remote,
                   const StampOptions& options, std::ostream& out, std::ostream& err);
int RunRemoteEnsureHead(const GlobalOptions& global, const RemoteOptions& remote,
                        const EnsureHeadOptions& options, std::ostream& out, std::ostream& err);
int RunRemoteResolve(const GlobalOptions& global, const RemoteOptions& remote,
                     const ResolveOptions& options, std::ostream& out, std::ostream& err);
int RunRemoteRepair(const GlobalOptions& global, const RemoteOptions& remote,
                    const RepairOptions& options, std::ostream& out, std::ostream& err);
// `drift` through the server's Drift RPC (its dev_server builds the schema).
int RunRemoteDrift(const GlobalOptions& global, const RemoteOptions& remote,
                   const DriftOptions& options, std::ostream& out, std::ostream& err);
int RunRemoteCurrent(const GlobalOptions& global, const RemoteOptions& remote,
                     const CurrentOptions& options, std::ostream& out, std::ostream& err);
int RunRemoteValidate(const GlobalOptions& global, const RemoteOptions& remote,
                      const ValidateOptions& options, std::ostream& out, std::ostream& err);
// The database's schemad_history rows (what `history --log` shows directly).
int RunRemoteHistory(const GlobalOptions& global, const RemoteOptions& remote,
                     const HistoryOptions& options, std::ostream& out, std::ostream& err);
int RunRemotePlan(const GlobalOptions& global, const RemoteOptions& remote,
                  const PlanOptions& options, std::ostream& out, std::ostream& err);

// `dbs`: every configured database with its state (at head, behind by N,
// needs attention, unreachable). Exit 0 even when some are behind; 5 when the
// server cannot be reached.
struct DbsOptions {
  std::map<std::string, std::string> labels;  // --label key=value (all must match)
};
int RunRemoteDbs(const GlobalOptions& global, const RemoteOptions& remote,
                 const DbsOptions& options, std::ostream& out, std::ostream& err);

// `health [--set NAME]`: the server's gRPC health (grpc.health.v1), or one
// migration set's. Prints SERVING or NOT_SERVING; exit 0 when serving, 1 when
// not (shutdown has begun) or the set is unknown, 5 when the server cannot be
// reached. Sends the token when one is configured; the server's health
// service needs none (container healthchecks and probes).
struct HealthOptions {
  std::string migration_set;  // --set; empty: the server as a whole
  bool ready = false;         // --ready: readiness instead (Client::CheckReady)
};
int RunRemoteHealth(const GlobalOptions& global, const RemoteOptions& remote,
                    const HealthOptions& options, std::ostream& out, std::ostream& err);

// `reload`: the server re-reads its configuration (the Reload RPC, as
// SIGHUP). Prints what changed; exit 0 when reloaded, the status's exit code
// (with the server's message naming the file and key) when the new
// configuration was refused and the previous one kept. Admin token.
int RunRemoteReload(const GlobalOptions& global, const RemoteOptions& remote, std::ostream& out,
                    std::ostream& err);

// `ops list [--running] [--limit N]`, `ops watch ID`, `ops cancel ID`.
struct OpsOptions {
  std::string action;        // list, watch, cancel
  std::string operation_id;  // watch, cancel
  bool running_only = false;
  int limit = 0;
};
int RunRemoteOps(const GlobalOptions& global, const RemoteOptions& remote,
                 const OpsOptions& options, std::ostream& out, std::ostream& err);

// `fleet upgrade|downgrade|ensure-head|stamp|validate|status`: one action over
// the databases a selector picks (FleetRun), with a live multi-line view on a
// terminal (one line per running site, counts of done/failed/queued), plain
// lines otherwise, a JSON summary with --json. Exit 1 when any site failed
// or was cancelled. `status` lists the selected databases' states (like
// `dbs`, with the fleet selector) and counts them.
struct FleetCliOptions {
  std::string action;  // upgrade, downgrade, ensure-head, stamp, validate, status, resume
  std::vector<std::string> targets;  // upgrade/downgrade: at most one; stamp: the revisions
  std::string selector;              // --selector
  int parallel = 4;                  // --parallel
  int canary = 0;                    // --canary K
  std::string canary_selector;       // --canary-selector
  bool continue_on_error = false;    // --continue-on-error
  bool allow_lint_errors = false;    // --allow-lint-errors
  absl::Duration site_timeout = absl::ZeroDuration();  // --site-timeout
};
int RunRemoteFleet(const GlobalOptions& global, const RemoteOptions& remote,
                   const FleetCliOptions& options, std::ostream& out, std::ostream& err);

namespace internal {

// One site of a running fleet operation, as the live view shows it.
struct FleetRunningSite {
  std::string site;
  std::string text;  // what it does now: "revision b2 (2/3) statement 1/4"
  absl::Time started = absl::InfinitePast();
};
struct FleetCounts {
  int done = 0;
  int failed = 0;
  int queued = 0;
  int skipped = 0;
};

// The live block of `schemactl fleet` on a terminal of `width` x `height`:
// a line per running site with its elapsed time, then the counts. It never
// takes more than `height - 1` lines (the cursor's line stays free), so that
// redrawing in place works however many sites run: when they outnumber the
// lines, the last site line becomes "... and N more running". Each line is
// cut to `width - 1` columns. Sizes of 0 or less mean unknown (80 x 24).
std::vector<std::string> FleetLiveBlock(const std::vector<FleetRunningSite>& running,
                                        const FleetCounts& counts, int width, int height,
                                        absl::Time now);

}  // namespace internal
}  // namespace schemad::cli

#endif  // SCHEMAD_CLIENT_CLI_REMOTE_COMMANDS_H_
