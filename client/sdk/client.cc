#include "schemad/client.h"

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "client/sdk/tls_diagnosis.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "schemad/v1/schemad.grpc.pb.h"

namespace schemad {
namespace {

namespace v1 = ::schemad::v1;

// The largest response the SDK accepts (gRPC's default is 4 MiB).
constexpr int kMaxResponseBytes = 64 << 20;
// The shortest time one connection attempt is given (see Client::Connect).
constexpr absl::Duration kMinConnectTimeout = absl::Seconds(2);

// ------------------------------------------------------------- conversions

absl::Status FromGrpc(const grpc::Status& status) {
  if (status.ok()) {
    return absl::OkStatus();
  }
  // gRPC's and abseil's canonical codes are the same numbers.
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

absl::Status FromProto(const v1::Error& error) {
  return absl::Status(static_cast<absl::StatusCode>(error.code()), error.message());
}

absl::Duration FromProto(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

absl::Time FromProto(const google::protobuf::Timestamp& t) {
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}

void ToProto(absl::Duration d, google::protobuf::Duration* out) {
  const int64_t seconds = absl::IDivDuration(d, absl::Seconds(1), &d);
  out->set_seconds(seconds);
  out->set_nanos(static_cast<int32_t>(absl::ToInt64Nanoseconds(d)));
}

std::vector<std::string> Strings(const google::protobuf::RepeatedPtrField<std::string>& from) {
  return std::vector<std::string>(from.begin(), from.end());
}

Direction FromProto(v1::Direction d) {
  return d == v1::DIRECTION_DOWN ? Direction::kDown : Direction::kUp;
}

OperationKind FromProto(v1::OperationKind kind) {
  switch (kind) {
    case v1::OPERATION_KIND_ENSURE_HEAD:
      return OperationKind::kEnsureHead;
    case v1::OPERATION_KIND_UPGRADE:
      return OperationKind::kUpgrade;
    case v1::OPERATION_KIND_DOWNGRADE:
      return OperationKind::kDowngrade;
    case v1::OPERATION_KIND_MERGE:
      return OperationKind::kMerge;
    case v1::OPERATION_KIND_STAMP:
      return OperationKind::kStamp;
    case v1::OPERATION_KIND_RESOLVE:
      return OperationKind::kResolve;
    case v1::OPERATION_KIND_FLEET:
      return OperationKind::kFleet;
    default:
      return OperationKind::kUnspecified;
  }
}

OperationState FromProto(v1::OperationState state) {
  switch (state) {
    case v1::OPERATION_STATE_QUEUED:
      return OperationState::kQueued;
    case v1::OPERATION_STATE_RUNNING:
      return OperationState::kRunning;
    case v1::OPERATION_STATE_SUCCEEDED:
      return OperationState::kSucceeded;
    case v1::OPERATION_STATE_FAILED:
      return OperationState::kFailed;
    case v1::OPERATION_STATE_CANCELLED:
      return OperationState::kCancelled;
    case v1::OPERATION_STATE_ABANDONED:
      return OperationState::kAbandoned;
    default:
      return OperationState::kUnspecified;
  }
}

v1::TransactionMode ToProto(TransactionMode mode) {
  switch (mode) {
    case TransactionMode::kPerCommand:
      return v1::TRANSACTION_MODE_PER_COMMAND;
    case TransactionMode::kPerRevision:
      return v1::TRANSACTION_MODE_PER_REVISION;
    case TransactionMode::kDefault:
      break;
  }
  return v1::TRANSACTION_MODE_UNSPECIFIED;
}

LintFinding FromProto(const v1::LintFinding& p) {
  LintFinding f;
  f.rule = p.rule();
  f.severity = p.severity();
  f.revision = p.revision();
  f.file = p.file();
  f.line = p.line();
  f.statement = p.statement();
  f.message = p.message();
  return f;
}

PlannedStep FromProto(const v1::PlannedStep& p) {
  PlannedStep step;
  step.revision = p.revision();
  step.direction = FromProto(p.direction());
  step.path = p.path();
  step.statement_count = p.statement_count();
  step.transactional = p.transactional();
  step.message = p.message();
  return step;
}

OperationEvent FromProto(const v1::OperationEvent& p);

FleetSiteResult FromProto(const v1::FleetSiteResult& p) {
  FleetSiteResult r;
  r.site = p.site();
  switch (p.outcome()) {
    case v1::FleetSiteResult::OUTCOME_SUCCEEDED:
      r.outcome = FleetSiteResult::Outcome::kSucceeded;
      break;
    case v1::FleetSiteResult::OUTCOME_FAILED:
      r.outcome = FleetSiteResult::Outcome::kFailed;
      break;
    case v1::FleetSiteResult::OUTCOME_CANCELLED:
      r.outcome = FleetSiteResult::Outcome::kCancelled;
      break;
    default:
      r.outcome = FleetSiteResult::Outcome::kSkipped;
      break;
  }
  r.rows_before = Strings(p.rows_before());
  r.rows_after = Strings(p.rows_after());
  r.rows_after_read = p.rows_after_read();
  r.revisions_run = p.revisions_run();
  r.duration = FromProto(p.duration());
  if (p.has_error()) {
    r.status = FromProto(p.error());
  }
  r.operation_id = p.operation_id();
  return r;
}

FleetEvent FromProto(const v1::FleetEvent& p) {
  FleetEvent e;
  switch (p.kind()) {
    case v1::FleetEvent::KIND_STAGE_STARTED:
      e.kind = FleetEvent::Kind::kStageStarted;
      break;
    case v1::FleetEvent::KIND_SITE_QUEUED:
      e.kind = FleetEvent::Kind::kSiteQueued;
      break;
    case v1::FleetEvent::KIND_SITE_STARTED:
      e.kind = FleetEvent::Kind::kSiteStarted;
      break;
    case v1::FleetEvent::KIND_SITE_EVENT:
      e.kind = FleetEvent::Kind::kSiteEvent;
      break;
    case v1::FleetEvent::KIND_SITE_FINISHED:
      e.kind = FleetEvent::Kind::kSiteFinished;
      break;
    case v1::FleetEvent::KIND_SITE_FAILED:
      e.kind = FleetEvent::Kind::kSiteFailed;
      break;
    case v1::FleetEvent::KIND_SITE_SKIPPED:
      e.kind = FleetEvent::Kind::kSiteSkipped;
      break;
    case v1::FleetEvent::KIND_SUMMARY:
      e.kind = FleetEvent::Kind::kSummary;
      break;
    default:
      e.kind = FleetEvent::Kind::kUnknown;
      break;
  }
  e.site = p.site();
  e.stage = p.stage();
  e.stage_sites = Strings(p.stage_sites());
  if (p.has_event()) {
    e.event = std::make_shared<const OperationEvent>(FromProto(p.event()));
  }
  if (p.has_result()) {
    e.result = FromProto(p.result());
  }
  if (p.has_summary()) {
    const v1::FleetSummary& s = p.summary();
    for (const v1::FleetSiteResult& r : s.sites()) {
      e.summary.sites.push_back(FromProto(r));
    }
    e.summary.succeeded = s.succeeded();
    e.summary.failed = s.failed();
    e.summary.skipped = s.skipped();
    e.summary.cancelled = s.cancelled();
    e.summary.duration = FromProto(s.duration());
  }
  return e;
}

OperationEvent FromProto(const v1::OperationEvent& p) {
  OperationEvent e;
  e.operation_id = p.operation_id();
  e.database = p.database();
  e.time = FromProto(p.time());
  e.sequence = p.sequence();
  e.events_dropped_before = p.events_dropped_before();
  switch (p.event_case()) {
    case v1::OperationEvent::kAccepted:
      e.kind = OperationEvent::Kind::kAccepted;
      e.operation_kind = FromProto(p.accepted().kind());
      e.target = p.accepted().target();
      e.who = p.accepted().who();
      for (const v1::LintFinding& finding : p.accepted().lint_errors()) {
        e.lint_errors.push_back(FromProto(finding));
      }
      break;
    case v1::OperationEvent::kStarted:
      e.kind = OperationEvent::Kind::kOperationStarted;
      e.target = p.started().target();
      for (const v1::PlannedStep& step : p.started().plan()) {
        e.plan.push_back(FromProto(step));
      }
      e.rows_before = Strings(p.started().rows_before());
      break;
    case v1::OperationEvent::kWaitingForLock:
      e.kind = OperationEvent::Kind::kWaitingForLock;
      e.lock_holder = p.waiting_for_lock().lock_holder();
      e.waited = FromProto(p.waiting_for_lock().waited());
      break;
    case v1::OperationEvent::kLockAcquired:
      e.kind = OperationEvent::Kind::kLockAcquired;
      e.waited = FromProto(p.lock_acquired().waited());
      break;
    case v1::OperationEvent::kRevisionStarted: {
      const v1::RevisionStarted& r = p.revision_started();
      e.kind = OperationEvent::Kind::kRevisionStarted;
      e.revision = r.revision();
      e.direction = FromProto(r.direction());
      e.step_index = r.step_index();
      e.step_count = r.step_count();
      e.statement_count = r.statement_count();
      break;
    }
    case v1::OperationEvent::kStatementStarted: {
      const v1::StatementStarted& s = p.statement_started();
      e.kind = OperationEvent::Kind::kStatementStarted;
      e.revision = s.revision();
      e.step_index = s.step_index();
      e.step_count = s.step_count();
      e.statement_index = s.statement_index();
      e.statement_count = s.statement_count();
      e.line = s.line();
      break;
    }
    case v1::OperationEvent::kRevisionFinished: {
      const v1::RevisionFinished& r = p.revision_finished();
      e.kind = OperationEvent::Kind::kRevisionFinished;
      e.revision = r.revision();
      e.direction = FromProto(r.direction());
      e.step_index = r.step_index();
      e.step_count = r.step_count();
      e.duration = FromProto(r.duration());
      if (r.has_error()) {
        e.status = FromProto(r.error());
      }
      break;
    }
    case v1::OperationEvent::kFinished: {
      const v1::OperationFinished& f = p.finished();
      e.kind = OperationEvent::Kind::kOperationFinished;
      e.state = FromProto(f.state());
      if (f.has_error()) {
        e.status = FromProto(f.error());
      }
      e.heads = Strings(f.heads());
      e.duration = FromProto(f.duration());
      e.revisions_run = f.revisions_run();
      break;
    }
    case v1::OperationEvent::kFleet:
      e.kind = OperationEvent::Kind::kFleet;
      e.fleet = std::make_shared<const FleetEvent>(FromProto(p.fleet()));
      break;
    default:
      e.kind = OperationEvent::Kind::kUnknown;
      break;
  }
  return e;
}

OperationResult FromProto(const v1::OperationResult& p) {
  OperationResult r;
  r.operation_id = p.operation_id();
  r.database = p.database();
  r.rows_before = Strings(p.rows_before());
  r.heads = Strings(p.heads());
  r.revisions_run = p.revisions_run();
  r.took_lock = p.took_lock();
  r.duration = FromProto(p.duration());
  for (const v1::PlannedStep& step : p.plan()) {
    r.plan.push_back(FromProto(step));
  }
  return r;
}

OperationInfo FromProto(const v1::OperationInfo& p) {
  OperationInfo info;
  info.operation_id = p.operation_id();
  info.database = p.database();
  info.kind = FromProto(p.kind());
  info.target = p.target();
  info.who = p.who();
  info.state = FromProto(p.state());
  info.created = FromProto(p.created());
  if (p.has_started()) {
    info.started = FromProto(p.started());
  }
  if (p.has_finished()) {
    info.finished = FromProto(p.finished());
  }
  if (p.has_error()) {
    info.error = FromProto(p.error());
  }
  info.cancel_requested = p.cancel_requested();
  info.current_revision = p.current_revision();
  info.step_index = p.step_index();
  info.step_count = p.step_count();
  info.heads = Strings(p.heads());
  info.event_count = p.event_count();
  info.replica = p.replica();
  info.revisions_run = p.revisions_run();
  info.events_dropped = p.events_dropped();
  return info;
}

DatabaseStatus FromProto(const v1::DatabaseStatus& p) {
  DatabaseStatus s;
  s.database = p.database();
  s.migration_set = p.migration_set();
  s.display_name = p.display_name();
  switch (p.state()) {
    case v1::DATABASE_STATE_AT_HEAD:
      s.state = DatabaseStatus::State::kAtHead;
      break;
    case v1::DATABASE_STATE_BEHIND:
      s.state = DatabaseStatus::State::kBehind;
      break;
    case v1::DATABASE_STATE_NEEDS_ATTENTION:
      s.state = DatabaseStatus::State::kNeedsAttention;
      break;
    case v1::DATABASE_STATE_UNREACHABLE:
      s.state = DatabaseStatus::State::kUnreachable;
      break;
    case v1::DATABASE_STATE_INVALID:
      s.state = DatabaseStatus::State::kInvalid;
      break;
    default:
      break;
  }
  s.version_table_exists = p.version_table_exists();
  s.current_heads = Strings(p.current_heads());
  s.graph_heads = Strings(p.graph_heads());
  s.pending = p.pending();
  s.at_head = p.at_head();
  if (p.has_needs_attention()) {
    const v1::NeedsAttention& n = p.needs_attention();
    NeedsAttention na;
    na.revision = n.revision();
    na.direction = FromProto(n.direction());
    na.statements_done = n.statements_done();
    na.statements_total = n.statements_total();
    na.error = n.error();
    na.operation_id = n.operation_id();
    if (n.has_started()) {
      na.started = FromProto(n.started());
    }
    s.needs_attention = std::move(na);
  }
  s.row_error = p.row_error();
  if (p.has_error()) {
    s.error = FromProto(p.error());
  }
  if (p.has_drift()) {
    DatabaseStatus::Drift drift;
    drift.drift = p.drift().drift();
    drift.differences = p.drift().differences();
    drift.checked = FromProto(p.drift().checked());
    s.drift = drift;
  }
  return s;
}

VersionRowChange FromProto(const v1::VersionRowChange& p) {
  VersionRowChange c;
  switch (p.kind()) {
    case v1::VersionRowChange::KIND_DELETE:
      c.kind = VersionRowChange::Kind::kDelete;
      break;
    case v1::VersionRowChange::KIND_UPDATE:
      c.kind = VersionRowChange::Kind::kUpdate;
      break;
    default:
      c.kind = VersionRowChange::Kind::kInsert;
      break;
  }
  c.from = p.from();
  c.to = p.to();
  return c;
}

// ------------------------------------------------------------- call helpers

absl::Duration Jittered(absl::Duration backoff, double jitter) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::uniform_real_distribution<double> factor(1.0 - jitter, 1.0 + jitter);
  return backoff * factor(rng);
}

absl::StatusOr<std::string> ReadFile(const std::string& what, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(absl::StrCat("cannot read the ", what, " ", path));
  }
  std::ostringstream content;
  content << in.rdbuf();
  return content.str();
}

std::string Env(const char* name) {
  const char* value = std::getenv(name);
  return value == nullptr ? "" : value;
}

}  // namespace

// ---------------------------------------------------------------- strings

const char* ToString(Direction direction) { return direction == Direction::kDown ? "down" : "up"; }

const char* ToString(OperationKind kind) {
  switch (kind) {
    case OperationKind::kEnsureHead:
      return "ensure-head";
    case OperationKind::kUpgrade:
      return "upgrade";
    case OperationKind::kDowngrade:
      return "downgrade";
    case OperationKind::kMerge:
      return "merge";
    case OperationKind::kStamp:
      return "stamp";
    case OperationKind::kResolve:
      return "resolve";
    case OperationKind::kFleet:
      return "fleet";
    case OperationKind::kUnspecified:
      break;
  }
  return "unknown";
}

const char* ToString(OperationState state) {
  switch (state) {
    case OperationState::kQueued:
      return "queued";
    case OperationState::kRunning:
      return "running";
    case OperationState::kSucceeded:
      return "succeeded";
    case OperationState::kFailed:
      return "failed";
    case OperationState::kCancelled:
      return "cancelled";
    case OperationState::kAbandoned:
      return "abandoned";
    case OperationState::kUnspecified:
      break;
  }
  return "unknown";
}

const char* ToString(DatabaseStatus::State state) {
  switch (state) {
    case DatabaseStatus::State::kAtHead:
      return "at-head";
    case DatabaseStatus::State::kBehind:
      return "behind";
    case DatabaseStatus::State::kNeedsAttention:
      return "needs-attention";
    case DatabaseStatus::State::kUnreachable:
      return "unreachable";
    case DatabaseStatus::State::kInvalid:
      return "invalid";
    case DatabaseStatus::State::kUnspecified:
      break;
  }
  return "unknown";
}

std::string OperationEvent::Describe() const {
  const std::string prefix = absl::StrCat(operation_id, " ", database, ": ");
  const auto rows = [](const std::vector<std::string>& r) {
    return r.empty() ? std::string("base") : absl::StrJoin(r, ", ");
  };
  switch (kind) {
    case Kind::kAccepted:
      return absl::StrCat(prefix, ToString(operation_kind), " ", target, " accepted (", who, ")");
    case Kind::kOperationStarted:
      return absl::StrCat(prefix, "started: ", plan.size(), " revision(s) from ",
                          rows(rows_before));
    case Kind::kWaitingForLock:
      return absl::StrCat(prefix, "waiting for the migration lock (held by ", lock_holder, ", ",
                          absl::FormatDuration(absl::Trunc(waited, absl::Milliseconds(1))), ")");
    case Kind::kLockAcquired:
      return absl::StrCat(prefix, "lock acquired");
    case Kind::kRevisionStarted:
      return absl::StrCat(prefix, "revision ", revision, " (", ToString(direction),
                          ") started, step ", step_index + 1, " of ", step_count, ", ",
                          statement_count, " statement(s)");
    case Kind::kStatementStarted:
      return absl::StrCat(prefix, "revision ", revision, ": statement ", statement_index + 1,
                          " of ", statement_count, " (line ", line, ")");
    case Kind::kRevisionFinished:
      return absl::StrCat(prefix, "revision ", revision, " ",
                          status.ok() ? "done" : absl::StrCat("failed: ", status.message()), " in ",
                          absl::FormatDuration(absl::Trunc(duration, absl::Milliseconds(1))));
    case Kind::kOperationFinished:
      return absl::StrCat(prefix, ToString(state), " at ", rows(heads), ", ", revisions_run,
                          " revision(s) in ",
                          absl::FormatDuration(absl::Trunc(duration, absl::Milliseconds(1))),
                          status.ok() ? "" : absl::StrCat(": ", status.message()));
    case Kind::kFleet: {
      if (fleet == nullptr) {
        break;
      }
      const FleetEvent& f = *fleet;
      switch (f.kind) {
        case FleetEvent::Kind::kStageStarted:
          return absl::StrCat(prefix, "stage ", f.stage, " started: ", f.stage_sites.size(),
                              " site(s)");
        case FleetEvent::Kind::kSiteQueued:
          return absl::StrCat(prefix, f.site, " queued");
        case FleetEvent::Kind::kSiteStarted:
          return absl::StrCat(prefix, f.site, " started");
        case FleetEvent::Kind::kSiteEvent:
          return f.event != nullptr ? absl::StrCat(prefix, f.site, ": ", f.event->Describe())
                                    : absl::StrCat(prefix, f.site, ": event");
        case FleetEvent::Kind::kSiteFinished:
        case FleetEvent::Kind::kSiteFailed:
        case FleetEvent::Kind::kSiteSkipped:
          return absl::StrCat(
              prefix, f.site, " ", OutcomeName(f.result.outcome), " at ", rows(f.result.rows_after),
              ", ", f.result.revisions_run, " revision(s)",
              f.result.status.ok() ? "" : absl::StrCat(": ", f.result.status.message()));
        case FleetEvent::Kind::kSummary:
          return absl::StrCat(prefix, "fleet finished: ", f.summary.succeeded, " succeeded, ",
                              f.summary.failed, " failed, ", f.summary.skipped, " skipped, ",
                              f.summary.cancelled, " cancelled");
        case FleetEvent::Kind::kUnknown:
          break;
      }
      break;
    }
    case Kind::kUnknown:
      break;
  }
  return absl::StrCat(prefix, "(event from a newer server)");
}

ClientOptions ClientOptions::FromEnvironment() {
  ClientOptions options;
  if (std::string v = Env("SCHEMAD_SERVER"); !v.empty()) {
    options.target = v;
  }
  if (std::string v = Env("SCHEMAD_TOKEN"); !v.empty()) {
    options.token = v;
  } else if (std::string file = Env("SCHEMAD_TOKEN_FILE"); !file.empty()) {
    absl::StatusOr<std::string> token = ReadFile("token file", file);
    if (token.ok()) {
      options.token = std::string(absl::StripAsciiWhitespace(*token));
    }
  }
  options.root_ca_file = Env("SCHEMAD_TLS_CA");
  options.cert_file = Env("SCHEMAD_TLS_CERT");
  options.key_file = Env("SCHEMAD_TLS_KEY");
  options.tls_server_name = Env("SCHEMAD_TLS_SERVER_NAME");
  options.who = Env("SCHEMAD_WHO");
  return options;
}

// ---------------------------------------------------------------- gRPC calls

namespace {

// Parses one streamed message; false when it is not a valid event.
bool ParseEvent(const grpc::ByteBuffer& buffer, v1::OperationEvent* event) {
  std::vector<grpc::Slice> slices;
  if (!buffer.Dump(&slices).ok()) {
    return false;
  }
  std::string bytes;
  for (const grpc::Slice& slice : slices) {
    bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  }
  return event->ParseFromString(bytes);
}

// Sends calls on one channel: metadata, deadlines, retries, streams.
class GrpcCalls {
 public:
  GrpcCalls(const ClientOptions& options, std::shared_ptr<grpc::Channel> channel)
      : options_(options),
        channel_(std::move(channel)),
        stub_(v1::Schemad::NewStub(channel_)),
        generic_(channel_),
        health_(grpc::health::v1::Health::NewStub(channel_)) {}

