// schemad C++ client SDK: a typed wrapper over the schemad.v1.Schemad gRPC
// service that speaks plain structs (no protobuf in this header) and
// absl::StatusOr results.
//
// A control layer's main, blocking until its database is at head:
//
//   schemad::ClientOptions options;
//   options.target = "schemad.ops.svc:50051";
//   options.token = std::getenv("SCHEMAD_TOKEN");
//   if (absl::Status s = schemad::WaitForHead(options, "site-a", absl::Minutes(5)); !s.ok()) {
//     std::cerr << "schema not ready: " << s << "\n";
//     return 1;
//   }
//
// Streaming an upgrade with progress:
//
//   absl::StatusOr<std::unique_ptr<schemad::Client>> client = schemad::Client::Connect(options);
//   if (!client.ok()) return client.status();
//   schemad::CallOptions call;
//   call.on_event = [](const schemad::OperationEvent& e) { std::cerr << e.Describe() << "\n"; };
//   schemad::UpgradeRequest upgrade;
//   upgrade.target = "heads";
//   absl::StatusOr<schemad::OperationResult> result = (*client)->Upgrade("site-a", upgrade, call);
//
// Errors are the server's gRPC status codes as absl::Status codes (see
// proto/schemad/v1/schemad.proto for what each means). Retries: calls that
// are safe to repeat (EnsureHead, every read, Stamp, Resolve... see
// RetryPolicy) are retried while they fail UNAVAILABLE, with exponential
// backoff and jitter, within RetryPolicy::max_elapsed and the call's
// deadline. Streamed operations (Upgrade, Downgrade, Merge) are never sent
// twice: they wait for the server to become reachable (gRPC wait-for-ready)
// until their deadline instead.
//
// Thread-safety: a Client is thread-safe; share one per process (its channel
// is the warm connection). Callbacks run on the calling thread.
//
// Installed with schemad (docs/sdk.md): find_package(schemad CONFIG) and
// target schemad::client, or pkg-config schemad-client. This header needs
// only the standard library and abseil (status, statusor, time); the types
// are abseil's own, so a program must build against the abseil the SDK was
// built with (Debian 12's, 20220623).
#ifndef SCHEMAD_CLIENT_SDK_SCHEMAD_CLIENT_H_
#define SCHEMAD_CLIENT_SDK_SCHEMAD_CLIENT_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace schemad {

// ------------------------------------------------------------------ options

struct RetryPolicy {
  bool enabled = true;
  absl::Duration initial_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(5);
  double multiplier = 2.0;
  double jitter = 0.2;  // each sleep is backoff * (1 ± jitter), uniformly
  // Total time one call may spend retrying (also bounded by its deadline).
  absl::Duration max_elapsed = absl::Seconds(30);
};

struct ClientOptions {
  // gRPC target: "host:port", "dns:///name:port", "unix:///path". Required.
  std::string target;

  // TLS, on when `tls` is set or any file below is given.
  bool tls = false;
  std::string root_ca_file;     // PEM CAs that sign the server's certificate; empty: system roots
  std::string cert_file;        // PEM client certificate (mutual TLS)
  std::string key_file;         // PEM client key (mutual TLS)
  std::string tls_server_name;  // name to verify instead of the target's host

  std::string token;  // bearer token (`authorization: Bearer ...`); empty: none
  // Free-form caller label, sent as `x-schemad-who` and recorded in history
  // next to the token's name (e.g. "alice@laptop", "site-a-control-layer").
  std::string who;

  // Deadline of unary calls without their own.
  absl::Duration default_deadline = absl::Seconds(30);
  // Deadline of streamed operations (Upgrade, Downgrade, Merge, WatchOperation).
  absl::Duration operation_deadline = absl::Hours(24);

  RetryPolicy retry;

  // Options from the environment: SCHEMAD_SERVER (target), SCHEMAD_TOKEN or
  // SCHEMAD_TOKEN_FILE, SCHEMAD_TLS_CA, SCHEMAD_TLS_CERT, SCHEMAD_TLS_KEY,
  // SCHEMAD_TLS_SERVER_NAME, SCHEMAD_WHO. Unset variables leave the defaults.
  static ClientOptions FromEnvironment();
};

// ------------------------------------------------------------ domain types

