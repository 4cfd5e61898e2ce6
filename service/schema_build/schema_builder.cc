#include "service/schema_build/schema_builder.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "service/common/status_macros.h"
#include "service/engine/checksum.h"
#include "service/engine/executor.h"
#include "service/engine/planner.h"
#include "service/schema_build/desired_state.h"
#include "service/schema_build/schema_json.h"
#include "service/store/pq/pq_database.h"

namespace schemad::schema_build {
namespace {

// Bump when the model or the inspector changes what a schema holds.
constexpr char kCacheVersion[] = "schemad-schema-cache 1";

std::string DefaultCacheDir() {
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  if (xdg != nullptr && *xdg != '\0') return absl::StrCat(xdg, "/schemad");
  const char* home = std::getenv("HOME");
  if (home != nullptr && *home != '\0') return absl::StrCat(home, "/.cache/schemad");
  return "";
}

absl::StatusOr<schema::DatabaseSchema> Inspect(const store::ScratchDatabase& database) {
  ASSIGN_OR_RETURN(std::unique_ptr<store::Database> opened,
                   store::OpenPqDatabase(database.dsn(), store::PqOptions{}));
  ASSIGN_OR_RETURN(std::unique_ptr<store::Session> session, opened->Connect());
  return session->InspectSchema();
}

// Writes `text` to `path` through a temporary file and a rename, so that a
// reader never sees half an entry.
void WriteAtomically(const std::string& path, const std::string& text) {
  const std::string temporary = absl::StrCat(path, ".", getpid(), ".tmp");
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    out << text;
    if (!out) return;
  }
  std::error_code error;
  std::filesystem::rename(temporary, path, error);
  if (error) std::filesystem::remove(temporary, error);
}

}  // namespace

SchemaBuilder::SchemaBuilder(store::DevServer& dev, Options options)
    : dev_(dev), options_(std::move(options)) {
  if (options_.use_cache && options_.disk_cache) {
    cache_dir_ = options_.cache_dir.empty() ? DefaultCacheDir() : options_.cache_dir;
  }
}

absl::StatusOr<schema::DatabaseSchema> SchemaBuilder::FromDesiredState(const std::string& path) {
  ASSIGN_OR_RETURN(std::vector<DesiredStateFile> files, LoadDesiredState(path));
  ASSIGN_OR_RETURN(std::unique_ptr<store::ScratchDatabase> database, dev_.CreateScratchDatabase());
  for (const DesiredStateFile& file : files) {
    RETURN_IF_ERROR(dev_.ApplySql(*database, file.statements, file.path));
  }
  ASSIGN_OR_RETURN(schema::DatabaseSchema result, Inspect(*database));
  RETURN_IF_ERROR(database->Drop());
  return result;
}

void SchemaBuilder::Remember(const std::string& key, const schema::DatabaseSchema& model) {
  if (memory_.size() >= kRememberedSchemas) memory_.clear();
  memory_[key] = model;
}

std::string SchemaBuilder::CacheKey(const engine::RevisionGraph& graph,
                                    const std::vector<std::string>& targets) const {
  std::vector<std::string> parts = {kCacheVersion, absl::StrCat(dev_.server_version())};
  std::vector<std::string> rows;
  for (const std::string& target : targets) {
    absl::StatusOr<engine::Plan> plan = engine::PlanUpgrade(graph, rows, target);
    if (!plan.ok()) return "";
    for (const engine::PlanStep& step : plan->steps) {
      const engine::Revision& revision = graph.revision(step.revision);
      parts.push_back(absl::StrCat(revision.id, ":", revision.checksum));
    }
    if (!plan->steps.empty()) rows = plan->steps.back().rows_after;
  }
  parts.push_back(absl::StrCat("rows:", absl::StrJoin(rows, ",")));
  return engine::Sha256Hex(absl::StrJoin(parts, "\n"));
}

absl::StatusOr<schema::DatabaseSchema> SchemaBuilder::AtRevisions(
    const engine::RevisionGraph& graph, const std::vector<std::string>& targets) {
  const std::string key = options_.use_cache ? CacheKey(graph, targets) : "";
  if (!key.empty()) {
    auto remembered = memory_.find(key);
    if (remembered != memory_.end()) {
      ++cache_hits_;
      return remembered->second;
    }
  }
  const std::string entry =
      key.empty() || cache_dir_.empty() ? "" : absl::StrCat(cache_dir_, "/", key, ".json");
  if (!entry.empty()) {
    std::ifstream in(entry, std::ios::binary);
    if (in) {
      std::ostringstream text;
      text << in.rdbuf();
      absl::StatusOr<schema::DatabaseSchema> cached = SchemaFromJson(text.str());
      if (cached.ok()) {
        ++cache_hits_;
        Remember(key, *cached);
        return *std::move(cached);
      }
    }
  }

  ASSIGN_OR_RETURN(std::unique_ptr<store::ScratchDatabase> database, dev_.CreateScratchDatabase());
  {
    ASSIGN_OR_RETURN(std::unique_ptr<store::Database> opened,
                     store::OpenPqDatabase(database->dsn(), store::PqOptions{}));
    ASSIGN_OR_RETURN(std::unique_ptr<store::Session> session, opened->Connect());
    engine::ExecutorOptions executor_options;
    executor_options.who = "schemad (schema build)";
    engine::Executor executor(graph, *opened, std::move(executor_options));
    for (const std::string& target : targets) {
      engine::CallControl control;
      control.cancelled = options_.cancelled;
      absl::StatusOr<engine::OperationResult> result = executor.Upgrade(*session, target, control);
      if (!result.ok()) {
        return absl::Status(result.status().code(),
                            absl::StrCat("building the schema at ", absl::StrJoin(targets, ", "),
                                         " on the dev server: ", result.status().message()));
      }
    }
  }
  ASSIGN_OR_RETURN(schema::DatabaseSchema result, Inspect(*database));
  RETURN_IF_ERROR(database->Drop());
  if (!key.empty()) Remember(key, result);
  if (!entry.empty()) {
    std::error_code error;
    std::filesystem::create_directories(cache_dir_, error);
    if (!error) WriteAtomically(entry, SchemaToJson(result));
  }
  return result;
}

}  // namespace schemad::schema_build