  void Prepare(grpc::ClientContext* context, absl::Time deadline) const {
    context->set_deadline(absl::ToChronoTime(deadline));
    if (!options_.token.empty()) {
      context->AddMetadata("authorization", absl::StrCat("Bearer ", options_.token));
    }
    if (!options_.who.empty()) {
      context->AddMetadata("x-schemad-who", options_.who);
    }
  }

  absl::Time DeadlineFor(const CallOptions& call, bool stream) const {
    const absl::Duration d =
        call.deadline > absl::ZeroDuration()
            ? call.deadline
            : (stream ? options_.operation_deadline : options_.default_deadline);
    return absl::Now() + d;
  }

  // One unary call, retried on UNAVAILABLE when `retry` (and the policy)
  // allow — except a failed TLS handshake, which the same settings would
  // fail again: that one is explained (DiagnoseTls) and returned at once.
  absl::Status Unary(const CallOptions& call, bool retry,
                     const std::function<grpc::Status(grpc::ClientContext*)>& rpc) const {
    const absl::Time deadline = DeadlineFor(call, false);
    const RetryPolicy& policy = options_.retry;
    const absl::Time retry_until = std::min(deadline, absl::Now() + policy.max_elapsed);
    absl::Duration backoff = policy.initial_backoff;
    for (int attempt = 1;; ++attempt) {
      grpc::ClientContext context;
      Prepare(&context, deadline);
      absl::Status status = FromGrpc(rpc(&context));
      if (status.code() == absl::StatusCode::kUnavailable &&
          internal::LooksLikeHandshakeFailure(std::string(status.message()))) {
        std::string why = internal::DiagnoseTls(tls_settings_);
        if (!why.empty()) {
          return absl::UnavailableError(why);
        }
      }
      if (status.ok() || !retry || !policy.enabled ||
          status.code() != absl::StatusCode::kUnavailable) {
        return status;
      }
      const absl::Duration sleep = Jittered(backoff, policy.jitter);
      if (absl::Now() + sleep >= retry_until) {
        return attempt == 1 ? status
                            : absl::Status(status.code(), absl::StrCat(status.message(), " (after ",
                                                                       attempt, " attempts)"));
      }
      absl::SleepFor(sleep);
      backoff = std::min(backoff * policy.multiplier, policy.max_backoff);
    }
  }

