#include "service/store/pq/dev_server.h"

#include <fcntl.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "service/common/dsn.h"
#include "service/common/status_macros.h"
#include "service/schema/schema_diff.h"
#include "service/store/pq/libpq_text.h"

namespace schemad::store {

struct DevServer::Admin {
  PGconn* conn = nullptr;
  ~Admin() {
    if (conn != nullptr) PQfinish(conn);
  }
};

namespace {

constexpr char kDefaultPgBin[] = "/usr/lib/postgresql/15/bin";
// The port only names the socket file; the cluster listens on no TCP port.
constexpr char kLocalPort[] = "5432";
// DROP DATABASE ... WITH (FORCE) came with PostgreSQL 13.
constexpr int kMinServerVersion = 130000;

void IgnoreNotice(void* /*arg*/, const char* /*message*/) {}

using internal::OneLine;

std::string ScrubAll(std::string text, const std::vector<std::string>& secrets) {
  for (const std::string& secret : secrets) text = dsn::ScrubSecret(text, secret);
  return text;
}

// Connects with `conninfo`; notices are dropped (they would go to stderr).
absl::StatusOr<PGconn*> ConnectRaw(const std::string& conninfo,
                                   const std::vector<std::string>& secrets,
                                   absl::string_view what) {
  PGconn* conn = PQconnectdb(conninfo.c_str());
  if (conn == nullptr) return absl::ResourceExhaustedError("libpq: out of memory");
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string message = ScrubAll(OneLine(PQerrorMessage(conn)), secrets);
    PQfinish(conn);
    return absl::UnavailableError(absl::StrCat("cannot connect to ", what, ": ", message));
  }
  PQsetNoticeProcessor(conn, IgnoreNotice, nullptr);
  return conn;
}

// Whether `conn` broke (the server went away, or ended the session).
bool ConnectionLost(PGconn* conn) { return PQstatus(conn) != CONNECTION_OK; }

// Runs one command on `conn`; the first row's first value ("" if none).
// UNAVAILABLE when the connection broke, FAILED_PRECONDITION otherwise.
absl::StatusOr<std::string> Exec(PGconn* conn, const std::string& sql,
                                 const std::vector<std::string>& secrets) {
  PGresult* result = PQexec(conn, sql.c_str());
  const ExecStatusType status = PQresultStatus(result);
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    const char* primary = PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY);
    std::string message = primary != nullptr ? primary : OneLine(PQerrorMessage(conn));
    PQclear(result);
    if (ConnectionLost(conn)) return absl::UnavailableError(ScrubAll(message, secrets));
    return absl::FailedPreconditionError(ScrubAll(message, secrets));
  }
  std::string value;
  if (status == PGRES_TUPLES_OK && PQntuples(result) > 0 && PQnfields(result) > 0) {
    value = PQgetvalue(result, 0, 0);
  }
  PQclear(result);
  return value;
}

// ------------------------------------------------------------ local cluster

// Runs `argv` (as the `postgres` user when we are root), output appended to
// `log_path`; its exit status (or -1 when it could not start).
int RunProcess(const std::vector<std::string>& argv, const std::string& log_path) {
  std::vector<std::string> full;
  if (geteuid() == 0) full = {"/usr/sbin/runuser", "-u", "postgres", "--"};
  full.insert(full.end(), argv.begin(), argv.end());
  std::vector<char*> args;
  for (std::string& arg : full) args.push_back(arg.data());
  args.push_back(nullptr);
  const pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    const int log = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    const int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (log >= 0) {
      dup2(log, STDOUT_FILENO);
      dup2(log, STDERR_FILENO);
    }
    if (null >= 0) dup2(null, STDIN_FILENO);
    execv(args[0], args.data());
    _exit(127);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string LogTail(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) lines.push_back(line);
  const size_t from = lines.size() > 8 ? lines.size() - 8 : 0;
  return absl::StrJoin(lines.begin() + static_cast<std::ptrdiff_t>(from), lines.end(), "\n");
}

std::string TempRoot() {
  const char* tmpdir = std::getenv("TMPDIR");
  return tmpdir != nullptr && *tmpdir != '\0' ? tmpdir : "/tmp";
}

constexpr char kLocalDirPrefix[] = "schemad-dev-";
constexpr char kOwnerFile[] = "owner.pid";

// Stops and removes the local clusters under TempRoot() whose owner process
// is gone (a schemactl or schemad killed before it could Close()). A
// cluster without an owner file (still being set up) is left alone.
void SweepAbandonedClusters(const std::string& pg_bin) {
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(TempRoot(), error)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(kLocalDirPrefix, 0) != 0 || !entry.is_directory(error)) continue;
    std::ifstream in(entry.path() / kOwnerFile);
    pid_t owner = 0;
    if (!(in >> owner) || owner <= 0) continue;
    if (kill(owner, 0) == 0 || errno != ESRCH) continue;  // alive (or not ours to judge)
    RunProcess({pg_bin + "/pg_ctl", "-D", (entry.path() / "data").string(), "-m", "immediate", "-w",
                "stop"},
               "/dev/null");
    std::filesystem::remove_all(entry.path(), error);
  }
}

