// PostgreSQL store on libpqxx 6.4 (see pq_database.h and store.h for the
// contracts). Notes on choices that are not visible in the interface:
//
// - DSNs, both `postgresql://` URIs and `key=value` strings, are parsed by
//   service/common/dsn.h (libpq's grammar; ambiguous URIs and bad values
//   refused) and rebuilt as one `key=value` conninfo, to which
//   application_name and connect_timeout are added unless the DSN sets them.
//   The password stays in memory only to connect and to be scrubbed (every
//   spelling of it) from every message built from libpq's errors.
// - Statements of revisions run through the raw PGconn (captured by a
//   connection policy, libpqxx's extension point) so that PostgreSQL's
//   PG_DIAG_STATEMENT_POSITION reaches StatementError::position; libpqxx's
//   sql_error does not carry it. Everything else goes through libpqxx.
// - Names: each session resolves the version table's schema on its first
//   call, together with client_connection_check_interval, and names every
//   table it touches schema-qualified from then on (Names). Connect itself
//   sends no query. When the first call is ReadState (EnsureHead, status),
//   the resolution rides on the state read: that read assumes the schema the
//   database's last session resolved and checks, in the same query, that
//   the unqualified name still points there (to_regclass, no catalog table
//   read); only when it does not does the session resolve and read again.
//   So a fresh session answers "where is this database" in one round trip.
// - Migration lock key: the int64 whose bits are FNV-1a 64 of "schemad:" +
//   the resolved "schema.table". When the bare table name resolves to the same
//   table (or is what was configured), the key of "schemad:" + the bare name
//   is taken too, all or nothing: that is the key earlier versions derived
//   from an unqualified name, so they still exclude this one. A key shows in
//   pg_locks as locktype 'advisory', classid = high 32 bits, objid = low 32
//   bits, objsubid = 1.
// - Session reset: kDiscardSql is DISCARD ALL spelled out in statements that
//   also run inside a transaction block, so that a transactional revision's
//   reset rides on its bookkeeping (no extra round trip: in front of the
//   bookkeeping statement, or as commands of the revision's pipeline just
//   before it) and commits with it; outside a transaction it is one round
//   trip (ResetState).
// - Runs: the run table holds one row per version table ("schema.table")
//   while a run is in progress: operation, who, and the pid and backend_start
//   of its session (together they name one backend; pids are reused).
// - A transactional revision (Transaction::ExecuteAndCommit) is two round
//   trips: BEGIN, the SET LOCALs, each statement, the session reset (one
//   command per statement of ResetStatements) and the bookkeeping (a plain
//   statement per version-row change, VersionRowSql, then the history row)
//   go as separate extended-query commands in one libpq pipeline with one
//   Sync, then COMMIT once all their results are in (a pipelined COMMIT
//   would be run by a backend whose client was killed mid-revision, after
//   the next run took the released lock) (PqSession::RunPipeline; the
//   connection is non-blocking meanwhile so that neither side can wait on the
//   other's full buffer). A flush request after each statement but the last
//   makes the server send that result as soon as it has it, which drives the
//   per-statement progress; the other results come together at the Sync. An
//   error makes PostgreSQL skip the rest up to the Sync; its command's index
//   names the statement and PG_DIAG_STATEMENT_POSITION is relative to that
//   statement alone. Each version-row change's command tag must say one row
//   (checked as its result arrives; otherwise ROLLBACK instead of COMMIT).
//   Revisions with COPY or transaction control
//   (NeedsOwnRoundTrip) keep the statement-by-statement path.
// - Several revisions in one transaction (Transaction::ExecuteRevision, the
//   per-command scope) are one pipeline each, as above but without COMMIT,
//   and without their history rows: those wait, with the durations measured
//   here, and go as one INSERT in front of COMMIT, in its round trip.
// - EnsureTables serialises creators with pg_advisory_xact_lock on FNV-1a 64 of
//   "schemad:ensure_tables" (one key per database: the history and state tables
//   are shared by every version table of the database).
// - Who blocks a statement: while a statement runs with a lock_timeout, a
//   per-session BlockerMonitor thread (started on the first such statement)
//   asks, from a separate short-lived connection ("... monitor" in
//   application_name), which backends block ours (pg_blocking_pids), first
//   after half the lock_timeout (at most 1 s), then at that interval. A lock
//   timeout (55P03) then names the last ones seen. Statements that finish
//   sooner cost a mutex and a clock read; statements without a lock_timeout,
//   nothing.
#include "service/store/pq/pq_database.h"

#include <libpq-fe.h>
#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <future>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <pqxx/pqxx>
#include <random>
#include <set>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "service/common/dsn.h"
#include "service/common/status_macros.h"
#include "service/store/pq/libpq_text.h"
#include "service/store/pq/pq_schema_inspector.h"

namespace schemad::store {
namespace {

constexpr int kMaxIdentifierBytes = 63;  // NAMEDATALEN - 1

// ------------------------------------------------------------------ helpers

uint64_t Fnv1a64(absl::string_view text) {
  uint64_t hash = 14695981039346656037ULL;
  for (char c : text) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 1099511628211ULL;
  }
  return hash;
}

int64_t AdvisoryKey(absl::string_view text) {
  const uint64_t hash = Fnv1a64(text);
  int64_t key = 0;
  std::memcpy(&key, &hash, sizeof key);
  return key;
}

std::string QuoteIdent(absl::string_view name) {
  return absl::StrCat("\"", absl::StrReplaceAll(name, {{"\"", "\"\""}}), "\"");
}

// A PostgreSQL text[] literal ("{\"a\",\"b\"}").
std::string TextArrayLiteral(const std::vector<std::string>& values) {
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) {
      out.push_back(',');
    }
    out.push_back('"');
    for (char c : values[i]) {
      if (c == '"' || c == '\\') {
        out.push_back('\\');
      }
      out.push_back(c);
    }
    out.push_back('"');
  }
  out.push_back('}');
  return out;
}

std::vector<std::string> ParseTextArray(const pqxx::field& field) {
  std::vector<std::string> out;
  if (field.is_null()) {
    return out;
  }
  pqxx::array_parser parser = field.as_array();
  for (;;) {
    std::pair<pqxx::array_parser::juncture, std::string> item = parser.get_next();
    if (item.first == pqxx::array_parser::juncture::done) {
      break;
    }
    if (item.first == pqxx::array_parser::juncture::string_value) {
      out.push_back(std::move(item.second));
    } else if (item.first == pqxx::array_parser::juncture::null_value) {
      out.emplace_back();
    }
  }
  return out;
}

std::string FieldText(const pqxx::field& field) {
  return field.is_null() ? std::string() : std::string(field.c_str());
}

absl::Time MicrosToTime(const pqxx::field& field) {
  if (field.is_null()) {
    return absl::InfinitePast();
  }
  return absl::FromUnixMicros(field.as<int64_t>());
}

// Microseconds since the epoch as text, or "" for an unset time.
std::string TimeToMicros(absl::Time time) {
  if (time == absl::InfinitePast() || time == absl::InfiniteFuture()) {
    return "";
  }
  return absl::StrCat(absl::ToUnixMicros(time));
}

// nullptr (SQL NULL) for an empty string.
const char* NullIfEmpty(const std::string& text) { return text.empty() ? nullptr : text.c_str(); }

// "0" or "1500ms" for SET lock_timeout / statement_timeout.
absl::StatusOr<std::string> TimeoutSetting(absl::Duration duration, absl::string_view name) {
  if (duration < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " must not be negative, got ", absl::FormatDuration(duration)));
  }
  if (duration == absl::ZeroDuration() || duration == absl::InfiniteDuration()) {
    return std::string("0");
  }
  int64_t ms = absl::ToInt64Milliseconds(absl::Ceil(duration, absl::Milliseconds(1)));
  ms = std::min<int64_t>(std::max<int64_t>(ms, 1), std::numeric_limits<int32_t>::max());
  return absl::StrCat(ms, "ms");
}

// Replaces every spelling of `secret` in `text` (dsn::ScrubSecret).
std::string Scrub(absl::string_view text, const std::string& secret) {
  return dsn::ScrubSecret(text, secret);
}

using internal::OneLine;

// PostgreSQL's primary message from a libpq error text ("ERROR:  x\nLINE 1: ...").
std::string PrimaryMessage(absl::string_view text) {
  absl::string_view line = text.substr(0, text.find('\n'));
  for (absl::string_view prefix : {"ERROR:", "FATAL:", "PANIC:"}) {
    if (absl::ConsumePrefix(&line, prefix)) {
      break;
    }
  }
  return std::string(absl::StripAsciiWhitespace(line));
}

absl::StatusCode CodeForSqlState(absl::string_view sqlstate) {
  if (sqlstate == "55P03" || sqlstate == "40P01" || sqlstate == "40001" || sqlstate == "57014") {
    return absl::StatusCode::kAborted;
  }
  if (sqlstate == "40003") {
    return absl::StatusCode::kUnknown;  // statement_completion_unknown
  }
  if (absl::StartsWith(sqlstate, "08") || sqlstate == "57P01" || sqlstate == "57P02" ||
      sqlstate == "57P03") {
    return absl::StatusCode::kUnavailable;
  }
  return absl::StatusCode::kFailedPrecondition;
}

absl::Status SqlStatus(absl::string_view sqlstate, absl::string_view message) {
  if (sqlstate.empty()) {
    return absl::Status(absl::StatusCode::kFailedPrecondition, message);
  }
  return absl::Status(CodeForSqlState(sqlstate),
                      absl::StrCat("SQLSTATE ", sqlstate, ": ", message));
}

// Maps the exception being handled to a status. Call only inside a catch block.
absl::Status StatusFromCurrentException() {
  try {
    throw;
  } catch (const pqxx::in_doubt_error& e) {
    return absl::UnknownError(absl::StrCat(
        "the connection broke during COMMIT; the outcome is unknown: ", OneLine(e.what())));
  } catch (const pqxx::broken_connection& e) {
    return absl::UnavailableError(absl::StrCat("connection lost: ", OneLine(e.what())));
  } catch (const pqxx::sql_error& e) {
    return SqlStatus(e.sqlstate(), PrimaryMessage(e.what()));
  } catch (const pqxx::statement_completion_unknown& e) {
    return absl::UnknownError(
        absl::StrCat("statement outcome unknown: ", PrimaryMessage(e.what())));
  } catch (const pqxx::deadlock_detected& e) {
    return absl::AbortedError(absl::StrCat("SQLSTATE 40P01: ", PrimaryMessage(e.what())));
  } catch (const pqxx::serialization_failure& e) {
    return absl::AbortedError(absl::StrCat("SQLSTATE 40001: ", PrimaryMessage(e.what())));
  } catch (const pqxx::transaction_rollback& e) {
    return absl::AbortedError(PrimaryMessage(e.what()));
  } catch (const std::exception& e) {
    return absl::InternalError(OneLine(e.what()));
  } catch (...) {
    return absl::UnknownError("unknown exception from libpqxx");
  }
}

bool IsSqlState(const pqxx::sql_error& e, absl::string_view sqlstate) {
  return e.sqlstate() == sqlstate;
}

// ---------------------------------------------------------------------- DSN

std::string EnvOr(const char* name, absl::string_view fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? std::string(value) : std::string(fallback);
}

// One `key=value` conninfo: the DSN's settings, then application_name
// (`application_name` unless the DSN names one, plus `suffix`) and
// connect_timeout (unless the DSN sets one).
std::string BuildConninfo(const dsn::Dsn& parsed, absl::string_view application_name,
                          absl::string_view suffix, absl::Duration connect_timeout) {
  std::vector<std::string> parts;
  bool has_application_name = false;
  bool has_connect_timeout = false;
  // PostgreSQL keeps 63 bytes (and says so in a NOTICE before libpqxx can
  // route notices): shorten the name, not the suffix.
  const auto with_suffix = [suffix](absl::string_view name) {
    const size_t room = static_cast<size_t>(kMaxIdentifierBytes) - suffix.size();
    return dsn::QuoteConninfoValue(absl::StrCat(name.substr(0, room), suffix));
  };
  for (const dsn::Setting& setting : parsed.settings()) {
    const std::string& key = setting.keyword;
    const std::string& value = setting.value;
    if (key == "application_name") {
      has_application_name = true;
      parts.push_back(absl::StrCat(key, "=", with_suffix(value)));
      continue;
    }
    has_connect_timeout = has_connect_timeout || key == "connect_timeout";
    parts.push_back(absl::StrCat(key, "=", dsn::QuoteConninfoValue(value)));
  }
  if (!has_application_name) {
    parts.push_back(absl::StrCat("application_name=", with_suffix(application_name)));
  }
  if (!has_connect_timeout && connect_timeout > absl::ZeroDuration() &&
      connect_timeout != absl::InfiniteDuration()) {
    // libpq counts whole seconds and treats values below 2 as 2.
    const int64_t seconds =
        std::max<int64_t>(2, absl::ToInt64Seconds(absl::Ceil(connect_timeout, absl::Seconds(1))));
    parts.push_back(absl::StrCat("connect_timeout=", seconds));
  }
  return absl::StrJoin(parts, " ");
}

// ------------------------------------------------------------- connection

// Connects like pqxx::connect_direct and remembers the PGconn, so that
// statements can run through libpq directly (for PG_DIAG_STATEMENT_POSITION)
// and be cancelled with a PGcancel made once, up front.
class HandlePolicy final : public pqxx::connect_direct {
 public:
  explicit HandlePolicy(const std::string& options) : pqxx::connect_direct(options) {}
  handle do_startconnect(handle orig) override {
    handle_ = pqxx::connect_direct::do_startconnect(orig);
    return handle_;
  }
  handle do_dropconnect(handle orig) noexcept override {
    handle_ = pqxx::connect_direct::do_dropconnect(orig);
    return handle_;
  }
  handle do_disconnect(handle orig) noexcept override {
    handle_ = pqxx::connect_direct::do_disconnect(orig);
    return handle_;
  }
  PGconn* pgconn() const { return handle_; }

 private:
  handle handle_ = nullptr;
};

// A pqxx connection whose PGconn is reachable. Throws like pqxx::connection.
class PqConnection final : public pqxx::connection_base {
 public:
  explicit PqConnection(const std::string& conninfo)
      : pqxx::connection_base(policy_), conninfo_(conninfo), policy_(conninfo_) {
    init();
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    // A lost connection stays lost: a silent reconnect would hide that the
    // state must be re-read.
    inhibit_reactivation(true);
#pragma GCC diagnostic pop
  }
  ~PqConnection() noexcept { close(); }
  PqConnection(const PqConnection&) = delete;
  PqConnection& operator=(const PqConnection&) = delete;

  PGconn* pgconn() const { return policy_.pgconn(); }

 private:
  std::string conninfo_;  // must be initialised before policy_
  HandlePolicy policy_;
};

// ------------------------------------------------------------------- config

// Shared by the sessions of one database (Config::last_bare_schema).
class LastBareSchema {
 public:
  // The last schema seen, else `fallback`.
  std::string GetOr(const std::string& fallback) const {
    std::lock_guard<std::mutex> lock(mu_);
    return known_ ? schema_ : fallback;
  }
  void Set(const std::string& schema) {
    std::lock_guard<std::mutex> lock(mu_);
    schema_ = schema;
    known_ = true;
  }

