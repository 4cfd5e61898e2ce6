#include "service/server/request_limits.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "service/common/status_macros.h"

namespace schemad::server {
namespace {

// Names a field as "UpgradeRequest.target" in errors.
class Fields {
 public:
  explicit Fields(const google::protobuf::Message& request)
      : message_(request.GetDescriptor()->name()) {}

  // A single-line text field: at most `max` bytes, no control characters.
  absl::Status Text(absl::string_view field, absl::string_view value, size_t max) const {
    if (value.size() > max) {
      return Error(field, absl::StrCat("has ", value.size(), " bytes; the limit is ", max));
    }
    for (size_t i = 0; i < value.size(); ++i) {
      const unsigned char c = static_cast<unsigned char>(value[i]);
      if (c < 0x20 || c == 0x7f) {
        return Error(field,
                     absl::StrFormat("holds a control character (byte 0x%02X at offset %d)", c, i));
      }
    }
    return absl::OkStatus();
  }

  template <typename List>
  absl::Status TextList(absl::string_view field, const List& values, size_t max_count,
                        size_t max_each) const {
    if (static_cast<size_t>(values.size()) > max_count) {
      return Error(field,
                   absl::StrCat("has ", values.size(), " entries; the limit is ", max_count));
    }
    for (int i = 0; i < values.size(); ++i) {
      RETURN_IF_ERROR(Text(absl::StrCat(field, "[", i, "]"), values[i], max_each));
    }
    return absl::OkStatus();
  }

  absl::Status Range(absl::string_view field, int64_t value, int64_t max) const {
    if (value > max) {
      return Error(field, absl::StrCat("is ", value, "; the limit is ", max));
    }
    return absl::OkStatus();
  }

  // A duration field: when set, between 0 and kMaxDurationSeconds.
  absl::Status Duration(absl::string_view field, bool has,
                        const google::protobuf::Duration& value) const {
    if (!has) {
      return absl::OkStatus();
    }
    if (value.seconds() < 0 || value.nanos() < 0 || value.nanos() > 999999999) {
      return Error(field, "must not be negative");
    }
    if (value.seconds() > kMaxDurationSeconds ||
        (value.seconds() == kMaxDurationSeconds && value.nanos() > 0)) {
      return Error(field, absl::StrCat("is ", value.seconds(), "s; the limit is ",
                                       kMaxDurationSeconds, "s (7 days)"));
    }
    return absl::OkStatus();
  }

 private:
  absl::Status Error(absl::string_view field, absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat(message_, ".", field, " ", what));
  }

  std::string message_;
};

}  // namespace

absl::Status CheckRequest(const v1::EnsureHeadRequest& r) {
  const Fields f(r);
  RETURN_IF_ERROR(f.Text("database", r.database(), kMaxNameBytes));
  return f.Duration("lock_wait", r.has_lock_wait(), r.lock_wait());
}

absl::Status CheckRequest(const v1::UpgradeRequest& r) {
  const Fields f(r);
  RETURN_IF_ERROR(f.Text("database", r.database(), kMaxNameBytes));
  RETURN_IF_ERROR(f.Text("target", r.target(), kMaxTargetBytes));
  return f.Duration("lock_wait", r.has_lock_wait(), r.lock_wait());
}

absl::Status CheckRequest(const v1::DowngradeRequest& r) {
  const Fields f(r);
  RETURN_IF_ERROR(f.Text("database", r.database(), kMaxNameBytes));
  RETURN_IF_ERROR(f.Text("target", r.target(), kMaxTargetBytes));
  return f.Duration("lock_wait", r.has_lock_wait(), r.lock_wait());
}

absl::Status CheckRequest(const v1::MergeRequest& r) {
  const Fields f(r);
  RETURN_IF_ERROR(f.Text("database", r.database(), kMaxNameBytes));
  RETURN_IF_ERROR(f.Text("revision", r.revision(), kMaxTargetBytes));
  return f.Duration("lock_wait", r.has_lock_wait(), r.lock_wait());
}

absl::Status CheckRequest(const v1::StampRequest& r) {
  const Fields f(r);
  RETURN_IF_ERROR(f.Text("database", r.database(), kMaxNameBytes));
  return f.TextList("revisions", r.revisions(), kMaxTargets, kMaxTargetBytes);
}

