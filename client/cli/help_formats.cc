#include "client/cli/help_formats.h"

#include <algorithm>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"

namespace schemad::cli {
namespace {

// The verbs, as listed by --help (CLI11 hides a subcommand whose group is "").
std::vector<const CLI::App*> Verbs(const CLI::App& app) {
  return app.get_subcommands([](const CLI::App* verb) { return !verb->get_group().empty(); });
}

// Options with a name to type (not positionals), --help included.
std::vector<const CLI::Option*> Flags(const CLI::App& app) {
  return app.get_options([](const CLI::Option* option) { return option->nonpositional(); });
}

std::vector<const CLI::Option*> Positionals(const CLI::App& app) {
  return app.get_options([](const CLI::Option* option) { return !option->nonpositional(); });
}

// Every spelling: "--quiet", "-q".
std::vector<std::string> Names(const CLI::Option& option) {
  std::vector<std::string> names;
  for (const std::string& name : option.get_lnames()) names.push_back("--" + name);
  for (const std::string& name : option.get_snames()) names.push_back("-" + name);
  return names;
}

std::string MainName(const CLI::Option& option) { return Names(option).front(); }

bool TakesValue(const CLI::Option& option) { return option.get_items_expected_max() != 0; }

bool Contains(const std::vector<std::string>& list, const std::string& value) {
  return std::find(list.begin(), list.end(), value) != list.end();
}

// The choices of a verb's positional arguments ("ops action"), joined.
std::vector<std::string> PositionalChoices(const CLI::App& verb, const ValueHints& hints) {
  std::vector<std::string> all;
  for (const CLI::Option* positional : Positionals(verb)) {
    const auto found = hints.choices.find(verb.get_name() + " " + positional->get_name());
    if (found != hints.choices.end()) {
      all.insert(all.end(), found->second.begin(), found->second.end());
    }
  }
  return all;
}

// Inside '...' in a shell: ' as '\''.
std::string ShellQuoted(const std::string& text) {
  return absl::StrCat("'", absl::StrReplaceAll(text, {{"'", "'\\''"}}), "'");
}

// A description for zsh's _arguments brackets and _describe (no brackets,
// colons escaped).
std::string ZshText(const std::string& text) {
  return absl::StrReplaceAll(text, {{"[", "("}, {"]", ")"}, {":", "\\:"}, {"\n", " "}});
}

// fish single-quoted string.
std::string FishQuoted(const std::string& text) {
  return absl::StrCat("'", absl::StrReplaceAll(text, {{"\\", "\\\\"}, {"'", "\\'"}, {"\n", " "}}),
                      "'");
}

// Text for roff: backslashes escaped, a leading '.' or '\'' made literal.
std::string Roff(const std::string& text) {
  std::string escaped = absl::StrReplaceAll(text, {{"\\", "\\e"}, {"\n", " "}});
  if (!escaped.empty() && (escaped.front() == '.' || escaped.front() == '\'')) {
    escaped = "\\&" + escaped;
  }
  return escaped;
}

// An option name for roff: its dashes as minus signs.
std::string RoffOption(const std::string& name) {
  return absl::StrReplaceAll(name, {{"-", "\\-"}});
}

std::string ValueName(const CLI::Option& option) {
  std::string name = option.get_lnames().empty() ? "VALUE" : option.get_lnames().front();
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) {
    return c == '-' ? '_' : static_cast<char>(std::toupper(c));
  });
  return name;
}

// ---------------------------------------------------------------------- bash

void BashValueCases(const std::vector<const CLI::Option*>& options, const ValueHints& hints,
                    std::set<std::string>* done, std::ostream& out) {
  for (const CLI::Option* option : options) {
    if (!TakesValue(*option)) continue;
    const std::string name = MainName(*option);
    if (!done->insert(name).second) continue;
    const std::string pattern = absl::StrJoin(Names(*option), "|");
    std::string action;
    if (Contains(hints.directories, name)) {
      action = "COMPREPLY=($(compgen -d -- \"$cur\"))";
    } else if (Contains(hints.files, name)) {
      action = "COMPREPLY=($(compgen -f -- \"$cur\"))";
    } else if (const auto found = hints.choices.find(name); found != hints.choices.end()) {
      action = absl::StrCat("COMPREPLY=($(compgen -W ",
                            ShellQuoted(absl::StrJoin(found->second, " ")), " -- \"$cur\"))");
    } else {
      action = "COMPREPLY=()";  // free text: a DSN, a name, a duration
    }
    out << "    " << pattern << ") " << action << "; return ;;\n";
  }
}

}  // namespace