enum class Direction { kUp, kDown };
enum class OperationKind {
  kUnspecified,
  kEnsureHead,
  kUpgrade,
  kDowngrade,
  kMerge,
  kStamp,
  kResolve,
  kFleet,  // FleetRun: one action over many databases
};
// kAbandoned: its replica died before it finished (servers with a control
// database; the database's own state says what committed).
// The grpc.health.v1 service name of a server's readiness (Client::CheckReady).
inline constexpr char kReadinessHealthService[] = "schemad.ready";

enum class OperationState {
  kUnspecified,
  kQueued,
  kRunning,
  kSucceeded,
  kFailed,
  kCancelled,
  kAbandoned
};
// Transaction scope of an upgrade or downgrade (TransactionMode in
// proto/schemad/v1/schemad.proto). kDefault: the migration set's own scope
// (the server's configuration, else the directory's schemad.conf, else per
// command). kPerCommand: Alembic's default, the command's transactional
// revisions commit together. kPerRevision: each revision commits on its own.
// kAll is kPerCommand's name before 0.2.
enum class TransactionMode { kDefault, kPerCommand, kPerRevision, kAll = kPerCommand };

const char* ToString(Direction direction);   // "up" / "down"
const char* ToString(OperationKind kind);    // "upgrade", "ensure-head", ...
const char* ToString(OperationState state);  // "running", "succeeded", ...

// One revision of a plan.
struct PlannedStep {
  std::string revision;
  Direction direction = Direction::kUp;
  std::string path;
  int statement_count = 0;
  bool transactional = true;
  std::string message;
};

struct FleetEvent;

// One finding of the server's lint of a migration set (docs/lint.md).
struct LintFinding {
  std::string rule;      // e.g. "create-index-not-concurrently"
  std::string severity;  // "error", "warning" or "info"
  std::string revision;
  std::string file;
  int line = 0;  // 1-based line of the statement in the file; 0: the revision
  std::string statement;
  std::string message;  // why it is dangerous and what to do instead
};

// A progress event of an operation. Which fields are set depends on `kind`.
struct OperationEvent {
  enum class Kind {
    kAccepted,           // operation_kind, target, who
    kOperationStarted,   // plan, rows_before
    kWaitingForLock,     // lock_holder, waited
    kLockAcquired,       // waited
    kRevisionStarted,    // revision, direction, step_index/step_count, statement_count
    kStatementStarted,   // revision, step_index/step_count, statement_index/statement_count, line
    kRevisionFinished,   // revision, direction, step_index/step_count, duration, status
    kOperationFinished,  // state, status, heads, duration, revisions_run
    kFleet,              // fleet (a fleet operation's own event)
    kUnknown,            // from a newer server
  };
  Kind kind = Kind::kUnknown;
  std::string operation_id;
  std::string database;
  absl::Time time = absl::InfinitePast();
  int64_t sequence = 0;
  // Events of the operation this stream skipped right before this one: detail
  // events (statements, lock waits) the server did not keep for replay or
  // skipped for a slow reader; 0 normally.
  int64_t events_dropped_before = 0;

  OperationKind operation_kind = OperationKind::kUnspecified;
  std::string target;
  std::string who;
  // kAccepted of a fleet run with allow_lint_errors: the error-level lint
  // findings it runs despite.
  std::vector<LintFinding> lint_errors;
  std::vector<PlannedStep> plan;
  std::vector<std::string> rows_before;
  std::string lock_holder;
  absl::Duration waited = absl::ZeroDuration();
  std::string revision;
  Direction direction = Direction::kUp;
  int step_index = 0;
  int step_count = 0;
  int statement_index = 0;
  int statement_count = 0;
  int line = 0;
  absl::Duration duration = absl::ZeroDuration();
  absl::Status status;
  OperationState state = OperationState::kUnspecified;
  std::vector<std::string> heads;
  int revisions_run = 0;
  std::shared_ptr<const FleetEvent> fleet;  // kFleet

  // One line for logs: "op-... site-a revision 3f2a (up) started, step 1 of 2".
  std::string Describe() const;
};

// ------------------------------------------------------------------- fleet

// One site's outcome in a fleet operation.
struct FleetSiteResult {
  enum class Outcome { kSkipped, kSucceeded, kFailed, kCancelled };
  std::string site;
  Outcome outcome = Outcome::kSkipped;
  std::vector<std::string> rows_before;
  std::vector<std::string> rows_after;
  // rows_after is known: always after a success; after a failure when the
  // server could still read the site's rows.
  bool rows_after_read = false;
  int revisions_run = 0;
  absl::Duration duration = absl::ZeroDuration();
  absl::Status status;  // why it failed, was skipped or cancelled
  std::string operation_id;
};
const char* OutcomeName(FleetSiteResult::Outcome outcome);  // "succeeded", ...