  // A streamed operation: waits for the server to be reachable (never sent
  // twice), delivers events, and builds the result from them. `method` is
  // the RPC's name ("Upgrade").
  //
  // Events are read as bytes and parsed here, so that one that does not
  // parse (a string that is not UTF-8 from an older or foreign server) ends
  // the call at once with INTERNAL: gRPC's typed reader would only report
  // "no more messages", and its Finish would then wait for a status that
  // sits behind the unread messages until the deadline (hours).
  absl::StatusOr<OperationResult> Stream(const CallOptions& call, absl::string_view method,
                                         const google::protobuf::Message& request) const {
    grpc::ClientContext context;
    Prepare(&context, DeadlineFor(call, true));
    context.set_wait_for_ready(true);

    absl::Mutex mu;
    bool done = false;
    std::atomic<bool> stopped{false};
    std::thread watcher;
    if (call.stop != nullptr) {
      watcher = std::thread([&] {
        absl::MutexLock lock(&mu);
        while (!done) {
          if (call.stop->load()) {
            stopped = true;
            context.TryCancel();
            return;
          }
          mu.AwaitWithTimeout(absl::Condition(&done), absl::Milliseconds(50));
        }
      });
    }
    OperationResult result;
    int64_t last_sequence = -1;
    absl::Status unreadable;  // an event that did not parse
    grpc::CompletionQueue cq;
    // One operation in flight at a time: the next completion is always its.
    const auto await = [&cq] {
      void* tag = nullptr;
      bool ok = false;
      return cq.Next(&tag, &ok) && ok;
    };
    void* const tag = &cq;
    std::unique_ptr<grpc::GenericClientAsyncReaderWriter> rpc = generic_.PrepareCall(
        &context, absl::StrCat("/", v1::Schemad::service_full_name(), "/", method), &cq);
    rpc->StartCall(tag);
    bool ok = await();
    if (ok) {
      const std::string bytes = request.SerializeAsString();
      grpc::Slice slice(bytes);
      rpc->WriteLast(grpc::ByteBuffer(&slice, 1), grpc::WriteOptions(), tag);
      ok = await();  // false when the server has already ended the call
    }
    for (;;) {
      grpc::ByteBuffer buffer;
      rpc->Read(&buffer, tag);
      if (!await()) {
        break;
      }
      v1::OperationEvent event;
      if (!ParseEvent(buffer, &event)) {
        unreadable = absl::InternalError(absl::StrCat(
            "schemad sent an event that is not a valid schemad.v1.OperationEvent (e.g. text "
            "that is not UTF-8) after ",
            last_sequence < 0 ? std::string("no event") : absl::StrCat("event ", last_sequence),
            "; stopped reading",
            result.operation_id.empty()
                ? std::string()
                : absl::StrCat(": operation ", result.operation_id,
                               " goes on on the server (WatchOperation follows it)")));
        context.TryCancel();
        break;
      }
      OperationEvent e = FromProto(event);
      result.operation_id = e.operation_id;
      result.database = e.database;
      last_sequence = e.sequence;
      if (e.kind == OperationEvent::Kind::kOperationStarted) {
        result.plan = e.plan;
        result.rows_before = e.rows_before;
        result.took_lock = true;
      } else if (e.kind == OperationEvent::Kind::kOperationFinished) {
        result.heads = e.heads;
        result.revisions_run = e.revisions_run;
        result.duration = e.duration;
      }
      if (call.on_event) {
        call.on_event(e);
      }
    }
    grpc::Status status;
    rpc->Finish(&status, tag);
    await();
    cq.Shutdown();
    for (void* got = nullptr; cq.Next(&got, &ok);) {
    }
    if (watcher.joinable()) {
      {
        absl::MutexLock lock(&mu);
        done = true;
      }
      watcher.join();
    }
    if (!unreadable.ok()) {
      return unreadable;
    }
    if (stopped) {
      return absl::CancelledError(absl::StrCat(
          "stopped watching operation ",
          result.operation_id.empty() ? std::string("(not yet accepted)") : result.operation_id,
          "; it goes on on the server (WatchOperation follows it, CancelOperation stops it)"));
    }
    if (!status.ok()) {
      return FromGrpc(status);
    }
    if (result.rows_before.empty() && !result.took_lock) {
      result.rows_before = result.heads;  // nothing to do: nothing changed
    }
    return result;
  }