void WriteBashCompletion(const CLI::App& app, const ValueHints& hints, std::ostream& out) {
  const std::vector<const CLI::App*> verbs = Verbs(app);
  std::vector<std::string> verb_names;
  for (const CLI::App* verb : verbs) verb_names.push_back(verb->get_name());
  std::vector<std::string> global;
  std::vector<std::string> global_with_value;
  for (const CLI::Option* option : Flags(app)) {
    for (const std::string& name : Names(*option)) {
      global.push_back(name);
      if (TakesValue(*option)) global_with_value.push_back(name);
    }
  }
  out << "# bash completion for schemactl (generated by `schemactl completion bash`).\n"
         "# Install: schemactl completion bash > "
         "/usr/share/bash-completion/completions/schemactl\n"
         "_schemactl() {\n"
         "  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}\n"
         "  local verbs="
      << ShellQuoted(absl::StrJoin(verb_names, " "))
      << "\n  local global=" << ShellQuoted(absl::StrJoin(global, " ")) << "\n  case $prev in\n";
  std::set<std::string> done;
  BashValueCases(Flags(app), hints, &done, out);
  for (const CLI::App* verb : verbs) BashValueCases(Flags(*verb), hints, &done, out);
  out << "  esac\n"
         "  local verb= i\n"
         "  for ((i = 1; i < COMP_CWORD; i++)); do\n"
         "    case ${COMP_WORDS[i]} in\n";
  if (!global_with_value.empty()) {
    out << "      " << absl::StrJoin(global_with_value, "|") << ") ((i++)) ;;\n";
  }
  out << "      -*) ;;\n"
         "      *) verb=${COMP_WORDS[i]}; break ;;\n"
         "    esac\n"
         "  done\n"
         "  if [[ -z $verb ]]; then\n"
         "    if [[ $cur == -* ]]; then\n"
         "      COMPREPLY=($(compgen -W \"$global\" -- \"$cur\"))\n"
         "    else\n"
         "      COMPREPLY=($(compgen -W \"$verbs\" -- \"$cur\"))\n"
         "    fi\n"
         "    return\n"
         "  fi\n"
         "  local opts= args=\n"
         "  case $verb in\n";
  for (const CLI::App* verb : verbs) {
    std::vector<std::string> names;
    for (const CLI::Option* option : Flags(*verb)) {
      for (const std::string& name : Names(*option)) names.push_back(name);
    }
    out << "    " << verb->get_name() << ") opts=" << ShellQuoted(absl::StrJoin(names, " "));
    const std::vector<std::string> choices = PositionalChoices(*verb, hints);
    if (!choices.empty()) out << " args=" << ShellQuoted(absl::StrJoin(choices, " "));
    out << " ;;\n";
  }
  out << "  esac\n"
         "  if [[ $cur == -* ]]; then\n"
         "    COMPREPLY=($(compgen -W \"$opts $global\" -- \"$cur\"))\n"
         "  else\n"
         "    COMPREPLY=($(compgen -W \"$args\" -- \"$cur\"))\n"
         "  fi\n"
         "}\n"
         "complete -F _schemactl schemactl\n";
}

// ----------------------------------------------------------------------- zsh

namespace {

void ZshOptionSpecs(const std::vector<const CLI::Option*>& options, const ValueHints& hints,
                    std::ostream& out, const std::string& indent) {
  for (const CLI::Option* option : options) {
    const std::string description = ZshText(option->get_description());
    const std::string main = MainName(*option);
    for (const std::string& name : Names(*option)) {
      std::string spec;
      if (!TakesValue(*option)) {
        spec = absl::StrCat(name, "[", description, "]");
      } else {
        std::string action = " ";
        if (Contains(hints.directories, main)) {
          action = "_files -/";
        } else if (Contains(hints.files, main)) {
          action = "_files";
        } else if (const auto found = hints.choices.find(main); found != hints.choices.end()) {
          action = absl::StrCat("(", absl::StrJoin(found->second, " "), ")");
        }
        spec = absl::StrCat(name, name.size() > 2 ? "=" : "", "[", description,
                            "]:", ValueName(*option), ":", action);
      }
      out << indent << ShellQuoted(spec) << "\n";
    }
  }
}

}  // namespace

