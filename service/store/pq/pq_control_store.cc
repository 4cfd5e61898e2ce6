// PostgreSQL control store (see control_store.h for the contract). Notes:
//
// - Connections: a call borrows one from a small free list (or opens one)
//   and gives it back unless it broke. A borrowed idle connection that
//   turns out closed (the control database restarted, or ended the backend)
//   is replaced and the call made once more, so only calls in flight during
//   a restart see UNAVAILABLE.
// - Every statement names its tables schema-qualified (kControlSchema); the
//   tables are the ones the schema's revisions create
//   (service/server/control_schema.cc), which must agree with the columns
//   used here.
// - EnsureSchema serialises creators with pg_advisory_xact_lock on FNV-1a 64
//   of "schemad:control_schema", and skips CREATE SCHEMA when the schema
//   exists (CREATE SCHEMA IF NOT EXISTS checks the CREATE privilege on the
//   database first, which a role that only owns the schema lacks).
// - Abandonment is one UPDATE whose WHERE re-checks the state: under READ
//   COMMITTED a second replica marking the same operation waits for the
//   first and then finds it no longer running, so each is marked once.
#include "service/store/pq/pq_control_store.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <pqxx/pqxx>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "service/common/dsn.h"
#include "service/common/status_macros.h"
#include "service/store/pq/libpq_text.h"