 private:
  mutable std::mutex mu_;
  std::string schema_;
  bool known_ = false;
};

struct Config {
  std::string display_name;      // "dbname on host:port"
  std::string user;              // for messages
  std::string password;          // scrubbed from messages
  std::string conninfo;          // sessions
  std::string lock_conninfo;     // the lock connection (application_name + " lock")
  std::string monitor_conninfo;  // BlockerMonitor (application_name + " monitor")
  PqOptions options;

  TableNames tables;               // as configured; schema "" = resolve per session
  std::string version_table_name;  // as configured, for Alembic's messages
  std::string configured_key;      // "schema.table" / "table" as configured
  std::string ensure_key;          // decimal int64
  // client_connection_check_interval for sessions, "" to leave it alone.
  std::string check_interval;
  // The schema the unqualified version-table name found when a session of
  // this database last resolved it: the next session's first state read
  // assumes it and checks the assumption in the same query (ReadState).
  std::shared_ptr<LastBareSchema> last_bare_schema = std::make_shared<LastBareSchema>();
};

// Where one session finds the bookkeeping: the configuration's names with
// the version table's schema resolved by the session's first call.
struct Names {
  std::string schema;         // resolved
  std::string version_table;  // quoted, qualified
  std::string version_pkc;    // quoted constraint name
  std::string history_table;  // quoted, qualified
  std::string state_table;    // quoted, qualified
  std::string run_table;      // quoted, qualified
  // The key of this version table's rows in the history and state tables.
  // Written as configured ("alembic_version" or "schema.alembic_version",
  // what earlier versions wrote and read); read under every name of the
  // resolved table, so that `alembic_version` and `public.alembic_version`
  // see each other's marks and history.
  std::string write_key;
  std::string read_keys;      // text[] literal of every key of this table
  std::string canonical_key;  // "schema.table": the run table's key, the lock's
  // Migration lock: the key of the canonical identity, and (only when it
  // differs) the key earlier versions derived from the name as configured,
  // taken as well so that they keep excluding this version.
  std::vector<int64_t> lock_keys;
};

absl::Status ValidateIdentifier(absl::string_view field, const std::string& name,
                                bool may_be_empty) {
  if (name.empty()) {
    if (may_be_empty) {
      return absl::OkStatus();
    }
    return absl::InvalidArgumentError(absl::StrCat(field, ": must not be empty"));
  }
  if (name.size() > static_cast<size_t>(kMaxIdentifierBytes)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": '", name, "' is longer than ", kMaxIdentifierBytes, " bytes"));
  }
  if (name.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": contains a NUL byte"));
  }
  return absl::OkStatus();
}

std::string Qualified(const std::string& schema, const std::string& table) {
  return schema.empty() ? QuoteIdent(table)
                        : absl::StrCat(QuoteIdent(schema), ".", QuoteIdent(table));
}

// The names of a session whose unqualified version-table name finds schema
// `bare_schema` ("" when the search_path names no existing schema).
absl::StatusOr<Names> ResolveNames(const Config& c, const std::string& bare_schema) {
  const TableNames& t = c.tables;
  Names n;
  n.schema = t.schema.empty() ? bare_schema : t.schema;
  if (n.schema.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot tell where ", t.version_table, " belongs in ", c.display_name,
        ": there is no such table and the search_path", c.user.empty() ? "" : " of user ", c.user,
        " names no existing schema; name the schema (schema.", t.version_table,
        ") or fix the search_path"));
  }
  n.version_table = Qualified(n.schema, t.version_table);
  n.version_pkc = QuoteIdent(absl::StrCat(t.version_table, "_pkc"));
  n.history_table = Qualified(n.schema, t.history_table);
  n.state_table = Qualified(n.schema, t.state_table);
  n.run_table = Qualified(n.schema, t.run_table);
  n.write_key = c.configured_key;
  n.canonical_key = absl::StrCat(n.schema, ".", t.version_table);
  std::vector<std::string> keys = {n.canonical_key};
  if (t.schema.empty() || bare_schema == n.schema) {
    keys.push_back(t.version_table);  // what the bare name meant to earlier versions
  }
  n.read_keys = TextArrayLiteral(keys);
  for (const std::string& key : keys) {
    n.lock_keys.push_back(AdvisoryKey(absl::StrCat("schemad:", key)));
  }
  return n;
}

// What DISCARD ALL does, in statements that may also run inside a
// transaction block (DISCARD ALL may not): a revision's SET, SET ROLE (RESET
// ALL keeps the role; SET SESSION AUTHORIZATION DEFAULT resets it),
// set_config(..., false), cursors, prepared statements, LISTEN, session
// advisory locks, cached plans, temporary tables and sequence caches. Inside
// a transaction the settings part is undone by a ROLLBACK, like the
// revision's own SETs were; the rest is not transactional. The advisory
// locks go last, in the SELECT that also puts back schemad's own settings
// (PqSession::ResetStatements): one command fewer for each of them.
constexpr absl::string_view kDiscardSql =
    "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; DEALLOCATE ALL; UNLISTEN *; "
    "DISCARD PLANS; DISCARD TEMP; DISCARD SEQUENCES";
constexpr absl::string_view kUnlockAdvisorySql = "SELECT pg_catalog.pg_advisory_unlock_all()";

// ------------------------------------------------------------ lock waits

// Finds out who blocks a statement that waits for a lock, so that a lock
// timeout can name them. One per PqSession, created by its first statement
// with a lock_timeout; its thread sleeps on a condition variable between
// watches. The statement's thread calls Watch before and EndWatch after the
// statement. When a watch is still on after `first` (half the lock_timeout,
// at most 1 s), the thread connects (once per burst of statements: the
// connection is closed after kLinger without a watch) and asks
// pg_blocking_pids about the watched backend, again every `first` until the
// watch ends. Best effort: a failure to connect or ask only means no names.
//
// Thread-safety: Watch and EndWatch from the session's thread; the monitor
// thread is internal.
class BlockerMonitor {
 public:
  BlockerMonitor(std::string conninfo, std::string password)
      : conninfo_(std::move(conninfo)), password_(std::move(password)) {
    thread_ = std::thread([this] { Loop(); });
  }
  ~BlockerMonitor() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      quit_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }
  BlockerMonitor(const BlockerMonitor&) = delete;
  BlockerMonitor& operator=(const BlockerMonitor&) = delete;

  // Starts watching backend `pid`, whose statement runs with `lock_timeout` (> 0).
  void Watch(int pid, absl::Duration lock_timeout) {
    const Clock::duration first =
        std::max(absl::ToChronoNanoseconds(std::min(lock_timeout / 2, absl::Seconds(1))),
                 Clock::duration(std::chrono::milliseconds(5)));
    const Clock::time_point ask_at = Clock::now() + first;
    bool wake = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      watching_ = true;
      ++watch_id_;
      pid_ = pid;
      interval_ = first;
      next_ask_ = ask_at;
      blockers_.clear();
      // A thread already sleeping until an earlier time re-reads next_ask_
      // when it wakes: no need to wake it now.
      wake = ask_at < sleeping_until_;
    }
    if (wake) {
      cv_.notify_one();
    }
  }

  // Ends the watch: the blockers last seen during it ("" when none).
  std::string EndWatch() {
    std::lock_guard<std::mutex> lock(mu_);
    watching_ = false;
    ++watch_id_;
    return std::move(blockers_);
  }

 private:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::seconds kLinger{5};
  static constexpr int kMaxNamed = 3;

  void Loop() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!quit_) {
      if (!watching_) {
        sleeping_until_ = Clock::time_point::max();
        if (conn_ == nullptr) {
          cv_.wait(lock);
        } else if (!cv_.wait_for(lock, kLinger, [this] { return quit_ || watching_; })) {
          lock.unlock();
          Disconnect();
          lock.lock();
        }
        continue;
      }
      if (Clock::now() < next_ask_) {
        sleeping_until_ = next_ask_;
        cv_.wait_until(lock, next_ask_);
        continue;
      }
      sleeping_until_ = Clock::time_point::min();  // busy: Watch need not wake us
      const uint64_t id = watch_id_;
      const int pid = pid_;
      lock.unlock();
      std::string answer = AskWhoBlocks(pid);
      lock.lock();
      if (watching_ && watch_id_ == id) {
        if (!answer.empty()) {
          blockers_ = std::move(answer);
        }
        next_ask_ = Clock::now() + interval_;
      }
    }
    lock.unlock();
    Disconnect();
  }

  void Disconnect() {
    if (conn_ != nullptr) {
      PQfinish(conn_);
      conn_ = nullptr;
    }
  }

  // "blocked by pid 1234 (psql) from 10.0.0.7, idle in transaction: LOCK TABLE ...",
  // or "" when nothing blocks `pid` (or the question could not be asked).
  std::string AskWhoBlocks(int pid) {
    if (conn_ == nullptr) {
      conn_ = PQconnectdb(conninfo_.c_str());
      if (conn_ == nullptr || PQstatus(conn_) != CONNECTION_OK) {
        Disconnect();
        return "";
      }
      // The monitor never queues behind anything for long.
      PQclear(PQexec(conn_, "SET statement_timeout = '2s'; SET lock_timeout = '1s'"));
    }
    const std::string pid_text = absl::StrCat(pid);
    const char* params[] = {pid_text.c_str()};
    PGresult* result = PQexecParams(
        conn_,
        "SELECT b.pid, a.pid IS NOT NULL, a.application_name, host(a.client_addr), a.state, "
        "left(a.query, 200), length(a.query) > 200 "
        "FROM pg_stat_activity me "
        "CROSS JOIN LATERAL (SELECT DISTINCT p FROM unnest(pg_blocking_pids(me.pid)) AS p) "
        "AS b(pid) LEFT JOIN pg_stat_activity a ON a.pid = b.pid "
        "WHERE me.pid = $1::int AND me.wait_event_type = 'Lock' ORDER BY b.pid LIMIT 4",
        1, nullptr, params, nullptr, nullptr, 0);
    std::unique_ptr<PGresult, void (*)(PGresult*)> owned(result, &PQclear);
    if (result == nullptr || PQresultStatus(result) != PGRES_TUPLES_OK) {
      if (PQstatus(conn_) != CONNECTION_OK) {
        Disconnect();
      }
      return "";
    }
    const auto text = [result](int row, int column) {
      return PQgetisnull(result, row, column) ? std::string()
                                              : std::string(PQgetvalue(result, row, column));
    };
    std::vector<std::string> named;
    const int rows = PQntuples(result);
    for (int row = 0; row < std::min(rows, kMaxNamed); ++row) {
      std::string one;
      if (text(row, 0) == "0") {
        one = "a prepared transaction";
      } else {
        LockHolder holder;
        if (!absl::SimpleAtoi(text(row, 0), &holder.pid)) {
          continue;
        }
        holder.application_name = text(row, 2);
        holder.client_address = text(row, 3);
        one = holder.Describe();
        const std::string state = text(row, 4);
        if (!state.empty()) {
          absl::StrAppend(&one, ", ", state);
        }
        const std::string query = OneLine(text(row, 5));
        if (!query.empty()) {
          absl::StrAppend(&one, ": ", query, text(row, 6) == "t" ? "..." : "");
        }
      }
      named.push_back(Scrub(one, password_));
    }
    if (named.empty()) {
      return "";
    }
    std::string out = absl::StrCat("blocked by ", absl::StrJoin(named, "; and by "));
    if (rows > kMaxNamed) {
      absl::StrAppend(&out, "; and others");
    }
    return out;
  }

  const std::string conninfo_;
  const std::string password_;  // scrubbed from what the monitor reports
  PGconn* conn_ = nullptr;      // the monitor thread's

  std::mutex mu_;
  std::condition_variable cv_;
  bool quit_ ABSL_GUARDED_BY(mu_) = false;
  bool watching_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t watch_id_ ABSL_GUARDED_BY(mu_) = 0;
  int pid_ ABSL_GUARDED_BY(mu_) = 0;
  Clock::duration interval_ ABSL_GUARDED_BY(mu_){};
  Clock::time_point next_ask_ ABSL_GUARDED_BY(mu_){};
  // When the monitor thread will next look at the state unasked:
  // max() while idle, min() while asking.
  Clock::time_point sleeping_until_ ABSL_GUARDED_BY(mu_) = Clock::time_point::max();
  std::string blockers_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

// PostgreSQL's SQLSTATE, message and error position from a failed result.
StatementError StatementErrorOf(const PGresult* result) {
  const char* sqlstate = PQresultErrorField(result, PG_DIAG_SQLSTATE);
  const char* primary = PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY);
  const char* position = PQresultErrorField(result, PG_DIAG_STATEMENT_POSITION);
  StatementError statement_error;
  statement_error.sqlstate = sqlstate != nullptr ? sqlstate : "";
  statement_error.message =
      primary != nullptr ? std::string(primary) : PrimaryMessage(PQresultErrorMessage(result));
  int parsed_position = 0;
  if (position != nullptr && absl::SimpleAtoi(position, &parsed_position)) {
    statement_error.position = parsed_position;
  }
  return statement_error;
}

// Appends the blockers to a lock-timeout message.
std::string WithBlockers(std::string message, const std::string& blockers) {
  if (!blockers.empty()) {
    absl::StrAppend(&message, "; ", blockers);
  }
  return message;
}

// ------------------------------------------------------------------ session

// client_connection_check_interval's value quoted, or "" when the
// configuration leaves it alone or the server (before 14) lacks it.
std::string CheckIntervalLiteral(const Config& config, PqConnection& conn) {
  if (config.check_interval.empty() || PQserverVersion(conn.pgconn()) < 140000) {
    return "";
  }
  return conn.quote(config.check_interval);
}

class PqSession;

// A connection being opened on another thread (std::async over Open).
using PreparedConnection = std::future<absl::StatusOr<std::unique_ptr<PqConnection>>>;

// Quotes a literal for SQL built by hand.
using Quote = std::function<std::string(const std::string&)>;

class PqTransaction final : public Transaction {
 public:
  explicit PqTransaction(PqSession* session) : session_(session) {}
  ~PqTransaction() override;

  // Transaction:
  absl::Status SetTimeouts(const Timeouts& timeouts) override;
  absl::Status Execute(const SqlStatement& statement, StatementError* error) override;
  absl::Status ApplyVersionChanges(absl::Span<const VersionRowChange> changes) override;
  absl::Status AppendHistory(const HistoryRecord& record) override;
  absl::Status SetNeedsAttention(const std::optional<NeedsAttention>& marker) override;
  absl::Status StartRun(const RunRecord& run) override;
  absl::Status Commit() override;
  absl::Status ExecuteAndCommit(absl::Span<const SqlStatement> statements,
                                absl::Span<const VersionRowChange> changes,
                                const HistoryRecord& history,
                                const std::function<void(int)>& on_started,
                                const std::function<bool()>& cancelled, int* failed_index,
                                StatementError* error) override;
  absl::Status ExecuteRevision(absl::Span<const SqlStatement> statements,
                               absl::Span<const VersionRowChange> changes,
                               const HistoryRecord& history,
                               const std::function<void(int)>& on_started,
                               const std::function<bool()>& cancelled, int* failed_index,
                               StatementError* error) override;

