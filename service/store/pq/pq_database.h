// PostgreSQL implementation of the store seam (store.h), on libpqxx 6.4.
// This directory is the only code in schemad that includes libpqxx.
//
//   PqOptions options;
//   options.tables.version_table = "alembic_version";
//   ASSIGN_OR_RETURN(std::unique_ptr<store::Database> db, OpenPqDatabase(dsn, options));
//   ASSIGN_OR_RETURN(std::unique_ptr<store::Session> session, db->Connect());
//
// Thread-safety: as store.h says (Database thread-safe; a Session per thread).
#ifndef SCHEMAD_SERVICE_STORE_PQ_PQ_DATABASE_H_
#define SCHEMAD_SERVICE_STORE_PQ_PQ_DATABASE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "service/store/store.h"

namespace schemad::store {

struct PqOptions {
  TableNames tables;
  std::string application_name = "schemad";  // shown in pg_stat_activity
  absl::Duration connect_timeout = absl::Seconds(10);
  // Lock polling: first retry after `lock_poll_initial`, doubling up to
  // `lock_poll_max`, with jitter.
  absl::Duration lock_poll_initial = absl::Milliseconds(20);
  absl::Duration lock_poll_max = absl::Milliseconds(500);
};

// Validates the DSN (URI `postgresql://...` or `key=value` form, parsed by
// service/common/dsn.h) and the table names; does not connect.
// INVALID_ARGUMENT naming what is wrong (never echoing a password).
absl::StatusOr<std::unique_ptr<Database>> OpenPqDatabase(const std::string& dsn,
                                                         const PqOptions& options);

}  // namespace schemad::store

#endif  // SCHEMAD_SERVICE_STORE_PQ_PQ_DATABASE_H_