namespace schemad::store {
namespace {

using internal::OneLine;

constexpr int kMaxIdentifierBytes = 63;  // NAMEDATALEN - 1

std::string Table(absl::string_view name) { return absl::StrCat(kControlSchema, ".", name); }

int64_t AdvisoryKey(absl::string_view text) {
  uint64_t hash = 14695981039346656037ULL;  // FNV-1a 64, as pq_database.cc's keys
  for (char c : text) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 1099511628211ULL;
  }
  int64_t key = 0;
  std::memcpy(&key, &hash, sizeof key);
  return key;
}

// A PostgreSQL text[] literal ("{\"a\",\"b\"}").
std::string TextArrayLiteral(const std::vector<std::string>& values) {
  std::vector<std::string> quoted;
  for (const std::string& value : values) {
    quoted.push_back(
        absl::StrCat("\"", absl::StrReplaceAll(value, {{"\\", "\\\\"}, {"\"", "\\\""}}), "\""));
  }
  return absl::StrCat("{", absl::StrJoin(quoted, ","), "}");
}

std::vector<std::string> ParseTextArray(const pqxx::field& field) {
  std::vector<std::string> out;
  if (field.is_null()) return out;
  pqxx::array_parser parser = field.as_array();
  for (;;) {
    std::pair<pqxx::array_parser::juncture, std::string> item = parser.get_next();
    if (item.first == pqxx::array_parser::juncture::done) break;
    if (item.first == pqxx::array_parser::juncture::string_value) {
      out.push_back(std::move(item.second));
    }
  }
  return out;
}

std::string Text(const pqxx::field& field) { return field.is_null() ? "" : field.c_str(); }

absl::Time MicrosToTime(const pqxx::field& field) {
  return field.is_null() ? absl::InfinitePast() : absl::FromUnixMicros(field.as<int64_t>());
}

// Microseconds since the epoch as text; nullptr (SQL NULL) for an unset time.
struct OptionalMicros {
  explicit OptionalMicros(absl::Time time)
      : text(time == absl::InfinitePast() ? "" : absl::StrCat(absl::ToUnixMicros(time))) {}
  const char* get() const { return text.empty() ? nullptr : text.c_str(); }
  std::string text;
};

// The operation columns of `o` (an alias of the operations table), in the
// order ReadOperationRow reads them.
constexpr char kOperationColumns[] =
    "o.id, o.kind, o.database, o.target, o.who, o.replica, o.state, "
    "(extract(epoch FROM o.created) * 1000000)::bigint, "
    "(extract(epoch FROM o.started) * 1000000)::bigint, "
    "(extract(epoch FROM o.finished) * 1000000)::bigint, o.cancel_requested, o.error_code, "
    "o.error, o.heads, o.current_revision, o.step_index, o.step_count, o.revisions_run, "
    "o.event_count, o.events_dropped, o.request, o.resumed_by";

ControlOperation ReadOperationRow(const pqxx::row& row) {
  ControlOperation op;
  op.id = Text(row[0]);
  op.kind = Text(row[1]);
  op.database = Text(row[2]);
  op.target = Text(row[3]);
  op.who = Text(row[4]);
  op.replica = Text(row[5]);
  op.state = Text(row[6]);
  op.created = MicrosToTime(row[7]);
  op.started = MicrosToTime(row[8]);
  op.finished = MicrosToTime(row[9]);
  op.cancel_requested = row[10].as<bool>();
  op.error_code = row[11].as<int>();
  op.error = Text(row[12]);
  op.heads = ParseTextArray(row[13]);
  op.current_revision = Text(row[14]);
  op.step_index = row[15].as<int>();
  op.step_count = row[16].as<int>();
  op.revisions_run = row[17].as<int>();
  op.event_count = row[18].as<int64_t>();
  op.events_dropped = row[19].as<int64_t>();
  if (!row[20].is_null()) op.request = pqxx::binarystring(row[20]).str();
  op.resumed_by = Text(row[21]);
  return op;
}

std::vector<ControlOperation> ReadOperationRows(const pqxx::result& result) {
  std::vector<ControlOperation> out;
  for (const pqxx::row& row : result) out.push_back(ReadOperationRow(row));
  return out;
}

// What an abandoned operation's error says after `lead` (an SQL text
// expression): how far it got. Columns of `o` (operations); fleet runs
// count their finished sites.
std::string AbandonedErrorSql(const std::string& lead) {
  return absl::StrCat(
      "pg_catalog.concat(", lead,
      ", '; it had run ', o.revisions_run, ' revision(s)', "
      "CASE WHEN o.current_revision IS NOT NULL THEN pg_catalog.format(' and was in revision %s "
      "(step %s of %s)', o.current_revision, o.step_index + 1, o.step_count) ELSE '' END, "
      "CASE WHEN o.kind = 'fleet' THEN pg_catalog.format(', %s site(s) had finished', "
      "(SELECT pg_catalog.count(*) FROM ",
      Table("fleet_sites"),
      " s WHERE s.operation_id = o.id)) ELSE '' END, "
      "'; each database''s own state (GetStatus, History) says what committed')");
}

constexpr int kAbortedCode = 10;  // absl::StatusCode::kAborted

class PqControlStore final : public ControlStore {
 public:
  PqControlStore(dsn::Dsn parsed, std::string conninfo, std::string display_name, int max_idle)
      : dsn_(std::move(parsed)),
        conninfo_(std::move(conninfo)),
        display_name_(std::move(display_name)),
        max_idle_(max_idle) {}

  // ControlStore:
  absl::Status EnsureSchema() override;
  absl::StatusOr<std::vector<ControlOperation>> RegisterReplica(const ControlReplica& replica,
                                                                absl::Duration lease,
                                                                const std::string& reason) override;
  absl::StatusOr<bool> RenewLease(const ControlReplica& replica, absl::Duration lease) override;
  absl::Status ReleaseReplica(const ControlReplica& replica) override;
  absl::StatusOr<std::vector<ControlOperation>> AbandonExpired() override;
  absl::Status Write(const std::vector<ControlOperationWrite>& writes) override;
  absl::StatusOr<std::vector<ControlOperation>> ListOperations(
      const ControlOperationQuery& query) override;
  absl::StatusOr<std::optional<ControlOperation>> ReadOperation(const std::string& id) override;
  absl::StatusOr<std::vector<ControlEvent>> ReadEvents(const std::string& id, int64_t from_sequence,
                                                       int limit) override;
  absl::StatusOr<std::vector<ControlSiteResult>> ReadSites(const std::string& id) override;
  absl::StatusOr<std::optional<ControlOperation>> RequestCancel(const std::string& id) override;
  absl::StatusOr<std::vector<std::string>> CancelRequested(const std::string& replica) override;
  absl::StatusOr<ControlOperation> ClaimResume(const std::string& id,
                                               const std::string& by) override;
  absl::Status Prune(absl::Time finished_before, int max_retained) override;
  std::string DisplayName() const override { return display_name_; }