 private:
  absl::Status Usable() const;
  // BEGIN is sent with the first statement that needs it (the pqxx::work is
  // made then), so that ExecuteAndCommit can send it in its pipeline.
  absl::Status EnsureWork();
  // ExecuteAndCommit (`commit`) or ExecuteRevision in one pipeline (see
  // there). `reset_session`: send the session reset even when `statements`
  // is empty (they ran before, one by one). `history`: the revision's
  // history row, written in the pipeline; nullptr when the caller writes it
  // later (ExecuteRevision: with COMMIT).
  absl::Status PipelineRevision(absl::Span<const SqlStatement> statements,
                                absl::Span<const VersionRowChange> changes,
                                const HistoryRecord* history,
                                const std::function<void(int)>& on_started,
                                const std::function<bool()>& cancelled, int* failed_index,
                                StatementError* error, bool commit, bool reset_session);
  // ExecuteRevision's statements one round trip each, on the transaction a
  // pipeline opened (COPY, transaction control: NeedsOwnRoundTrip). On an
  // error the transaction is rolled back.
  absl::Status RunStatementsRaw(absl::Span<const SqlStatement> statements,
                                const std::function<void(int)>& on_started,
                                const std::function<bool()>& cancelled, int* failed_index,
                                StatementError* error);
  // COMMIT of the transaction a pipeline opened, in one round trip with the
  // history rows of the revisions ExecuteRevision ran (history_at_commit_).
  absl::Status CommitRaw();
  // ROLLBACK of the transaction a pipeline opened (errors ignored: the
  // session is lost then, or the transaction is gone either way).
  void RollbackRaw();
  // Runs `fn` (which may throw) on the transaction; any failure poisons it.
  absl::Status Run(absl::string_view context, const std::function<absl::Status()>& fn);
  // Sends the buffered version-row changes and history rows as one statement
  // (data-modifying CTEs), checking that each change touched exactly one row.
  // Called before anything else runs on the transaction and before COMMIT, so
  // that a revision's bookkeeping costs one round trip, not one per row.
  absl::Status FlushBookkeeping();
  absl::Status WriteBookkeeping(const std::vector<VersionRowChange>& changes,
                                const std::vector<HistoryRecord>& history);
  // "" or, when revision statements ran in this transaction since the last
  // time, the statements that discard what they changed in the session,
  // with "; " to go in front of the next statement of schemad's own. Once
  // sent they are committed or rolled back with the transaction.
  std::string TakeResetPrefix();

  PqSession* session_;
  std::unique_ptr<pqxx::work> work_;  // null until EnsureWork
  // A pipeline of ExecuteRevision sent BEGIN and the transaction is still
  // open (work_ stays null: pqxx knows nothing of it); COMMIT or ROLLBACK go raw.
  bool raw_open_ = false;
  // SET LOCAL statements of SetTimeouts not sent yet (sent after BEGIN).
  std::vector<std::string> pending_settings_;
  std::vector<VersionRowChange> pending_changes_;
  std::vector<HistoryRecord> pending_history_;
  // The history rows of the revisions ExecuteRevision sent in pipelines, with
  // the durations this process measured, written by CommitRaw in front of
  // COMMIT: one INSERT for the whole transaction instead of one a revision,
  // and each row's duration the revision's own (the server's clock would
  // only give the time since the transaction, which began with the first).
  std::vector<HistoryRecord> history_at_commit_;
  absl::Duration lock_timeout_ = absl::ZeroDuration();  // as last set by SetTimeouts
  bool timeouts_set_ = false;                           // a SET LOCAL was sent
  bool revision_state_ = false;           // revision statements ran since the last reset prefix
  bool reset_sent_ = false;               // a reset prefix went out in this transaction
  std::optional<RunRecord> started_run_;  // by StartRun, in effect after Commit
  bool failed_ = false;
  bool committed_ = false;
};

class PqSession final : public Session {
 public:
  PqSession(std::shared_ptr<const Config> config, std::unique_ptr<PqConnection> conn,
            std::string application_name)
      : config_(std::move(config)),
        conn_(std::move(conn)),
        application_name_(std::move(application_name)) {
    cancel_ = PQgetCancel(conn_->pgconn());
    backend_pid_ = PQbackendPID(conn_->pgconn());
    check_interval_ = CheckIntervalLiteral(*config_, *conn_);
  }
  ~PqSession() override {
    {
      std::lock_guard<std::mutex> lock(cancel_mu_);
      if (cancel_ != nullptr) {
        PQfreeCancel(cancel_);
        cancel_ = nullptr;
      }
    }
    conn_.reset();
  }

  // Session:
  absl::StatusOr<DatabaseState> ReadState() override;
  absl::Status EnsureTables() override;
  absl::StatusOr<std::unique_ptr<Transaction>> Begin() override;
  absl::Status ExecuteAutocommit(const SqlStatement& statement, const Timeouts& timeouts,
                                 StatementError* error) override;
  absl::Status ResetState() override;
  absl::StatusOr<std::unique_ptr<MigrationLock>> AcquireLock(
      absl::Duration wait, const LockWaitCallback& on_wait,
      const std::function<bool()>& cancelled) override;
  // A lock connection PqDatabase::PrepareLock began to open, for AcquireLock.
  void AdoptPreparedLock(PreparedConnection prepared) { prepared_lock_ = std::move(prepared); }
  absl::StatusOr<std::optional<UnfinishedRun>> ReadUnfinishedRun() override;
  absl::Status FinishRun() override;
  absl::StatusOr<std::map<std::string, std::string>> ReadAppliedChecksums() override;
  absl::StatusOr<std::map<std::string, std::string>> ReadAppliedFingerprints() override;
  absl::StatusOr<std::vector<HistoryRecord>> ReadHistory(int limit) override;
  void Cancel() override;
  absl::StatusOr<schema::DatabaseSchema> InspectSchema() override;

  // For PqTransaction.
  const Config& config() const { return *config_; }
  // Valid once Resolve() succeeded (Begin resolves).
  const Names& names() const { return names_; }
  // Runs `fn` (which may throw pqxx exceptions) as a cancellable statement
  // and turns exceptions into a status annotated with `context`. With a
  // `lock_timeout` (> 0, the one in effect), a lock timeout names the blockers.
  absl::Status Run(absl::string_view context, const std::function<absl::Status()>& fn,
                   absl::Duration lock_timeout = absl::ZeroDuration());
  // Runs `sql` through libpq directly, filling `error` on an SQL error;
  // `lock_timeout` as for Run.
  absl::Status RunRaw(const std::string& sql, StatementError* error,
                      absl::Duration lock_timeout = absl::ZeroDuration());
  void TransactionEnded() { transaction_open_ = false; }
  // A revision statement ran: the session holds state of the revision's.
  void MarkDirty() { dirty_ = true; }
  // A transaction committed: with `reset` it discarded the revision state
  // (and nothing ran after that); with `run` it started that run.
  void Committed(bool reset, const std::optional<RunRecord>& run) {
    if (reset) {
      dirty_ = false;
    }
    if (run.has_value()) {
      run_operation_id_ = run->operation_id;
      run_tag_ = run->application_name;
    }
  }
  // The statements that discard revision state: kDiscardSql, then one
  // SELECT that releases the advisory locks and sets again what schemad sets
  // on its sessions (the connection check, the run's tag); one SQL command
  // each (ResetStatements) or joined with "; " (ResetSql).
  std::vector<std::string> ResetStatements() const;
  std::string ResetSql() const { return absl::StrJoin(ResetStatements(), "; "); }
  // application_name while `operation_id` runs: "schemactl op-0123...".
  std::string RunTag(const std::string& operation_id) const;
  PqConnection& connection() { return *conn_; }
  // Quotes literals for this session's connection (may throw as pqxx does).
  Quote Quoter() {
    return [this](const std::string& value) { return conn_->quote(value); };
  }
  // Sends `commands` (one SQL command each) as one libpq pipeline with one
  // Sync, reading each command's result as it arrives: `on_result(k, result)`
  // for command k (result never null; PGRES_PIPELINE_ABORTED after an
  // error). The server sends the results of the commands k with
  // `flush_after(k)` as soon as it has them, the others at the Sync (each
  // flush is one more packet and one more wake-up of this process). Returns UNAVAILABLE (and marks
  // the session lost) when the connection broke before the Sync came back; `*results_seen` then
  // says how many commands had a result. The session leaves pipeline mode either way.
  absl::Status RunPipeline(const std::vector<std::string>& commands,
                           const std::function<void(int, const PGresult*)>& on_result,
                           const std::function<bool(int)>& flush_after, int* results_seen,
                           absl::Duration lock_timeout, std::string* blockers);
  // libpq's view, without a round trip.
  PGTransactionStatusType TransactionStatus() const { return PQtransactionStatus(conn_->pgconn()); }

 private:
  class RunningScope {
   public:
    explicit RunningScope(PqSession* session) : session_(session) {
      std::lock_guard<std::mutex> lock(session_->cancel_mu_);
      session_->running_ = true;
    }
    ~RunningScope() {
      std::lock_guard<std::mutex> lock(session_->cancel_mu_);
      session_->running_ = false;
    }
    RunningScope(const RunningScope&) = delete;
    RunningScope& operator=(const RunningScope&) = delete;

   private:
    PqSession* session_;
  };

  // For each applied revision, `column` (an expression over its history row
  // `h`) of the row that last recorded it (see AppliedValueQuery); revisions
  // with a NULL or empty value are absent.
  absl::StatusOr<std::map<std::string, std::string>> ReadAppliedValues(absl::string_view column,
                                                                       const char* activity);

  absl::Status Lost() const {
    return absl::UnavailableError(
        absl::StrCat("the connection to ", config_->display_name,
                     " was lost; open a new session and re-read the state"));
  }
  // The connection to send on, or nullptr (the session then marked broken)
  // when it is gone.
  PGconn* LiveConnection() {
    if (broken_) {
      return nullptr;
    }
    PGconn* pg = conn_->pgconn();
    if (pg == nullptr || PQstatus(pg) != CONNECTION_OK) {
      broken_ = true;
      return nullptr;
    }
    return pg;
  }
  absl::Status NoTransactionOpen() const {
    if (transaction_open_) {
      return absl::FailedPreconditionError("a transaction is open on this session");
    }
    return absl::OkStatus();
  }
  // Makes names_ valid: on the session's first call, one round trip that
  // sets client_connection_check_interval and resolves the version table's
  // schema (ResolveNames); after that, nothing. Every method that names a
  // table or runs SQL of the caller's calls it first.
  absl::Status Resolve();
  // `sql` preceded by the session's setup (the connection check's SET, where
  // there is one) in one simple query.
  std::string WithSessionSetup(absl::string_view sql) const {
    return check_interval_.empty()
               ? std::string(sql)
               : absl::StrCat("SET client_connection_check_interval = ", check_interval_, "; ",
                              sql);
  }
  // The first ReadState of a session, in one round trip: the connection
  // check's SET, and the state read under the names of the schema the
  // database's last session resolved (else the configured schema, else
  // "public"), with a row that says whether the unqualified name still
  // resolves there. nullopt when it does not, or a table is missing: the
  // caller resolves and reads again.
  absl::StatusOr<std::optional<DatabaseState>> ReadStateAssumingLastSchema();
  absl::Status ReadStateFallback(DatabaseState* state);
  static void AddStateRow(const pqxx::row& row, DatabaseState* state);
  // Starts watching for blockers when `lock_timeout` > 0; returns whether it did.
  bool WatchForBlockers(absl::Duration lock_timeout);

  std::shared_ptr<const Config> config_;
  std::unique_ptr<PqConnection> conn_;
  Names names_;  // valid when resolved_
  bool resolved_ = false;
  const std::string application_name_;  // as connected
  std::string check_interval_;          // quoted; "" where the server has no such setting
  bool broken_ = false;
  bool transaction_open_ = false;
  bool dirty_ = false;            // revision statements ran since the last reset
  std::string run_operation_id_;  // the run started on this session, "" when none
  std::string run_tag_;           // its application_name
  int backend_pid_ = 0;
  std::unique_ptr<BlockerMonitor> monitor_;  // created by the first statement with a lock_timeout
  // The lock connection PqDatabase::PrepareLock is opening, for the next
  // AcquireLock; invalid when none (a destroyed session waits for it and
  // closes it).
  PreparedConnection prepared_lock_;

  std::mutex cancel_mu_;
  bool running_ ABSL_GUARDED_BY(cancel_mu_) = false;
  PGcancel* cancel_ ABSL_GUARDED_BY(cancel_mu_) = nullptr;
};

std::vector<std::string> PqSession::ResetStatements() const {
  std::vector<std::string> statements = absl::StrSplit(kDiscardSql, "; ");
  // After RESET ALL: the advisory locks, and schemad's settings back, in one command.
  std::string last(kUnlockAdvisorySql);
  if (!check_interval_.empty()) {
    absl::StrAppend(&last, ", pg_catalog.set_config('client_connection_check_interval', ",
                    check_interval_, ", false)");
  }
  if (!run_tag_.empty()) {
    absl::StrAppend(&last, ", pg_catalog.set_config('application_name', ", conn_->quote(run_tag_),
                    ", false)");
  }
  statements.push_back(std::move(last));
  return statements;
}

std::string PqSession::RunTag(const std::string& operation_id) const {
  // PostgreSQL keeps 63 bytes: shorten the name, not the operation id.
  const absl::string_view id = absl::string_view(operation_id).substr(0, kMaxIdentifierBytes / 2);
  const size_t room = static_cast<size_t>(kMaxIdentifierBytes) - 1 - id.size();
  return absl::StrCat(absl::string_view(application_name_).substr(0, room), " ", id);
}

bool PqSession::WatchForBlockers(absl::Duration lock_timeout) {
  if (lock_timeout <= absl::ZeroDuration() || lock_timeout == absl::InfiniteDuration() ||
      backend_pid_ == 0) {
    return false;
  }
  if (monitor_ == nullptr) {
    monitor_ = std::make_unique<BlockerMonitor>(config_->monitor_conninfo, config_->password);
  }
  monitor_->Watch(backend_pid_, lock_timeout);
  return true;
}

absl::Status PqSession::Run(absl::string_view context, const std::function<absl::Status()>& fn,
                            absl::Duration lock_timeout) {
  if (broken_) {
    return Lost();
  }
  absl::Status status;
  const bool watching = WatchForBlockers(lock_timeout);
  {
    RunningScope running(this);
    try {
      status = fn();
    } catch (...) {
      status = StatusFromCurrentException();
    }
  }
  if (watching) {
    const std::string blockers = monitor_->EndWatch();
    if (absl::StartsWith(status.message(), "SQLSTATE 55P03") && !blockers.empty()) {
      status = absl::Status(status.code(), WithBlockers(std::string(status.message()), blockers));
    }
  }
  if (status.code() == absl::StatusCode::kUnavailable) {
    broken_ = true;
  }
  return Annotate(status, context);
}

