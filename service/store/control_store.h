// The control-database seam: what the replicas of one schemad deployment
// share when the configuration names a control database (operations, their
// events, fleet runs' per-site results, a lease per replica). The server
// (service/server/control_plane.h) is its only user;
// service/store/pq/pq_control_store.h is the PostgreSQL implementation, the
// only code that speaks SQL to the control database.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<ControlStore> store, OpenPqControlStore(dsn, options));
//   RETURN_IF_ERROR(store->EnsureSchema());      // then the engine applies the schema's revisions
//   RETURN_IF_ERROR(store->Write({write}));      // a replica's operations, written through
//   ASSIGN_OR_RETURN(std::vector<ControlOperation> page, store->ListOperations(query));
//
// Everything lives in one schema, kControlSchema, and every statement names
// its tables schema-qualified. The tables themselves are created by the
// schema's revisions (service/server/control_schema.h), which schemad's own
// engine applies at start; the store only creates the (empty) schema they
// go in.
//
// Payloads are opaque to the store: the server serialises what it needs to
// get back (an event, a fleet site's result, what re-running a fleet needs)
// and the store keeps the bytes. The columns beside them are what SQL
// readers and the queries below need.
//
// Times: operation times are the replica's clock (as its in-memory
// operations have them); leases are the control database's clock (now()),
// so that replicas with skewed clocks agree on who has expired.
//
// Error contract (every method): no exception escapes; UNAVAILABLE when the
// control database cannot be reached or the connection broke (retry later:
// a broken connection is replaced on the next call), FAILED_PRECONDITION for
// SQL errors (schema missing or changed), PERMISSION_DENIED for a refused
// login. Messages never contain the DSN or its password.
//
// Thread-safety: a ControlStore is thread-safe (it keeps a few connections
// and lends one per call).
#ifndef SCHEMAD_SERVICE_STORE_CONTROL_STORE_H_
#define SCHEMAD_SERVICE_STORE_CONTROL_STORE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace schemad::store {

// The schema of the control database's tables and of its version table.
inline constexpr char kControlSchema[] = "schemad_control";

// An operation as the control database holds it.
struct ControlOperation {
  std::string id;        // "op-" + 16 hex digits
  std::string kind;      // "upgrade", "fleet", ... (the server's names)
  std::string database;  // configured database name, or "fleet:<selector>"
  std::string target;
  std::string who;
  std::string replica;  // the replica that runs (ran) it
  // queued, running, succeeded, failed, cancelled, abandoned
  std::string state;
  absl::Time created = absl::InfinitePast();
  absl::Time started = absl::InfinitePast();   // InfinitePast: not started
  absl::Time finished = absl::InfinitePast();  // InfinitePast: not finished
  bool cancel_requested = false;
  int error_code = 0;  // absl::StatusCode of a finished operation's error; 0: none
  std::string error;
  std::vector<std::string> heads;  // version rows after (finished operations)
  std::string current_revision;    // the revision running now, if any
  int step_index = 0;
  int step_count = 0;
  int revisions_run = 0;
  int64_t event_count = 0;     // emitted so far
  int64_t events_dropped = 0;  // of those, detail events not kept
  // Opaque: what re-running the operation needs (a fleet run's request);
  // empty for others.
  std::string request;
  // The operation that resumed this one (fleet resume); empty when none.
  // Read only: ClaimResume sets it.
  std::string resumed_by;
};

// One kept event of an operation.
struct ControlEvent {
  int64_t sequence = 0;  // the event's sequence number in its operation
  std::string kind;      // for people reading the table: "accepted", "fleet", "finished", ...
  std::string payload;   // opaque (the server's serialized event)
};

// One site of a fleet run, once it finished, failed or was skipped.
struct ControlSiteResult {
  std::string site;     // database name
  std::string outcome;  // succeeded, failed, cancelled, skipped
  int revisions_run = 0;
  std::string error;
  std::string payload;  // opaque (the server's serialized result)
};

// What a replica writes about one of its operations in one go: the
// operation's row (upserted whole, except that cancel_requested, once set by
// anyone, stays set), events appended (an event of a sequence already
// written is replaced) and fleet site results (upserted by site).
struct ControlOperationWrite {
  ControlOperation operation;
  std::vector<ControlEvent> events;
  std::vector<ControlSiteResult> sites;
  // Set when another replica marked the operation abandoned while it ran on
  // (this replica's lease had expired, cut off from the control database):
  // before `events` are written, the `finished` events stored for it are
  // deleted (the mark's), except its own (sequence event_count - 1) when
  // `operation.state` is final.
  bool drop_marks = false;
};