  const ClientOptions& options_;
  internal::TlsSettings tls_settings_;  // for DiagnoseTls
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Schemad::Stub> stub_;
  mutable grpc::GenericStub generic_;  // streams (see Stream)
  std::unique_ptr<grpc::health::v1::Health::Stub> health_;
};

// The connection behind Client::Connect: each call translated to and from
// schemad.v1 and sent by GrpcCalls.
class GrpcClientConnection final : public ClientConnection {
 public:
  GrpcClientConnection(ClientOptions options, std::shared_ptr<grpc::Channel> channel,
                       internal::TlsSettings tls_settings)
      : options_(std::move(options)),
        impl_(std::make_unique<GrpcCalls>(options_, std::move(channel))) {
    impl_->tls_settings_ = std::move(tls_settings);
  }

  absl::StatusOr<EnsureHeadResult> EnsureHead(const std::string& database,
                                              const EnsureHeadOptions& options,
                                              const CallOptions& call) override;
  absl::StatusOr<OperationResult> Upgrade(const std::string& database,
                                          const UpgradeRequest& request,
                                          const CallOptions& call) override;
  absl::StatusOr<OperationResult> Downgrade(const std::string& database,
                                            const DowngradeRequest& request,
                                            const CallOptions& call) override;
  absl::StatusOr<OperationResult> Merge(const std::string& database, const MergeRequest& request,
                                        const CallOptions& call) override;
  absl::StatusOr<FleetSummary> FleetRun(const FleetRequest& request,
                                        const CallOptions& call) override;
  absl::StatusOr<OperationResult> WatchOperation(const std::string& operation_id,
                                                 const CallOptions& call) override;
  absl::StatusOr<OperationResult> Stamp(const std::string& database,
                                        const std::vector<std::string>& revisions, bool purge,
                                        const CallOptions& call) override;
  absl::StatusOr<OperationResult> Resolve(const std::string& database, bool applied,
                                          const CallOptions& call) override;
  absl::StatusOr<PlanResult> Plan(const PlanRequest& request, const CallOptions& call) override;
  absl::StatusOr<DatabaseStatus> GetStatus(const std::string& database,
                                           const CallOptions& call) override;
  absl::StatusOr<std::vector<HistoryEntry>> History(const std::string& database, int limit,
                                                    const CallOptions& call) override;
  absl::StatusOr<MigrationSetInfo> DescribeMigrationSet(const std::string& migration_set,
                                                        const std::string& database,
                                                        const CallOptions& call) override;
  absl::StatusOr<std::vector<DatabaseInfo>> ListDatabases(const ListDatabasesRequest& request,
                                                          const CallOptions& call) override;
  absl::StatusOr<ValidationResult> Validate(const std::string& database,
                                            const CallOptions& call) override;
  absl::StatusOr<RepairResult> Repair(const std::string& database,
                                      const CallOptions& call) override;
  absl::StatusOr<DriftResult> Drift(const std::string& database, const CallOptions& call) override;
  absl::StatusOr<std::vector<OperationInfo>> ListOperations(const std::string& database,
                                                            bool running_only, int limit,
                                                            const CallOptions& call) override;
  absl::StatusOr<OperationInfo> CancelOperation(const std::string& operation_id,
                                                const CallOptions& call) override;
  absl::StatusOr<ReloadResult> Reload(const CallOptions& call) override;
  absl::StatusOr<bool> CheckHealth(const std::string& migration_set,
                                   const CallOptions& call) override;
  absl::StatusOr<bool> CheckServiceHealth(const std::string& service,
                                          const CallOptions& call) override;