absl::Status PqSession::RunRaw(const std::string& sql, StatementError* error,
                               absl::Duration lock_timeout) {
  PGconn* pg = LiveConnection();
  if (pg == nullptr) {
    return Lost();
  }
  PGresult* result = nullptr;
  std::string blockers;
  {
    const bool watching = WatchForBlockers(lock_timeout);
    RunningScope running(this);
    result = PQexec(pg, sql.c_str());
    // COPY is not a statement schemad can feed or read: finish it.
    while (result != nullptr &&
           (PQresultStatus(result) == PGRES_COPY_IN || PQresultStatus(result) == PGRES_COPY_OUT)) {
      if (PQresultStatus(result) == PGRES_COPY_IN) {
        PQputCopyEnd(pg, "COPY FROM STDIN is not supported in schemad revisions");
      } else {
        char* buffer = nullptr;
        while (PQgetCopyData(pg, &buffer, 0) > 0) {
          PQfreemem(buffer);
        }
      }
      PQclear(result);
      result = nullptr;
      // The last result of the command is its outcome.
      while (PGresult* next = PQgetResult(pg)) {
        if (result != nullptr) {
          PQclear(result);
        }
        result = next;
      }
    }
    if (watching) {
      blockers = monitor_->EndWatch();
    }
  }
  std::unique_ptr<PGresult, void (*)(PGresult*)> owned(result, &PQclear);
  if (result == nullptr) {
    const std::string message = OneLine(PQerrorMessage(pg));
    if (PQstatus(pg) != CONNECTION_OK) {
      broken_ = true;
      return absl::UnavailableError(absl::StrCat("connection lost: ", message));
    }
    return absl::InternalError(absl::StrCat("libpq returned no result: ", message));
  }
  switch (PQresultStatus(result)) {
    case PGRES_COMMAND_OK:
    case PGRES_TUPLES_OK:
    case PGRES_EMPTY_QUERY:
    case PGRES_SINGLE_TUPLE:
      return absl::OkStatus();
    default:
      break;
  }
  StatementError statement_error = StatementErrorOf(result);
  if (statement_error.sqlstate == "55P03") {
    statement_error.message = WithBlockers(std::move(statement_error.message), blockers);
  }
  if (PQstatus(pg) != CONNECTION_OK) {
    broken_ = true;
    if (statement_error.message.empty()) {
      statement_error.message = OneLine(PQerrorMessage(pg));
    }
    if (error != nullptr) {
      *error = statement_error;
    }
    return absl::UnavailableError(absl::StrCat("connection lost: ", statement_error.message));
  }
  if (error != nullptr) {
    *error = statement_error;
  }
  return SqlStatus(statement_error.sqlstate, statement_error.message);
}

absl::Status PqSession::RunPipeline(const std::vector<std::string>& commands,
                                    const std::function<void(int, const PGresult*)>& on_result,
                                    const std::function<bool(int)>& flush_after, int* results_seen,
                                    absl::Duration lock_timeout, std::string* blockers) {
  *results_seen = 0;
  PGconn* pg = LiveConnection();
  if (pg == nullptr) {
    return Lost();
  }
  const auto lost = [&](absl::string_view what) {
    broken_ = true;
    return absl::UnavailableError(
        absl::StrCat("connection lost ", what, ": ", OneLine(PQerrorMessage(pg))));
  };
  // Non-blocking, so that sending never waits on a server that waits for us
  // to read its results; poll() below does the waiting.
  if (PQsetnonblocking(pg, 1) != 0 || PQenterPipelineMode(pg) != 1) {
    PQsetnonblocking(pg, 0);
    return absl::InternalError(
        absl::StrCat("cannot enter pipeline mode: ", OneLine(PQerrorMessage(pg))));
  }
  absl::Status status;
  const bool watching = WatchForBlockers(lock_timeout);
  {
    RunningScope running(this);
    for (size_t k = 0; k < commands.size(); ++k) {
      if (PQsendQueryParams(pg, commands[k].c_str(), 0, nullptr, nullptr, nullptr, nullptr, 0) !=
              1 ||
          (flush_after(static_cast<int>(k)) && PQsendFlushRequest(pg) != 1)) {
        status = lost("while sending a revision");
        break;
      }
    }
    if (status.ok() && PQpipelineSync(pg) != 1) {
      status = lost("while sending a revision");
    }
    // Reads until the Sync's result; each command has one result.
    while (status.ok()) {
      const int flushed = PQflush(pg);
      if (flushed < 0) {
        status = lost("while sending a revision");
        break;
      }
      if (PQisBusy(pg)) {
        pollfd fd{PQsocket(pg), static_cast<short>(POLLIN | (flushed == 1 ? POLLOUT : 0)), 0};
        if (poll(&fd, 1, -1) < 0 && errno != EINTR) {
          status = lost("while waiting for results");
          break;
        }
        if (PQconsumeInput(pg) == 0 && PQstatus(pg) != CONNECTION_OK && PQisBusy(pg)) {
          status = lost("while waiting for results");
        }
        continue;
      }
      PGresult* result = PQgetResult(pg);
      if (result == nullptr) {
        if (PQstatus(pg) != CONNECTION_OK) {
          status = lost("while waiting for results");
        }
        continue;  // the end of one command's results
      }
      std::unique_ptr<PGresult, void (*)(PGresult*)> owned(result, &PQclear);
      if (PQresultStatus(result) == PGRES_PIPELINE_SYNC) {
        break;
      }
      if (*results_seen < static_cast<int>(commands.size())) {
        on_result(*results_seen, result);
      }
      ++*results_seen;
      if (PQstatus(pg) != CONNECTION_OK) {
        status = lost("while waiting for results");
      }
    }
    if (watching) {
      *blockers = monitor_->EndWatch();
    }
  }
  if (!broken_) {
    // Leaves pipeline mode (nothing is pending after the Sync's result).
    while (PQexitPipelineMode(pg) != 1) {
      PGresult* extra = PQgetResult(pg);
      if (extra == nullptr && PQexitPipelineMode(pg) != 1) {
        status = lost("while leaving pipeline mode");
        break;
      }
      PQclear(extra);
    }
    PQsetnonblocking(pg, 0);
  }
  return status;
}

void PqSession::Cancel() {
  std::lock_guard<std::mutex> lock(cancel_mu_);
  if (!running_ || cancel_ == nullptr) {
    return;
  }
  char errbuf[256];
  PQcancel(cancel_, errbuf, sizeof errbuf);  // best effort
}

void PqSession::AddStateRow(const pqxx::row& row, DatabaseState* state) {
  const std::string kind = row[0].c_str();
  if (kind == "v") {
    state->rows.push_back(FieldText(row[1]));
    return;
  }
  NeedsAttention marker;
  marker.revision = FieldText(row[1]);
  marker.direction = FieldText(row[2]);
  marker.statements_done = row[3].is_null() ? 0 : row[3].as<int>();
  marker.statements_total = row[4].is_null() ? 0 : row[4].as<int>();
  marker.error = FieldText(row[5]);
  marker.operation_id = FieldText(row[6]);
  marker.started = MicrosToTime(row[7]);
  state->needs_attention = std::move(marker);
}

constexpr absl::string_view kStateColumns =
    "revision, direction, statements_done, statements_total, error, operation_id, "
    "(extract(epoch FROM started) * 1000000)::bigint";
// kStateColumns' place in the rows that are not a mark ('v', 'n').
constexpr absl::string_view kNoStateColumns =
    "NULL::text, NULL::int, NULL::int, NULL::text, NULL::text, NULL::bigint";

// The statement that finds where the unqualified version-table name points:
// the schema of the table it finds on the search_path, else the first
// existing schema of the search_path, where CREATE TABLE would put it.
std::string BareSchemaSql(const Config& c, PqConnection& conn) {
  return absl::StrCat(
      "SELECT COALESCE((SELECT n.nspname FROM pg_catalog.pg_class r JOIN "
      "pg_catalog.pg_namespace n ON n.oid = r.relnamespace WHERE r.oid = "
      "pg_catalog.to_regclass(",
      conn.quote(QuoteIdent(c.tables.version_table)), ")), pg_catalog.current_schema())");
}

// An expression true when the unqualified version-table name points to
// `schema` (as BareSchemaSql would find it), without reading a catalog table.
std::string BareSchemaIsSql(const Config& c, PqConnection& conn, const std::string& schema) {
  const std::string bare = conn.quote(QuoteIdent(c.tables.version_table));
  return absl::StrCat(
      "CASE WHEN pg_catalog.to_regclass(", bare, ") IS NOT NULL THEN pg_catalog.to_regclass(", bare,
      ") = pg_catalog.to_regclass(", conn.quote(Qualified(schema, c.tables.version_table)),
      ") ELSE pg_catalog.current_schema() IS NOT DISTINCT FROM ", conn.quote(schema), " END");
}

// The state read: rows 'v' (version rows) and 's' (the needs-attention
// mark) under `n`; `keys` is n.read_keys as a parameter or a literal.
std::string StateSql(const Names& n, absl::string_view keys) {
  return absl::StrCat("SELECT 'v', version_num::text, ", kNoStateColumns, " FROM ", n.version_table,
                      " UNION ALL SELECT 's', ", kStateColumns, " FROM ", n.state_table,
                      " WHERE version_table = ANY (", keys, "::text[])");
}

absl::Status PqSession::Resolve() {
  if (resolved_) {
    return absl::OkStatus();
  }
  const Config& c = *config_;
  std::string bare_schema;
  RETURN_IF_ERROR(Run("setting up the session", [&]() -> absl::Status {
    pqxx::nontransaction tx(*conn_);
    bare_schema = FieldText(tx.exec1(WithSessionSetup(BareSchemaSql(c, *conn_)))[0]);
    return absl::OkStatus();
  }));
  ASSIGN_OR_RETURN(names_, ResolveNames(c, bare_schema));
  c.last_bare_schema->Set(bare_schema);
  resolved_ = true;
  return absl::OkStatus();
}

absl::StatusOr<std::optional<DatabaseState>> PqSession::ReadStateAssumingLastSchema() {
  const Config& c = *config_;
  const std::string assumed =
      c.last_bare_schema->GetOr(c.tables.schema.empty() ? "public" : c.tables.schema);
  absl::StatusOr<Names> names = ResolveNames(c, assumed);
  if (!names.ok()) {
    return std::nullopt;
  }
  std::optional<DatabaseState> state;
  RETURN_IF_ERROR(Run("reading the version table", [&]() -> absl::Status {
    pqxx::nontransaction tx(*conn_);
    // The check row first: a simple query's SELECT ... UNION ALL returns
    // its branches in order.
    const std::string sql = WithSessionSetup(
        absl::StrCat("SELECT 'n', (", BareSchemaIsSql(c, *conn_, assumed), ")::text, ",
                     kNoStateColumns, " UNION ALL ", StateSql(*names, tx.quote(names->read_keys))));
    pqxx::result result;
    try {
      result = tx.exec(sql);
    } catch (const pqxx::sql_error& e) {
      if (!IsSqlState(e, "42P01")) {
        throw;
      }
      return absl::OkStatus();  // a table is missing: resolve, then the fallback
    }
    if (result.empty() || FieldText(result[0][0]) != "n" || FieldText(result[0][1]) != "true") {
      return absl::OkStatus();  // the name points elsewhere now
    }
    DatabaseState read;
    for (pqxx::result::size_type i = 1; i < result.size(); ++i) {
      AddStateRow(result[i], &read);
    }
    read.version_table_exists = true;
    state = std::move(read);
    return absl::OkStatus();
  }));
  if (state.has_value()) {
    names_ = *std::move(names);
    resolved_ = true;
  }
  return state;
}

absl::StatusOr<DatabaseState> PqSession::ReadState() {
  RETURN_IF_ERROR(NoTransactionOpen());
  if (!resolved_) {
    ASSIGN_OR_RETURN(std::optional<DatabaseState> first, ReadStateAssumingLastSchema());
    if (first.has_value()) {
      std::sort(first->rows.begin(), first->rows.end());
      return *std::move(first);
    }
    RETURN_IF_ERROR(Resolve());
  }
  const Names& n = names_;
  DatabaseState state;
  bool missing_table = false;
  absl::Status status = Run("reading the version table", [&]() -> absl::Status {
    pqxx::nontransaction tx(*conn_);
    try {
      const pqxx::result result = tx.exec_params(StateSql(n, "$1"), n.read_keys);
      for (const pqxx::row& row : result) {
        AddStateRow(row, &state);
      }
      state.version_table_exists = true;
    } catch (const pqxx::sql_error& e) {
      if (!IsSqlState(e, "42P01")) {
        throw;
      }
      missing_table = true;
    }
    return absl::OkStatus();
  });
  RETURN_IF_ERROR(status);
  if (missing_table) {
    state = DatabaseState();
    RETURN_IF_ERROR(ReadStateFallback(&state));
  }
  std::sort(state.rows.begin(), state.rows.end());
  return state;
}

// One of the tables is missing: find out which, and read the others.
absl::Status PqSession::ReadStateFallback(DatabaseState* state) {
  const Names& n = names_;
  return Run("reading the version table", [&]() -> absl::Status {
    pqxx::nontransaction tx(*conn_);
    const pqxx::row exists = tx.exec_params1(
        "SELECT pg_catalog.to_regclass($1) IS NOT NULL, pg_catalog.to_regclass($2) IS NOT NULL",
        n.version_table, n.state_table);
    state->version_table_exists = exists[0].as<bool>();
    if (state->version_table_exists) {
      for (const pqxx::row& row :
           tx.exec(absl::StrCat("SELECT 'v', version_num::text FROM ", n.version_table))) {
        AddStateRow(row, state);
      }
    }
    if (exists[1].as<bool>()) {
      for (const pqxx::row& row :
           tx.exec_params(absl::StrCat("SELECT 's', ", kStateColumns, " FROM ", n.state_table,
                                       " WHERE version_table = ANY ($1::text[])"),
                          n.read_keys)) {
        AddStateRow(row, state);
      }
    }
    return absl::OkStatus();
  });
}

