// SchemadServer: everything `schemad` runs, wired from a LoadedConfig — the
// registry of migration sets and databases, the operation registry, the rpc
// workers, authentication, TLS, health checking and reflection — plus the
// graceful shutdown sequence. service/main.cc and the in-process tests use it.
//
//   ASSIGN_OR_RETURN(LoadedConfig config, LoadConfigFile(path));
//   ASSIGN_OR_RETURN(std::unique_ptr<SchemadServer> server,
//                    SchemadServer::Start(std::move(config), ServerOptions{}));
//   std::cout << "schemad listening on " << server->address() << "\n";
//   ...
//   server->Shutdown();   // on SIGTERM
//
// With control_database in the configuration, Start also migrates the
// control schema (MigrateControlSchema) and starts the ControlPlane before
// it serves; a control database that cannot be reached stops the start
// (UNAVAILABLE).
//
// Migration sets with `watch: true` are reloaded (Reload, as on SIGHUP) when
// their directory changes: one DirectoryWatcher thread for all of them,
// watching what the configuration served now says (it follows reloads).
// Only with options.config_path (what Reload reads) and not check_only.
//
// Health (grpc.health.v1): service "" (overall), "schemad.v1.Schemad" and
// "schemad.v1.Schemad/<migration set>" are SERVING once started (every
// migration set loaded, or the start fails); all turn NOT_SERVING when
// Shutdown begins.
//
// Thread-safety: thread-safe; Shutdown may be called from any thread, once or
// more (later calls wait for the first).
#ifndef SCHEMAD_SERVICE_SERVER_SERVER_H_
#define SCHEMAD_SERVICE_SERVER_SERVER_H_

#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "service/server/auth.h"
#include "service/server/config.h"
#include "service/server/control_plane.h"
#include "service/server/directory_watcher.h"
#include "service/server/log_format.h"
#include "service/server/metrics.h"
#include "service/server/operations.h"
#include "service/server/pool_warmer.h"
#include "service/server/registry.h"
#include "service/server/service.h"
#include "service/server/serving_state.h"
#include "service/server/thread_pool.h"
#include "spdlog/common.h"
#include "spdlog/logger.h"

namespace schemad::server {

struct ServerOptions {
  // Replaces the config's `listen` (schemad --listen).
  std::string listen_override;
  // The file Reload reads again; empty: Reload is FAILED_PRECONDITION.
  std::string config_path;
  // Gets sd_notify(3) messages ("RELOADING=1\nMONOTONIC_USEC=...", then
  // "READY=1...") around each reload; unset: none.
  std::function<void(const std::string&)> notify;
  // Where log lines go; empty: nowhere (tests).
  std::vector<spdlog::sink_ptr> log_sinks;
  spdlog::level::level_enum log_level = spdlog::level::info;
  // schemad --check-config: the configuration is checked as at start, but
  // the control database is neither connected to nor migrated.
  bool check_only = false;
};

// "schemad.v1.Schemad/<set>", the health service name of a migration set.
std::string HealthServiceName(const std::string& migration_set);

// The health service name of readiness: SERVING while this replica can take
// operations (it is not stopping and, with a control database, that
// database answers its lease renewals); "" and "schemad.v1.Schemad" stay
// SERVING meanwhile (liveness: EnsureHead at head needs no control
// database). The SDK's kReadinessHealthService is the same name.
inline constexpr char kReadinessServiceName[] = "schemad.ready";

class SchemadServer {
 public:
  // Loads the migration sets, opens the databases (without connecting),
  // reads the tokens file, binds the listener and starts serving; pools are
  // warmed in the background. Errors name the config key (or the address
  // that could not be bound: UNAVAILABLE).
  static absl::StatusOr<std::unique_ptr<SchemadServer>> Start(LoadedConfig config,
                                                              ServerOptions options);
  ~SchemadServer();  // Shutdown(ZeroDuration()) when not done yet

  // "host:port" actually bound (the port resolved when `listen` asked for 0).
  const std::string& address() const { return address_; }
  int port() const { return port_; }
  // The HTTP port serving /metrics; 0 without `metrics` in the config.
  int metrics_port() const { return metrics_ == nullptr ? 0 : metrics_->port(); }
  // The metrics, when configured (tests refresh them on demand).
  ServerMetrics* metrics() const { return metrics_.get(); }

