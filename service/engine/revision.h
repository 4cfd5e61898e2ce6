// Revision: one migration, as read from a revision file (or declared inline in
// tests). Plain data; the graph (revision_graph.h) gives it relations.
//
//   Revision r;
//   r.id = "3f2a9c1b7d4e";
//   r.revises = {"1c9e8b7a6f5d"};
//   r.upgrade = SqlSection{...};
//
// Thread-safety: a value type; const access is safe from any thread.
#ifndef SCHEMAD_SERVICE_ENGINE_REVISION_H_
#define SCHEMAD_SERVICE_ENGINE_REVISION_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace schemad::engine {

// One SQL statement of a section, as the splitter found it.
struct SqlStatement {
  std::string text;  // the statement without its trailing ';', trimmed
  int line = 0;      // 1-based line in the file where the statement starts
};

// The `-- +upgrade` or `-- +downgrade` part of a revision file.
struct SqlSection {
  int line = 0;                          // line of the `-- +upgrade`/`-- +downgrade` marker
  std::string body;                      // raw text after the marker line, up to the next marker
  std::vector<SqlStatement> statements;  // empty: a deliberate no-op
};

struct Revision {
  std::string id;                          // `revision`: unique id, usually 12 hex digits
  std::vector<std::string> revises;        // `revises` (Alembic down_revision); empty for a root
  std::vector<std::string> branch_labels;  // `branch_labels`
  std::vector<std::string> depends_on;     // `depends_on`: ids, unique prefixes or labels
  std::string message;                     // `message`
  std::string created;                     // `created`, as written
  bool transactional = true;               // `transactional`
  std::optional<absl::Duration> lock_timeout;       // `lock_timeout` override
  std::optional<absl::Duration> statement_timeout;  // `statement_timeout` override
  bool parse = true;  // `parse`: false splits without PostgreSQL's parser (sql_splitter.h)
  // `lint_ignore`: lint rules silenced for the whole revision (lint.h). In the
  // header, so adding it to an applied revision changes no checksum.
  std::vector<std::string> lint_ignore;

  std::string path;  // file the revision came from ("" when declared inline)
  int id_line = 0;   // line of the `revision` header (for error messages)

  std::optional<SqlSection> upgrade;    // always present in a file that parsed
  std::optional<SqlSection> downgrade;  // absent: the revision is irreversible

  // Lower-case hex SHA-256 of the upgrade and downgrade bodies (see checksum.h).
  std::string checksum;

  bool reversible() const { return downgrade.has_value(); }
  // "path:line" for messages, or the id when declared inline.
  std::string Where() const;
};

}  // namespace schemad::engine

#endif  // SCHEMAD_SERVICE_ENGINE_REVISION_H_
