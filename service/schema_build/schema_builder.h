// Builds schema models from SQL on a dev server (store/pq/dev_server.h):
// "the schema of this desired state" and "the schema at these revisions",
// each on a fresh scratch database that is dropped afterwards.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<store::DevServer> dev, store::DevServer::Open("local"));
//   SchemaBuilder builder(*dev, SchemaBuilder::Options{});
//   ASSIGN_OR_RETURN(schema::DatabaseSchema head, builder.AtRevisions(graph, {"heads"}));
//   ASSIGN_OR_RETURN(schema::DatabaseSchema wanted, builder.FromDesiredState("schema.sql"));
//
// Schemas at revisions are cached in memory (the last kRememberedSchemas)
// and on disk, keyed by the checksums of the
// revisions applied (in order), the targets and the dev server's PostgreSQL
// version: the same revisions give the same schema, so `drift` over many
// sites at one revision builds it once. A cache entry that cannot be read is
// rebuilt; one that cannot be written is skipped (the cache is an
// optimisation, never a source of errors).
//
// Thread-safety: one thread at a time (as the DevServer).
#ifndef SCHEMAD_SERVICE_SCHEMA_BUILD_SCHEMA_BUILDER_H_
#define SCHEMAD_SERVICE_SCHEMA_BUILD_SCHEMA_BUILDER_H_

#include <atomic>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "service/engine/revision_graph.h"
#include "service/schema/schema_model.h"
#include "service/store/pq/dev_server.h"

namespace schemad::schema_build {

class SchemaBuilder {
 public:
  struct Options {
    // Where cached schemas live on disk; "" = $XDG_CACHE_HOME/schemad, else
    // $HOME/.cache/schemad (none when neither is set).
    std::string cache_dir;
    // false: no disk cache (the memory cache only).
    bool disk_cache = true;
    // false: neither cache (every AtRevisions builds).
    bool use_cache = true;
    // Checked between the statements of AtRevisions' revisions: when set, the
    // build stops (CANCELLED) and its scratch database is dropped. May be null.
    const std::atomic<bool>* cancelled = nullptr;
  };

  // `dev` must outlive the builder.
  SchemaBuilder(store::DevServer& dev, Options options);

  // The schema that the desired state at `path` (desired_state.h) builds on
  // an empty database. Errors name the file and line of the failing
  // statement.
  absl::StatusOr<schema::DatabaseSchema> FromDesiredState(const std::string& path);

  // The schema that upgrading an empty database to each of `targets` in
  // turn builds (revision ids or symbols such as "heads"; none: an empty
  // database). Errors name the failing revision.
  absl::StatusOr<schema::DatabaseSchema> AtRevisions(const engine::RevisionGraph& graph,
                                                     const std::vector<std::string>& targets);

  // The cache key AtRevisions uses ("" when a target does not plan).
  std::string CacheKey(const engine::RevisionGraph& graph,
                       const std::vector<std::string>& targets) const;

  // How many AtRevisions calls the cache answered (tests, reports).
  int cache_hits() const { return cache_hits_; }
  const std::string& cache_dir() const { return cache_dir_; }

 private:
  static constexpr size_t kRememberedSchemas = 64;
  void Remember(const std::string& key, const schema::DatabaseSchema& model);

  store::DevServer& dev_;
  Options options_;
  std::string cache_dir_;  // "" = no cache
  int cache_hits_ = 0;
  std::map<std::string, schema::DatabaseSchema> memory_;  // by CacheKey
};

}  // namespace schemad::schema_build

#endif  // SCHEMAD_SERVICE_SCHEMA_BUILD_SCHEMA_BUILDER_H_