std::string RandomHex(int digits) {
  std::random_device device;
  std::string hex;
  for (int i = 0; i < digits; ++i) hex += "0123456789abcdef"[device() % 16];
  return hex;
}

}  // namespace

ScratchDatabase::~ScratchDatabase() { (void)Drop(); }

absl::Status ScratchDatabase::Drop() {
  if (dropped_) return absl::OkStatus();
  dropped_ = true;
  return server_->DropDatabase(name_);
}

absl::StatusOr<std::unique_ptr<DevServer>> DevServer::Open(const std::string& dev_dsn) {
  std::unique_ptr<DevServer> server(new DevServer());
  if (dev_dsn != "local") {
    ASSIGN_OR_RETURN(dsn::Dsn parsed, dsn::ParseDsn(dev_dsn));
    server->secrets_ = parsed.secrets();
    server->display_name_ = dsn::Redacted(parsed);
    server->base_conninfo_ = parsed.ToConninfo();
    if (parsed.Find("connect_timeout") == nullptr) {
      absl::StrAppend(&server->base_conninfo_, " connect_timeout=10");
    }
    if (parsed.Find("application_name") == nullptr) {
      absl::StrAppend(&server->base_conninfo_, " application_name=schemad-dev-", getpid());
    }
    RETURN_IF_ERROR(server->Connect());
    if (server->server_version_ < kMinServerVersion) {
      return absl::FailedPreconditionError(
          absl::StrCat("the dev server ", server->display_name_, " runs PostgreSQL ",
                       server->server_version_ / 10000,
                       "; schemad needs 13 or later there (DROP DATABASE "
                       "... WITH (FORCE))"));
    }
    ASSIGN_OR_RETURN(std::string may_create,
                     Exec(server->admin_->conn,
                          "SELECT (rolcreatedb OR rolsuper)::text FROM pg_catalog.pg_roles "
                          "WHERE rolname = current_user",
                          server->secrets_));
    if (may_create != "true") {
      return absl::FailedPreconditionError(
          absl::StrCat("the dev server ", server->display_name_,
                       ": its role may not create databases (needs CREATEDB); schemad creates "
                       "and drops scratch databases there"));
    }
    return server;
  }

  const char* bin = std::getenv("SCHEMAD_PG_BIN");
  server->pg_bin_ = bin != nullptr && *bin != '\0' ? bin : kDefaultPgBin;
  std::error_code error;
  if (!std::filesystem::exists(server->pg_bin_ + "/initdb", error) ||
      !std::filesystem::exists(server->pg_bin_ + "/pg_ctl", error)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "--dev-dsn local needs PostgreSQL's initdb and pg_ctl in ", server->pg_bin_,
        " (Debian: apt-get install postgresql-15, or set SCHEMAD_PG_BIN); or name a server "
        "with --dev-dsn DSN"));
  }
  SweepAbandonedClusters(server->pg_bin_);
  if (TempRoot().find_first_of("'\\") != std::string::npos) {
    return absl::FailedPreconditionError(
        "--dev-dsn local: TMPDIR may not contain a quote or a backslash (pg_ctl passes the "
        "socket directory through a shell)");
  }
  std::string pattern = TempRoot() + "/" + kLocalDirPrefix + "XXXXXX";
  if (mkdtemp(pattern.data()) == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create a directory for the local dev cluster under ", TempRoot()));
  }
  server->local_dir_ = pattern;
  // Who owns the cluster: SweepAbandonedClusters stops it once that process
  // is gone (killed before Close() ran).
  std::ofstream(server->local_dir_ + "/" + kOwnerFile) << getpid() << "\n";
  if (geteuid() == 0) {
    const passwd* postgres = getpwnam("postgres");
    if (postgres == nullptr) {
      return absl::FailedPreconditionError(
          "--dev-dsn local as root needs the `postgres` user (initdb refuses root)");
    }
    if (chown(server->local_dir_.c_str(), postgres->pw_uid, postgres->pw_gid) != 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot give ", server->local_dir_, " to the postgres user"));
    }
  }
  const std::string data = server->local_dir_ + "/data";
  // The commands' output (written by this process) and the server's log
  // (written by the server's user) go to separate files.
  const std::string commands_log = server->local_dir_ + "/commands.log";
  const std::string log = server->local_dir_ + "/server.log";
  if (RunProcess({server->pg_bin_ + "/initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E",
                  "UTF8", "--locale=C.UTF-8", "--no-sync"},
                 commands_log) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("initdb of the local dev cluster failed:\n", LogTail(commands_log)));
  }
  const std::string options =
      absl::StrCat("-c listen_addresses='' -k '", server->local_dir_, "' -p ", kLocalPort,
                   " -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
  if (RunProcess({server->pg_bin_ + "/pg_ctl", "-D", data, "-l", log, "-w", "-t", "60", "-o",
                  options, "start"},
                 commands_log) != 0) {
    return absl::FailedPreconditionError(absl::StrCat("the local dev cluster did not start:\n",
                                                      LogTail(commands_log), "\n", LogTail(log)));
  }
  server->base_conninfo_ =
      absl::StrCat("host=", dsn::QuoteConninfoValue(server->local_dir_), " port=", kLocalPort,
                   " user=postgres dbname=postgres application_name=schemad-dev-", getpid());
  server->display_name_ = absl::StrCat("local cluster in ", server->local_dir_);
  RETURN_IF_ERROR(server->Connect());
  server->display_name_ = absl::StrCat("local PostgreSQL ", server->server_version_ / 10000, ".",
                                       server->server_version_ % 10000, " cluster");
  return server;
}