 private:
  // Runs `fn` on a borrowed connection; maps libpqxx's exceptions to a
  // status prefixed with `context` and the database's name, secrets scrubbed.
  absl::Status Run(absl::string_view context, const std::function<void(pqxx::connection&)>& fn);

  const dsn::Dsn dsn_;
  const std::string conninfo_;  // secret
  const std::string display_name_;
  const int max_idle_;
  absl::Mutex mu_;
  std::vector<std::unique_ptr<pqxx::connection>> idle_ ABSL_GUARDED_BY(mu_);
};

absl::Status PqControlStore::Run(absl::string_view context,
                                 const std::function<void(pqxx::connection&)>& fn) {
  const std::string where = absl::StrCat(context, " on the control database ", display_name_);
  for (int attempt = 0;; ++attempt) {
    std::unique_ptr<pqxx::connection> conn;
    {
      absl::MutexLock lock(&mu_);
      if (!idle_.empty()) {
        conn = std::move(idle_.back());
        idle_.pop_back();
      }
    }
    const bool reused = conn != nullptr;
    absl::Status status;
    try {
      if (conn == nullptr) conn = std::make_unique<pqxx::connection>(conninfo_);
      fn(*conn);
    } catch (const pqxx::broken_connection& e) {
      status = absl::UnavailableError(absl::StrCat(where, ": ", OneLine(e.what())));
    } catch (const pqxx::sql_error& e) {
      const std::string state = e.sqlstate();
      absl::string_view message = absl::StripPrefix(OneLine(e.what()), "ERROR: ");
      absl::StatusCode code = absl::StatusCode::kFailedPrecondition;
      if (state.rfind("08", 0) == 0 || state == "57P01" || state == "57P02" || state == "57P03") {
        code = absl::StatusCode::kUnavailable;
      } else if (state == "28P01" || state == "28000" || state == "42501") {
        code = absl::StatusCode::kPermissionDenied;
      }
      status = absl::Status(code, absl::StrCat(where, ": SQLSTATE ", state, ": ", message));
    } catch (const std::exception& e) {
      const std::string text = OneLine(e.what());
      status = absl::UnavailableError(absl::StrCat(where, ": ", text));
      if (text.find("authentication failed") != std::string::npos) {
        status = absl::PermissionDeniedError(absl::StrCat(where, ": ", text));
      }
    }
    if (status.ok()) {
      if (conn->is_open()) {
        absl::MutexLock lock(&mu_);
        if (static_cast<int>(idle_.size()) < max_idle_) idle_.push_back(std::move(conn));
      }
      return absl::OkStatus();
    }
    // An idle connection the server closed meanwhile (a restart, a
    // terminated backend): once more on a new one. Every call here may run
    // twice: writes are upserts, the rest reads or idempotent updates.
    if (status.code() == absl::StatusCode::kUnavailable && reused && attempt == 0) {
      continue;
    }
    return absl::Status(status.code(), dsn_.Scrub(status.message()));
  }
}

absl::Status PqControlStore::EnsureSchema() {
  return Run("creating schema schemad_control", [](pqxx::connection& conn) {
    pqxx::work tx(conn);
    if (tx.exec_params1("SELECT pg_catalog.to_regnamespace($1) IS NULL", kControlSchema)[0]
            .as<bool>()) {
      tx.exec_params("SELECT pg_catalog.pg_advisory_xact_lock($1::bigint)",
                     AdvisoryKey("schemad:control_schema"));
      tx.exec(absl::StrCat("CREATE SCHEMA IF NOT EXISTS ", kControlSchema));
    }
    tx.commit();
  });
}

absl::StatusOr<std::vector<ControlOperation>> PqControlStore::RegisterReplica(
    const ControlReplica& replica, absl::Duration lease, const std::string& reason) {
  std::vector<ControlOperation> abandoned;
  RETURN_IF_ERROR(Run("registering this replica", [&](pqxx::connection& conn) {
    pqxx::work tx(conn);
    abandoned = ReadOperationRows(tx.exec_params(
        absl::StrCat("UPDATE ", Table("operations"),
                     " AS o SET state = 'abandoned', finished = pg_catalog.now(), error_code = ",
                     kAbortedCode, ", error = ", AbandonedErrorSql("$2::text"),
                     ", current_revision = NULL WHERE o.replica = $1 AND o.state IN ('queued', "
                     "'running') RETURNING ",
                     kOperationColumns),
        replica.name, reason));
    tx.exec_params(
        absl::StrCat("INSERT INTO ", Table("replicas"),
                     " (name, incarnation, host, pid, schemad_version, registered, renewed, "
                     "lease_expires) VALUES ($1, $2, $3, $4, $5, pg_catalog.now(), "
                     "pg_catalog.now(), pg_catalog.now() + $6::bigint * interval '1 microsecond') "
                     "ON CONFLICT (name) DO UPDATE SET incarnation = EXCLUDED.incarnation, host = "
                     "EXCLUDED.host, pid = EXCLUDED.pid, schemad_version = "
                     "EXCLUDED.schemad_version, registered = EXCLUDED.registered, renewed = "
                     "EXCLUDED.renewed, lease_expires = EXCLUDED.lease_expires, released = NULL"),
        replica.name, replica.incarnation, replica.host, replica.pid, SCHEMAD_VERSION,
        absl::ToInt64Microseconds(lease));
    tx.commit();
  }));
  return abandoned;
}

absl::StatusOr<bool> PqControlStore::RenewLease(const ControlReplica& replica,
                                                absl::Duration lease) {
  bool ours = false;
  RETURN_IF_ERROR(Run("renewing this replica's lease", [&](pqxx::connection& conn) {
    pqxx::work tx(conn);
    const pqxx::result r = tx.exec_params(
        absl::StrCat("INSERT INTO ", Table("replicas"),
                     " (name, incarnation, host, pid, schemad_version, registered, renewed, "
                     "lease_expires) VALUES ($1, $2, $3, $4, $5, pg_catalog.now(), "
                     "pg_catalog.now(), pg_catalog.now() + $6::bigint * interval '1 microsecond') "
                     "ON CONFLICT (name) DO UPDATE SET renewed = EXCLUDED.renewed, lease_expires "
                     "= EXCLUDED.lease_expires, released = NULL WHERE ",
                     Table("replicas"), ".incarnation = EXCLUDED.incarnation RETURNING 1"),
        replica.name, replica.incarnation, replica.host, replica.pid, SCHEMAD_VERSION,
        absl::ToInt64Microseconds(lease));
    ours = !r.empty();
    tx.commit();
  }));
  return ours;
}

absl::Status PqControlStore::ReleaseReplica(const ControlReplica& replica) {
  return Run("releasing this replica's lease", [&](pqxx::connection& conn) {
    pqxx::work tx(conn);
    tx.exec_params(absl::StrCat("UPDATE ", Table("replicas"),
                                " SET lease_expires = pg_catalog.now(), released = "
                                "pg_catalog.now() WHERE name = $1 AND incarnation = $2"),
                   replica.name, replica.incarnation);
    tx.commit();
  });
}

absl::StatusOr<std::vector<ControlOperation>> PqControlStore::AbandonExpired() {
  std::vector<ControlOperation> abandoned;
  RETURN_IF_ERROR(Run("marking the operations of expired replicas", [&](pqxx::connection& conn) {
    pqxx::work tx(conn);
    const std::string lead =
        "CASE WHEN d.lease_expires IS NULL THEN pg_catalog.format('abandoned: replica %s is not "
        "registered', o.replica) ELSE pg_catalog.format('abandoned: replica %s stopped renewing "
        "its lease (expired %s)', o.replica, pg_catalog.to_char(d.lease_expires AT TIME ZONE "
        "'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')) END";
    abandoned = ReadOperationRows(tx.exec(absl::StrCat(
        "UPDATE ", Table("operations"),
        " AS o SET state = 'abandoned', finished = "
        "pg_catalog.now(), error_code = ",
        kAbortedCode, ", error = ", AbandonedErrorSql(lead),
        ", current_revision = NULL FROM (SELECT DISTINCT u.replica, r.lease_expires FROM ",
        Table("operations"), " u LEFT JOIN ", Table("replicas"),
        " r ON r.name = u.replica WHERE u.state IN ('queued', 'running') AND (r.name IS NULL OR "
        "r.lease_expires < pg_catalog.now())) AS d WHERE o.replica = d.replica AND o.state IN "
        "('queued', 'running') RETURNING ",
        kOperationColumns)));
    tx.commit();
  }));
  return abandoned;
}

absl::Status PqControlStore::Write(const std::vector<ControlOperationWrite>& writes) {
  if (writes.empty()) return absl::OkStatus();
  return Run("writing operations", [&](pqxx::connection& conn) {
    pqxx::work tx(conn);
    for (const ControlOperationWrite& w : writes) {
      const ControlOperation& op = w.operation;
      const OptionalMicros created(op.created), started(op.started), finished(op.finished);
      tx.exec_params(
          absl::StrCat(
              "INSERT INTO ", Table("operations"),
              " AS o (id, kind, database, target, who, replica, state, created, started, "
              "finished, cancel_requested, error_code, error, heads, current_revision, "
              "step_index, step_count, revisions_run, event_count, events_dropped, request) "
              "VALUES ($1, $2, $3, $4, $5, $6, $7, (timestamptz 'epoch' + $8::bigint * interval '1 "
              "microsecond'), (timestamptz 'epoch' + $9::bigint * interval '1 microsecond'), "
              "(timestamptz 'epoch' + $10::bigint * interval '1 microsecond'), $11, $12, $13, "
              "$14::text[], "
              "$15, $16, $17, $18, $19, $20, NULLIF($21, ''::bytea)) ON CONFLICT (id) DO UPDATE "
              "SET state = "
              "EXCLUDED.state, replica = EXCLUDED.replica, started = EXCLUDED.started, finished "
              "= EXCLUDED.finished, cancel_requested = o.cancel_requested OR "
              "EXCLUDED.cancel_requested, error_code = EXCLUDED.error_code, error = "
              "EXCLUDED.error, heads = EXCLUDED.heads, current_revision = "
              "EXCLUDED.current_revision, step_index = EXCLUDED.step_index, step_count = "
              "EXCLUDED.step_count, revisions_run = EXCLUDED.revisions_run, event_count = "
              "EXCLUDED.event_count, events_dropped = EXCLUDED.events_dropped, request = "
              "COALESCE(EXCLUDED.request, o.request)"),
          op.id, op.kind, op.database, op.target, op.who, op.replica, op.state, created.get(),
          started.get(), finished.get(), op.cancel_requested, op.error_code,
          op.error.empty() ? nullptr : op.error.c_str(), TextArrayLiteral(op.heads),
          op.current_revision.empty() ? nullptr : op.current_revision.c_str(), op.step_index,
          op.step_count, op.revisions_run, op.event_count, op.events_dropped,
          pqxx::binarystring(op.request));
      if (w.drop_marks) {
        const bool running = op.state == "queued" || op.state == "running";
        tx.exec_params(absl::StrCat("DELETE FROM ", Table("events"),
                                    " WHERE operation_id = $1 AND kind = 'finished' AND "
                                    "sequence <> $2"),
                       op.id, running ? int64_t{-1} : op.event_count - 1);
      }
      if (!w.events.empty()) {
        // One statement for all of the operation's events (a fleet run's
        // batch holds hundreds), the last of each sequence number winning
        // (ON CONFLICT cannot touch a row twice in one statement); payloads
        // go hex-encoded in a text[] (no escaping to get wrong).
        std::map<int64_t, const ControlEvent*> by_sequence;
        for (const ControlEvent& event : w.events) by_sequence[event.sequence] = &event;
        std::vector<std::string> sequences, kinds, payloads;
        for (const auto& [sequence, event] : by_sequence) {
          sequences.push_back(absl::StrCat(sequence));
          kinds.push_back(event->kind);
          payloads.push_back(absl::BytesToHexString(event->payload));
        }
        tx.exec_params(
            absl::StrCat(
                "INSERT INTO ", Table("events"),
                " (operation_id, sequence, kind, payload) SELECT $1, e.sequence, e.kind, "
                "pg_catalog.decode(e.payload, 'hex') FROM ROWS FROM "
                "(pg_catalog.unnest($2::bigint[]), "
                "pg_catalog.unnest($3::text[]), pg_catalog.unnest($4::text[])) AS "
                "e(sequence, kind, payload) ON CONFLICT (operation_id, sequence) DO UPDATE "
                "SET kind = EXCLUDED.kind, payload = EXCLUDED.payload"),
            op.id, TextArrayLiteral(sequences), TextArrayLiteral(kinds),
            TextArrayLiteral(payloads));
      }
      for (const ControlSiteResult& site : w.sites) {
        tx.exec_params(
            absl::StrCat("INSERT INTO ", Table("fleet_sites"),
                         " (operation_id, site, outcome, revisions_run, error, payload) VALUES "
                         "($1, $2, $3, $4, $5, $6) ON CONFLICT (operation_id, site) DO UPDATE SET "
                         "outcome = EXCLUDED.outcome, revisions_run = EXCLUDED.revisions_run, "
                         "error = EXCLUDED.error, payload = EXCLUDED.payload"),
            op.id, site.site, site.outcome, site.revisions_run,
            site.error.empty() ? nullptr : site.error.c_str(), pqxx::binarystring(site.payload));
      }
    }
    tx.commit();
  });
}

absl::StatusOr<std::vector<ControlOperation>> PqControlStore::ListOperations(
    const ControlOperationQuery& query) {
  std::vector<ControlOperation> out;
  RETURN_IF_ERROR(Run("listing operations", [&](pqxx::connection& conn) {
    pqxx::read_transaction tx(conn);
    const OptionalMicros before(query.before ? query.before->created : absl::InfinitePast());
    out = ReadOperationRows(tx.exec_params(
        absl::StrCat(
            "SELECT ", kOperationColumns, " FROM ", Table("operations"),
            " o WHERE ($1::text = '' OR database = $1) AND (NOT $2 OR state IN "
            "('queued', 'running')) AND ($3::bigint IS NULL OR (created, id) < "
            "((timestamptz 'epoch' + $3::bigint * interval '1 microsecond'), $4::text)) ORDER BY "
            "created DESC, id DESC LIMIT $5"),
        query.database, query.running_only, before.get(),
        query.before ? query.before->id : std::string(), std::max(0, query.limit)));
  }));
  return out;
}

absl::StatusOr<std::optional<ControlOperation>> PqControlStore::ReadOperation(
    const std::string& id) {
  std::optional<ControlOperation> out;
  RETURN_IF_ERROR(Run("reading an operation", [&](pqxx::connection& conn) {
    pqxx::read_transaction tx(conn);
    const pqxx::result r = tx.exec_params(absl::StrCat("SELECT ", kOperationColumns, " FROM ",
                                                       Table("operations"), " o WHERE id = $1"),
                                          id);
    if (!r.empty()) out = ReadOperationRow(r[0]);
  }));
  return out;
}

absl::StatusOr<std::vector<ControlEvent>> PqControlStore::ReadEvents(const std::string& id,
                                                                     int64_t from_sequence,
                                                                     int limit) {
  std::vector<ControlEvent> out;
  RETURN_IF_ERROR(Run("reading events", [&](pqxx::connection& conn) {
    pqxx::read_transaction tx(conn);
    for (const pqxx::row& row : tx.exec_params(
             absl::StrCat("SELECT sequence, kind, payload FROM ", Table("events"),
                          " WHERE operation_id = $1 AND sequence >= $2 ORDER BY sequence LIMIT $3"),
             id, from_sequence, limit)) {
      ControlEvent event;
      event.sequence = row[0].as<int64_t>();
      event.kind = Text(row[1]);
      event.payload = pqxx::binarystring(row[2]).str();
      out.push_back(std::move(event));
    }
  }));
  return out;
}

absl::StatusOr<std::vector<ControlSiteResult>> PqControlStore::ReadSites(const std::string& id) {
  std::vector<ControlSiteResult> out;
  RETURN_IF_ERROR(Run("reading fleet sites", [&](pqxx::connection& conn) {
    pqxx::read_transaction tx(conn);
    for (const pqxx::row& row : tx.exec_params(
             absl::StrCat("SELECT site, outcome, revisions_run, error, payload FROM ",
                          Table("fleet_sites"), " WHERE operation_id = $1 ORDER BY site"),
             id)) {
      ControlSiteResult site;
      site.site = Text(row[0]);
      site.outcome = Text(row[1]);
      site.revisions_run = row[2].as<int>();
      site.error = Text(row[3]);
      site.payload = pqxx::binarystring(row[4]).str();
      out.push_back(std::move(site));
    }
  }));
  return out;
}

absl::StatusOr<std::optional<ControlOperation>> PqControlStore::RequestCancel(
    const std::string& id) {
  std::optional<ControlOperation> out;
  RETURN_IF_ERROR(Run("requesting a cancel", [&](pqxx::connection& conn) {
    pqxx::work tx(conn);
    tx.exec_params(absl::StrCat("UPDATE ", Table("operations"),
                                " SET cancel_requested = true WHERE id = $1 AND state IN "
                                "('queued', 'running')"),
                   id);
    const pqxx::result r = tx.exec_params(absl::StrCat("SELECT ", kOperationColumns, " FROM ",
                                                       Table("operations"), " o WHERE id = $1"),
                                          id);
    if (!r.empty()) out = ReadOperationRow(r[0]);
    tx.commit();
  }));
  return out;
}

absl::StatusOr<std::vector<std::string>> PqControlStore::CancelRequested(
    const std::string& replica) {
  std::vector<std::string> out;
  RETURN_IF_ERROR(Run("reading cancel requests", [&](pqxx::connection& conn) {
    pqxx::read_transaction tx(conn);
    for (const pqxx::row& row :
         tx.exec_params(absl::StrCat("SELECT id FROM ", Table("operations"),
                                     " WHERE replica = $1 AND state IN ('queued', 'running') "
                                     "AND cancel_requested"),
                        replica)) {
      out.push_back(Text(row[0]));
    }
  }));
  return out;
}

absl::StatusOr<ControlOperation> PqControlStore::ClaimResume(const std::string& id,
                                                             const std::string& by) {
  std::optional<ControlOperation> claimed;
  std::optional<ControlOperation> as_is;
  RETURN_IF_ERROR(Run("claiming a fleet run to resume", [&](pqxx::connection& conn) {
    pqxx::work tx(conn);
    const pqxx::result r = tx.exec_params(
        absl::StrCat("UPDATE ", Table("operations"),
                     " o SET resumed_by = $2 WHERE o.id = $1 AND o.kind = 'fleet' AND o.state = "
                     "'abandoned' AND o.resumed_by IS NULL RETURNING ",
                     kOperationColumns),
        id, by);
    if (!r.empty()) {
      claimed = ReadOperationRow(r[0]);
    } else {
      const pqxx::result row = tx.exec_params(absl::StrCat("SELECT ", kOperationColumns, " FROM ",
                                                           Table("operations"), " o WHERE id = $1"),
                                              id);
      if (!row.empty()) as_is = ReadOperationRow(row[0]);
    }
    tx.commit();
  }));
  if (claimed.has_value()) return *std::move(claimed);
  if (!as_is.has_value()) {
    return absl::NotFoundError(
        absl::StrCat("operation \"", id, "\" is unknown to every replica (or has expired)"));
  }
  if (as_is->kind != "fleet") {
    return absl::FailedPreconditionError(
        absl::StrCat("operation ", id, " is a", as_is->kind == "upgrade" ? "n " : " ", as_is->kind,
                     " operation, not a fleet run: only fleet runs resume"));
  }
  if (!as_is->resumed_by.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("fleet run ", id, " was resumed already, by ", as_is->resumed_by));
  }
  return absl::FailedPreconditionError(
      absl::StrCat("fleet run ", id, " is ", as_is->state,
                   ", not abandoned: only a fleet run whose replica died resumes (run the "
                   "fleet again for the sites it did not finish)"));
}