void WriteZshCompletion(const CLI::App& app, const ValueHints& hints, std::ostream& out) {
  out << "#compdef schemactl\n"
         "# zsh completion for schemactl (generated by `schemactl completion zsh`).\n"
         "# Install: schemactl completion zsh > "
         "/usr/share/zsh/vendor-completions/_schemactl\n"
         "_schemactl() {\n"
         "  local curcontext=$curcontext state line\n"
         "  local -a global_opts verbs\n"
         "  global_opts=(\n";
  ZshOptionSpecs(Flags(app), hints, out, "    ");
  out << "  )\n  verbs=(\n";
  for (const CLI::App* verb : Verbs(app)) {
    out << "    "
        << ShellQuoted(absl::StrCat(verb->get_name(), ":", ZshText(verb->get_description())))
        << "\n";
  }
  out << "  )\n"
         "  _arguments -C $global_opts '1: :->verb' '*:: :->args' && return\n"
         "  case $state in\n"
         "    verb) _describe -t commands 'schemactl command' verbs ;;\n"
         "    args)\n"
         "      case $line[1] in\n";
  for (const CLI::App* verb : Verbs(app)) {
    out << "        " << verb->get_name() << ")\n          _arguments $global_opts \\\n";
    std::ostringstream specs;
    ZshOptionSpecs(Flags(*verb), hints, specs, "            ");
    std::string text = specs.str();
    // One spec a line, each continued.
    text = absl::StrReplaceAll(text, {{"\n", " \\\n"}});
    out << text;
    const std::vector<std::string> choices = PositionalChoices(*verb, hints);
    out << "            " << ShellQuoted(absl::StrCat("*: :(", absl::StrJoin(choices, " "), ")"))
        << " ;;\n";
  }
  out << "      esac ;;\n"
         "  esac\n"
         "}\n"
         "_schemactl \"$@\"\n";
}

// ---------------------------------------------------------------------- fish

namespace {

void FishOptions(const std::vector<const CLI::Option*>& options, const ValueHints& hints,
                 const std::string& condition, std::ostream& out) {
  for (const CLI::Option* option : options) {
    out << "complete -c schemactl";
    if (!condition.empty()) out << " -n " << FishQuoted(condition);
    for (const std::string& name : option->get_lnames()) out << " -l " << name;
    for (const std::string& name : option->get_snames()) out << " -s " << name;
    const std::string main = MainName(*option);
    if (TakesValue(*option)) {
      if (Contains(hints.directories, main)) {
        out << " -x -a '(__fish_complete_directories)'";
      } else if (Contains(hints.files, main)) {
        out << " -r -F";
      } else if (const auto found = hints.choices.find(main); found != hints.choices.end()) {
        out << " -x -a " << FishQuoted(absl::StrJoin(found->second, " "));
      } else {
        out << " -x";
      }
    }
    out << " -d " << FishQuoted(option->get_description()) << "\n";
  }
}

}  // namespace

void WriteFishCompletion(const CLI::App& app, const ValueHints& hints, std::ostream& out) {
  out << "# fish completion for schemactl (generated by `schemactl completion fish`).\n"
         "# Install: schemactl completion fish > "
         "/usr/share/fish/vendor_completions.d/schemactl.fish\n"
         "complete -c schemactl -f\n";
  FishOptions(Flags(app), hints, "", out);
  for (const CLI::App* verb : Verbs(app)) {
    out << "complete -c schemactl -n __fish_use_subcommand -a " << verb->get_name() << " -d "
        << FishQuoted(verb->get_description()) << "\n";
    const std::string condition = "__fish_seen_subcommand_from " + verb->get_name();
    FishOptions(Flags(*verb), hints, condition, out);
    const std::vector<std::string> choices = PositionalChoices(*verb, hints);
    if (!choices.empty()) {
      out << "complete -c schemactl -n " << FishQuoted(condition) << " -a "
          << FishQuoted(absl::StrJoin(choices, " ")) << "\n";
    }
  }
}

// ----------------------------------------------------------------------- man