absl::Status PqSession::EnsureTables() {
  RETURN_IF_ERROR(NoTransactionOpen());
  RETURN_IF_ERROR(Resolve());
  const Config& c = *config_;
  const Names& n = names_;
  bool all_exist = false;
  RETURN_IF_ERROR(Run("checking for schemad's tables", [&]() -> absl::Status {
    pqxx::nontransaction tx(*conn_);
    // The history table of schemad before 0.2 lacks the fingerprint and
    // previous_checksum columns: added below.
    all_exist = tx.exec_params1(
                      "SELECT pg_catalog.to_regclass($1) IS NOT NULL AND "
                      "pg_catalog.to_regclass($2) IS NOT NULL AND "
                      "pg_catalog.to_regclass($3) IS NOT NULL AND "
                      "pg_catalog.to_regclass($4) IS NOT NULL AND "
                      "(SELECT pg_catalog.count(*) = 2 FROM pg_catalog.pg_attribute WHERE "
                      "attrelid = pg_catalog.to_regclass($2) AND NOT attisdropped AND "
                      "attname IN ('fingerprint', 'previous_checksum'))",
                      n.version_table, n.history_table, n.state_table, n.run_table)[0]
                    .as<bool>();
    return absl::OkStatus();
  }));
  if (all_exist) {
    return absl::OkStatus();
  }
  // Exactly Alembic's DDL for the version table (a table it made is kept).
  const std::string create_version = absl::StrCat("CREATE TABLE IF NOT EXISTS ", n.version_table,
                                                  " (version_num VARCHAR(32) NOT NULL, CONSTRAINT ",
                                                  n.version_pkc, " PRIMARY KEY (version_num))");
  const std::string create_history = absl::StrCat(
      "CREATE TABLE IF NOT EXISTS ", n.history_table,
      " (id bigserial PRIMARY KEY, revision text NOT NULL, direction text NOT NULL, "
      "rows_before text[] NOT NULL, rows_after text[] NOT NULL, checksum text, "
      "started timestamptz, duration_ms double precision, outcome text NOT NULL, error text, "
      "who text, operation_id text, schemad_version text, version_table text NOT NULL, "
      "fingerprint text, previous_checksum text)");
  const std::string add_history_columns =
      absl::StrCat("ALTER TABLE ", n.history_table,
                   " ADD COLUMN IF NOT EXISTS fingerprint text, ADD COLUMN IF NOT EXISTS "
                   "previous_checksum text");
  const std::string create_state = absl::StrCat(
      "CREATE TABLE IF NOT EXISTS ", n.state_table,
      " (version_table text PRIMARY KEY, revision text NOT NULL, direction text NOT NULL, "
      "statements_done int NOT NULL, statements_total int NOT NULL, error text, "
      "operation_id text, started timestamptz)");
  // One row per version table ("schema.table") while a run is in progress.
  const std::string create_run = absl::StrCat(
      "CREATE TABLE IF NOT EXISTS ", n.run_table,
      " (version_table text PRIMARY KEY, operation_id text NOT NULL, operation text NOT NULL, "
      "target text, who text, schemad_version text, started timestamptz, pid int NOT NULL, "
      "backend_start timestamptz, application_name text)");
  absl::Status status;
  for (int attempt = 0; attempt < 3; ++attempt) {
    bool raced = false;
    status = Run("creating schemad's tables", [&]() -> absl::Status {
      try {
        pqxx::work tx(*conn_);
        // Creators queue here; CREATE TABLE IF NOT EXISTS alone can still
        // fail on pg_type's unique index when two run at once.
        tx.exec_params("SELECT pg_catalog.pg_advisory_xact_lock($1::bigint)", c.ensure_key);
        tx.exec(create_version);
        tx.exec(create_history);
        tx.exec(add_history_columns);
        tx.exec(create_state);
        tx.exec(create_run);
        tx.commit();
      } catch (const pqxx::sql_error& e) {
        // Someone outside schemad (Alembic) created a table meanwhile.
        if (!IsSqlState(e, "23505") && !IsSqlState(e, "42P07")) {
          throw;
        }
        raced = true;
      }
      return absl::OkStatus();
    });
    if (!status.ok() || !raced) {
      return status;
    }
  }
  return status;
}

absl::StatusOr<std::unique_ptr<Transaction>> PqSession::Begin() {
  RETURN_IF_ERROR(NoTransactionOpen());
  RETURN_IF_ERROR(Resolve());
  if (broken_) {
    return Lost();
  }
  // BEGIN goes with the transaction's first statement (PqTransaction::EnsureWork).
  transaction_open_ = true;
  return std::unique_ptr<Transaction>(std::make_unique<PqTransaction>(this));
}

absl::Status PqSession::ExecuteAutocommit(const SqlStatement& statement, const Timeouts& timeouts,
                                          StatementError* error) {
  RETURN_IF_ERROR(NoTransactionOpen());
  RETURN_IF_ERROR(Resolve());
  ASSIGN_OR_RETURN(const std::string lock_timeout,
                   TimeoutSetting(timeouts.lock_timeout, "lock_timeout"));
  ASSIGN_OR_RETURN(const std::string statement_timeout,
                   TimeoutSetting(timeouts.statement_timeout, "statement_timeout"));
  // Zero leaves the session's setting (the role's, the database's, or one
  // the revision made itself) as it is.
  std::vector<std::string> set;
  std::vector<std::string> reset;
  if (timeouts.lock_timeout != absl::ZeroDuration()) {
    set.push_back(absl::StrCat("SET lock_timeout = '", lock_timeout, "'"));
    reset.push_back("RESET lock_timeout");
  }
  if (timeouts.statement_timeout != absl::ZeroDuration()) {
    set.push_back(absl::StrCat("SET statement_timeout = '", statement_timeout, "'"));
    reset.push_back("RESET statement_timeout");
  }
  if (!set.empty()) {
    RETURN_IF_ERROR(Annotate(RunRaw(absl::StrJoin(set, "; "), nullptr), "setting timeouts"));
  }
  dirty_ = true;
  absl::Status status = RunRaw(statement.text, error, timeouts.lock_timeout);
  if (status.ok() && !broken_ && TransactionStatus() != PQTRANS_IDLE) {
    // A BEGIN (or START TRANSACTION) left a transaction open: undo it.
    status = absl::FailedPreconditionError(
        "the statement left a transaction open (BEGIN does not belong in a non-transactional "
        "revision); it was rolled back");
    RunRaw("ROLLBACK", nullptr).IgnoreError();
  }
  const absl::Status reset_status =
      broken_ || reset.empty() ? absl::OkStatus() : RunRaw(absl::StrJoin(reset, "; "), nullptr);
  if (!status.ok()) {
    return status;
  }
  return Annotate(reset_status, "resetting timeouts");
}

absl::Status PqSession::ResetState() {
  RETURN_IF_ERROR(NoTransactionOpen());
  if (!dirty_) {
    return absl::OkStatus();
  }
  RETURN_IF_ERROR(Run("resetting the session", [&]() -> absl::Status {
    pqxx::nontransaction tx(*conn_);
    tx.exec(ResetSql());
    return absl::OkStatus();
  }));
  dirty_ = false;
  return absl::OkStatus();
}

// The run's record, as ReadUnfinishedRun selects it.
constexpr absl::string_view kRunColumns =
    "r.operation_id, r.operation, r.target, r.who, r.schemad_version, "
    "(extract(epoch FROM r.started) * 1000000)::bigint, r.pid, "
    "(extract(epoch FROM r.backend_start) * 1000000)::bigint, r.application_name";

absl::StatusOr<std::optional<UnfinishedRun>> PqSession::ReadUnfinishedRun() {
  RETURN_IF_ERROR(NoTransactionOpen());
  RETURN_IF_ERROR(Resolve());
  const Names& n = names_;
  std::optional<UnfinishedRun> out;
  RETURN_IF_ERROR(Run("reading the record of an earlier run", [&]() -> absl::Status {
    pqxx::nontransaction tx(*conn_);
    try {
      // Most runs find no record: look for one without pg_stat_activity
      // first. Its view costs a fresh backend ~7 ms of planning (the
      // catalog entries of the view, pg_database and pg_authid load).
      if (tx.exec_params(absl::StrCat("SELECT 1 FROM ", n.run_table, " WHERE version_table = $1"),
                         n.canonical_key)
              .empty()) {
        return absl::OkStatus();
      }
      // The run's backend is the same one only when its start time matches
      // too (pids are reused, after a PostgreSQL restart at once). A role
      // that may not see the other session's details sees no start time:
      // then the pid alone counts (refusing wrongly is the safe mistake).
      const pqxx::result result = tx.exec_params(
          absl::StrCat(
              "SELECT ", kRunColumns,
              ", a.pid IS NOT NULL, a.application_name, pg_catalog.host(a.client_addr), "
              "(extract(epoch FROM COALESCE(a.query_start, a.backend_start)) * 1000000)::bigint, "
              "a.state, pg_catalog.left(a.query, 200), pg_catalog.length(a.query) > 200 FROM ",
              n.run_table,
              " r LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = r.pid AND "
              "(a.backend_start = r.backend_start OR a.backend_start IS NULL) WHERE "
              "r.version_table = $1 AND NOT "
              "(r.pid = pg_catalog.pg_backend_pid() AND r.backend_start IS NOT DISTINCT FROM "
              "(SELECT backend_start FROM pg_catalog.pg_stat_activity "
              "WHERE pid = pg_catalog.pg_backend_pid()))"),
          n.canonical_key);
      if (result.empty()) {
        return absl::OkStatus();
      }
      const pqxx::row row = result[0];
      UnfinishedRun unfinished;
      RunRecord& run = unfinished.run;
      run.operation_id = FieldText(row[0]);
      run.operation = FieldText(row[1]);
      run.target = FieldText(row[2]);
      run.who = FieldText(row[3]);
      run.schemad_version = FieldText(row[4]);
      run.started = MicrosToTime(row[5]);
      run.pid = row[6].as<int>();
      run.backend_start = MicrosToTime(row[7]);
      run.application_name = FieldText(row[8]);
      if (row[9].as<bool>()) {
        BackendActivity activity;
        activity.backend.pid = run.pid;
        activity.backend.application_name = FieldText(row[10]);
        activity.backend.client_address = FieldText(row[11]);
        activity.backend.since = MicrosToTime(row[12]);
        activity.state = FieldText(row[13]);
        activity.query =
            Scrub(absl::StrCat(OneLine(FieldText(row[14])), FieldText(row[15]) == "t" ? "..." : ""),
                  config_->password);
        unfinished.backend = std::move(activity);
      }
      out = std::move(unfinished);
    } catch (const pqxx::sql_error& e) {
      if (!IsSqlState(e, "42P01")) {
        throw;
      }
    }
    return absl::OkStatus();
  }));
  return out;
}

absl::Status PqSession::FinishRun() {
  RETURN_IF_ERROR(NoTransactionOpen());
  if (run_operation_id_.empty()) {
    return ResetState();
  }
  RETURN_IF_ERROR(Resolve());
  const Names& n = names_;
  const std::string operation_id = run_operation_id_;
  run_tag_.clear();  // ResetSql without the tag: back to the name we connected with
  RETURN_IF_ERROR(Run("ending the run", [&]() -> absl::Status {
    pqxx::nontransaction tx(*conn_);
    // Reset first: the DELETE runs as schemad's own role, whatever the revision set.
    tx.exec(absl::StrCat(ResetSql(), "; DELETE FROM ", n.run_table,
                         " WHERE version_table = ", tx.quote(n.canonical_key),
                         " AND operation_id = ", tx.quote(operation_id)));
    return absl::OkStatus();
  }));
  run_operation_id_.clear();
  dirty_ = false;
  return absl::OkStatus();
}

namespace {

// The query for one value (`column`, an expression over the history row `h`)
// of the row that last recorded each applied revision: its latest success
// "up" or "repair" row, unless a "down" row came after it.
std::string AppliedValueQuery(const Names& n, absl::string_view column) {
  return absl::StrCat("SELECT DISTINCT ON (revision) revision, direction, ", column, " FROM ",
                      n.history_table,
                      " AS h WHERE version_table = ANY ($1::text[]) AND outcome IN ('success', "
                      "'applied') AND direction IN ('up', 'down', 'repair') ORDER BY revision, id "
                      "DESC");
}

}  // namespace

absl::StatusOr<std::map<std::string, std::string>> PqSession::ReadAppliedValues(
    absl::string_view column, const char* activity) {
  RETURN_IF_ERROR(NoTransactionOpen());
  RETURN_IF_ERROR(Resolve());
  std::map<std::string, std::string> values;
  RETURN_IF_ERROR(Run(activity, [&]() -> absl::Status {
    pqxx::nontransaction tx(*conn_);
    try {
      const pqxx::result result =
          tx.exec_params(AppliedValueQuery(names_, column), names_.read_keys);
      for (const pqxx::row& row : result) {
        const std::string value = FieldText(row[2]);
        if (FieldText(row[1]) != "down" && !value.empty()) {
          values[FieldText(row[0])] = value;
        }
      }
    } catch (const pqxx::sql_error& e) {
      if (!IsSqlState(e, "42P01")) {
        throw;
      }
    }
    return absl::OkStatus();
  }));
  return values;
}

absl::StatusOr<std::map<std::string, std::string>> PqSession::ReadAppliedChecksums() {
  return ReadAppliedValues("h.checksum", "reading applied checksums");
}

absl::StatusOr<std::map<std::string, std::string>> PqSession::ReadAppliedFingerprints() {
  // Through to_jsonb: a history table made before the column existed (and
  // not yet upgraded by EnsureTables) reads as having none.
  return ReadAppliedValues("pg_catalog.to_jsonb(h) ->> 'fingerprint'",
                           "reading applied fingerprints");
}

absl::StatusOr<std::vector<HistoryRecord>> PqSession::ReadHistory(int limit) {
  RETURN_IF_ERROR(NoTransactionOpen());
  RETURN_IF_ERROR(Resolve());
  const Names& n = names_;
  std::vector<HistoryRecord> records;
  const std::string limit_text = limit > 0 ? absl::StrCat(limit) : std::string();
  RETURN_IF_ERROR(Run("reading history", [&]() -> absl::Status {
    pqxx::nontransaction tx(*conn_);
    try {
      const pqxx::result result = tx.exec_params(
          absl::StrCat("SELECT id, revision, direction, rows_before, rows_after, checksum, "
                       "(extract(epoch FROM started) * 1000000)::bigint, "
                       "(duration_ms * 1000)::bigint, outcome, error, who, operation_id, "
                       "schemad_version, pg_catalog.to_jsonb(h) ->> 'fingerprint', "
                       "pg_catalog.to_jsonb(h) ->> 'previous_checksum' FROM ",
                       n.history_table,
                       " AS h WHERE version_table = ANY ($1::text[]) ORDER BY id DESC "
                       "LIMIT $2::bigint"),
          n.read_keys, NullIfEmpty(limit_text));
      for (const pqxx::row& row : result) {
        HistoryRecord record;
        record.id = row[0].as<int64_t>();
        record.revision = FieldText(row[1]);
        record.direction = FieldText(row[2]);
        record.rows_before = ParseTextArray(row[3]);
        record.rows_after = ParseTextArray(row[4]);
        record.checksum = FieldText(row[5]);
        record.started = MicrosToTime(row[6]);
        record.duration =
            row[7].is_null() ? absl::ZeroDuration() : absl::Microseconds(row[7].as<int64_t>());
        record.outcome = FieldText(row[8]);
        record.error = FieldText(row[9]);
        record.who = FieldText(row[10]);
        record.operation_id = FieldText(row[11]);
        record.schemad_version = FieldText(row[12]);
        record.fingerprint = FieldText(row[13]);
        record.previous_checksum = FieldText(row[14]);
        records.push_back(std::move(record));
      }
    } catch (const pqxx::sql_error& e) {
      if (!IsSqlState(e, "42P01")) {
        throw;
      }
    }
    return absl::OkStatus();
  }));
  return records;
}

namespace {

// A schema other than public made for schemad's tables alone
// (`version_table: ops.alembic_version`) is bookkeeping, like its tables:
// left out while nothing the model holds lives in it.
void LeaveOutBookkeepingSchema(const std::string& name, schema::DatabaseSchema* model) {
  if (name.empty() || name == "public") return;
  bool used = false;
  auto in = [&](const auto& objects) {
    for (const auto& object : objects) used = used || object.schema == name;
  };
  in(model->extensions);
  in(model->enums);
  in(model->domains);
  in(model->composite_types);
  in(model->sequences);
  in(model->tables);
  in(model->views);
  in(model->functions);
  if (used) return;
  auto& schemas = model->schemas;
  schemas.erase(std::remove_if(schemas.begin(), schemas.end(),
                               [&](const schema::Namespace& n) { return n.name == name; }),
                schemas.end());
}

}  // namespace

