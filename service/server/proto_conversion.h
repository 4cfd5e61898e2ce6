// Engine values -> wire messages. The handlers only translate; this file is
// the translation. Every message these functions fill has valid UTF-8 in all
// its strings (MakeWireSafe, wire_safety.h: rows and errors come from
// databases, paths from the file system), and free text from outside
// (database errors, history rows) is cut to kMaxErrorTextBytes.
//
//   v1::OperationEvent event;
//   ToProto(engine_event, &event);
//
// Thread-safety: stateless.
#ifndef SCHEMAD_SERVICE_SERVER_PROTO_CONVERSION_H_
#define SCHEMAD_SERVICE_SERVER_PROTO_CONVERSION_H_

#include "schemad/v1/schemad.pb.h"
#include "service/engine/events.h"
#include "service/engine/executor.h"
#include "service/engine/lint.h"
#include "service/engine/planner.h"
#include "service/engine/revision_graph.h"
#include "service/store/store.h"

namespace schemad::server {

v1::Direction ToProto(engine::Direction direction);
void ToProto(const engine::PlannedStep& step, const engine::RevisionGraph& graph,
             v1::PlannedStep* out);
// An executor event as a wire event; false for events that have no wire form
// (kOperationFinished: the operation sends its own `finished`).
bool ToProto(const engine::Event& event, const engine::RevisionGraph& graph,
             v1::OperationEvent* out);
void ToProto(const engine::Plan& plan, const engine::RevisionGraph& graph, v1::PlanResponse* out);
void ToProto(const engine::DatabaseStatus& status, v1::DatabaseStatus* out);
void ToProto(const store::HistoryRecord& record, v1::HistoryEntry* out);
void ToProto(const engine::ValidationReport& report, v1::ValidateResponse* out);
void ToProto(const engine::RepairResult& result, v1::RepairResponse* out);
void ToProto(const engine::RevisionGraph& graph, v1::MigrationSet* out);
void ToProto(const engine::LintFinding& finding, v1::LintFinding* out);
// Appends to `out` the findings (of the plan's migration set, base first) of
// the revisions whose upgrade `plan` runs, in the plan's order.
void AddPlanLintFindings(const engine::Plan& plan, const engine::RevisionGraph& graph,
                         const std::vector<engine::LintFinding>& findings,
                         google::protobuf::RepeatedPtrField<v1::LintFinding>* out);
void ToProto(const engine::OperationResult& result, const engine::RevisionGraph& graph,
             v1::OperationResult* out);

}  // namespace schemad::server

#endif  // SCHEMAD_SERVICE_SERVER_PROTO_CONVERSION_H_