 private:
  const ClientOptions options_;  // before impl_, which refers to it
  std::unique_ptr<GrpcCalls> impl_;
};

}  // namespace

// ------------------------------------------------------------------ Client

absl::StatusOr<std::unique_ptr<Client>> Client::Connect(ClientOptions options) {
  if (options.target.empty()) {
    return absl::InvalidArgumentError("no schemad target (ClientOptions::target, SCHEMAD_SERVER)");
  }
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  internal::TlsSettings tls_settings;
  tls_settings.target = options.target;
  const bool tls = options.tls || !options.root_ca_file.empty() || !options.cert_file.empty() ||
                   !options.key_file.empty();
  if (tls) {
    grpc::SslCredentialsOptions ssl;
    if (!options.root_ca_file.empty()) {
      absl::StatusOr<std::string> ca = ReadFile("CA file", options.root_ca_file);
      if (!ca.ok()) {
        return ca.status();
      }
      ssl.pem_root_certs = *std::move(ca);
    }
    if (options.cert_file.empty() != options.key_file.empty()) {
      return absl::InvalidArgumentError("a client certificate needs both cert_file and key_file");
    }
    if (!options.cert_file.empty()) {
      absl::StatusOr<std::string> cert = ReadFile("certificate file", options.cert_file);
      absl::StatusOr<std::string> key = ReadFile("key file", options.key_file);
      if (!cert.ok()) {
        return cert.status();
      }
      if (!key.ok()) {
        return key.status();
      }
      ssl.pem_cert_chain = *std::move(cert);
      ssl.pem_private_key = *std::move(key);
      if (std::string problem =
              internal::CheckClientCertificate(ssl.pem_cert_chain, ssl.pem_private_key);
          !problem.empty()) {
        return absl::InvalidArgumentError(problem);
      }
    }
    tls_settings.tls = true;
    tls_settings.ca_pem = ssl.pem_root_certs;
    tls_settings.cert_pem = ssl.pem_cert_chain;
    tls_settings.key_pem = ssl.pem_private_key;
    tls_settings.server_name = options.tls_server_name;
    credentials = grpc::SslCredentials(ssl);
  } else {
    credentials = grpc::InsecureChannelCredentials();
  }
  grpc::ChannelArguments args;
  const auto ms = [](absl::Duration d) {
    return static_cast<int>(std::max<int64_t>(1, absl::ToInt64Milliseconds(d)));
  };
  // The channel's own reconnect backoff follows the retry policy, so a
  // retried call finds a fresh connection attempt rather than a long wait.
  // GRPC_ARG_MIN_RECONNECT_BACKOFF_MS is also gRPC's minimum connect timeout:
  // one attempt (TCP, TLS, HTTP/2 SETTINGS) may take that long before it is
  // abandoned. A refused connection still fails at once; a slow handshake on
  // a loaded host must not ("timed out before receiving SETTINGS frame").
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, ms(options.retry.initial_backoff));
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS,
              ms(std::max(options.retry.initial_backoff, kMinConnectTimeout)));
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, ms(options.retry.max_backoff));
  if (!options.tls_server_name.empty()) {
    args.SetSslTargetNameOverride(options.tls_server_name);
  }
  // Responses are bounded by the server (a page of operations, history rows
  // up to a limit, error texts cut to 8 KiB); a large migration set's
  // description can still pass gRPC's default of 4 MiB.
  args.SetMaxReceiveMessageSize(kMaxResponseBytes);
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateCustomChannel(options.target, credentials, args);
  return std::make_unique<Client>(
      std::make_shared<GrpcClientConnection>(options, std::move(channel), std::move(tls_settings)),
      std::move(options));
}

Client::Client(std::shared_ptr<ClientConnection> connection, ClientOptions options)
    : options_(std::move(options)), connection_(std::move(connection)) {}

Client::~Client() = default;

absl::StatusOr<EnsureHeadResult> Client::EnsureHead(const std::string& database,
                                                    const EnsureHeadOptions& options,
                                                    const CallOptions& call) {
  return connection_->EnsureHead(database, options, call);
}

absl::StatusOr<OperationResult> Client::Upgrade(const std::string& database,
                                                const UpgradeRequest& request,
                                                const CallOptions& call) {
  return connection_->Upgrade(database, request, call);
}

absl::StatusOr<OperationResult> Client::Downgrade(const std::string& database,
                                                  const DowngradeRequest& request,
                                                  const CallOptions& call) {
  return connection_->Downgrade(database, request, call);
}

absl::StatusOr<OperationResult> Client::Merge(const std::string& database,
                                              const MergeRequest& request,
                                              const CallOptions& call) {
  return connection_->Merge(database, request, call);
}

absl::StatusOr<FleetSummary> Client::FleetRun(const FleetRequest& request,
                                              const CallOptions& call) {
  return connection_->FleetRun(request, call);
}

absl::StatusOr<OperationResult> Client::WatchOperation(const std::string& operation_id,
                                                       const CallOptions& call) {
  return connection_->WatchOperation(operation_id, call);
}

absl::StatusOr<OperationResult> Client::Stamp(const std::string& database,
                                              const std::vector<std::string>& revisions, bool purge,
                                              const CallOptions& call) {
  return connection_->Stamp(database, revisions, purge, call);
}

absl::StatusOr<OperationResult> Client::Resolve(const std::string& database, bool applied,
                                                const CallOptions& call) {
  return connection_->Resolve(database, applied, call);
}

absl::StatusOr<PlanResult> Client::Plan(const PlanRequest& request, const CallOptions& call) {
  return connection_->Plan(request, call);
}

absl::StatusOr<DatabaseStatus> Client::GetStatus(const std::string& database,
                                                 const CallOptions& call) {
  return connection_->GetStatus(database, call);
}

absl::StatusOr<std::vector<HistoryEntry>> Client::History(const std::string& database, int limit,
                                                          const CallOptions& call) {
  return connection_->History(database, limit, call);
}

absl::StatusOr<MigrationSetInfo> Client::DescribeMigrationSet(const std::string& migration_set,
                                                              const std::string& database,
                                                              const CallOptions& call) {
  return connection_->DescribeMigrationSet(migration_set, database, call);
}

absl::StatusOr<std::vector<DatabaseInfo>> Client::ListDatabases(const ListDatabasesRequest& request,
                                                                const CallOptions& call) {
  return connection_->ListDatabases(request, call);
}

absl::StatusOr<ValidationResult> Client::Validate(const std::string& database,
                                                  const CallOptions& call) {
  return connection_->Validate(database, call);
}

absl::StatusOr<RepairResult> Client::Repair(const std::string& database, const CallOptions& call) {
  return connection_->Repair(database, call);
}

absl::StatusOr<DriftResult> Client::Drift(const std::string& database, const CallOptions& call) {
  return connection_->Drift(database, call);
}

absl::StatusOr<std::vector<OperationInfo>> Client::ListOperations(const std::string& database,
                                                                  bool running_only, int limit,
                                                                  const CallOptions& call) {
  return connection_->ListOperations(database, running_only, limit, call);
}

absl::StatusOr<OperationInfo> Client::CancelOperation(const std::string& operation_id,
                                                      const CallOptions& call) {
  return connection_->CancelOperation(operation_id, call);
}

absl::StatusOr<ReloadResult> Client::Reload(const CallOptions& call) {
  return connection_->Reload(call);
}

absl::StatusOr<bool> ClientConnection::CheckServiceHealth(const std::string& service,
                                                          const CallOptions&) {
  return absl::UnimplementedError(
      absl::StrCat("this connection cannot check the health service ", service));
}

absl::StatusOr<bool> Client::CheckReady(const CallOptions& call) {
  return connection_->CheckServiceHealth(kReadinessHealthService, call);
}

absl::StatusOr<bool> Client::CheckHealth(const std::string& migration_set,
                                         const CallOptions& call) {
  return connection_->CheckHealth(migration_set, call);
}

// ---------------------------------------------------------- gRPC connection