struct FleetSummary {
  std::string operation_id;            // the fleet operation
  std::vector<FleetSiteResult> sites;  // in selection order
  int succeeded = 0;
  int failed = 0;
  int skipped = 0;
  int cancelled = 0;
  absl::Duration duration = absl::ZeroDuration();
  absl::Status status;  // the fleet operation's status (FAILED_PRECONDITION: sites failed)
  bool ok() const { return status.ok() && failed == 0 && cancelled == 0; }
};

// A fleet operation's own event (OperationEvent::fleet).
struct FleetEvent {
  enum class Kind {
    kStageStarted,  // stage ("canary", "rollout"), stage_sites
    kSiteQueued,    // site
    kSiteStarted,   // site
    kSiteEvent,     // site, event: the site's own operation event
    kSiteFinished,  // site, result
    kSiteFailed,    // site, result (failed or cancelled)
    kSiteSkipped,   // site, result
    kSummary,       // summary
    kUnknown,
  };
  Kind kind = Kind::kUnknown;
  std::string site;
  std::string stage;
  std::vector<std::string> stage_sites;
  std::shared_ptr<const OperationEvent> event;  // kSiteEvent
  FleetSiteResult result;
  FleetSummary summary;
};

struct FleetRequest {
  enum class Action { kUpgrade, kDowngrade, kEnsureHead, kStamp, kValidate, kDrift };
  Action action = Action::kUpgrade;
  std::string target;                // upgrade (default "heads"), downgrade (required)
  std::vector<std::string> targets;  // stamp
  std::string selector;              // "region=eu,env!=test", "name=a|b"; empty: all
  int max_parallel = 4;
  int canary_count = 0;
  std::string canary_selector;
  bool continue_on_error = false;
  // Upgrade and ensure-head are refused (FAILED_PRECONDITION) while the
  // sites' migration sets have error-level lint findings, unless this is set.
  bool allow_lint_errors = false;
  absl::Duration site_timeout = absl::ZeroDuration();  // zero: none
  std::optional<absl::Duration> lock_wait;
  // `fleet resume`: the id of an abandoned fleet run (a server with a
  // control database) to run again over the sites it had not finished; the
  // other fields are then ignored. Admin.
  std::string resume;
};

// The outcome of a finished operation.
struct OperationResult {
  std::string operation_id;
  std::string database;
  std::vector<std::string> rows_before;
  std::vector<std::string> heads;  // version rows after
  int revisions_run = 0;
  bool took_lock = false;
  absl::Duration duration = absl::ZeroDuration();
  std::vector<PlannedStep> plan;
};

struct EnsureHeadResult {
  bool applied = false;  // revisions were applied by the operation this call started or joined
  std::vector<std::string> heads;
  std::vector<std::string> rows_before;
  int revisions_applied = 0;
  std::string operation_id;  // when applied
};

struct OperationInfo {
  std::string operation_id;
  std::string database;
  OperationKind kind = OperationKind::kUnspecified;
  std::string target;
  std::string who;
  OperationState state = OperationState::kUnspecified;
  absl::Time created = absl::InfinitePast();
  std::optional<absl::Time> started;
  std::optional<absl::Time> finished;
  absl::Status error;
  bool cancel_requested = false;
  std::string current_revision;
  int step_index = 0;
  int step_count = 0;
  std::vector<std::string> heads;
  int64_t event_count = 0;     // events emitted so far
  int64_t events_dropped = 0;  // of those, detail events not kept for replay
  std::string replica;         // the replica running it (servers with a control database)
  int revisions_run = 0;       // applied or reverted so far
};

// What a successful Reload changed (the server's configuration now).
struct ReloadResult {
  int64_t generation = 0;  // +1 per successful reload since the server started
  std::vector<std::string> databases_added;
  std::vector<std::string> databases_removed;  // drained: running calls finish
  std::vector<std::string> migration_sets_changed;
  int databases = 0;
  int migration_sets = 0;
  int tokens = 0;  // 0: authentication off
  std::vector<std::string> warnings;
};