absl::Status PqControlStore::Prune(absl::Time finished_before, int max_retained) {
  return Run("pruning finished operations", [&](pqxx::connection& conn) {
    pqxx::work tx(conn);
    const OptionalMicros before(finished_before);
    tx.exec_params(absl::StrCat("DELETE FROM ", Table("operations"),
                                " WHERE finished < (timestamptz 'epoch' + $1::bigint * interval '1 "
                                "microsecond') OR id IN (SELECT id FROM ",
                                Table("operations"),
                                " WHERE finished IS NOT NULL ORDER BY finished DESC, id DESC "
                                "OFFSET $2)"),
                   before.get(), std::max(0, max_retained));
    tx.exec_params(
        absl::StrCat(
            "DELETE FROM ", Table("replicas"),
            " WHERE lease_expires < (timestamptz 'epoch' + $1::bigint * interval '1 microsecond')"),
        before.get());
    tx.commit();
  });
}

}  // namespace

absl::StatusOr<std::unique_ptr<ControlStore>> OpenPqControlStore(const std::string& dsn_text,
                                                                 const PqControlOptions& options) {
  absl::StatusOr<dsn::Dsn> parsed = dsn::ParseDsn(dsn_text);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("the DSN ", parsed.status().message()));
  }
  std::vector<std::string> parts;
  bool has_application_name = false;
  bool has_connect_timeout = false;
  for (const dsn::Setting& setting : parsed->settings()) {
    has_application_name = has_application_name || setting.keyword == "application_name";
    has_connect_timeout = has_connect_timeout || setting.keyword == "connect_timeout";
    parts.push_back(absl::StrCat(setting.keyword, "=", dsn::QuoteConninfoValue(setting.value)));
  }
  if (!has_application_name) {
    parts.push_back(absl::StrCat(
        "application_name=",
        dsn::QuoteConninfoValue(options.application_name.substr(0, kMaxIdentifierBytes))));
  }
  if (!has_connect_timeout && options.connect_timeout > absl::ZeroDuration()) {
    parts.push_back(absl::StrCat(
        "connect_timeout=", std::max<int64_t>(2, absl::ToInt64Seconds(absl::Ceil(
                                                     options.connect_timeout, absl::Seconds(1))))));
  }
  const std::string host = parsed->Get("host").empty() ? "localhost" : parsed->Get("host");
  const std::string port = parsed->Get("port").empty() ? "5432" : parsed->Get("port");
  const std::string dbname =
      parsed->Get("dbname").empty() ? "(default database)" : parsed->Get("dbname");
  std::string display = parsed->Scrub(absl::StrCat(dbname, " on ", host, ":", port));
  return std::unique_ptr<ControlStore>(std::make_unique<PqControlStore>(
      *std::move(parsed), absl::StrJoin(parts, " "), std::move(display),
      std::max(1, options.max_idle_connections)));
}

}  // namespace schemad::store