absl::StatusOr<schema::DatabaseSchema> PqSession::InspectSchema() {
  RETURN_IF_ERROR(NoTransactionOpen());
  RETURN_IF_ERROR(Resolve());
  const TableNames& t = config_->tables;
  InspectOptions options;
  options.excluded_tables = {"alembic_version", t.version_table, t.history_table, t.state_table,
                             t.run_table};
  schema::DatabaseSchema result;
  RETURN_IF_ERROR(Run("inspecting the schema", [&]() -> absl::Status {
    ASSIGN_OR_RETURN(result, InspectPqSchema(*conn_, options));
    return absl::OkStatus();
  }));
  LeaveOutBookkeepingSchema(names_.schema, &result);
  return result;
}

// -------------------------------------------------------------- transaction

PqTransaction::~PqTransaction() {
  if (raw_open_) {
    RollbackRaw();
  }
  try {
    work_.reset();  // rolls back unless committed
  } catch (...) {
  }
  session_->TransactionEnded();
}

absl::Status PqTransaction::Usable() const {
  if (committed_) {
    return absl::FailedPreconditionError("the transaction was already committed");
  }
  if (failed_) {
    return absl::FailedPreconditionError(
        "the transaction was aborted by an earlier error; it can only be rolled back");
  }
  return absl::OkStatus();
}

absl::Status PqTransaction::EnsureWork() {
  RETURN_IF_ERROR(Usable());
  if (work_ != nullptr) {
    return absl::OkStatus();
  }
  if (raw_open_) {
    failed_ = true;
    return absl::InternalError(
        "a transaction that ExecuteRevision opened takes only SetTimeouts, ExecuteRevision and "
        "Commit");
  }
  absl::Status status = session_->Run("beginning a transaction", [&]() -> absl::Status {
    work_ = std::make_unique<pqxx::work>(session_->connection());
    for (const std::string& setting : pending_settings_) {
      work_->exec(setting);
    }
    return absl::OkStatus();
  });
  pending_settings_.clear();
  if (!status.ok()) {
    failed_ = true;
  }
  return status;
}

absl::Status PqTransaction::Run(absl::string_view context,
                                const std::function<absl::Status()>& fn) {
  RETURN_IF_ERROR(EnsureWork());
  absl::Status status = session_->Run(context, fn, lock_timeout_);
  if (!status.ok()) {
    failed_ = true;
  }
  return status;
}

std::string PqTransaction::TakeResetPrefix() {
  if (!revision_state_) {
    return "";
  }
  revision_state_ = false;
  reset_sent_ = true;
  // RESET ALL undoes SET LOCAL too: the session's timeouts stand again.
  lock_timeout_ = absl::ZeroDuration();
  timeouts_set_ = false;
  return absl::StrCat(session_->ResetSql(), "; ");
}

absl::Status PqTransaction::SetTimeouts(const Timeouts& timeouts) {
  // The previous revision's bookkeeping (and reset) goes first, so that the
  // reset does not undo these timeouts.
  RETURN_IF_ERROR(FlushBookkeeping());
  if (timeouts.lock_timeout == absl::ZeroDuration() &&
      timeouts.statement_timeout == absl::ZeroDuration() && lock_timeout_ == absl::ZeroDuration() &&
      !timeouts_set_) {
    // Nothing to change: the session's settings stand (no round trip).
    return absl::OkStatus();
  }
  timeouts_set_ = true;
  ASSIGN_OR_RETURN(const std::string lock_timeout,
                   TimeoutSetting(timeouts.lock_timeout, "lock_timeout"));
  ASSIGN_OR_RETURN(const std::string statement_timeout,
                   TimeoutSetting(timeouts.statement_timeout, "statement_timeout"));
  std::vector<std::string> settings = {
      absl::StrCat("SET LOCAL lock_timeout = '", lock_timeout, "'"),
      absl::StrCat("SET LOCAL statement_timeout = '", statement_timeout, "'")};
  lock_timeout_ = timeouts.lock_timeout;
  if (work_ == nullptr) {
    // Sent after BEGIN, with the first statement.
    pending_settings_ = std::move(settings);
    return absl::OkStatus();
  }
  return Run("setting timeouts", [&]() -> absl::Status {
    for (const std::string& setting : settings) {
      work_->exec(setting);
    }
    return absl::OkStatus();
  });
}

absl::Status PqTransaction::Execute(const SqlStatement& statement, StatementError* error) {
  RETURN_IF_ERROR(FlushBookkeeping());
  revision_state_ = true;
  session_->MarkDirty();
  RETURN_IF_ERROR(EnsureWork());
  absl::Status status = session_->RunRaw(statement.text, error, lock_timeout_);
  if (status.ok() && session_->TransactionStatus() != PQTRANS_INTRANS) {
    status = absl::FailedPreconditionError(
        "the statement ended the transaction (COMMIT, ROLLBACK and the like do not belong in a "
        "transactional revision)");
  }
  if (!status.ok()) {
    failed_ = true;
  }
  return status;
}

absl::Status PqTransaction::ApplyVersionChanges(absl::Span<const VersionRowChange> changes) {
  RETURN_IF_ERROR(Usable());
  pending_changes_.insert(pending_changes_.end(), changes.begin(), changes.end());
  return absl::OkStatus();
}

absl::Status PqTransaction::AppendHistory(const HistoryRecord& record) {
  RETURN_IF_ERROR(Usable());
  pending_history_.push_back(record);
  return absl::OkStatus();
}

absl::Status PqTransaction::FlushBookkeeping() {
  RETURN_IF_ERROR(Usable());
  if (pending_changes_.empty() && pending_history_.empty()) {
    return absl::OkStatus();
  }
  std::vector<VersionRowChange> all_changes = std::move(pending_changes_);
  std::vector<HistoryRecord> history = std::move(pending_history_);
  pending_changes_.clear();
  pending_history_.clear();
  // A statement's CTEs cannot see each other's rows: split the changes into
  // batches in which every row is named once (one batch for any plan step).
  std::vector<std::vector<VersionRowChange>> batches(1);
  std::set<std::string> touched;
  for (const VersionRowChange& change : all_changes) {
    const bool clash = (!change.from.empty() && touched.count(change.from) > 0) ||
                       (!change.to.empty() && touched.count(change.to) > 0);
    if (clash) {
      batches.emplace_back();
      touched.clear();
    }
    touched.insert(change.from);
    touched.insert(change.to);
    batches.back().push_back(change);
  }
  for (size_t b = 0; b < batches.size(); ++b) {
    static const std::vector<HistoryRecord> kNone;
    RETURN_IF_ERROR(WriteBookkeeping(batches[b], b + 1 == batches.size() ? history : kNone));
  }
  return absl::OkStatus();
}

// The message of a version-row change that did not touch exactly one row
// (`found`: how many it touched).
std::string MismatchMessage(const Config& c, const VersionRowChange& change,
                            absl::string_view found) {
  if (change.kind == VersionRowChange::Kind::kDelete) {
    return absl::StrCat("Online migration expected to match one row when deleting '", change.from,
                        "' in '", c.version_table_name, "'; ", found, " found");
  }
  return absl::StrCat("Online migration expected to match one row when updating '", change.from,
                      "' to '", change.to, "' in '", c.version_table_name, "'; ", found, " found");
}

// The statement of one version-row change, naming the table as the session
// resolved it (`n`); `quote` quotes a literal. Its command tag counts the
// rows it touched: exactly one is right.
std::string VersionRowSql(const Names& n, const VersionRowChange& change, const Quote& q) {
  switch (change.kind) {
    case VersionRowChange::Kind::kInsert:
      return absl::StrCat("INSERT INTO ", n.version_table, " (version_num) VALUES (", q(change.to),
                          ")");
    case VersionRowChange::Kind::kDelete:
      return absl::StrCat("DELETE FROM ", n.version_table, " WHERE version_num = ", q(change.from));
    case VersionRowChange::Kind::kUpdate:
      break;
  }
  return absl::StrCat("UPDATE ", n.version_table, " SET version_num = ", q(change.to),
                      " WHERE version_num = ", q(change.from));
}

// One INSERT of the (non-empty) `history` rows: ids follow their order.
// With `server_clock` (the statement is sent before the revision's results
// are in) each row's duration_ms adds the time since the transaction began,
// by the server's clock: for a transaction of one revision, that revision's
// time. The columns EnsureTables adds to an older history table are named
// only when a row fills them (rows with a fingerprint are written after it
// ran).
std::string HistoryInsertSql(const Names& n, absl::Span<const HistoryRecord> history,
                             const Quote& q, bool server_clock) {
  auto q_or_null = [&](const std::string& value) {
    return value.empty() ? std::string("NULL") : q(value);
  };
  bool fingerprints = false;
  for (const HistoryRecord& record : history) {
    fingerprints = fingerprints || !record.fingerprint.empty() || record.direction == "repair";
  }
  std::vector<std::string> rows;
  for (const HistoryRecord& record : history) {
    const std::string started = TimeToMicros(record.started);
    const std::string duration =
        server_clock ? absl::StrCat(absl::ToInt64Microseconds(record.duration),
                                    " / 1000.0 + extract(epoch FROM pg_catalog.clock_timestamp() - "
                                    "pg_catalog.transaction_timestamp()) * 1000")
                     : absl::StrCat(absl::ToInt64Microseconds(record.duration), " / 1000.0");
    rows.push_back(absl::StrCat(
        "(", q(record.revision), ", ", q(record.direction), ", ",
        q(TextArrayLiteral(record.rows_before)), "::text[], ",
        q(TextArrayLiteral(record.rows_after)), "::text[], ", q_or_null(record.checksum), ", ",
        started.empty() ? std::string("NULL::timestamptz")
                        : absl::StrCat("'epoch'::timestamptz + ", started,
                                       "::bigint * interval '1 microsecond'"),
        ", ", duration, ", ", q(record.outcome), ", ", q_or_null(record.error), ", ",
        q_or_null(record.who), ", ", q_or_null(record.operation_id), ", ",
        q_or_null(record.schemad_version), ", ", q(n.write_key),
        fingerprints ? absl::StrCat(", ", q_or_null(record.fingerprint), ", ",
                                    q_or_null(record.previous_checksum))
                     : std::string(),
        ")"));
  }
  return absl::StrCat(
      "INSERT INTO ", n.history_table,
      " (revision, direction, rows_before, rows_after, checksum, started, duration_ms, "
      "outcome, error, who, operation_id, schemad_version, version_table",
      fingerprints ? ", fingerprint, previous_checksum" : "", ") VALUES ",
      absl::StrJoin(rows, ", "));
}

// One statement that applies `changes` and inserts `history` (data-modifying
// CTEs; a statement's CTEs cannot see each other's rows, so no row may be
// named twice), its one row holding each change's row count, for the caller
// to check.
std::string BookkeepingSql(const Names& n, const std::vector<VersionRowChange>& changes,
                           absl::Span<const HistoryRecord> history, const Quote& q) {
  std::vector<std::string> ctes;
  std::vector<std::string> counts;
  for (size_t i = 0; i < changes.size(); ++i) {
    ctes.push_back(absl::StrCat("v", i, " AS (", VersionRowSql(n, changes[i], q), " RETURNING 1)"));
    counts.push_back(absl::StrCat("(SELECT pg_catalog.count(*) FROM v", i, ")"));
  }
  if (!history.empty()) {
    ctes.push_back(absl::StrCat("h AS (", HistoryInsertSql(n, history, q, /*server_clock=*/false),
                                " RETURNING 1)"));
  }
  if (ctes.empty()) {
    return "SELECT 0";
  }
  if (counts.empty()) {
    counts.push_back("0");
  }
  return absl::StrCat("WITH ", absl::StrJoin(ctes, ", "), " SELECT ", absl::StrJoin(counts, ", "));
}

absl::Status PqTransaction::WriteBookkeeping(const std::vector<VersionRowChange>& changes,
                                             const std::vector<HistoryRecord>& history) {
  if (changes.empty() && history.empty()) {
    return absl::OkStatus();
  }
  const Config& c = session_->config();
  const Names& n = session_->names();
  return Run("updating the version table and history", [&]() -> absl::Status {
    const pqxx::result result = work_->exec(absl::StrCat(
        TakeResetPrefix(), BookkeepingSql(n, changes, history, [&](const std::string& value) {
          return work_->quote(value);
        })));
    for (size_t i = 0; i < changes.size(); ++i) {
      const long found = result[0][static_cast<int>(i)].as<long>();
      if (found != 1) {
        return absl::FailedPreconditionError(MismatchMessage(c, changes[i], absl::StrCat(found)));
      }
    }
    return absl::OkStatus();
  });
}

// Statements that must not go into a pipeline: COPY (which a pipeline
// cannot carry) and transaction control, whose effect on the transaction
// must be seen before the next statement runs (Execute checks it). Judged
// by the first word after comments; conservative (PREPARE, any COPY).
bool NeedsOwnRoundTrip(const std::string& text) {
  size_t i = 0;
  while (i < text.size()) {
    if (absl::ascii_isspace(static_cast<unsigned char>(text[i]))) {
      ++i;
    } else if (text.compare(i, 2, "--") == 0) {
      const size_t eol = text.find('\n', i);
      i = eol == std::string::npos ? text.size() : eol + 1;
    } else if (text.compare(i, 2, "/*") == 0) {
      int depth = 0;
      while (i < text.size()) {
        if (text.compare(i, 2, "/*") == 0) {
          ++depth;
          i += 2;
        } else if (text.compare(i, 2, "*/") == 0) {
          i += 2;
          if (--depth == 0) {
            break;
          }
        } else {
          ++i;
        }
      }
    } else {
      break;
    }
  }
  size_t end = i;
  while (end < text.size() && absl::ascii_isalpha(static_cast<unsigned char>(text[end]))) {
    ++end;
  }
  const std::string word = absl::AsciiStrToUpper(text.substr(i, end - i));
  static const std::set<std::string> kWords = {"BEGIN",    "START", "COMMIT", "END",
                                               "ROLLBACK", "ABORT", "PREPARE"};
  return kWords.count(word) > 0 || absl::StrContains(absl::AsciiStrToUpper(text), "COPY");
}

bool AnyNeedsOwnRoundTrip(absl::Span<const SqlStatement> statements) {
  return std::any_of(statements.begin(), statements.end(), [](const SqlStatement& statement) {
    return NeedsOwnRoundTrip(statement.text);
  });
}

absl::Status PqTransaction::ExecuteAndCommit(absl::Span<const SqlStatement> statements,
                                             absl::Span<const VersionRowChange> changes,
                                             const HistoryRecord& history,
                                             const std::function<void(int)>& on_started,
                                             const std::function<bool()>& cancelled,
                                             int* failed_index, StatementError* error) {
  *failed_index = -1;
  RETURN_IF_ERROR(Usable());
  // After ExecuteRevision (raw_open_) the base class's ExecuteRevision +
  // Commit keep this revision's history row with the others, for COMMIT.
  const bool pipelinable = work_ == nullptr && !raw_open_ && pending_changes_.empty() &&
                           pending_history_.empty() && !AnyNeedsOwnRoundTrip(statements);
  if (!pipelinable) {
    return Transaction::ExecuteAndCommit(statements, changes, history, on_started, cancelled,
                                         failed_index, error);
  }
  absl::Status status = PipelineRevision(statements, changes, &history, on_started, cancelled,
                                         failed_index, error, /*commit=*/true,
                                         /*reset_session=*/false);
  if (status.ok()) {
    committed_ = true;
  } else {
    failed_ = true;
  }
  return status;
}

