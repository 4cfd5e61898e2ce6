// The `schemad.v1.Schemad` service on gRPC's callback API. Handlers only
// translate proto <-> engine and check roles; blocking work (every libpqxx
// call) runs on the rpc worker pool or, for migrations, as an operation on
// the operation workers — never on gRPC's reactor threads. Unary calls finish
// their DefaultReactor from those threads; streaming calls are
// ServerWriteReactors with one write in flight, fed by the operation.
//
//   SchemadService service(deps);
//   builder.RegisterService(&service);
//
// Thread-safety: the service is shared by every call; its dependencies are
// thread-safe.
#ifndef SCHEMAD_SERVICE_SERVER_SERVICE_H_
#define SCHEMAD_SERVICE_SERVER_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>

#include "schemad/v1/schemad.grpc.pb.h"
#include "service/server/auth.h"
#include "service/server/control_plane.h"
#include "service/server/drift_checker.h"
#include "service/server/log_format.h"
#include "service/server/operations.h"
#include "service/server/registry.h"
#include "service/server/serving_state.h"
#include "service/server/thread_pool.h"
#include "spdlog/logger.h"

namespace schemad::server {

struct ServiceDeps {
  // The registry and authenticator; each call reads them once, from the
  // snapshot current when it started.
  const ServingState* state = nullptr;
  OperationRegistry* operations = nullptr;
  ThreadPool* rpc_workers = nullptr;
  // Runs Reload calls (a reload waits for the pool warmer's attempts, which
  // run on rpc_workers, so it must not occupy one). Null: rpc_workers.
  ThreadPool* reload_worker = nullptr;
  // Drift checks; never null (an unconfigured checker refuses clearly).
  DriftChecker* drift = nullptr;
  // The control database; null without one (operations in memory only).
  ControlPlane* control = nullptr;
  std::shared_ptr<spdlog::logger> log;
};

class SchemadService final : public v1::Schemad::CallbackService {
 public:
  explicit SchemadService(ServiceDeps deps);

  // v1::Schemad::CallbackService:
  grpc::ServerUnaryReactor* EnsureHead(grpc::CallbackServerContext* context,
                                       const v1::EnsureHeadRequest* request,
                                       v1::EnsureHeadResponse* response) override;
  grpc::ServerWriteReactor<v1::OperationEvent>* Upgrade(grpc::CallbackServerContext* context,
                                                        const v1::UpgradeRequest* request) override;
  grpc::ServerWriteReactor<v1::OperationEvent>* Downgrade(
      grpc::CallbackServerContext* context, const v1::DowngradeRequest* request) override;
  grpc::ServerWriteReactor<v1::OperationEvent>* Merge(grpc::CallbackServerContext* context,
                                                      const v1::MergeRequest* request) override;
  grpc::ServerUnaryReactor* Stamp(grpc::CallbackServerContext* context,
                                  const v1::StampRequest* request,
                                  v1::OperationResult* response) override;
  grpc::ServerUnaryReactor* Resolve(grpc::CallbackServerContext* context,
                                    const v1::ResolveRequest* request,
                                    v1::OperationResult* response) override;
  grpc::ServerUnaryReactor* Plan(grpc::CallbackServerContext* context,
                                 const v1::PlanRequest* request,
                                 v1::PlanResponse* response) override;
  grpc::ServerUnaryReactor* GetStatus(grpc::CallbackServerContext* context,
                                      const v1::GetStatusRequest* request,
                                      v1::DatabaseStatus* response) override;
  grpc::ServerUnaryReactor* History(grpc::CallbackServerContext* context,
                                    const v1::HistoryRequest* request,
                                    v1::HistoryResponse* response) override;
  grpc::ServerUnaryReactor* DescribeMigrationSet(grpc::CallbackServerContext* context,
                                                 const v1::DescribeMigrationSetRequest* request,
                                                 v1::MigrationSet* response) override;
  grpc::ServerUnaryReactor* ListDatabases(grpc::CallbackServerContext* context,
                                          const v1::ListDatabasesRequest* request,
                                          v1::ListDatabasesResponse* response) override;
  grpc::ServerUnaryReactor* Validate(grpc::CallbackServerContext* context,
                                     const v1::ValidateRequest* request,
                                     v1::ValidateResponse* response) override;
  grpc::ServerUnaryReactor* Repair(grpc::CallbackServerContext* context,
                                   const v1::RepairRequest* request,
                                   v1::RepairResponse* response) override;
  grpc::ServerUnaryReactor* Drift(grpc::CallbackServerContext* context,
                                  const v1::DriftRequest* request,
                                  v1::DriftResponse* response) override;
  grpc::ServerWriteReactor<v1::OperationEvent>* WatchOperation(
      grpc::CallbackServerContext* context, const v1::WatchOperationRequest* request) override;
  grpc::ServerUnaryReactor* ListOperations(grpc::CallbackServerContext* context,
                                           const v1::ListOperationsRequest* request,
                                           v1::ListOperationsResponse* response) override;
  grpc::ServerUnaryReactor* CancelOperation(grpc::CallbackServerContext* context,
                                            const v1::CancelOperationRequest* request,
                                            v1::OperationInfo* response) override;
  grpc::ServerWriteReactor<v1::OperationEvent>* FleetRun(
      grpc::CallbackServerContext* context, const v1::FleetRunRequest* request) override;
  grpc::ServerUnaryReactor* Reload(grpc::CallbackServerContext* context,
                                   const v1::ReloadRequest* request,
                                   v1::ReloadResponse* response) override;

  // What Reload calls (SchemadServer::Reload); unset: Reload is UNIMPLEMENTED.
  void SetReloader(std::function<absl::StatusOr<v1::ReloadResponse>()> reloader) {
    reloader_ = std::move(reloader);
  }

 private:
  ServiceDeps deps_;
  std::function<absl::StatusOr<v1::ReloadResponse>()> reloader_;
};

}  // namespace schemad::server

#endif  // SCHEMAD_SERVICE_SERVER_SERVICE_H_