absl::StatusOr<EnsureHeadResult> GrpcClientConnection::EnsureHead(const std::string& database,
                                                                  const EnsureHeadOptions& options,
                                                                  const CallOptions& call) {
  v1::EnsureHeadRequest request;
  request.set_database(database);
  request.set_no_apply(options.no_apply);
  if (options.lock_wait) {
    ToProto(*options.lock_wait, request.mutable_lock_wait());
  }
  v1::EnsureHeadResponse response;
  absl::Status status = impl_->Unary(call, true, [&](grpc::ClientContext* context) {
    return impl_->stub_->EnsureHead(context, request, &response);
  });
  if (!status.ok()) {
    return status;
  }
  EnsureHeadResult result;
  result.applied = response.applied();
  result.heads = Strings(response.heads());
  result.rows_before = Strings(response.rows_before());
  result.revisions_applied = response.revisions_applied();
  result.operation_id = response.operation_id();
  return result;
}

absl::StatusOr<OperationResult> GrpcClientConnection::Upgrade(const std::string& database,
                                                              const UpgradeRequest& upgrade,
                                                              const CallOptions& call) {
  v1::UpgradeRequest request;
  request.set_database(database);
  request.set_target(upgrade.target);
  request.set_allow_changed(upgrade.allow_changed);
  request.set_transaction_mode(ToProto(upgrade.transaction_mode));
  if (upgrade.lock_wait) {
    ToProto(*upgrade.lock_wait, request.mutable_lock_wait());
  }
  return impl_->Stream(call, "Upgrade", request);
}

const char* OutcomeName(FleetSiteResult::Outcome outcome) {
  switch (outcome) {
    case FleetSiteResult::Outcome::kSucceeded:
      return "succeeded";
    case FleetSiteResult::Outcome::kFailed:
      return "failed";
    case FleetSiteResult::Outcome::kCancelled:
      return "cancelled";
    case FleetSiteResult::Outcome::kSkipped:
      break;
  }
  return "skipped";
}

absl::StatusOr<FleetSummary> GrpcClientConnection::FleetRun(const FleetRequest& fleet,
                                                            const CallOptions& call) {
  v1::FleetRunRequest request;
  switch (fleet.action) {
    case FleetRequest::Action::kUpgrade:
      request.set_action(v1::FLEET_ACTION_UPGRADE);
      break;
    case FleetRequest::Action::kDowngrade:
      request.set_action(v1::FLEET_ACTION_DOWNGRADE);
      break;
    case FleetRequest::Action::kEnsureHead:
      request.set_action(v1::FLEET_ACTION_ENSURE_HEAD);
      break;
    case FleetRequest::Action::kStamp:
      request.set_action(v1::FLEET_ACTION_STAMP);
      break;
    case FleetRequest::Action::kValidate:
      request.set_action(v1::FLEET_ACTION_VALIDATE);
      break;
    case FleetRequest::Action::kDrift:
      request.set_action(v1::FLEET_ACTION_DRIFT);
      break;
  }
  request.set_target(fleet.target);
  for (const std::string& target : fleet.targets) {
    request.add_targets(target);
  }
  request.set_selector(fleet.selector);
  request.set_max_parallel(fleet.max_parallel);
  request.set_canary_count(fleet.canary_count);
  request.set_canary_selector(fleet.canary_selector);
  request.set_continue_on_error(fleet.continue_on_error);
  request.set_allow_lint_errors(fleet.allow_lint_errors);
  request.set_resume(fleet.resume);
  if (fleet.site_timeout > absl::ZeroDuration()) {
    ToProto(fleet.site_timeout, request.mutable_site_timeout());
  }
  if (fleet.lock_wait) {
    ToProto(*fleet.lock_wait, request.mutable_lock_wait());
  }
  std::optional<FleetSummary> summary;
  std::string operation_id;
  CallOptions inner = call;
  inner.on_event = [&](const OperationEvent& e) {
    if (operation_id.empty()) {
      operation_id = e.operation_id;
    }
    if (e.kind == OperationEvent::Kind::kFleet && e.fleet != nullptr &&
        e.fleet->kind == FleetEvent::Kind::kSummary) {
      summary = e.fleet->summary;
    }
    if (call.on_event) {
      call.on_event(e);
    }
  };
  absl::StatusOr<OperationResult> result = impl_->Stream(inner, "FleetRun", request);
  if (!summary) {
    if (!result.ok()) {
      return result.status();
    }
    return absl::InternalError("the fleet operation ended without a summary");
  }
  summary->operation_id = operation_id;
  summary->status = result.status();
  return *std::move(summary);
}

absl::StatusOr<OperationResult> GrpcClientConnection::Downgrade(const std::string& database,
                                                                const DowngradeRequest& downgrade,
                                                                const CallOptions& call) {
  v1::DowngradeRequest request;
  request.set_database(database);
  request.set_target(downgrade.target);
  request.set_transaction_mode(ToProto(downgrade.transaction_mode));
  if (downgrade.lock_wait) {
    ToProto(*downgrade.lock_wait, request.mutable_lock_wait());
  }
  return impl_->Stream(call, "Downgrade", request);
}

absl::StatusOr<OperationResult> GrpcClientConnection::Merge(const std::string& database,
                                                            const MergeRequest& merge,
                                                            const CallOptions& call) {
  v1::MergeRequest request;
  request.set_database(database);
  request.set_revision(merge.revision);
  if (merge.lock_wait) {
    ToProto(*merge.lock_wait, request.mutable_lock_wait());
  }
  return impl_->Stream(call, "Merge", request);
}

absl::StatusOr<OperationResult> GrpcClientConnection::WatchOperation(
    const std::string& operation_id, const CallOptions& call) {
  v1::WatchOperationRequest request;
  request.set_operation_id(operation_id);
  return impl_->Stream(call, "WatchOperation", request);
}

absl::StatusOr<OperationResult> GrpcClientConnection::Stamp(
    const std::string& database, const std::vector<std::string>& revisions, bool purge,
    const CallOptions& call) {
  v1::StampRequest request;
  request.set_database(database);
  for (const std::string& revision : revisions) {
    request.add_revisions(revision);
  }
  request.set_purge(purge);
  v1::OperationResult response;
  absl::Status status = impl_->Unary(call, true, [&](grpc::ClientContext* context) {
    return impl_->stub_->Stamp(context, request, &response);
  });
  if (!status.ok()) {
    return status;
  }
  return FromProto(response);
}

absl::StatusOr<OperationResult> GrpcClientConnection::Resolve(const std::string& database,
                                                              bool applied,
                                                              const CallOptions& call) {
  v1::ResolveRequest request;
  request.set_database(database);
  request.set_resolution(applied ? v1::ResolveRequest::RESOLUTION_APPLIED
                                 : v1::ResolveRequest::RESOLUTION_ROLLED_BACK);
  v1::OperationResult response;
  absl::Status status = impl_->Unary(call, true, [&](grpc::ClientContext* context) {
    return impl_->stub_->Resolve(context, request, &response);
  });
  if (!status.ok()) {
    return status;
  }
  return FromProto(response);
}

absl::StatusOr<PlanResult> GrpcClientConnection::Plan(const PlanRequest& plan,
                                                      const CallOptions& call) {
  v1::PlanRequest request;
  request.set_database(plan.database);
  request.set_migration_set(plan.migration_set);
  switch (plan.kind) {
    case PlanRequest::Kind::kUpgrade:
      request.set_kind(v1::PlanRequest::KIND_UPGRADE);
      break;
    case PlanRequest::Kind::kDowngrade:
      request.set_kind(v1::PlanRequest::KIND_DOWNGRADE);
      break;
    case PlanRequest::Kind::kStamp:
      request.set_kind(v1::PlanRequest::KIND_STAMP);
      break;
  }
  for (const std::string& target : plan.targets) {
    request.add_targets(target);
  }
  for (const std::string& row : plan.from_rows) {
    request.add_from_rows(row);
  }
  request.set_purge(plan.purge);
  request.set_sql(plan.sql);
  request.set_transaction_mode(ToProto(plan.transaction_mode));
  v1::PlanResponse response;
  absl::Status status = impl_->Unary(call, true, [&](grpc::ClientContext* context) {
    return impl_->stub_->Plan(context, request, &response);
  });
  if (!status.ok()) {
    return status;
  }
  PlanResult result;
  result.target = response.target();
  result.rows_before = Strings(response.rows_before());
  for (const v1::PlanStep& s : response.steps()) {
    PlanStep step;
    step.step = FromProto(s.step());
    for (const v1::VersionRowChange& change : s.version_changes()) {
      step.version_changes.push_back(FromProto(change));
    }
    step.rows_after = Strings(s.rows_after());
    result.steps.push_back(std::move(step));
  }
  result.rows_after = Strings(response.rows_after());
  for (const v1::VersionRowChange& change : response.stamp_changes()) {
    result.stamp_changes.push_back(FromProto(change));
  }
  result.sql = response.sql();
  for (const v1::LintFinding& finding : response.lint_findings()) {
    result.lint_findings.push_back(FromProto(finding));
  }
  return result;
}