struct NeedsAttention {
  std::string revision;
  Direction direction = Direction::kUp;
  int statements_done = 0;
  int statements_total = 0;
  std::string error;
  std::string operation_id;
  std::optional<absl::Time> started;
};

struct DatabaseStatus {
  enum class State { kUnspecified, kAtHead, kBehind, kNeedsAttention, kUnreachable, kInvalid };
  std::string database;
  std::string migration_set;
  std::string display_name;  // "dbname on host:port"
  State state = State::kUnspecified;
  bool version_table_exists = false;
  std::vector<std::string> current_heads;
  std::vector<std::string> graph_heads;
  int pending = 0;  // -1 when unknown
  bool at_head = false;
  std::optional<NeedsAttention> needs_attention;
  std::string row_error;
  absl::Status error;  // set when kUnreachable (ListDatabases)
  // The last drift check of these version rows (Client::Drift, fleet drift), if any.
  struct Drift {
    bool drift = false;
    int differences = 0;
    absl::Time checked = absl::InfinitePast();
  };
  std::optional<Drift> drift;
};
const char* ToString(DatabaseStatus::State state);  // "at-head", "behind", ...

struct DatabaseInfo {
  std::string name;
  std::string migration_set;
  std::map<std::string, std::string> labels;
  bool allow_ensure_head_apply = true;
  std::string display_name;
  std::optional<DatabaseStatus> status;  // with ListDatabasesRequest::include_status
};

struct HistoryEntry {
  int64_t id = 0;
  std::string revision;
  std::string direction;  // up, down, stamp, resolve
  std::vector<std::string> rows_before;
  std::vector<std::string> rows_after;
  std::string checksum;
  absl::Time started = absl::InfinitePast();
  absl::Duration duration = absl::ZeroDuration();
  std::string outcome;  // success, failed, needs_attention, applied, rolled_back
  std::string error;
  std::string who;
  std::string operation_id;
  std::string schemad_version;
};

struct RevisionInfo {
  std::string id;
  std::vector<std::string> revises;
  std::vector<std::string> branch_labels;
  std::vector<std::string> effective_labels;
  std::vector<std::string> depends_on;
  std::string message;
  std::string created;
  std::string path;
  bool transactional = true;
  bool reversible = true;
  std::string checksum;
  int upgrade_statements = 0;
  int downgrade_statements = 0;
  std::vector<std::string> children;
  bool is_head = false;
  bool is_base = false;
  bool is_branch_point = false;
  bool is_merge_point = false;
  std::optional<absl::Duration> lock_timeout;
  std::optional<absl::Duration> statement_timeout;
};

struct MigrationSetInfo {
  std::string name;
  std::string directory;
  std::vector<std::string> heads;
  std::vector<std::string> bases;
  std::vector<std::string> branch_points;
  std::vector<RevisionInfo> revisions;  // in file-name order
  std::vector<std::string> databases;
  std::vector<LintFinding> lint_findings;  // of every revision, base first
};

struct VersionRowChange {
  enum class Kind { kInsert, kDelete, kUpdate };
  Kind kind = Kind::kInsert;
  std::string from;
  std::string to;
};

struct PlanStep {
  PlannedStep step;
  std::vector<VersionRowChange> version_changes;
  std::vector<std::string> rows_after;
};

struct PlanResult {
  std::string target;
  std::vector<std::string> rows_before;
  std::vector<PlanStep> steps;  // empty: nothing to do
  std::vector<std::string> rows_after;
  std::vector<VersionRowChange> stamp_changes;
  std::string sql;  // when PlanRequest::sql
  // Of the revisions whose upgrade the plan runs, in its order.
  std::vector<LintFinding> lint_findings;
};

struct ValidationIssue {
  // kCosmetic: only comments, whitespace or letter case changed since the
  // revision was applied (informational, as kNoChecksum).
  enum class Kind { kChanged, kMissingFile, kNoChecksum, kCosmetic };
  Kind kind = Kind::kChanged;
  std::string revision;
  std::string path;
  std::string recorded_checksum;
  std::string current_checksum;
};

struct ValidationResult {
  bool ok = true;
  int applied_checked = 0;
  std::vector<ValidationIssue> issues;
};

// What Repair re-recorded (recorded_checksum: the old one, "" when none;
// current_checksum: now recorded) and what it could not (no file).
struct RepairResult {
  std::string operation_id;
  std::vector<ValidationIssue> repaired;
  std::vector<ValidationIssue> not_repaired;
};