// Which operations ListOperations returns: newest first (by created, then
// id), at most `limit`, older than `before` when set (keyset paging).
struct ControlOperationQuery {
  std::string database;       // "": every database
  bool running_only = false;  // only queued and running
  int limit = 100;
  struct Key {
    absl::Time created;
    std::string id;
  };
  std::optional<Key> before;
};

// A replica's registration (its lease).
struct ControlReplica {
  std::string name;
  std::string incarnation;  // random per process: a restarted replica of the same name differs
  std::string host;
  int pid = 0;
};

class ControlStore {
 public:
  virtual ~ControlStore() = default;

  // Creates kControlSchema when it does not exist (idempotent; several
  // replicas starting at once create it once). The tables in it come from
  // the schema's revisions, applied by the engine after this.
  virtual absl::Status EnsureSchema() = 0;

  // Registers `replica` with a lease of `lease` from now, replacing an
  // earlier registration of its name (a restart). The queued and running
  // operations that an earlier process of this name left behind are marked
  // abandoned (`reason` as their error, absl::StatusCode::kAborted) and
  // returned.
  virtual absl::StatusOr<std::vector<ControlOperation>> RegisterReplica(
      const ControlReplica& replica, absl::Duration lease, const std::string& reason) = 0;
  // Renews the lease of `replica`. False when another process registered
  // the name since (this one must not act as that replica any more); a
  // registration that disappeared is made again.
  virtual absl::StatusOr<bool> RenewLease(const ControlReplica& replica, absl::Duration lease) = 0;
  // A clean stop: the lease ends now.
  virtual absl::Status ReleaseReplica(const ControlReplica& replica) = 0;
  // Marks abandoned the queued and running operations of every replica
  // whose lease has expired (or that is not registered at all), and returns
  // them: error ABORTED saying which replica stopped renewing its lease,
  // when, and how far the operation had got. Several replicas may call it
  // at once: each operation is marked by one of them.
  virtual absl::StatusOr<std::vector<ControlOperation>> AbandonExpired() = 0;

  // Writes `writes` in one transaction.
  virtual absl::Status Write(const std::vector<ControlOperationWrite>& writes) = 0;

  virtual absl::StatusOr<std::vector<ControlOperation>> ListOperations(
      const ControlOperationQuery& query) = 0;
  // nullopt: no such operation.
  virtual absl::StatusOr<std::optional<ControlOperation>> ReadOperation(const std::string& id) = 0;
  // The kept events of `id` with a sequence of at least `from_sequence`, in
  // order, at most `limit`.
  virtual absl::StatusOr<std::vector<ControlEvent>> ReadEvents(const std::string& id,
                                                               int64_t from_sequence,
                                                               int limit) = 0;
  // The fleet site results of `id`, by site name.
  virtual absl::StatusOr<std::vector<ControlSiteResult>> ReadSites(const std::string& id) = 0;

  // Records a cancel request for `id` when it is queued or running; the
  // operation as it is then (a finished one unchanged), or nullopt when
  // unknown. Its replica finds the request with CancelRequested.
  virtual absl::StatusOr<std::optional<ControlOperation>> RequestCancel(const std::string& id) = 0;
  // The queued or running operations of `replica` with a cancel request.
  virtual absl::StatusOr<std::vector<std::string>> CancelRequested(const std::string& replica) = 0;

  // Claims abandoned fleet run `id` for the operation `by` that resumes it
  // (once: the claim and the check are one statement) and returns it.
  // NOT_FOUND when unknown; FAILED_PRECONDITION when it is not a fleet
  // run, not abandoned, or claimed already (naming by which operation).
  virtual absl::StatusOr<ControlOperation> ClaimResume(const std::string& id,
                                                       const std::string& by) = 0;

  // Deletes finished operations (with their events and sites) that finished
  // before `finished_before`, and beyond the newest `max_retained` finished
  // ones; registrations whose lease ended before `finished_before`.
  virtual absl::Status Prune(absl::Time finished_before, int max_retained) = 0;

  // "dbname on host:port", never the password.
  virtual std::string DisplayName() const = 0;
};

}  // namespace schemad::store

#endif  // SCHEMAD_SERVICE_STORE_CONTROL_STORE_H_
