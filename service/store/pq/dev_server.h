// The dev server: a PostgreSQL server where schemad may create and drop its
// own scratch databases, to compute "the schema of this SQL" and "the schema
// at revision R" (service/schema_build/schema_builder.h). It touches nothing
// but the databases it creates.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<DevServer> dev, DevServer::Open("local"));
//   ASSIGN_OR_RETURN(std::unique_ptr<ScratchDatabase> db, dev->CreateScratchDatabase());
//   RETURN_IF_ERROR(dev->ApplySql(*db, statements, "schema.sql"));
//   // ... OpenPqDatabase(db->dsn(), ...) and inspect ...
//   // db and dev drop and stop what they made when destroyed.
//
// Two kinds:
//  - "local": a throwaway cluster from the local PostgreSQL installation
//    (initdb + pg_ctl from $SCHEMAD_PG_BIN, else /usr/lib/postgresql/15/bin),
//    in a fresh directory under $TMPDIR (else /tmp), listening on a Unix
//    socket in that directory only (no TCP), trust authentication for its
//    own socket. As root it runs as the `postgres` user (initdb and postgres
//    refuse root). Close() (or the destructor) stops it and removes the
//    directory.
//  - a DSN: an existing server and a role allowed to create databases
//    (CREATEDB or superuser); Open checks that. Scratch databases are
//    created from template0 as `schemad_scratch_<pid>_<n>_<random>` and
//    dropped WITH (FORCE).
//
// Messages name the dev server by its redacted DSN and never contain a
// password. Thread-safety: a DevServer and its ScratchDatabases are used from
// one thread at a time.
#ifndef SCHEMAD_SERVICE_STORE_PQ_DEV_SERVER_H_
#define SCHEMAD_SERVICE_STORE_PQ_DEV_SERVER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "service/engine/revision.h"

namespace schemad::store {

class DevServer;

// A database created by DevServer::CreateScratchDatabase; dropped by Drop()
// or, at the latest, by the destructor (errors then ignored). Must not
// outlive its DevServer.
class ScratchDatabase {
 public:
  ~ScratchDatabase();
  ScratchDatabase(const ScratchDatabase&) = delete;
  ScratchDatabase& operator=(const ScratchDatabase&) = delete;

  const std::string& name() const { return name_; }
  // A conninfo for the database, password included: pass it to
  // OpenPqDatabase; never show it.
  const std::string& dsn() const { return dsn_; }
  // Drops the database (WITH (FORCE): sessions still connected end). Once.
  absl::Status Drop();

 private:
  friend class DevServer;
  ScratchDatabase(DevServer* server, std::string name, std::string dsn)
      : server_(server), name_(std::move(name)), dsn_(std::move(dsn)) {}

  DevServer* server_;
  std::string name_;
  std::string dsn_;
  bool dropped_ = false;
};

class DevServer {
 public:
  // "local" starts a throwaway cluster; anything else is a DSN of a server
  // where the role may create databases. INVALID_ARGUMENT for a DSN that does
  // not parse; FAILED_PRECONDITION when the local installation is missing,
  // the cluster does not start (with the tail of its log), or the role may
  // not create databases; UNAVAILABLE when the server cannot be reached.
  static absl::StatusOr<std::unique_ptr<DevServer>> Open(const std::string& dev_dsn);

  ~DevServer();
  DevServer(const DevServer&) = delete;
  DevServer& operator=(const DevServer&) = delete;

  // A new empty database (from template0, UTF8).
  absl::StatusOr<std::unique_ptr<ScratchDatabase>> CreateScratchDatabase();

  // Runs `statements` in order on `database`, each on its own (autocommit),
  // in one session. The first failing statement stops it:
  // FAILED_PRECONDITION "SOURCE:LINE: <PostgreSQL's message>", LINE being
  // the statement's line (plus the line of the error inside it when
  // PostgreSQL reports a position).
  absl::Status ApplySql(const ScratchDatabase& database,
                        const std::vector<engine::SqlStatement>& statements,
                        const std::string& source);

  // server_version_num of the dev server (e.g. 150018).
  int server_version() const { return server_version_; }
  // "local PostgreSQL 15.18 cluster" or the redacted DSN.
  const std::string& display_name() const { return display_name_; }

  // Drops the scratch databases still alive, then stops and removes a local
  // cluster. Idempotent; the destructor calls it.
  void Close();

 private:
  friend class ScratchDatabase;
  DevServer() = default;
  absl::Status Connect();
  absl::Status DropDatabase(const std::string& name);
  std::string ConninfoFor(const std::string& database) const;

  struct Admin;  // the admin connection (libpq), in dev_server.cc
  std::unique_ptr<Admin> admin_;
  std::string base_conninfo_;  // without dbname; holds the password
  std::vector<std::string> secrets_;
  std::string display_name_;
  int server_version_ = 0;
  int created_ = 0;
  std::vector<std::string> alive_;  // scratch databases not dropped yet
  // A local cluster: its directory and binaries; empty for a DSN server.
  std::string local_dir_;
  std::string pg_bin_;
  bool closed_ = false;
};

}  // namespace schemad::store

#endif  // SCHEMAD_SERVICE_STORE_PQ_DEV_SERVER_H_