// One object whose live schema differs from what the database's revisions build.
struct SchemaDifference {
  enum class Kind { kExtra, kMissing, kChanged };  // on the database only / revisions only / both
  Kind kind = Kind::kChanged;
  std::string object_kind;  // "table", "column", "index", "constraint", ...
  std::string object;       // "public.devices.location"
  std::string description;  // what changed
};
const char* ToString(SchemaDifference::Kind kind);  // "extra", "missing", "changed"

struct DriftResult {
  std::vector<std::string> rows;  // the version rows compared against
  bool drift = false;
  std::vector<SchemaDifference> differences;
  std::string repair_sql;  // DDL that takes the database back; "" without drift
  absl::Time checked = absl::InfinitePast();
};

// ---------------------------------------------------------------- requests

struct EnsureHeadOptions {
  bool no_apply = false;                    // only check: FAILED_PRECONDITION when behind
  std::optional<absl::Duration> lock_wait;  // unset: the database's configured lock_wait
};

struct UpgradeRequest {
  std::string target = "heads";
  bool allow_changed = false;
  TransactionMode transaction_mode = TransactionMode::kDefault;
  std::optional<absl::Duration> lock_wait;
};

struct DowngradeRequest {
  std::string target;  // required
  TransactionMode transaction_mode = TransactionMode::kDefault;
  std::optional<absl::Duration> lock_wait;
};

struct MergeRequest {
  std::string revision;  // empty: the nearest revision joining the database's heads
  std::optional<absl::Duration> lock_wait;
};

struct PlanRequest {
  enum class Kind { kUpgrade, kDowngrade, kStamp };
  std::string database;       // plan from this database's rows, or
  std::string migration_set;  // from `from_rows` against this set
  Kind kind = Kind::kUpgrade;
  std::vector<std::string> targets;  // upgrade default: heads
  std::vector<std::string> from_rows;
  bool purge = false;
  bool sql = false;
  TransactionMode transaction_mode = TransactionMode::kDefault;
};

struct ListDatabasesRequest {
  std::map<std::string, std::string> label_selector;
  bool include_status = false;
};

// Per-call controls.
struct CallOptions {
  // Zero: ClientOptions::default_deadline (unary) or operation_deadline (streams).
  absl::Duration deadline = absl::ZeroDuration();
  // Streamed calls: every event, on the calling thread, in order.
  std::function<void(const OperationEvent&)> on_event;
  // Streamed calls: stop watching when it turns true (checked every 50 ms).
  // The operation goes on on the server; the call returns CANCELLED naming it.
  const std::atomic<bool>* stop = nullptr;
};

// ------------------------------------------------------------- connection

// The calls a Client makes, one virtual function each (google-cloud-cpp's
// *Connection): Client::Connect's gRPC connection implements it, and so can a
// test — schemad/mocks/mock_client_connection.h has a gmock one — so that a
// control layer's start-up (WaitForHead over a Client included) is
// unit-tested without a server:
//
//   auto mock = std::make_shared<schemad_mocks::MockClientConnection>();
//   EXPECT_CALL(*mock, EnsureHead)
//       .WillOnce(Return(absl::UnavailableError("schemad restarting")))
//       .WillOnce(Return(schemad::EnsureHeadResult{}));
//   schemad::Client client(mock);
//   EXPECT_TRUE(schemad::WaitForHead(client, "site-a", absl::Seconds(5)).ok());
//
// Each function has the contract of the Client member of the same name
// (below), without default arguments. Implementations must be thread-safe.
class ClientConnection {
 public:
  virtual ~ClientConnection() = default;

