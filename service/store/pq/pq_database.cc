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
// - Migration lock key: the int64 whose bits are FNV-1a 64 of
//   "schemad:" + the qualified version table name as configured ("alembic_version",
//   or "schema.alembic_version"). It shows in pg_locks as locktype 'advisory',
//   classid = high 32 bits, objid = low 32 bits, objsubid = 1.
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

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <pqxx/pqxx>
#include <random>
#include <set>
#include <string>
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

// libpq's multi-line messages on one line.
std::string OneLine(absl::string_view text) {
  std::vector<std::string> parts;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (!line.empty()) {
      parts.emplace_back(line);
    }
  }
  return absl::StrJoin(parts, " ");
}

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

struct Config {
  std::string display_name;      // "dbname on host:port"
  std::string user;              // for messages
  std::string password;          // scrubbed from messages
  std::string conninfo;          // sessions
  std::string lock_conninfo;     // the lock connection (application_name + " lock")
  std::string monitor_conninfo;  // BlockerMonitor (application_name + " monitor")
  PqOptions options;

  std::string version_table_name;  // as configured, for Alembic's messages
  std::string table_key;           // "schema.table" / "table": state row key, history column
  std::string version_table;       // quoted, qualified
  std::string version_pkc;         // quoted constraint name
  std::string history_table;       // quoted, qualified
  std::string state_table;         // quoted, qualified
  std::string lock_key;            // decimal int64
  uint64_t lock_key_bits = 0;      // the same bits, unsigned (pg_locks shows them as two oids)
  std::string ensure_key;          // decimal int64
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

// Appends the blockers to a lock-timeout message.
std::string WithBlockers(std::string message, const std::string& blockers) {
  if (!blockers.empty()) {
    absl::StrAppend(&message, "; ", blockers);
  }
  return message;
}

// ------------------------------------------------------------------ session

class PqSession;

class PqTransaction final : public Transaction {
 public:
  PqTransaction(PqSession* session, std::unique_ptr<pqxx::work> work)
      : session_(session), work_(std::move(work)) {}
  ~PqTransaction() override;

  // Transaction:
  absl::Status SetTimeouts(const Timeouts& timeouts) override;
  absl::Status Execute(const SqlStatement& statement, StatementError* error) override;
  absl::Status ApplyVersionChanges(absl::Span<const VersionRowChange> changes) override;
  absl::Status AppendHistory(const HistoryRecord& record) override;
  absl::Status SetNeedsAttention(const std::optional<NeedsAttention>& marker) override;
  absl::Status Commit() override;

 private:
  absl::Status Usable() const;
  // Runs `fn` (which may throw) on the transaction; any failure poisons it.
  absl::Status Run(absl::string_view context, const std::function<absl::Status()>& fn);
  // Sends the buffered version-row changes and history rows as one statement
  // (data-modifying CTEs), checking that each change touched exactly one row.
  // Called before anything else runs on the transaction and before COMMIT, so
  // that a revision's bookkeeping costs one round trip, not one per row.
  absl::Status FlushBookkeeping();
  absl::Status WriteBookkeeping(const std::vector<VersionRowChange>& changes,
                                const std::vector<HistoryRecord>& history);