absl::Status PqTransaction::ExecuteRevision(absl::Span<const SqlStatement> statements,
                                            absl::Span<const VersionRowChange> changes,
                                            const HistoryRecord& history,
                                            const std::function<void(int)>& on_started,
                                            const std::function<bool()>& cancelled,
                                            int* failed_index, StatementError* error) {
  *failed_index = -1;
  RETURN_IF_ERROR(Usable());
  const bool own_round_trips = AnyNeedsOwnRoundTrip(statements);
  if (work_ != nullptr || !pending_changes_.empty() || !pending_history_.empty() ||
      (own_round_trips && !raw_open_)) {
    // The statement-by-statement path (pqxx's transaction), as it began.
    return Transaction::ExecuteRevision(statements, changes, history, on_started, cancelled,
                                        failed_index, error);
  }
  const absl::Time start = absl::Now();
  absl::Status status;
  if (own_round_trips) {
    // The pipeline's transaction is open: its statements one by one, then
    // the reset and the version rows as a pipeline.
    status = RunStatementsRaw(statements, on_started, cancelled, failed_index, error);
    if (status.ok()) {
      status = PipelineRevision({}, changes, nullptr, nullptr, nullptr, failed_index, error,
                                /*commit=*/false, /*reset_session=*/true);
    }
  } else {
    status = PipelineRevision(statements, changes, nullptr, on_started, cancelled, failed_index,
                              error, /*commit=*/false, /*reset_session=*/false);
  }
  if (!status.ok()) {
    failed_ = true;
    return status;
  }
  // As Transaction::ExecuteRevision: the caller's time before, and this call's.
  HistoryRecord record = history;
  record.duration += absl::Now() - start;
  history_at_commit_.push_back(std::move(record));
  return status;
}

absl::Status PqTransaction::RunStatementsRaw(absl::Span<const SqlStatement> statements,
                                             const std::function<void(int)>& on_started,
                                             const std::function<bool()>& cancelled,
                                             int* failed_index, StatementError* error) {
  if (!pending_settings_.empty()) {
    absl::Status set = Annotate(session_->RunRaw(absl::StrJoin(pending_settings_, "; "), nullptr),
                                "setting timeouts");
    pending_settings_.clear();
    if (!set.ok()) {
      RollbackRaw();
      return set;
    }
  }
  for (size_t i = 0; i < statements.size(); ++i) {
    if (cancelled && cancelled()) {
      RollbackRaw();
      return absl::CancelledError("cancelled; the transaction was rolled back");
    }
    if (on_started) {
      on_started(static_cast<int>(i));
    }
    session_->MarkDirty();
    absl::Status status = session_->RunRaw(statements[i].text, error, lock_timeout_);
    if (status.ok() && session_->TransactionStatus() != PQTRANS_INTRANS) {
      status = absl::FailedPreconditionError(
          "the statement ended the transaction (COMMIT, ROLLBACK and the like do not belong in a "
          "transactional revision)");
    }
    if (!status.ok()) {
      *failed_index = static_cast<int>(i);
      RollbackRaw();
      return status;
    }
  }
  return absl::OkStatus();
}

absl::Status PqTransaction::CommitRaw() {
  raw_open_ = false;
  std::string commit = "COMMIT";
  std::string context = "committing";
  if (!history_at_commit_.empty()) {
    context =
        absl::StrCat("writing the history rows of the transaction's ", history_at_commit_.size(),
                     " revision(s) with COMMIT (an error here commits nothing)");
    const std::vector<HistoryRecord> history = std::move(history_at_commit_);
    history_at_commit_.clear();
    absl::Status quoted = session_->Run("quoting the history", [&]() -> absl::Status {
      commit = absl::StrCat(HistoryInsertSql(session_->names(), history, session_->Quoter(),
                                             /*server_clock=*/false),
                            "; COMMIT");
      return absl::OkStatus();
    });
    if (!quoted.ok()) {
      RollbackRaw();
      return quoted;
    }
  }
  absl::Status committed = Annotate(session_->RunRaw(commit, nullptr), context);
  if (!committed.ok() && session_->TransactionStatus() == PQTRANS_INERROR) {
    // The history INSERT failed: COMMIT did not run.
    RollbackRaw();
    return committed;
  }
  if (committed.code() == absl::StatusCode::kUnavailable) {
    // The connection broke with COMMIT possibly sent: nobody knows.
    return absl::UnknownError(committed.message());
  }
  if (committed.ok() && session_->TransactionStatus() != PQTRANS_IDLE) {
    return absl::InternalError("COMMIT left a transaction open");
  }
  if (committed.ok()) {
    session_->Committed(reset_sent_, started_run_);
  }
  return committed;
}

void PqTransaction::RollbackRaw() {
  raw_open_ = false;
  history_at_commit_.clear();
  session_->RunRaw("ROLLBACK", nullptr).IgnoreError();
}

// BEGIN (unless an earlier pipeline of this transaction sent it), the SET
// LOCALs, the statements, the session reset and the bookkeeping statement go
// as one pipeline (one round trip), then, with `commit`, COMMIT (the second). Each is its own
// extended-query command, so an error position is relative to its statement's own text. After an
// error PostgreSQL skips the rest up to the Sync, the session is left in the failed transaction,
// and ROLLBACK ends it (the revision's state then stays until ResetState).
absl::Status PqTransaction::PipelineRevision(absl::Span<const SqlStatement> statements,
                                             absl::Span<const VersionRowChange> changes,
                                             const HistoryRecord* history,
                                             const std::function<void(int)>& on_started,
                                             const std::function<bool()>& cancelled,
                                             int* failed_index, StatementError* error, bool commit,
                                             bool reset_session) {
  const Config& c = session_->config();
  const Names& n = session_->names();
  std::vector<std::string> commands;
  commands.reserve(statements.size() + pending_settings_.size() + 16);
  if (!raw_open_) {
    commands.push_back("BEGIN");
  }
  for (std::string& setting : pending_settings_) {
    commands.push_back(std::move(setting));
  }
  pending_settings_.clear();
  const int first_statement = static_cast<int>(commands.size());
  for (const SqlStatement& statement : statements) {
    commands.push_back(statement.text);
  }
  // What the statements changed in the session goes before the bookkeeping
  // (which then runs as schemad's own role, with the session's settings) and
  // commits with it, as TakeResetPrefix does on the other path.
  const int first_reset = static_cast<int>(commands.size());
  const bool resets = !statements.empty() || reset_session;
  if (resets) {
    session_->MarkDirty();
    for (std::string& reset : session_->ResetStatements()) {
      commands.push_back(std::move(reset));
    }
  }
  // The bookkeeping: each version-row change as a plain statement of its
  // own, its command tag checked here (one row, or the transaction is rolled
  // back: COMMIT only goes after every result is in), then the history row.
  const int first_bookkeeping = static_cast<int>(commands.size());
  absl::Status quoted = session_->Run("quoting the bookkeeping", [&]() -> absl::Status {
    const Quote quote = session_->Quoter();
    for (const VersionRowChange& change : changes) {
      commands.push_back(VersionRowSql(n, change, quote));
    }
    if (history != nullptr) {
      commands.push_back(HistoryInsertSql(n, absl::Span<const HistoryRecord>(history, 1), quote,
                                          /*server_clock=*/true));
    }
    return absl::OkStatus();
  });
  RETURN_IF_ERROR(quoted);
  const int change_count = static_cast<int>(changes.size());
  // COMMIT is not pipelined: it goes once every result is in, so that a
  // client that dies mid-revision (killed, connection lost) never has its
  // revision committed by a backend that carries on without it, behind the
  // back of the next run that took the released lock.
  const int statement_count = static_cast<int>(statements.size());

  int failed = -1;  // the command that failed
  StatementError failure;
  int mismatched = -1;  // the first change that did not touch one row
  std::string mismatch_found;
  const auto on_result = [&](int k, const PGresult* result) {
    const ExecStatusType kind = PQresultStatus(result);
    const bool ok =
        kind == PGRES_COMMAND_OK || kind == PGRES_TUPLES_OK || kind == PGRES_EMPTY_QUERY;
    if (!ok && failed < 0) {
      failed = k;
      failure = StatementErrorOf(result);
    }
    const int change = k - first_bookkeeping;
    if (ok && change >= 0 && change < change_count && mismatched < 0) {
      const char* touched = PQcmdTuples(const_cast<PGresult*>(result));  // libpq's signature
      if (absl::string_view(touched) != "1") {
        mismatched = change;
        mismatch_found = touched;
      }
    }
    // Statement i done: statement i + 1 runs.
    const int i = k - first_statement;
    if (ok && failed < 0 && i >= 0 && i + 1 < statement_count && on_started) {
      on_started(i + 1);
    }
  };
  if (statement_count > 0 && on_started) {
    // Everything is sent at once; the server is on statement 0 (or BEGIN) now.
    on_started(0);
  }
  int results_seen = 0;
  std::string blockers;
  // Results are needed early only where they start the next statement's
  // progress event: after every statement but the last.
  const auto flush_after = [&](int k) {
    const int i = k - first_statement;
    return i >= 0 && i + 1 < statement_count;
  };
  absl::Status sent = session_->RunPipeline(commands, on_result, flush_after, &results_seen,
                                            lock_timeout_, &blockers);
  if (failure.sqlstate == "55P03") {
    failure.message = WithBlockers(std::move(failure.message), blockers);
  }
  if (!sent.ok()) {
    raw_open_ = false;  // the session is lost, and the transaction with it
    if (failed >= first_statement && failed < first_reset) {
      // PostgreSQL said why (a terminated backend: 57P01): COMMIT never ran.
      *failed_index = failed - first_statement;
      *error = failure;
      return SqlStatus(failure.sqlstate, failure.message);
    }
    return sent;  // COMMIT was not sent: nothing was applied
  }
  if (failed >= 0) {
    // The transaction is aborted (or, when BEGIN itself failed, not open): end it.
    RollbackRaw();
    if (failed >= first_statement && failed < first_reset) {
      *failed_index = failed - first_statement;
      *error = failure;
      return SqlStatus(failure.sqlstate, failure.message);
    }
    if (mismatched >= 0 && mismatched + first_bookkeeping < failed) {
      return absl::FailedPreconditionError(
          MismatchMessage(c, changes[static_cast<size_t>(mismatched)], mismatch_found));
    }
    return Annotate(SqlStatus(failure.sqlstate, failure.message),
                    failed < first_statement     ? "beginning a transaction"
                    : failed < first_bookkeeping ? "resetting the session"
                                                 : "updating the version table and history");
  }
  if (mismatched >= 0) {
    // A version row was not where the plan said: nothing of the revision stays.
    RollbackRaw();
    return absl::FailedPreconditionError(
        MismatchMessage(c, changes[static_cast<size_t>(mismatched)], mismatch_found));
  }
  if (session_->TransactionStatus() != PQTRANS_INTRANS) {
    RollbackRaw();
    return absl::FailedPreconditionError(
        "the revision's transaction ended before COMMIT; nothing of it was committed by schemad");
  }
  raw_open_ = true;
  if (resets) {
    // RESET ALL undid the SET LOCALs too: the session's timeouts stand again.
    reset_sent_ = true;
    lock_timeout_ = absl::ZeroDuration();
    timeouts_set_ = false;
  }
  if (!commit) {
    return absl::OkStatus();
  }
  if (cancelled && cancelled()) {
    // Cancelled after the last statement: as before the COMMIT of the
    // statement-by-statement path, nothing of the revision is kept.
    RollbackRaw();
    return absl::CancelledError("cancelled before COMMIT; the revision was rolled back");
  }
  return CommitRaw();
}

absl::Status PqTransaction::SetNeedsAttention(const std::optional<NeedsAttention>& marker) {
  RETURN_IF_ERROR(FlushBookkeeping());
  const Names& n = session_->names();
  if (!marker.has_value()) {
    return Run("clearing the needs-attention marker", [&]() -> absl::Status {
      work_->exec(absl::StrCat(TakeResetPrefix(), "DELETE FROM ", n.state_table,
                               " WHERE version_table = ANY (", work_->quote(n.read_keys),
                               "::text[])"));
      return absl::OkStatus();
    });
  }
  const std::string started = TimeToMicros(marker->started);
  const auto q_or_null = [&](const std::string& value) {
    return value.empty() ? std::string("NULL") : work_->quote(value);
  };
  return Run("writing the needs-attention marker", [&]() -> absl::Status {
    work_->exec(absl::StrCat(
        TakeResetPrefix(), "INSERT INTO ", n.state_table,
        " (version_table, revision, direction, statements_done, statements_total, error, "
        "operation_id, started) VALUES (",
        work_->quote(n.write_key), ", ", work_->quote(marker->revision), ", ",
        work_->quote(marker->direction), ", ", marker->statements_done, ", ",
        marker->statements_total, ", ", q_or_null(marker->error), ", ",
        q_or_null(marker->operation_id), ", ",
        started.empty() ? std::string("NULL")
                        : absl::StrCat("'epoch'::pg_catalog.timestamptz + ", started,
                                       "::pg_catalog.int8 * '1 microsecond'::pg_catalog.interval"),
        ") ON CONFLICT (version_table) DO UPDATE SET revision = EXCLUDED.revision, "
        "direction = EXCLUDED.direction, statements_done = EXCLUDED.statements_done, "
        "statements_total = EXCLUDED.statements_total, error = EXCLUDED.error, "
        "operation_id = EXCLUDED.operation_id, started = EXCLUDED.started"));
    return absl::OkStatus();
  });
}

absl::Status PqTransaction::StartRun(const RunRecord& run) {
  RETURN_IF_ERROR(FlushBookkeeping());
  const Names& n = session_->names();
  RunRecord started = run;
  started.application_name = session_->RunTag(run.operation_id);
  const std::string started_at = TimeToMicros(run.started);
  const auto q_or_null = [&](const std::string& value) {
    return value.empty() ? std::string("NULL") : work_->quote(value);
  };
  RETURN_IF_ERROR(Run("recording the start of the run", [&]() -> absl::Status {
    // A plain SET: it outlasts the transaction (which must commit), so that
    // the backend is tagged for the whole run.
    work_->exec(absl::StrCat(
        TakeResetPrefix(), "SET application_name = ", work_->quote(started.application_name),
        "; INSERT INTO ", n.run_table,
        " (version_table, operation_id, operation, target, who, schemad_version, started, pid, "
        "backend_start, application_name) SELECT ",
        work_->quote(n.canonical_key), ", ", work_->quote(run.operation_id), ", ",
        work_->quote(run.operation), ", ", q_or_null(run.target), ", ", q_or_null(run.who), ", ",
        q_or_null(run.schemad_version), ", ",
        started_at.empty()
            ? std::string("NULL")
            : absl::StrCat("'epoch'::pg_catalog.timestamptz + ", started_at,
                           "::pg_catalog.int8 * '1 microsecond'::pg_catalog.interval"),
        ", a.pid, a.backend_start, ", work_->quote(started.application_name), " FROM ",
        // The function under pg_stat_activity, for this backend alone: the
        // same row, without the view's joins to plan.
        "pg_catalog.pg_stat_get_activity(pg_catalog.pg_backend_pid()) a "
        "ON CONFLICT (version_table) DO UPDATE SET operation_id = EXCLUDED.operation_id, "
        "operation = EXCLUDED.operation, target = EXCLUDED.target, who = EXCLUDED.who, "
        "schemad_version = EXCLUDED.schemad_version, started = EXCLUDED.started, "
        "pid = EXCLUDED.pid, backend_start = EXCLUDED.backend_start, "
        "application_name = EXCLUDED.application_name"));
    return absl::OkStatus();
  }));
  started_run_ = std::move(started);
  return absl::OkStatus();
}