  // Graceful shutdown: health NOT_SERVING; new operations refused; running
  // operations finish their current revision within `grace` (the config's
  // shutdown_grace by default) and are cancelled after it (the running
  // statement is cancelled, its transaction rolled back); then the gRPC
  // server stops (in-flight calls get a few seconds) and the connections
  // close, which releases any session-level lock. Blocks until done.
  void Shutdown();
  void Shutdown(absl::Duration grace);
  // Live reload (SIGHUP, the Reload RPC): reads options.config_path again,
  // with every migration set's directory, the tokens file and every
  // dsn_file; validates all of it as Start does and checks that nothing only
  // a restart changes differs (CheckReloadable). On success the new registry
  // and tokens serve every call that starts from now on, while calls and
  // operations already running finish on the snapshot they started with;
  // databases configured alike keep their pools. On error the running
  // configuration stays and the error names the file and key. Either way
  // logged and counted in schemad_config_reload_total. Reloads run one at a
  // time; FAILED_PRECONDITION once Shutdown has begun. Afterwards the
  // directories watched are those of the sets with `watch: true` in the
  // configuration served.
  absl::StatusOr<v1::ReloadResponse> Reload();

  // Cancels every running operation now (a second SIGTERM).
  void CancelAllOperations();
  // Blocks until Shutdown has completed.
  void Wait();
  // True when every operation had finished before the server stopped.
  bool clean_shutdown() const;

  grpc::HealthCheckServiceInterface* health() const;
  OperationRegistry& operations() const { return *operations_; }
  // The registry served now (a reload replaces it).
  std::shared_ptr<const Registry> registry() const { return state_->registry(); }

 private:
  SchemadServer() = default;

  absl::StatusOr<v1::ReloadResponse> ReloadLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(reload_mu_);
  // Starts a warmer over the pools of `registry` (Start, and each reload).
  void StartPoolWarmer(const Registry& registry);
  // Watches exactly `directories` (none: nothing). The first time there
  // are some, makes watcher_, not started yet (StartWatcher), unless this
  // server cannot reload (no config_path, or check_only): then nothing is
  // watched. RESOURCE_EXHAUSTED / INTERNAL when no inotify instance can be
  // made.
  absl::Status UpdateWatches(const std::vector<std::string>& directories)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(reload_mu_);
  // Starts watcher_'s thread, whose callback calls Reload.
  void StartWatcher() ABSL_EXCLUSIVE_LOCKS_REQUIRED(reload_mu_);

  ServerOptions options_;
  std::string listen_;  // what Start bound (the override or the config's)
  std::shared_ptr<spdlog::logger> log_;
  absl::Mutex reload_mu_;                            // one reload at a time; Shutdown waits for it
  LoadedConfig config_ ABSL_GUARDED_BY(reload_mu_);  // the file as served now
  std::unique_ptr<ServingState> state_;              // registry and tokens
  std::unique_ptr<ServerMetrics> metrics_;  // reads state_; outlives server_ and operations_
  std::unique_ptr<DriftChecker> drift_;     // outlives server_ and operations_
  std::unique_ptr<ThreadPool> rpc_workers_;
  std::unique_ptr<ThreadPool> reload_worker_;  // Reload calls, one at a time
  std::unique_ptr<PoolWarmer> pool_warmer_
      ABSL_GUARDED_BY(reload_mu_);  // replaced by reloads; stopped before rpc_workers_
  std::unique_ptr<IdleSessionReaper> idle_reaper_;  // null: idle_session_timeout 0
  // Null until a configuration has a set with `watch: true`; stopped first
  // by Shutdown (its thread calls Reload).
  std::unique_ptr<DirectoryWatcher> watcher_ ABSL_GUARDED_BY(reload_mu_);
  // Null without control_database; its observers are the operations': it
  // outlives operations_.
  std::unique_ptr<ControlPlane> control_;
  std::unique_ptr<OperationRegistry> operations_;
  std::unique_ptr<SchemadService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
  int port_ = 0;

  absl::Mutex shutdown_mu_;
  bool shutdown_started_ ABSL_GUARDED_BY(shutdown_mu_) = false;
  bool clean_ = true;
  absl::Duration shutdown_grace_;
  absl::Notification shutdown_done_;
};

}  // namespace schemad::server

#endif  // SCHEMAD_SERVICE_SERVER_SERVER_H_