absl::StatusOr<DatabaseStatus> GrpcClientConnection::GetStatus(const std::string& database,
                                                               const CallOptions& call) {
  v1::GetStatusRequest request;
  request.set_database(database);
  v1::DatabaseStatus response;
  absl::Status status = impl_->Unary(call, true, [&](grpc::ClientContext* context) {
    return impl_->stub_->GetStatus(context, request, &response);
  });
  if (!status.ok()) {
    return status;
  }
  return FromProto(response);
}

absl::StatusOr<std::vector<HistoryEntry>> GrpcClientConnection::History(const std::string& database,
                                                                        int limit,
                                                                        const CallOptions& call) {
  v1::HistoryRequest request;
  request.set_database(database);
  request.set_limit(limit);
  v1::HistoryResponse response;
  absl::Status status = impl_->Unary(call, true, [&](grpc::ClientContext* context) {
    return impl_->stub_->History(context, request, &response);
  });
  if (!status.ok()) {
    return status;
  }
  std::vector<HistoryEntry> entries;
  for (const v1::HistoryEntry& p : response.entries()) {
    HistoryEntry e;
    e.id = p.id();
    e.revision = p.revision();
    e.direction = p.direction();
    e.rows_before = Strings(p.rows_before());
    e.rows_after = Strings(p.rows_after());
    e.checksum = p.checksum();
    e.started = FromProto(p.started());
    e.duration = FromProto(p.duration());
    e.outcome = p.outcome();
    e.error = p.error();
    e.who = p.who();
    e.operation_id = p.operation_id();
    e.schemad_version = p.schemad_version();
    entries.push_back(std::move(e));
  }
  return entries;
}

absl::StatusOr<MigrationSetInfo> GrpcClientConnection::DescribeMigrationSet(
    const std::string& migration_set, const std::string& database, const CallOptions& call) {
  v1::DescribeMigrationSetRequest request;
  request.set_migration_set(migration_set);
  request.set_database(database);
  v1::MigrationSet response;
  absl::Status status = impl_->Unary(call, true, [&](grpc::ClientContext* context) {
    return impl_->stub_->DescribeMigrationSet(context, request, &response);
  });
  if (!status.ok()) {
    return status;
  }
  MigrationSetInfo info;
  info.name = response.name();
  info.directory = response.directory();
  info.heads = Strings(response.heads());
  info.bases = Strings(response.bases());
  info.branch_points = Strings(response.branch_points());
  info.databases = Strings(response.databases());
  for (const v1::LintFinding& finding : response.lint_findings()) {
    info.lint_findings.push_back(FromProto(finding));
  }
  for (const v1::RevisionInfo& p : response.revisions()) {
    RevisionInfo r;
    r.id = p.id();
    r.revises = Strings(p.revises());
    r.branch_labels = Strings(p.branch_labels());
    r.effective_labels = Strings(p.effective_labels());
    r.depends_on = Strings(p.depends_on());
    r.message = p.message();
    r.created = p.created();
    r.path = p.path();
    r.transactional = p.transactional();
    r.reversible = p.reversible();
    r.checksum = p.checksum();
    r.upgrade_statements = p.upgrade_statements();
    r.downgrade_statements = p.downgrade_statements();
    r.children = Strings(p.children());
    r.is_head = p.is_head();
    r.is_base = p.is_base();
    r.is_branch_point = p.is_branch_point();
    r.is_merge_point = p.is_merge_point();
    if (p.has_lock_timeout()) {
      r.lock_timeout = FromProto(p.lock_timeout());
    }
    if (p.has_statement_timeout()) {
      r.statement_timeout = FromProto(p.statement_timeout());
    }
    info.revisions.push_back(std::move(r));
  }
  return info;
}

absl::StatusOr<std::vector<DatabaseInfo>> GrpcClientConnection::ListDatabases(
    const ListDatabasesRequest& list, const CallOptions& call) {
  v1::ListDatabasesRequest request;
  for (const auto& [key, value] : list.label_selector) {
    (*request.mutable_label_selector())[key] = value;
  }
  request.set_include_status(list.include_status);
  v1::ListDatabasesResponse response;
  absl::Status status = impl_->Unary(call, true, [&](grpc::ClientContext* context) {
    return impl_->stub_->ListDatabases(context, request, &response);
  });
  if (!status.ok()) {
    return status;
  }
  std::vector<DatabaseInfo> databases;
  for (const v1::DatabaseInfo& p : response.databases()) {
    DatabaseInfo info;
    info.name = p.name();
    info.migration_set = p.migration_set();
    info.labels = std::map<std::string, std::string>(p.labels().begin(), p.labels().end());
    info.allow_ensure_head_apply = p.allow_ensure_head_apply();
    info.display_name = p.display_name();
    if (p.has_status()) {
      info.status = FromProto(p.status());
    }
    databases.push_back(std::move(info));
  }
  return databases;
}

namespace {

ValidationIssue FromProto(const v1::ValidationIssue& p) {
  ValidationIssue issue;
  switch (p.kind()) {
    case v1::ValidationIssue::KIND_MISSING_FILE:
      issue.kind = ValidationIssue::Kind::kMissingFile;
      break;
    case v1::ValidationIssue::KIND_NO_CHECKSUM:
      issue.kind = ValidationIssue::Kind::kNoChecksum;
      break;
    case v1::ValidationIssue::KIND_COSMETIC:
      issue.kind = ValidationIssue::Kind::kCosmetic;
      break;
    default:
      issue.kind = ValidationIssue::Kind::kChanged;
      break;
  }
  issue.revision = p.revision();
  issue.path = p.path();
  issue.recorded_checksum = p.recorded_checksum();
  issue.current_checksum = p.current_checksum();
  return issue;
}

}  // namespace

absl::StatusOr<ValidationResult> GrpcClientConnection::Validate(const std::string& database,
                                                                const CallOptions& call) {
  v1::ValidateRequest request;
  request.set_database(database);
  v1::ValidateResponse response;
  absl::Status status = impl_->Unary(call, true, [&](grpc::ClientContext* context) {
    return impl_->stub_->Validate(context, request, &response);
  });
  if (!status.ok()) {
    return status;
  }
  ValidationResult result;
  result.ok = response.ok();
  result.applied_checked = response.applied_checked();
  for (const v1::ValidationIssue& p : response.issues()) {
    result.issues.push_back(FromProto(p));
  }
  return result;
}

absl::StatusOr<RepairResult> GrpcClientConnection::Repair(const std::string& database,
                                                          const CallOptions& call) {
  v1::RepairRequest request;
  request.set_database(database);
  v1::RepairResponse response;
  // Safe to repeat: a second run finds nothing left to re-record.
  absl::Status status = impl_->Unary(call, true, [&](grpc::ClientContext* context) {
    return impl_->stub_->Repair(context, request, &response);
  });
  if (!status.ok()) {
    return status;
  }
  RepairResult result;
  result.operation_id = response.operation_id();
  for (const v1::ValidationIssue& p : response.repaired()) {
    result.repaired.push_back(FromProto(p));
  }
  for (const v1::ValidationIssue& p : response.not_repaired()) {
    result.not_repaired.push_back(FromProto(p));
  }
  return result;
}

const char* ToString(SchemaDifference::Kind kind) {
  switch (kind) {
    case SchemaDifference::Kind::kExtra:
      return "extra";
    case SchemaDifference::Kind::kMissing:
      return "missing";
    case SchemaDifference::Kind::kChanged:
      return "changed";
  }
  return "changed";
}