absl::Status PqTransaction::Commit() {
  if (raw_open_) {
    // Every revision went in a pipeline: nothing is pending but COMMIT.
    RETURN_IF_ERROR(Usable());
    absl::Status status = CommitRaw();
    if (status.ok()) {
      committed_ = true;
    } else {
      failed_ = true;
    }
    return status;
  }
  RETURN_IF_ERROR(FlushBookkeeping());
  if (revision_state_) {
    // Revision statements and no bookkeeping after them: reset on its own.
    RETURN_IF_ERROR(Run("resetting the session", [&]() -> absl::Status {
      const std::string reset = TakeResetPrefix();
      work_->exec(reset.substr(0, reset.size() - 2));
      return absl::OkStatus();
    }));
  }
  if (work_ == nullptr) {
    // Nothing was sent: nothing to commit.
    committed_ = true;
    return absl::OkStatus();
  }
  absl::Status status = session_->Run("committing", [&]() -> absl::Status {
    work_->commit();
    return absl::OkStatus();
  });
  if (status.code() == absl::StatusCode::kUnavailable) {
    // The connection broke with COMMIT possibly sent: nobody knows.
    status = absl::UnknownError(status.message());
  }
  if (status.ok()) {
    committed_ = true;
    session_->Committed(reset_sent_, started_run_);
  } else {
    failed_ = true;
  }
  return status;
}

// --------------------------------------------------------------------- lock

class PqMigrationLock final : public MigrationLock {
 public:
  PqMigrationLock(std::unique_ptr<PqConnection> conn, std::vector<std::string> keys)
      : conn_(std::move(conn)), keys_(std::move(keys)) {}
  ~PqMigrationLock() override {
    try {
      pqxx::nontransaction tx(*conn_);
      for (const std::string& key : keys_) {
        tx.exec_params("SELECT pg_catalog.pg_advisory_unlock($1::bigint)", key);
      }
    } catch (...) {
      // Closing the connection releases the lock anyway.
    }
    conn_.reset();
  }

 private:
  std::unique_ptr<PqConnection> conn_;
  std::vector<std::string> keys_;
};

absl::Duration Jittered(absl::Duration delay) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::uniform_real_distribution<double> factor(0.8, 1.2);
  return delay * factor(rng);
}

absl::Status ConnectError(const Config& c, absl::string_view libpq_message) {
  const std::string as_user = c.user.empty() ? "" : absl::StrCat(" as user ", c.user);
  const std::string detail = OneLine(libpq_message);
  const auto has = [&detail](absl::string_view text) { return absl::StrContains(detail, text); };
  std::string message;
  absl::StatusCode code = absl::StatusCode::kUnavailable;
  if (has("password authentication failed") || has("no password supplied") ||
      has("authentication failed") || (has("role \"") && has("does not exist")) ||
      has("pg_hba.conf") || has("permission denied for database") ||
      has("not permitted to log in")) {
    code = absl::StatusCode::kPermissionDenied;
    message = absl::StrCat("authentication failed connecting to ", c.display_name, as_user,
                           ": check the credentials (", detail, ")");
  } else if (has("database \"") && has("does not exist")) {
    code = absl::StatusCode::kFailedPrecondition;
    message = absl::StrCat("cannot connect to ", c.display_name, as_user,
                           ": the database does not exist (", detail, ")");
  } else if (has("could not translate host name") && !has("Temporary failure")) {
    code = absl::StatusCode::kFailedPrecondition;
    message = absl::StrCat("cannot connect to ", c.display_name,
                           ": the host name does not resolve (", detail, ")");
  } else if (has("does not support SSL") || has("certificate") ||
             has("GSSAPI encryption required") || has("could not parse network address")) {
    code = absl::StatusCode::kFailedPrecondition;
    message = absl::StrCat("cannot connect to ", c.display_name, as_user, ": ", detail);
  } else {
    message = absl::StrCat("cannot connect to ", c.display_name, as_user, ": ", detail);
  }
  return absl::Status(code, Scrub(message, c.password));
}

absl::StatusOr<std::unique_ptr<PqConnection>> Open(const Config& c, const std::string& conninfo) {
  try {
    auto conn = std::make_unique<PqConnection>(conninfo);
    if (conn->pgconn() == nullptr) {
      return absl::UnavailableError(
          absl::StrCat("cannot connect to ", c.display_name, ": no connection"));
    }
    return conn;
  } catch (const std::exception& e) {
    return ConnectError(c, e.what());
  } catch (...) {
    return ConnectError(c, "unknown error");
  }
}

absl::StatusOr<std::unique_ptr<MigrationLock>> PqSession::AcquireLock(
    absl::Duration wait, const LockWaitCallback& on_wait, const std::function<bool()>& cancelled) {
  RETURN_IF_ERROR(Resolve());
  const Config& c = *config_;
  wait = std::max(wait, absl::ZeroDuration());
  const absl::Time start = absl::Now();
  std::unique_ptr<PqConnection> conn;
  if (prepared_lock_.valid()) {
    absl::StatusOr<std::unique_ptr<PqConnection>> prepared = prepared_lock_.get();
    if (prepared.ok()) {
      conn = *std::move(prepared);
    }
  }
  if (conn == nullptr) {
    ASSIGN_OR_RETURN(conn, Open(c, c.lock_conninfo));
  }
  // Every key at once or none (a partial hold is given back in the same
  // statement), so that waiters never hold one key while polling the other.
  std::vector<std::string> keys;
  std::vector<std::string> tries;
  std::vector<std::string> pg_locks_keys;
  for (int64_t key : names_.lock_keys) {
    uint64_t bits = 0;
    std::memcpy(&bits, &key, sizeof bits);
    keys.push_back(absl::StrCat(key));
    tries.push_back(absl::StrCat("pg_catalog.pg_try_advisory_lock(", key, "::bigint)"));
    pg_locks_keys.push_back(absl::StrCat("(l.classid = ", bits >> 32,
                                         "::oid AND l.objid = ", bits & 0xffffffffULL, "::oid)"));
  }
  // Lock i, then the rest; when the rest fails give i back (NOT true: false).
  std::string try_expr = tries.back();
  for (size_t i = tries.size() - 1; i-- > 0;) {
    try_expr = absl::StrCat("CASE WHEN ", tries[i], " THEN CASE WHEN ", try_expr,
                            " THEN true ELSE NOT pg_catalog.pg_advisory_unlock(", keys[i],
                            "::bigint) END ELSE false END");
  }
  const std::string try_sql = absl::StrCat("SELECT ", try_expr);
  const std::string holder_sql = absl::StrCat(
      "SELECT a.pid, a.application_name, pg_catalog.host(a.client_addr), "
      "(extract(epoch FROM COALESCE(a.query_start, a.backend_start)) * 1000000)::bigint "
      "FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a USING (pid) "
      "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 AND (",
      absl::StrJoin(pg_locks_keys, " OR "),
      ") AND l.database = (SELECT oid FROM pg_catalog.pg_database "
      "WHERE datname = pg_catalog.current_database()) AND a.pid <> pg_catalog.pg_backend_pid() "
      "LIMIT 1");
  const auto is_cancelled = [&cancelled]() { return cancelled && cancelled(); };
  const absl::Status cancelled_status = absl::CancelledError(
      absl::StrCat("cancelled while waiting for the migration lock on ", c.display_name));

  absl::Duration delay = std::max(c.options.lock_poll_initial, absl::Milliseconds(1));
  const absl::Duration max_delay = std::max(c.options.lock_poll_max, delay);
  for (;;) {
    if (is_cancelled()) {
      return cancelled_status;
    }
    bool acquired = false;
    bool holder_known = false;
    LockHolder holder;
    try {
      pqxx::nontransaction tx(*conn);
      acquired = tx.exec1(try_sql)[0].as<bool>();
      if (!acquired) {
        const pqxx::result rows = tx.exec(holder_sql);
        if (!rows.empty()) {
          holder_known = true;
          holder.pid = rows[0][0].as<int>();
          holder.application_name = FieldText(rows[0][1]);
          holder.client_address = FieldText(rows[0][2]);
          holder.since = MicrosToTime(rows[0][3]);
        }
      }
    } catch (...) {
      return Annotate(StatusFromCurrentException(),
                      absl::StrCat("taking the migration lock on ", c.display_name));
    }
    if (acquired) {
      return std::unique_ptr<MigrationLock>(
          std::make_unique<PqMigrationLock>(std::move(conn), std::move(keys)));
    }
    const absl::Duration waited = absl::Now() - start;
    if (waited >= wait) {
      return absl::DeadlineExceededError(
          absl::StrCat("timed out after ", absl::FormatDuration(wait),
                       " waiting for the migration lock on ", c.display_name, "; held by ",
                       holder_known ? holder.Describe()
                                    : std::string("another session (it was just released)")));
    }
    if (on_wait) {
      on_wait(holder, waited);
    }
    // Sleep in short slices so that cancellation is noticed promptly.
    const absl::Time wake = absl::Now() + std::min(Jittered(delay), wait - waited);
    for (absl::Time now = absl::Now(); now < wake; now = absl::Now()) {
      if (is_cancelled()) {
        return cancelled_status;
      }
      absl::SleepFor(std::min(wake - now, absl::Milliseconds(50)));
    }
    delay = std::min(delay * 2, max_delay);
  }
}

// ----------------------------------------------------------------- database

class PqDatabase final : public Database {
 public:
  explicit PqDatabase(std::shared_ptr<const Config> config) : config_(std::move(config)) {}

  // Database:
  absl::StatusOr<std::unique_ptr<Session>> Connect() override;
  void PrepareLock() override;
  std::string DisplayName() const override { return config_->display_name; }

 private:
  std::shared_ptr<const Config> config_;
  std::mutex prepared_mu_;
  PreparedConnection prepared_lock_;  // for the next Connect's session
};

void PqDatabase::PrepareLock() {
  std::lock_guard<std::mutex> lock(prepared_mu_);
  if (prepared_lock_.valid()) {
    return;
  }
  try {
    prepared_lock_ = std::async(
        std::launch::async, [config = config_]() { return Open(*config, config->lock_conninfo); });
  } catch (const std::system_error&) {
    // No thread to spare: AcquireLock connects when it is called.
  }
}

absl::StatusOr<std::unique_ptr<Session>> PqDatabase::Connect() {
  const Config& c = *config_;
  PreparedConnection prepared_lock;
  {
    std::lock_guard<std::mutex> lock(prepared_mu_);
    prepared_lock = std::move(prepared_lock_);
  }
  ASSIGN_OR_RETURN(std::unique_ptr<PqConnection> conn, Open(c, c.conninfo));
  // The server reports application_name at login (a GUC_REPORT setting):
  // no query. The session's setup rides on its first call (Resolve).
  const char* reported = PQparameterStatus(conn->pgconn(), "application_name");
  std::string application_name = reported != nullptr ? reported : "";
  auto session = std::make_unique<PqSession>(config_, std::move(conn), std::move(application_name));
  if (prepared_lock.valid()) {
    session->AdoptPreparedLock(std::move(prepared_lock));
  }
  return std::unique_ptr<Session>(std::move(session));
}

}  // namespace

// ------------------------------------------------------------------- public

absl::StatusOr<std::unique_ptr<Database>> OpenPqDatabase(const std::string& dsn_text,
                                                         const PqOptions& options) {
  absl::StatusOr<dsn::Dsn> parsed_or = dsn::ParseDsn(dsn_text);
  if (!parsed_or.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("the DSN ", parsed_or.status().message()));
  }
  const dsn::Dsn& parsed = *parsed_or;
  const TableNames& tables = options.tables;
  RETURN_IF_ERROR(ValidateIdentifier("tables.schema", tables.schema, /*may_be_empty=*/true));
  RETURN_IF_ERROR(ValidateIdentifier("tables.version_table", tables.version_table, false));
  RETURN_IF_ERROR(ValidateIdentifier("tables.history_table", tables.history_table, false));
  RETURN_IF_ERROR(ValidateIdentifier("tables.state_table", tables.state_table, false));
  RETURN_IF_ERROR(ValidateIdentifier("tables.run_table", tables.run_table, false));
  const std::set<std::string> distinct = {tables.version_table, tables.history_table,
                                          tables.state_table, tables.run_table};
  if (distinct.size() != 4) {
    return absl::InvalidArgumentError(
        "tables: version_table, history_table, state_table and run_table must be different "
        "tables");
  }
  if (options.application_name.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError("application_name: contains a NUL byte");
  }

  auto config = std::make_shared<Config>();
  config->options = options;
  const std::string user = parsed.Get("user");
  config->user = user.empty() ? EnvOr("PGUSER", "") : user;
  config->password = parsed.Get("password");
  std::string host = parsed.Get("host");
  if (host.empty()) {
    host = parsed.Get("hostaddr");
  }
  host = host.empty() ? EnvOr("PGHOST", "localhost") : host;
  std::string port = parsed.Get("port");
  port = port.empty() ? EnvOr("PGPORT", "5432") : port;
  std::string dbname = parsed.Get("dbname");
  dbname = dbname.empty() ? EnvOr("PGDATABASE", config->user) : dbname;
  if (dbname.empty()) {
    dbname = "(default database)";
  }
  config->display_name = parsed.Scrub(absl::StrCat(dbname, " on ", host, ":", port));
  config->conninfo = BuildConninfo(parsed, options.application_name, "", options.connect_timeout);
  config->lock_conninfo =
      BuildConninfo(parsed, options.application_name, " lock", options.connect_timeout);
  // The monitor is worth little once the lock wait is over: it gives up sooner.
  const absl::Duration monitor_connect_timeout =
      options.connect_timeout > absl::ZeroDuration()
          ? std::min(options.connect_timeout, absl::Seconds(2))
          : absl::Seconds(2);
  config->monitor_conninfo =
      BuildConninfo(parsed, options.application_name, " monitor", monitor_connect_timeout);

  config->tables = tables;
  config->version_table_name = tables.version_table;
  config->configured_key = tables.schema.empty()
                               ? tables.version_table
                               : absl::StrCat(tables.schema, ".", tables.version_table);
  if (options.client_connection_check_interval > absl::ZeroDuration() &&
      options.client_connection_check_interval != absl::InfiniteDuration()) {
    config->check_interval = absl::StrCat(
        std::max<int64_t>(1, absl::ToInt64Milliseconds(options.client_connection_check_interval)),
        "ms");
  }
  config->ensure_key = absl::StrCat(AdvisoryKey("schemad:ensure_tables"));
  return std::unique_ptr<Database>(std::make_unique<PqDatabase>(std::move(config)));
}

}  // namespace schemad::store