  virtual absl::StatusOr<EnsureHeadResult> EnsureHead(const std::string& database,
                                                      const EnsureHeadOptions& options,
                                                      const CallOptions& call) = 0;
  virtual absl::StatusOr<OperationResult> Upgrade(const std::string& database,
                                                  const UpgradeRequest& request,
                                                  const CallOptions& call) = 0;
  virtual absl::StatusOr<OperationResult> Downgrade(const std::string& database,
                                                    const DowngradeRequest& request,
                                                    const CallOptions& call) = 0;
  virtual absl::StatusOr<OperationResult> Merge(const std::string& database,
                                                const MergeRequest& request,
                                                const CallOptions& call) = 0;
  virtual absl::StatusOr<FleetSummary> FleetRun(const FleetRequest& request,
                                                const CallOptions& call) = 0;
  virtual absl::StatusOr<OperationResult> WatchOperation(const std::string& operation_id,
                                                         const CallOptions& call) = 0;
  virtual absl::StatusOr<OperationResult> Stamp(const std::string& database,
                                                const std::vector<std::string>& revisions,
                                                bool purge, const CallOptions& call) = 0;
  virtual absl::StatusOr<OperationResult> Resolve(const std::string& database, bool applied,
                                                  const CallOptions& call) = 0;
  virtual absl::StatusOr<PlanResult> Plan(const PlanRequest& request, const CallOptions& call) = 0;
  virtual absl::StatusOr<DatabaseStatus> GetStatus(const std::string& database,
                                                   const CallOptions& call) = 0;
  virtual absl::StatusOr<std::vector<HistoryEntry>> History(const std::string& database, int limit,
                                                            const CallOptions& call) = 0;
  virtual absl::StatusOr<MigrationSetInfo> DescribeMigrationSet(const std::string& migration_set,
                                                                const std::string& database,
                                                                const CallOptions& call) = 0;
  virtual absl::StatusOr<std::vector<DatabaseInfo>> ListDatabases(
      const ListDatabasesRequest& request, const CallOptions& call) = 0;
  virtual absl::StatusOr<ValidationResult> Validate(const std::string& database,
                                                    const CallOptions& call) = 0;
  virtual absl::StatusOr<RepairResult> Repair(const std::string& database,
                                              const CallOptions& call) = 0;
  virtual absl::StatusOr<DriftResult> Drift(const std::string& database,
                                            const CallOptions& call) = 0;
  virtual absl::StatusOr<std::vector<OperationInfo>> ListOperations(const std::string& database,
                                                                    bool running_only, int limit,
                                                                    const CallOptions& call) = 0;
  virtual absl::StatusOr<OperationInfo> CancelOperation(const std::string& operation_id,
                                                        const CallOptions& call) = 0;
  virtual absl::StatusOr<ReloadResult> Reload(const CallOptions& call) = 0;
  virtual absl::StatusOr<bool> CheckHealth(const std::string& migration_set,
                                           const CallOptions& call) = 0;
  // grpc.health.v1 Check of the health service `service` as named (e.g.
  // kReadinessHealthService). The default answers UNIMPLEMENTED.
  virtual absl::StatusOr<bool> CheckServiceHealth(const std::string& service,
                                                  const CallOptions& call);
};

// ------------------------------------------------------------------ client