  PqSession* session_;
  std::unique_ptr<pqxx::work> work_;
  std::vector<VersionRowChange> pending_changes_;
  std::vector<HistoryRecord> pending_history_;
  absl::Duration lock_timeout_ = absl::ZeroDuration();  // as last set by SetTimeouts
  bool timeouts_set_ = false;                           // a SET LOCAL was sent
  bool failed_ = false;
  bool committed_ = false;
};

class PqSession final : public Session {
 public:
  PqSession(std::shared_ptr<const Config> config, std::unique_ptr<PqConnection> conn)
      : config_(std::move(config)), conn_(std::move(conn)) {
    cancel_ = PQgetCancel(conn_->pgconn());
    backend_pid_ = PQbackendPID(conn_->pgconn());
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
  absl::StatusOr<std::map<std::string, std::string>> ReadAppliedChecksums() override;
  absl::StatusOr<std::vector<HistoryRecord>> ReadHistory(int limit) override;
  void Cancel() override;

  // For PqTransaction.
  const Config& config() const { return *config_; }
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

  absl::Status Lost() const {
    return absl::UnavailableError(
        absl::StrCat("the connection to ", config_->display_name,
                     " was lost; open a new session and re-read the state"));
  }
  absl::Status NoTransactionOpen() const {
    if (transaction_open_) {
      return absl::FailedPreconditionError("a transaction is open on this session");
    }
    return absl::OkStatus();
  }
  absl::Status ReadStateFallback(DatabaseState* state);
  static void AddStateRow(const pqxx::row& row, DatabaseState* state);
  // Starts watching for blockers when `lock_timeout` > 0; returns whether it did.
  bool WatchForBlockers(absl::Duration lock_timeout);

  std::shared_ptr<const Config> config_;
  std::unique_ptr<PqConnection> conn_;
  bool broken_ = false;
  bool transaction_open_ = false;
  int backend_pid_ = 0;
  std::unique_ptr<BlockerMonitor> monitor_;  // created by the first statement with a lock_timeout

  std::mutex cancel_mu_;
  bool running_ ABSL_GUARDED_BY(cancel_mu_) = false;
  PGcancel* cancel_ ABSL_GUARDED_BY(cancel_mu_) = nullptr;
};

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
  if (broken_) {
    return Lost();
  }
  PGconn* pg = conn_->pgconn();
  if (pg == nullptr || PQstatus(pg) != CONNECTION_OK) {
    broken_ = true;
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

absl::StatusOr<DatabaseState> PqSession::ReadState() {
  RETURN_IF_ERROR(NoTransactionOpen());
  const Config& c = *config_;
  DatabaseState state;
  bool missing_table = false;
  absl::Status status = Run("reading the version table", [&]() -> absl::Status {
    pqxx::nontransaction tx(*conn_);
    try {
      const pqxx::result result = tx.exec_params(
          absl::StrCat(
              "SELECT 'v', version_num::text, NULL::text, NULL::int, NULL::int, NULL::text, "
              "NULL::text, NULL::bigint FROM ",
              c.version_table, " UNION ALL SELECT 's', ", kStateColumns, " FROM ", c.state_table,
              " WHERE version_table = $1"),
          c.table_key);
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
  const Config& c = *config_;
  return Run("reading the version table", [&]() -> absl::Status {
    pqxx::nontransaction tx(*conn_);
    const pqxx::row exists =
        tx.exec_params1("SELECT to_regclass($1) IS NOT NULL, to_regclass($2) IS NOT NULL",
                        c.version_table, c.state_table);
    state->version_table_exists = exists[0].as<bool>();
    if (state->version_table_exists) {
      for (const pqxx::row& row :
           tx.exec(absl::StrCat("SELECT 'v', version_num::text FROM ", c.version_table))) {
        AddStateRow(row, state);
      }
    }
    if (exists[1].as<bool>()) {
      for (const pqxx::row& row :
           tx.exec_params(absl::StrCat("SELECT 's', ", kStateColumns, " FROM ", c.state_table,
                                       " WHERE version_table = $1"),
                          c.table_key)) {
        AddStateRow(row, state);
      }
    }
    return absl::OkStatus();
  });
}

absl::Status PqSession::EnsureTables() {
  RETURN_IF_ERROR(NoTransactionOpen());
  const Config& c = *config_;
  bool all_exist = false;
  RETURN_IF_ERROR(Run("checking for schemad's tables", [&]() -> absl::Status {
    pqxx::nontransaction tx(*conn_);
    all_exist = tx.exec_params1(
                      "SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL AND "
                      "to_regclass($3) IS NOT NULL",
                      c.version_table, c.history_table, c.state_table)[0]
                    .as<bool>();
    return absl::OkStatus();
  }));
  if (all_exist) {
    return absl::OkStatus();
  }
  // Exactly Alembic's DDL for the version table (a table it made is kept).
  const std::string create_version = absl::StrCat("CREATE TABLE IF NOT EXISTS ", c.version_table,
                                                  " (version_num VARCHAR(32) NOT NULL, CONSTRAINT ",
                                                  c.version_pkc, " PRIMARY KEY (version_num))");
  const std::string create_history = absl::StrCat(
      "CREATE TABLE IF NOT EXISTS ", c.history_table,
      " (id bigserial PRIMARY KEY, revision text NOT NULL, direction text NOT NULL, "
      "rows_before text[] NOT NULL, rows_after text[] NOT NULL, checksum text, "
      "started timestamptz, duration_ms double precision, outcome text NOT NULL, error text, "
      "who text, operation_id text, schemad_version text, version_table text NOT NULL)");
  const std::string create_state = absl::StrCat(
      "CREATE TABLE IF NOT EXISTS ", c.state_table,
      " (version_table text PRIMARY KEY, revision text NOT NULL, direction text NOT NULL, "
      "statements_done int NOT NULL, statements_total int NOT NULL, error text, "
      "operation_id text, started timestamptz)");
  absl::Status status;
  for (int attempt = 0; attempt < 3; ++attempt) {
    bool raced = false;
    status = Run("creating schemad's tables", [&]() -> absl::Status {
      try {
        pqxx::work tx(*conn_);
        // Creators queue here; CREATE TABLE IF NOT EXISTS alone can still
        // fail on pg_type's unique index when two run at once.
        tx.exec_params("SELECT pg_advisory_xact_lock($1::bigint)", c.ensure_key);
        tx.exec(create_version);
        tx.exec(create_history);
        tx.exec(create_state);
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
  std::unique_ptr<pqxx::work> work;
  RETURN_IF_ERROR(Run("beginning a transaction", [&]() -> absl::Status {
    work = std::make_unique<pqxx::work>(*conn_);
    return absl::OkStatus();
  }));
  transaction_open_ = true;
  return std::unique_ptr<Transaction>(std::make_unique<PqTransaction>(this, std::move(work)));
}

absl::Status PqSession::ExecuteAutocommit(const SqlStatement& statement, const Timeouts& timeouts,
                                          StatementError* error) {
  RETURN_IF_ERROR(NoTransactionOpen());
  ASSIGN_OR_RETURN(const std::string lock_timeout,
                   TimeoutSetting(timeouts.lock_timeout, "lock_timeout"));
  ASSIGN_OR_RETURN(const std::string statement_timeout,
                   TimeoutSetting(timeouts.statement_timeout, "statement_timeout"));
  RETURN_IF_ERROR(
      Annotate(RunRaw(absl::StrCat("SET lock_timeout = '", lock_timeout,
                                   "'; SET statement_timeout = '", statement_timeout, "'"),
                      nullptr),
               "setting timeouts"));
  absl::Status status = RunRaw(statement.text, error, timeouts.lock_timeout);
  if (status.ok() && !broken_ && TransactionStatus() != PQTRANS_IDLE) {
    // A BEGIN (or START TRANSACTION) left a transaction open: undo it.
    status = absl::FailedPreconditionError(
        "the statement left a transaction open (BEGIN does not belong in a non-transactional "
        "revision); it was rolled back");
    RunRaw("ROLLBACK", nullptr).IgnoreError();
  }
  const absl::Status reset =
      broken_ ? absl::OkStatus() : RunRaw("RESET lock_timeout; RESET statement_timeout", nullptr);
  if (!status.ok()) {
    return status;
  }
  return Annotate(reset, "resetting timeouts");
}

absl::StatusOr<std::map<std::string, std::string>> PqSession::ReadAppliedChecksums() {
  RETURN_IF_ERROR(NoTransactionOpen());
  const Config& c = *config_;
  std::map<std::string, std::string> checksums;
  RETURN_IF_ERROR(Run("reading applied checksums", [&]() -> absl::Status {
    pqxx::nontransaction tx(*conn_);
    try {
      const pqxx::result result = tx.exec_params(
          absl::StrCat("SELECT DISTINCT ON (revision) revision, direction, checksum FROM ",
                       c.history_table,
                       " WHERE version_table = $1 AND outcome IN ('success', 'applied') AND "
                       "direction IN ('up', 'down') ORDER BY revision, id DESC"),
          c.table_key);
      for (const pqxx::row& row : result) {
        const std::string checksum = FieldText(row[2]);
        if (FieldText(row[1]) == "up" && !checksum.empty()) {
          checksums[FieldText(row[0])] = checksum;
        }
      }
    } catch (const pqxx::sql_error& e) {
      if (!IsSqlState(e, "42P01")) {
        throw;
      }
    }
    return absl::OkStatus();
  }));
  return checksums;
}

absl::StatusOr<std::vector<HistoryRecord>> PqSession::ReadHistory(int limit) {
  RETURN_IF_ERROR(NoTransactionOpen());
  const Config& c = *config_;
  std::vector<HistoryRecord> records;
  const std::string limit_text = limit > 0 ? absl::StrCat(limit) : std::string();
  RETURN_IF_ERROR(Run("reading history", [&]() -> absl::Status {
    pqxx::nontransaction tx(*conn_);
    try {
      const pqxx::result result = tx.exec_params(
          absl::StrCat("SELECT id, revision, direction, rows_before, rows_after, checksum, "
                       "(extract(epoch FROM started) * 1000000)::bigint, "
                       "(duration_ms * 1000)::bigint, outcome, error, who, operation_id, "
                       "schemad_version FROM ",
                       c.history_table,
                       " WHERE version_table = $1 ORDER BY id DESC LIMIT $2::bigint"),
          c.table_key, NullIfEmpty(limit_text));
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

// -------------------------------------------------------------- transaction

PqTransaction::~PqTransaction() {
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

absl::Status PqTransaction::Run(absl::string_view context,
                                const std::function<absl::Status()>& fn) {
  RETURN_IF_ERROR(Usable());
  absl::Status status = session_->Run(context, fn, lock_timeout_);
  if (!status.ok()) {
    failed_ = true;
  }
  return status;
}

absl::Status PqTransaction::SetTimeouts(const Timeouts& timeouts) {
  RETURN_IF_ERROR(Usable());
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
  RETURN_IF_ERROR(Run("setting timeouts", [&]() -> absl::Status {
    work_->exec(absl::StrCat("SET LOCAL lock_timeout = '", lock_timeout,
                             "'; SET LOCAL statement_timeout = '", statement_timeout, "'"));
    return absl::OkStatus();
  }));
  lock_timeout_ = timeouts.lock_timeout;
  return absl::OkStatus();
}

absl::Status PqTransaction::Execute(const SqlStatement& statement, StatementError* error) {
  RETURN_IF_ERROR(FlushBookkeeping());
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

absl::Status PqTransaction::WriteBookkeeping(const std::vector<VersionRowChange>& changes,
                                             const std::vector<HistoryRecord>& history) {
  if (changes.empty() && history.empty()) {
    return absl::OkStatus();
  }
  const Config& c = session_->config();
  return Run("updating the version table and history", [&]() -> absl::Status {
    auto q = [&](const std::string& value) { return work_->quote(value); };
    auto q_or_null = [&](const std::string& value) {
      return value.empty() ? std::string("NULL") : work_->quote(value);
    };
    std::vector<std::string> ctes;
    std::vector<std::string> counts;
    for (size_t i = 0; i < changes.size(); ++i) {
      const VersionRowChange& change = changes[i];
      std::string body;
      switch (change.kind) {
        case VersionRowChange::Kind::kInsert:
          body = absl::StrCat("INSERT INTO ", c.version_table, " (version_num) VALUES (",
                              q(change.to), ") RETURNING 1");
          break;
        case VersionRowChange::Kind::kDelete:
          body = absl::StrCat("DELETE FROM ", c.version_table,
                              " WHERE version_num = ", q(change.from), " RETURNING 1");
          break;
        case VersionRowChange::Kind::kUpdate:
          body = absl::StrCat("UPDATE ", c.version_table, " SET version_num = ", q(change.to),
                              " WHERE version_num = ", q(change.from), " RETURNING 1");
          break;
      }
      ctes.push_back(absl::StrCat("v", i, " AS (", body, ")"));
      counts.push_back(absl::StrCat("(SELECT count(*) FROM v", i, ")"));
    }
    // One INSERT for all history rows: ids follow the order of the VALUES.
    std::vector<std::string> rows;
    for (const HistoryRecord& record : history) {
      const std::string started = TimeToMicros(record.started);
      rows.push_back(absl::StrCat(
          "(", q(record.revision), ", ", q(record.direction), ", ",
          q(TextArrayLiteral(record.rows_before)), "::text[], ",
          q(TextArrayLiteral(record.rows_after)), "::text[], ", q_or_null(record.checksum), ", ",
          started.empty() ? std::string("NULL::timestamptz")
                          : absl::StrCat("'epoch'::timestamptz + ", started,
                                         "::bigint * interval '1 microsecond'"),
          ", ", absl::ToInt64Microseconds(record.duration), " / 1000.0, ", q(record.outcome), ", ",
          q_or_null(record.error), ", ", q_or_null(record.who), ", ",
          q_or_null(record.operation_id), ", ", q_or_null(record.schemad_version), ", ",
          q(c.table_key), ")"));
    }
    if (!rows.empty()) {
      ctes.push_back(absl::StrCat(
          "h AS (INSERT INTO ", c.history_table,
          " (revision, direction, rows_before, rows_after, checksum, started, duration_ms, "
          "outcome, error, who, operation_id, schemad_version, version_table) VALUES ",
          absl::StrJoin(rows, ", "), " RETURNING 1)"));
    }
    if (counts.empty()) {
      counts.push_back("0");
    }
    const pqxx::result result = work_->exec(
        absl::StrCat("WITH ", absl::StrJoin(ctes, ", "), " SELECT ", absl::StrJoin(counts, ", ")));
    for (size_t i = 0; i < changes.size(); ++i) {
      const long found = result[0][static_cast<int>(i)].as<long>();
      if (found == 1) {
        continue;
      }
      const VersionRowChange& change = changes[i];
      if (change.kind == VersionRowChange::Kind::kDelete) {
        return absl::FailedPreconditionError(
            absl::StrCat("Online migration expected to match one row when deleting '", change.from,
                         "' in '", c.version_table_name, "'; ", found, " found"));
      }
      return absl::FailedPreconditionError(absl::StrCat(
          "Online migration expected to match one row when updating '", change.from, "' to '",
          change.to, "' in '", c.version_table_name, "'; ", found, " found"));
    }
    return absl::OkStatus();
  });
}

absl::Status PqTransaction::SetNeedsAttention(const std::optional<NeedsAttention>& marker) {
  RETURN_IF_ERROR(FlushBookkeeping());
  const Config& c = session_->config();
  if (!marker.has_value()) {
    return Run("clearing the needs-attention marker", [&]() -> absl::Status {
      work_->exec_params(absl::StrCat("DELETE FROM ", c.state_table, " WHERE version_table = $1"),
                         c.table_key);
      return absl::OkStatus();
    });
  }
  const std::string started = TimeToMicros(marker->started);
  return Run("writing the needs-attention marker", [&]() -> absl::Status {
    work_->exec_params(
        absl::StrCat("INSERT INTO ", c.state_table,
                     " (version_table, revision, direction, statements_done, statements_total, "
                     "error, operation_id, started) VALUES ($1, $2, $3, $4::int, $5::int, $6, $7, "
                     "'epoch'::timestamptz + $8::bigint * interval '1 microsecond') "
                     "ON CONFLICT (version_table) DO UPDATE SET revision = EXCLUDED.revision, "
                     "direction = EXCLUDED.direction, statements_done = EXCLUDED.statements_done, "
                     "statements_total = EXCLUDED.statements_total, error = EXCLUDED.error, "
                     "operation_id = EXCLUDED.operation_id, started = EXCLUDED.started"),
        c.table_key, marker->revision, marker->direction, marker->statements_done,
        marker->statements_total, NullIfEmpty(marker->error), NullIfEmpty(marker->operation_id),
        NullIfEmpty(started));
    return absl::OkStatus();
  });
}

absl::Status PqTransaction::Commit() {
  RETURN_IF_ERROR(FlushBookkeeping());
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
  } else {
    failed_ = true;
  }
  return status;
}

// --------------------------------------------------------------------- lock

class PqMigrationLock final : public MigrationLock {
 public:
  PqMigrationLock(std::unique_ptr<PqConnection> conn, std::string key)
      : conn_(std::move(conn)), key_(std::move(key)) {}
  ~PqMigrationLock() override {
    try {
      pqxx::nontransaction tx(*conn_);
      tx.exec_params("SELECT pg_advisory_unlock($1::bigint)", key_);
    } catch (...) {
      // Closing the connection releases the lock anyway.
    }
    conn_.reset();
  }

 private:
  std::unique_ptr<PqConnection> conn_;
  std::string key_;
};

absl::Duration Jittered(absl::Duration delay) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::uniform_real_distribution<double> factor(0.8, 1.2);
  return delay * factor(rng);
}

// ----------------------------------------------------------------- database

class PqDatabase final : public Database {
 public:
  explicit PqDatabase(std::shared_ptr<const Config> config) : config_(std::move(config)) {}

  // Database:
  absl::StatusOr<std::unique_ptr<Session>> Connect() override;
  absl::StatusOr<std::unique_ptr<MigrationLock>> AcquireLock(
      absl::Duration wait, const LockWaitCallback& on_wait,
      const std::function<bool()>& cancelled) override;
  std::string DisplayName() const override { return config_->display_name; }

 private:
  absl::StatusOr<std::unique_ptr<PqConnection>> Open(const std::string& conninfo) const;
  absl::Status ConnectError(absl::string_view libpq_message) const;

  std::shared_ptr<const Config> config_;
};

// Why a connection attempt failed, from libpq's text (it gives no SQLSTATE
// for a failed connection; schemad runs libpq in the C locale, so the text
// is libpq's and PostgreSQL's English). Permanent failures are not
// UNAVAILABLE, so that nobody retries them: a refused login is
// PERMISSION_DENIED; a database or host name that does not exist, or TLS
// that cannot work, is FAILED_PRECONDITION (fix the configuration first).
// Everything else — refused, timed out, starting up, shutting down, too
// many clients, a DNS server that did not answer — is UNAVAILABLE.
absl::Status PqDatabase::ConnectError(absl::string_view libpq_message) const {
  const Config& c = *config_;
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

absl::StatusOr<std::unique_ptr<PqConnection>> PqDatabase::Open(const std::string& conninfo) const {
  try {
    auto conn = std::make_unique<PqConnection>(conninfo);
    if (conn->pgconn() == nullptr) {
      return absl::UnavailableError(
          absl::StrCat("cannot connect to ", config_->display_name, ": no connection"));
    }
    return conn;
  } catch (const std::exception& e) {
    return ConnectError(e.what());
  } catch (...) {
    return ConnectError("unknown error");
  }
}

absl::StatusOr<std::unique_ptr<Session>> PqDatabase::Connect() {
  ASSIGN_OR_RETURN(std::unique_ptr<PqConnection> conn, Open(config_->conninfo));
  return std::unique_ptr<Session>(std::make_unique<PqSession>(config_, std::move(conn)));
}

absl::StatusOr<std::unique_ptr<MigrationLock>> PqDatabase::AcquireLock(
    absl::Duration wait, const LockWaitCallback& on_wait, const std::function<bool()>& cancelled) {
  const Config& c = *config_;
  wait = std::max(wait, absl::ZeroDuration());
  const absl::Time start = absl::Now();
  ASSIGN_OR_RETURN(std::unique_ptr<PqConnection> conn, Open(c.lock_conninfo));
  const uint64_t key_bits = c.lock_key_bits;
  const std::string classid = absl::StrCat(key_bits >> 32);
  const std::string objid = absl::StrCat(key_bits & 0xffffffffULL);
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
      acquired =
          tx.exec_params1("SELECT pg_try_advisory_lock($1::bigint)", c.lock_key)[0].as<bool>();
      if (!acquired) {
        const pqxx::result rows = tx.exec_params(
            "SELECT a.pid, a.application_name, host(a.client_addr), "
            "(extract(epoch FROM COALESCE(a.query_start, a.backend_start)) * 1000000)::bigint "
            "FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $1::oid AND "
            "l.objid = $2::oid AND l.objsubid = 1 AND "
            "l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            classid, objid);
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
          std::make_unique<PqMigrationLock>(std::move(conn), c.lock_key));
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
  if (tables.version_table == tables.history_table || tables.version_table == tables.state_table ||
      tables.history_table == tables.state_table) {
    return absl::InvalidArgumentError(
        "tables: version_table, history_table and state_table must be different tables");
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

  config->version_table_name = tables.version_table;
  config->table_key = tables.schema.empty()
                          ? tables.version_table
                          : absl::StrCat(tables.schema, ".", tables.version_table);
  config->version_table = Qualified(tables.schema, tables.version_table);
  config->version_pkc = QuoteIdent(absl::StrCat(tables.version_table, "_pkc"));
  config->history_table = Qualified(tables.schema, tables.history_table);
  config->state_table = Qualified(tables.schema, tables.state_table);
  config->lock_key_bits = Fnv1a64(absl::StrCat("schemad:", config->table_key));
  config->lock_key = absl::StrCat(AdvisoryKey(absl::StrCat("schemad:", config->table_key)));
  config->ensure_key = absl::StrCat(AdvisoryKey("schemad:ensure_tables"));
  return std::unique_ptr<Database>(std::make_unique<PqDatabase>(std::move(config)));
}

}  // namespace schemad::store
