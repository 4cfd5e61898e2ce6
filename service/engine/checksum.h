// Checksums of revision files: what is recorded when a revision is applied,
// and compared later to notice a file that changed after it ran.
//
//   std::string hex = Sha256Hex("abc");  // "ba7816bf...f20015ad"
//   revision.checksum = RevisionChecksum(revision.upgrade, revision.downgrade);
//
// Line-ending policy: the same revision must have the same checksum whether
// git checked it out with CRLF or LF line endings, and whatever an editor did
// to the whitespace at the end of a section. So, before hashing, each section
// body is normalised: "\r\n" and a lone "\r" become "\n", and whitespace at the
// end of the body is removed. Nothing else is changed: whitespace inside a
// body (indentation, trailing spaces on inner lines) and comments count.
//
// The header (revision, revises, message, ...) is not part of the checksum;
// only what runs is.
//
// The fingerprint is a second hash, of what the bodies mean to PostgreSQL:
// each statement's parse tree without source positions. An edit of comments,
// whitespace or the case of keywords and unquoted names changes the checksum
// but not the fingerprint, so `validate` reports it as cosmetic and upgrade
// does not refuse it; any other edit changes both.
//
// Thread-safety: stateless; safe to call from any thread.
#ifndef SCHEMAD_SERVICE_ENGINE_CHECKSUM_H_
#define SCHEMAD_SERVICE_ENGINE_CHECKSUM_H_

#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "service/engine/revision.h"

namespace schemad::engine {

// Lower-case hex SHA-256 of `data` (64 characters). Aborts the process only if
// OpenSSL cannot compute SHA-256 at all (a broken installation).
std::string Sha256Hex(absl::string_view data);

// Lower-case hex SHA-256 of
//   "upgrade\n" + N(upgrade body) + "\0downgrade\n" + N(downgrade body)
// or, for an irreversible revision (no downgrade section),
//   "upgrade\n" + N(upgrade body) + "\0irreversible"
// where N is the normalisation described at the top of this file. A missing
// upgrade section hashes as an empty body. An empty downgrade section (a
// deliberate no-op) and no downgrade section hash differently.
std::string RevisionChecksum(const std::optional<SqlSection>& upgrade,
                             const std::optional<SqlSection>& downgrade);

// Lower-case hex SHA-256 of
//   "upgrade\n" + T(upgrade) + "\0downgrade\n" + T(downgrade)   (or "\0irreversible")
// where T joins, for each statement PostgreSQL 15's parser splits the body
// into, its parse tree as libpg_query's JSON with every "location" key
// removed, one statement a line ("text " + the statement for one larger than
// kMaxAnalysedStatementBytes, whose tree is not exported). "" for a revision
// read with `-- parse: false`, or whose SQL does not parse: it has no
// fingerprint, and every edit of it counts as a change. Costs a parse of the
// revision (tens of microseconds for a typical one); computed when a revision
// is recorded as applied and when a checksum differs, not at load.
std::string RevisionFingerprint(const Revision& revision);

}  // namespace schemad::engine

#endif  // SCHEMAD_SERVICE_ENGINE_CHECKSUM_H_