absl::StatusOr<DriftResult> GrpcClientConnection::Drift(const std::string& database,
                                                        const CallOptions& call) {
  v1::DriftRequest request;
  request.set_database(database);
  v1::DriftResponse response;
  absl::Status status = impl_->Unary(call, true, [&](grpc::ClientContext* context) {
    return impl_->stub_->Drift(context, request, &response);
  });
  if (!status.ok()) {
    return status;
  }
  DriftResult result;
  result.rows = Strings(response.rows());
  result.drift = response.drift();
  for (const v1::SchemaDifference& p : response.differences()) {
    SchemaDifference difference;
    switch (p.kind()) {
      case v1::SchemaDifference::KIND_EXTRA:
        difference.kind = SchemaDifference::Kind::kExtra;
        break;
      case v1::SchemaDifference::KIND_MISSING:
        difference.kind = SchemaDifference::Kind::kMissing;
        break;
      default:
        difference.kind = SchemaDifference::Kind::kChanged;
        break;
    }
    difference.object_kind = p.object_kind();
    difference.object = p.object();
    difference.description = p.description();
    result.differences.push_back(std::move(difference));
  }
  result.repair_sql = response.repair_sql();
  result.checked = FromProto(response.checked());
  return result;
}

absl::StatusOr<std::vector<OperationInfo>> GrpcClientConnection::ListOperations(
    const std::string& database, bool running_only, int limit, const CallOptions& call) {
  // The server answers a page at a time (at most 500 operations); follow
  // the pages up to `limit`, or to the end.
  constexpr int kPage = 500;
  std::vector<OperationInfo> operations;
  std::string page_token;
  do {
    v1::ListOperationsRequest request;
    request.set_database(database);
    request.set_running_only(running_only);
    const int wanted = limit > 0 ? limit - static_cast<int>(operations.size()) : kPage;
    request.set_limit(std::min(wanted, kPage));
    request.set_page_token(page_token);
    v1::ListOperationsResponse response;
    absl::Status status = impl_->Unary(call, true, [&](grpc::ClientContext* context) {
      return impl_->stub_->ListOperations(context, request, &response);
    });
    if (!status.ok()) {
      return status;
    }
    for (const v1::OperationInfo& p : response.operations()) {
      operations.push_back(FromProto(p));
    }
    page_token = response.next_page_token();
  } while (!page_token.empty() && (limit <= 0 || static_cast<int>(operations.size()) < limit));
  return operations;
}

absl::StatusOr<OperationInfo> GrpcClientConnection::CancelOperation(const std::string& operation_id,
                                                                    const CallOptions& call) {
  v1::CancelOperationRequest request;
  request.set_operation_id(operation_id);
  v1::OperationInfo response;
  absl::Status status = impl_->Unary(call, true, [&](grpc::ClientContext* context) {
    return impl_->stub_->CancelOperation(context, request, &response);
  });
  if (!status.ok()) {
    return status;
  }
  return FromProto(response);
}

absl::StatusOr<ReloadResult> GrpcClientConnection::Reload(const CallOptions& call) {
  v1::ReloadRequest request;
  v1::ReloadResponse response;
  absl::Status status = impl_->Unary(call, false, [&](grpc::ClientContext* context) {
    return impl_->stub_->Reload(context, request, &response);
  });
  if (!status.ok()) {
    return status;
  }
  ReloadResult result;
  result.generation = response.generation();
  result.databases_added.assign(response.databases_added().begin(),
                                response.databases_added().end());
  result.databases_removed.assign(response.databases_removed().begin(),
                                  response.databases_removed().end());
  result.migration_sets_changed.assign(response.migration_sets_changed().begin(),
                                       response.migration_sets_changed().end());
  result.databases = response.databases();
  result.migration_sets = response.migration_sets();
  result.tokens = response.tokens();
  result.warnings.assign(response.warnings().begin(), response.warnings().end());
  return result;
}

absl::StatusOr<bool> GrpcClientConnection::CheckHealth(const std::string& migration_set,
                                                       const CallOptions& call) {
  return CheckServiceHealth(
      migration_set.empty() ? ""
                            : absl::StrCat(v1::Schemad::service_full_name(), "/", migration_set),
      call);
}

absl::StatusOr<bool> GrpcClientConnection::CheckServiceHealth(const std::string& service,
                                                              const CallOptions& call) {
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  absl::Status status = impl_->Unary(call, false, [&](grpc::ClientContext* context) {
    return impl_->health_->Check(context, request, &response);
  });
  if (!status.ok()) {
    return status;
  }
  return response.status() == grpc::health::v1::HealthCheckResponse::SERVING;
}

// --------------------------------------------------------------- WaitForHead

namespace {

// The longest WaitForHead spends, past its deadline, asking what still runs.
constexpr absl::Duration kStillRunningQueryDeadline = absl::Seconds(1);

// "; still running on the server: operation op-7 (ensure-head heads, by
// site-a-control-layer), revision b2, step 2 of 3", or "" when no operation
// of `database` runs (or the server cannot say within its short deadline).
std::string StillRunning(Client& client, const std::string& database) {
  CallOptions call;
  call.deadline = kStillRunningQueryDeadline;
  absl::StatusOr<std::vector<OperationInfo>> running =
      client.ListOperations(database, /*running_only=*/true, /*limit=*/1, call);
  if (!running.ok() || running->empty()) {
    return "";
  }
  const OperationInfo& op = running->front();
  std::string out = absl::StrCat("; still running on the server: operation ", op.operation_id, " (",
                                 ToString(op.kind));
  if (!op.target.empty()) {
    absl::StrAppend(&out, " ", op.target);
  }
  if (!op.who.empty()) {
    absl::StrAppend(&out, ", by ", op.who);
  }
  absl::StrAppend(&out, "), ", ToString(op.state));
  if (!op.current_revision.empty()) {
    absl::StrAppend(&out, " revision ", op.current_revision, ", step ", op.step_index + 1, " of ",
                    op.step_count);
  }
  return out;
}

}  // namespace

absl::Status WaitForHead(const ClientOptions& options, const std::string& database,
                         absl::Duration deadline) {
  ClientOptions retrying = options;
  retrying.retry.max_elapsed = deadline;
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(std::move(retrying));
  if (!client.ok()) {
    return client.status();
  }
  return WaitForHead(**client, database, deadline);
}

absl::Status WaitForHead(Client& client, const std::string& database, absl::Duration deadline) {
  const absl::Time end = absl::Now() + deadline;
  const RetryPolicy& policy = client.options().retry;
  absl::Duration backoff = policy.initial_backoff;
  absl::Status last;
  for (;;) {
    const absl::Duration remaining = end - absl::Now();
    if (remaining <= absl::ZeroDuration()) {
      // Only worth asking when the server answered or kept the call (the
      // lock is busy, an attempt ran out): not when it is unreachable.
      const std::string still_running =
          last.code() == absl::StatusCode::kUnavailable ? "" : StillRunning(client, database);
      return absl::DeadlineExceededError(absl::StrCat(
          "database ", database, " did not reach head within ", absl::FormatDuration(deadline),
          still_running, last.ok() ? "" : absl::StrCat("; last error: ", last.ToString())));
    }
    CallOptions call;
    call.deadline = remaining;
    absl::StatusOr<EnsureHeadResult> result = client.EnsureHead(database, {}, call);
    if (result.ok()) {
      return absl::OkStatus();
    }
    const absl::Status& status = result.status();
    switch (status.code()) {
      case absl::StatusCode::kUnavailable:        // schemad or the database unreachable
      case absl::StatusCode::kAborted:            // lock_timeout, deadlock: try again
      case absl::StatusCode::kResourceExhausted:  // server overloaded
      case absl::StatusCode::kDeadlineExceeded:   // lock wait or this attempt ran out
        break;
      default:
        return status;
    }
    // An attempt cut short by this wait's own deadline says less than the
    // error before it (e.g. UNAVAILABLE: nobody listens).
    const bool cut_short =
        status.code() == absl::StatusCode::kDeadlineExceeded && absl::Now() >= end;
    if (last.ok() || !cut_short) {
      last = status;
    }
    const absl::Duration sleep = std::min(Jittered(backoff, policy.jitter),
                                          std::max(end - absl::Now(), absl::ZeroDuration()));
    absl::SleepFor(sleep);
    backoff = std::min(backoff * policy.multiplier, policy.max_backoff);
  }
}

}  // namespace schemad