absl::Status DevServer::Connect() {
  ASSIGN_OR_RETURN(PGconn * conn, ConnectRaw(base_conninfo_, secrets_,
                                             absl::StrCat("the dev server ", display_name_)));
  admin_ = std::make_unique<Admin>();
  admin_->conn = conn;
  server_version_ = PQserverVersion(conn);
  return absl::OkStatus();
}

DevServer::~DevServer() { Close(); }

void DevServer::Close() {
  if (closed_) return;
  closed_ = true;
  for (const std::string& name : std::vector<std::string>(alive_)) (void)DropDatabase(name);
  admin_.reset();
  if (!local_dir_.empty()) {
    RunProcess({pg_bin_ + "/pg_ctl", "-D", local_dir_ + "/data", "-m", "immediate", "-w", "stop"},
               "/dev/null");
    std::error_code error;
    std::filesystem::remove_all(local_dir_, error);
  }
}

std::string DevServer::ConninfoFor(const std::string& database) const {
  return absl::StrCat(base_conninfo_, " dbname=", dsn::QuoteConninfoValue(database));
}

absl::StatusOr<std::unique_ptr<ScratchDatabase>> DevServer::CreateScratchDatabase() {
  if (admin_ == nullptr) return absl::FailedPreconditionError("the dev server is closed");
  const std::string name =
      absl::StrCat("schemad_scratch_", getpid(), "_", ++created_, "_", RandomHex(6));
  absl::StatusOr<std::string> created =
      Exec(admin_->conn,
           absl::StrCat("CREATE DATABASE ", schema::QuoteIdent(name),
                        " TEMPLATE template0 ENCODING 'UTF8'"),
           secrets_);
  if (!created.ok()) {
    return absl::Status(created.status().code(),
                        absl::StrCat("cannot create a scratch database on ", display_name_, ": ",
                                     created.status().message()));
  }
  alive_.push_back(name);
  return std::unique_ptr<ScratchDatabase>(new ScratchDatabase(this, name, ConninfoFor(name)));
}

absl::Status DevServer::DropDatabase(const std::string& name) {
  if (std::find(alive_.begin(), alive_.end(), name) == alive_.end()) return absl::OkStatus();
  if (admin_ == nullptr) return absl::FailedPreconditionError("the dev server is closed");
  absl::StatusOr<std::string> dropped =
      Exec(admin_->conn,
           absl::StrCat("DROP DATABASE IF EXISTS ", schema::QuoteIdent(name), " WITH (FORCE)"),
           secrets_);
  if (!dropped.ok()) {
    // Still alive: Close() tries again.
    return absl::Status(dropped.status().code(),
                        absl::StrCat("cannot drop scratch database ", name, " on ", display_name_,
                                     ": ", dropped.status().message()));
  }
  alive_.erase(std::find(alive_.begin(), alive_.end(), name));
  return absl::OkStatus();
}

absl::Status DevServer::ApplySql(const ScratchDatabase& database,
                                 const std::vector<engine::SqlStatement>& statements,
                                 const std::string& source) {
  ASSIGN_OR_RETURN(PGconn * conn, ConnectRaw(database.dsn(), secrets_,
                                             absl::StrCat("scratch database ", database.name())));
  std::unique_ptr<PGconn, void (*)(PGconn*)> owner(conn, PQfinish);
  for (const engine::SqlStatement& statement : statements) {
    PGresult* result = PQexec(conn, statement.text.c_str());
    const ExecStatusType status = PQresultStatus(result);
    if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK || status == PGRES_EMPTY_QUERY) {
      PQclear(result);
      continue;
    }
    const char* primary = PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY);
    const char* position = PQresultErrorField(result, PG_DIAG_STATEMENT_POSITION);
    std::string message = primary != nullptr ? primary : OneLine(PQerrorMessage(conn));
    int line = statement.line;
    int offset = 0;
    if (position != nullptr && absl::SimpleAtoi(position, &offset) && offset > 0) {
      // PostgreSQL counts characters from 1; count the lines before it.
      int characters = 0;
      for (char c : statement.text) {
        if ((static_cast<unsigned char>(c) & 0xC0) != 0x80 && ++characters >= offset) break;
        if (c == '\n') ++line;
      }
    }
    PQclear(result);
    std::string text = absl::StrCat(source, ":", line, ": ", ScrubAll(message, secrets_));
    if (ConnectionLost(conn)) return absl::UnavailableError(std::move(text));
    return absl::FailedPreconditionError(std::move(text));
  }
  return absl::OkStatus();
}

}  // namespace schemad::store