absl::Status CheckRequest(const v1::ResolveRequest& r) {
  return Fields(r).Text("database", r.database(), kMaxNameBytes);
}

absl::Status CheckRequest(const v1::PlanRequest& r) {
  const Fields f(r);
  RETURN_IF_ERROR(f.Text("database", r.database(), kMaxNameBytes));
  RETURN_IF_ERROR(f.Text("migration_set", r.migration_set(), kMaxNameBytes));
  RETURN_IF_ERROR(f.TextList("targets", r.targets(), kMaxTargets, kMaxTargetBytes));
  return f.TextList("from_rows", r.from_rows(), kMaxFromRows, kMaxTargetBytes);
}

absl::Status CheckRequest(const v1::GetStatusRequest& r) {
  return Fields(r).Text("database", r.database(), kMaxNameBytes);
}

absl::Status CheckRequest(const v1::HistoryRequest& r) {
  const Fields f(r);
  RETURN_IF_ERROR(f.Text("database", r.database(), kMaxNameBytes));
  return f.Range("limit", r.limit(), kMaxHistoryLimit);
}

absl::Status CheckRequest(const v1::DescribeMigrationSetRequest& r) {
  const Fields f(r);
  RETURN_IF_ERROR(f.Text("migration_set", r.migration_set(), kMaxNameBytes));
  return f.Text("database", r.database(), kMaxNameBytes);
}

absl::Status CheckRequest(const v1::ListDatabasesRequest& r) {
  const Fields f(r);
  if (r.label_selector().size() > kMaxLabelSelectors) {
    return absl::InvalidArgumentError(absl::StrCat("ListDatabasesRequest.label_selector has ",
                                                   r.label_selector().size(),
                                                   " entries; the limit is ", kMaxLabelSelectors));
  }
  for (const auto& [key, value] : r.label_selector()) {
    RETURN_IF_ERROR(f.Text("label_selector key", key, kMaxLabelBytes));
    RETURN_IF_ERROR(f.Text("label_selector value", value, kMaxLabelBytes));
  }
  return absl::OkStatus();
}

absl::Status CheckRequest(const v1::ValidateRequest& r) {
  return Fields(r).Text("database", r.database(), kMaxNameBytes);
}

absl::Status CheckRequest(const v1::RepairRequest& r) {
  return Fields(r).Text("database", r.database(), kMaxNameBytes);
}

absl::Status CheckRequest(const v1::DriftRequest& r) {
  return Fields(r).Text("database", r.database(), kMaxNameBytes);
}

absl::Status CheckRequest(const v1::WatchOperationRequest& r) {
  return Fields(r).Text("operation_id", r.operation_id(), kMaxOperationIdBytes);
}

absl::Status CheckRequest(const v1::ListOperationsRequest& r) {
  const Fields f(r);
  RETURN_IF_ERROR(f.Text("database", r.database(), kMaxNameBytes));
  RETURN_IF_ERROR(f.Range("limit", r.limit(), kMaxOperationsPage));
  return f.Text("page_token", r.page_token(), kMaxPageTokenBytes);
}

absl::Status CheckRequest(const v1::CancelOperationRequest& r) {
  return Fields(r).Text("operation_id", r.operation_id(), kMaxOperationIdBytes);
}

absl::Status CheckRequest(const v1::FleetRunRequest& r) {
  const Fields f(r);
  RETURN_IF_ERROR(f.Text("target", r.target(), kMaxTargetBytes));
  RETURN_IF_ERROR(f.TextList("targets", r.targets(), kMaxTargets, kMaxTargetBytes));
  RETURN_IF_ERROR(f.Text("selector", r.selector(), kMaxSelectorBytes));
  RETURN_IF_ERROR(f.Text("canary_selector", r.canary_selector(), kMaxSelectorBytes));
  RETURN_IF_ERROR(f.Range("max_parallel", r.max_parallel(), kMaxFleetParallel));
  RETURN_IF_ERROR(f.Range("canary_count", r.canary_count(), kMaxCanaryCount));
  RETURN_IF_ERROR(f.Duration("site_timeout", r.has_site_timeout(), r.site_timeout()));
  RETURN_IF_ERROR(f.Text("resume", r.resume(), kMaxOperationIdBytes));
  return f.Duration("lock_wait", r.has_lock_wait(), r.lock_wait());
}

}  // namespace schemad::server