namespace {

void ManOptions(const std::vector<const CLI::Option*>& options, std::ostream& out) {
  for (const CLI::Option* option : options) {
    std::vector<std::string> names;
    for (const std::string& name : Names(*option))
      names.push_back("\\fB" + RoffOption(name) + "\\fR");
    out << ".TP\n" << absl::StrJoin(names, ", ");
    if (TakesValue(*option)) out << " \\fI" << ValueName(*option) << "\\fR";
    out << "\n" << Roff(option->get_description());
    if (!option->get_envname().empty() &&
        option->get_description().find(option->get_envname()) == std::string::npos) {
      out << " (environment: \\fB" << Roff(option->get_envname()) << "\\fR)";
    }
    out << "\n";
  }
}

std::string Synopsis(const CLI::App& verb) {
  std::string text =
      absl::StrCat("\\fBschemactl\\fR [\\fIOPTIONS\\fR] \\fB", RoffOption(verb.get_name()), "\\fR");
  for (const CLI::Option* positional : Positionals(verb)) {
    const std::string name = "\\fI" + Roff(positional->get_name()) + "\\fR";
    absl::StrAppend(&text, " ", positional->get_required() ? name : "[" + name + "]");
    if (positional->get_items_expected_max() > 1) absl::StrAppend(&text, "...");
  }
  if (!Flags(verb).empty()) absl::StrAppend(&text, " [\\fIVERB OPTIONS\\fR]");
  return text;
}

}  // namespace

// The description without a leading "schemactl: ".
std::string NameLine(const CLI::App& app) {
  std::string line = app.get_description();
  const std::string prefix = app.get_name() + ": ";
  if (line.rfind(prefix, 0) == 0) line.erase(0, prefix.size());
  return line;
}

void WriteManPage(const CLI::App& app, const ManPageText& text, std::ostream& out) {
  out << ".\\\" schemactl(1), generated by `schemactl man` from its command definitions.\n"
      << ".TH SCHEMACTL 1 \"\" \"schemactl " << Roff(text.version) << "\" \"User Commands\"\n"
      << ".SH NAME\nschemactl \\- " << Roff(NameLine(app)) << "\n"
      << ".SH SYNOPSIS\n\\fBschemactl\\fR [\\fIOPTIONS\\fR] \\fIVERB\\fR [\\fIARGUMENTS\\fR] "
         "[\\fIVERB OPTIONS\\fR]\n"
      << ".SH DESCRIPTION\n"
         "schemactl applies versioned SQL revisions to PostgreSQL databases with Alembic's "
         "semantics (revision graph, branches, merges, depends_on, stamp, relative targets, "
         "offline SQL, the alembic_version table), directly on a DSN or through a schemad "
         "server (\\fB\\-\\-server\\fR). Options may come before or after the verb. Settings "
         "come from a flag, else its environment variable, else the project's "
         "\\fIschemactl.ini\\fR, else the default.\n"
      << ".SH OPTIONS\n";
  ManOptions(Flags(app), out);
  out << ".SH COMMANDS\n";
  for (const CLI::App* verb : Verbs(app)) {
    out << ".SS " << RoffOption(verb->get_name()) << "\n"
        << Synopsis(*verb) << "\n.PP\n"
        << Roff(verb->get_description()) << "\n";
    for (const CLI::Option* positional : Positionals(*verb)) {
      out << ".TP\n\\fI" << Roff(positional->get_name()) << "\\fR\n"
          << Roff(positional->get_description()) << "\n";
    }
    ManOptions(Flags(*verb), out);
  }
  if (!text.exit_codes.empty()) {
    out << ".SH EXIT STATUS\n";
    for (const auto& [code, meaning] : text.exit_codes) {
      out << ".TP\n.B " << Roff(code) << "\n" << Roff(meaning) << "\n";
    }
  }
  if (!text.files.empty()) {
    out << ".SH FILES\n";
    for (const auto& [path, meaning] : text.files) {
      out << ".TP\n.I " << Roff(path) << "\n" << Roff(meaning) << "\n";
    }
  }
  if (!text.examples.empty()) {
    out << ".SH EXAMPLES\n";
    for (const auto& [what, command] : text.examples) {
      out << ".PP\n" << Roff(what) << "\n.PP\n.RS 4\n.EX\n" << Roff(command) << "\n.EE\n.RE\n";
    }
  }
  out << ".SH SEE ALSO\n\\fBschemad\\fR(8), \\fBpsql\\fR(1); docs/cli.md and docs/user-guide.md "
         "in the schemad sources\n";
}

}  // namespace schemad::cli
