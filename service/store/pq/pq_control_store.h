// PostgreSQL implementation of the control-database seam (control_store.h),
// on libpqxx 6.4.
//
//   PqControlOptions options;
//   options.application_name = "schemad control replica-a";
//   ASSIGN_OR_RETURN(std::unique_ptr<ControlStore> store, OpenPqControlStore(dsn, options));
//
// Thread-safety: as control_store.h says.
#ifndef SCHEMAD_SERVICE_STORE_PQ_PQ_CONTROL_STORE_H_
#define SCHEMAD_SERVICE_STORE_PQ_PQ_CONTROL_STORE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "service/store/control_store.h"

namespace schemad::store {

struct PqControlOptions {
  std::string application_name = "schemad control";  // shown in pg_stat_activity
  absl::Duration connect_timeout = absl::Seconds(10);
  // Idle connections kept for the next calls (more are opened while needed).
  int max_idle_connections = 4;
};

// Validates the DSN (service/common/dsn.h); does not connect.
// INVALID_ARGUMENT naming what is wrong, never echoing a password.
absl::StatusOr<std::unique_ptr<ControlStore>> OpenPqControlStore(const std::string& dsn,
                                                                 const PqControlOptions& options);

}  // namespace schemad::store

#endif  // SCHEMAD_SERVICE_STORE_PQ_PQ_CONTROL_STORE_H_