class Client {
 public:
  // Creates the channel (it connects lazily, on the first call).
  // INVALID_ARGUMENT: no target, or a TLS file that cannot be read.
  static absl::StatusOr<std::unique_ptr<Client>> Connect(ClientOptions options);
  // A client over any connection (a test's mock, say); options() returns
  // `options`, which only WaitForHead's retry policy reads.
  explicit Client(std::shared_ptr<ClientConnection> connection, ClientOptions options = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  const ClientOptions& options() const { return options_; }

  // Brings the database to head when it is behind (if the server allows it
  // there), or checks only with `no_apply`. At head: one query on the server.
  // Retried on UNAVAILABLE.
  absl::StatusOr<EnsureHeadResult> EnsureHead(const std::string& database,
                                              const EnsureHeadOptions& options = {},
                                              const CallOptions& call = {});

  // Streamed operations: `call.on_event` sees every event; the result is the
  // operation's outcome, or its error (the events say where it stopped).
  absl::StatusOr<OperationResult> Upgrade(const std::string& database,
                                          const UpgradeRequest& request = {},
                                          const CallOptions& call = {});
  absl::StatusOr<OperationResult> Downgrade(const std::string& database,
                                            const DowngradeRequest& request,
                                            const CallOptions& call = {});
  absl::StatusOr<OperationResult> Merge(const std::string& database,
                                        const MergeRequest& request = {},
                                        const CallOptions& call = {});
  // Runs one action over the databases `request.selector` picks, as one
  // operation (see FleetRun in schemad.proto); `call.on_event` sees every
  // event (kFleet ones carry the fleet's). Returns the summary whenever the
  // server sent one — its `status` says whether every site succeeded —
  // and the call's error otherwise (refused, unknown selector, broken stream).
  absl::StatusOr<FleetSummary> FleetRun(const FleetRequest& request, const CallOptions& call = {});

  // Replays an operation's events, then follows it to its end.
  absl::StatusOr<OperationResult> WatchOperation(const std::string& operation_id,
                                                 const CallOptions& call = {});

  // Unary operations (retried on UNAVAILABLE: both are idempotent).
  absl::StatusOr<OperationResult> Stamp(const std::string& database,
                                        const std::vector<std::string>& revisions,
                                        bool purge = false, const CallOptions& call = {});
  absl::StatusOr<OperationResult> Resolve(const std::string& database, bool applied,
                                          const CallOptions& call = {});

  // Reads (retried on UNAVAILABLE).
  absl::StatusOr<PlanResult> Plan(const PlanRequest& request, const CallOptions& call = {});
  absl::StatusOr<DatabaseStatus> GetStatus(const std::string& database,
                                           const CallOptions& call = {});
  // Newest first, at most `limit` rows (up to 10,000; <= 0: the server's
  // default, 1,000).
  absl::StatusOr<std::vector<HistoryEntry>> History(const std::string& database, int limit = 0,
                                                    const CallOptions& call = {});
  // By migration set name, or (when `migration_set` is empty) the set of `database`.
  absl::StatusOr<MigrationSetInfo> DescribeMigrationSet(const std::string& migration_set,
                                                        const std::string& database = "",
                                                        const CallOptions& call = {});
  absl::StatusOr<std::vector<DatabaseInfo>> ListDatabases(const ListDatabasesRequest& request = {},
                                                          const CallOptions& call = {});
  absl::StatusOr<ValidationResult> Validate(const std::string& database,
                                            const CallOptions& call = {});

  // Re-records the checksums of applied revisions whose files changed, one
  // audit row each in the database's history (Flyway's repair). Role: admin.
  absl::StatusOr<RepairResult> Repair(const std::string& database, const CallOptions& call = {});
  // The database's live schema against the schema its version rows should
  // produce (needs a dev_server in the server's configuration). Role: reader.
  absl::StatusOr<DriftResult> Drift(const std::string& database, const CallOptions& call = {});
  // Newest first; at most `limit` (<= 0: all the server retains), following
  // the server's pages.
  absl::StatusOr<std::vector<OperationInfo>> ListOperations(const std::string& database = "",
                                                            bool running_only = false,
                                                            int limit = 0,
                                                            const CallOptions& call = {});
  absl::StatusOr<OperationInfo> CancelOperation(const std::string& operation_id,
                                                const CallOptions& call = {});
  // Makes the server re-read its configuration (as SIGHUP does). A bad one
  // is INVALID_ARGUMENT / NOT_FOUND / FAILED_PRECONDITION naming the file and
  // key; the server keeps serving the previous one. Admin. Not retried.
  absl::StatusOr<ReloadResult> Reload(const CallOptions& call = {});

  // grpc.health.v1 Check: true when `service` ("" overall, or a migration
  // set's name) is SERVING. Not retried.
  absl::StatusOr<bool> CheckHealth(const std::string& migration_set = "",
                                   const CallOptions& call = {});

  // Readiness (kReadinessHealthService): true while the server can take
  // operations — it is not stopping and, with a control database, that
  // database answers. CheckHealth("") is liveness. Not retried.
  absl::StatusOr<bool> CheckReady(const CallOptions& call = {});

 private:
  ClientOptions options_;
  std::shared_ptr<ClientConnection> connection_;
};

// For a control layer's main: blocks until `database` is at head — calling
// EnsureHead, which applies pending revisions where the server allows it —
// retrying while schemad or the database is unreachable (UNAVAILABLE), the
// migration lock is busy (ABORTED, DEADLINE_EXCEEDED of the lock wait) or the
// server is overloaded, with backoff and jitter, until `deadline` has passed.
// Returns OK at head; DEADLINE_EXCEEDED when time ran out, naming the last
// error and the operation of `database` still running on the server, if
// any (its id, kind, caller, revision and step: one extra call, of at most
// 1 s, after the deadline); any other error at once (e.g. FAILED_PRECONDITION: behind and not
// allowed to apply, needs attention, a failed revision).
absl::Status WaitForHead(const ClientOptions& options, const std::string& database,
                         absl::Duration deadline);
// The same over an existing client (a shared one, or one over a test's
// ClientConnection); backoff from client.options().retry.
absl::Status WaitForHead(Client& client, const std::string& database, absl::Duration deadline);

}  // namespace schemad

#endif  // SCHEMAD_CLIENT_SDK_SCHEMAD_CLIENT_H_
