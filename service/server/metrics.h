// ServerMetrics: schemad's Prometheus metrics (Debian's prometheus-cpp) and
// the HTTP endpoint that serves them at /metrics (`metrics:` in the config).
//
//   ASSIGN_OR_RETURN(std::unique_ptr<ServerMetrics> metrics,
//                    ServerMetrics::Start("0.0.0.0:9464", registry, log));
//   op_options.observe_each.push_back(metrics->OperationObserverFactory());
//   builder.experimental().SetInterceptorCreators(...metrics->RpcInterceptorFactory()...);
//   metrics->StartRefreshing(absl::Seconds(30));   // the per-database gauges
//   ...
//   metrics->Stop();   // before the registry's pools close
//
// What is exported (docs/service.md, "Metrics", is the reference):
//   schemad_database_pending_revisions{database,migration_set}   gauge
//   schemad_database_needs_attention{database}                   gauge 0/1
//   schemad_database_reachable{database}                         gauge 0/1
//   schemad_database_refreshed_timestamp_seconds{database}       gauge
//   schemad_operations_total{kind,outcome}                       counter
//   schemad_operations_running{kind}                             gauge
//   schemad_operation_duration_seconds{kind}                     histogram
//   schemad_lock_wait_seconds                                    histogram
//   schemad_rpc_duration_seconds{method,code}                    histogram
//   schemad_sessions{database,state}                             gauge (idle, in_use)
//   schemad_config_reload_total{outcome}                         counter (success, failure)
//   schemad_fleet_sites{state}                                   gauge (sites of running fleet
//   runs) schemad_fleet_sites_done_total{outcome}                      counter
// Label values are bounded: databases and migration sets come from the
// config, kinds and codes from enums, methods from the services schemad
// serves (any other method is "other").
//
// Thread-safety: thread-safe.
#ifndef SCHEMAD_SERVICE_SERVER_METRICS_H_
#define SCHEMAD_SERVICE_SERVER_METRICS_H_

#include <grpcpp/support/server_interceptor.h>

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "schemad/v1/schemad.pb.h"
#include "service/server/operations.h"
#include "service/server/registry.h"
#include "spdlog/logger.h"

namespace schemad::server {

// What the refresher learnt of one database.
struct DatabaseGauges {
  bool reachable = false;
  int pending = 0;
  bool needs_attention = false;
};

// "success", "failed" or "cancelled": the outcome label of an operation that
// ended with `status`.
std::string OperationOutcomeLabel(const absl::Status& status);

class ServerMetrics {
 public:
  // Binds `listen` (host:port; port 0 picks one) and serves /metrics.
  // UNAVAILABLE naming the address when it cannot be bound. `registry`
  // gives the registry served now (it changes on reload); each refresh and
  // scrape reads it once.
  static absl::StatusOr<std::unique_ptr<ServerMetrics>> Start(
      const std::string& listen, std::function<std::shared_ptr<const Registry>()> registry,
      std::shared_ptr<spdlog::logger> log);
  ~ServerMetrics();  // Stop()
  ServerMetrics(const ServerMetrics&) = delete;
  ServerMetrics& operator=(const ServerMetrics&) = delete;

  // The HTTP port actually bound.
  int port() const;

  void RecordRpc(absl::string_view method, int grpc_code, absl::Duration elapsed);
  void RecordOperation(v1::OperationKind kind, absl::string_view outcome, absl::Duration elapsed);
  void RecordLockWait(absl::Duration waited);
  void SetDatabase(const DatabaseEntry& db, const DatabaseGauges& gauges);
  // schemad_database_drift{database}: the differences the last drift check
  // of `database` found.
  void SetDrift(const std::string& database, int differences);
  // A reload from `before` to `after` succeeded: the gauges of databases no
  // longer configured go, those of added databases appear.
  void OnReload(const Registry& before, const Registry& after);
  // Counts a reload attempt in schemad_config_reload_total{outcome}.
  void RecordConfigReload(bool success);
  // A site of a running fleet run moved from state `from` ("" when it was
  // not counted yet) to `to` ("" when its run ended): schemad_fleet_sites
  // follows; a `to` that is an outcome counts in
  // schemad_fleet_sites_done_total. The operation observers call it.
  void RecordFleetSite(absl::string_view from, absl::string_view to);

  // For OperationRegistryOptions::observe_each: an observer per operation
  // that counts it running, then records its outcome, duration (accepted to
  // done, queueing included) and the wait for the migration lock.
  std::function<std::shared_ptr<OperationObserver>(const Operation&)> OperationObserverFactory();

  // For ServerBuilder::experimental().SetInterceptorCreators: records every
  // call's duration and status code.
  std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> RpcInterceptorFactory();

  // Refreshes the per-database gauges now and then every `interval`: one
  // read (Executor::Status) per database on a pooled session, at most
  // `parallelism` databases at once. A database that cannot be read is
  // unreachable; its other gauges keep their last values.
  void StartRefreshing(absl::Duration interval, int parallelism);
  // Refreshes every database once, now; blocks until done (tests, and the
  // refresher's own loop).
  void RefreshAll();
  // Stops the refresher and the HTTP endpoint. Idempotent.
  void Stop();

 private:
  class Impl;
  explicit ServerMetrics(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace schemad::server

#endif  // SCHEMAD_SERVICE_SERVER_METRICS_H_
