// Shell completion scripts (bash, zsh, fish) and the man page, generated from
// schemactl's own command definitions (the CLI11 tree main() builds), so that
// a verb or flag added there reaches all four without an edit here.
// `schemactl completion SHELL` and `schemactl man` print them; the build
// writes them for the .deb packages. Internal to schemactl.
//
// Thread-safety: stateless.
#ifndef SCHEMAD_CLIENT_CLI_HELP_FORMATS_H_
#define SCHEMAD_CLIENT_CLI_HELP_FORMATS_H_

#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"

namespace schemad::cli {

// What an option's or a verb's positional value is, for completion.
struct ValueHints {
  std::vector<std::string> directories;  // option names ("--dir") taking a directory
  std::vector<std::string> files;        // option names taking a file
  // Option names ("--transaction") or "VERB ARG" ("ops action") with a
  // fixed set of values.
  std::map<std::string, std::vector<std::string>> choices;
};

void WriteBashCompletion(const CLI::App& app, const ValueHints& hints, std::ostream& out);
void WriteZshCompletion(const CLI::App& app, const ValueHints& hints, std::ostream& out);
void WriteFishCompletion(const CLI::App& app, const ValueHints& hints, std::ostream& out);

// Extra man page sections, in roff-free plain text (escaped here).
struct ManPageText {
  std::string version;                                          // "0.1.0"
  std::vector<std::pair<std::string, std::string>> examples;    // what, command
  std::vector<std::pair<std::string, std::string>> exit_codes;  // code, meaning
  std::vector<std::pair<std::string, std::string>> files;       // path, meaning
};

// schemactl(1) in man(7) roff: NAME, SYNOPSIS, DESCRIPTION, GLOBAL OPTIONS
// (with their environment variables), COMMANDS (each verb, its arguments and
// options), EXIT STATUS, ENVIRONMENT, FILES, EXAMPLES, SEE ALSO.
void WriteManPage(const CLI::App& app, const ManPageText& text, std::ostream& out);

}  // namespace schemad::cli

#endif  // SCHEMAD_CLIENT_CLI_HELP_FORMATS_H_
