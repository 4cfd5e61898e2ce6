// The secrets matrix (issue 9): DSNs whose passwords hold every character
// that means something in a URI or a conninfo string, and non-ASCII, in
// every form a DSN can take, through every output schemad and schemactl
// have — and no password, raw or encoded, ever appears.
//
// Real cluster (roles made with those passwords), the real `schemad` binary
// (its stderr captured) and the real `schemactl` binary, direct and through
// the server:
//   - schemactl direct: successful upgrade/current/history (text and
//     --json), wrong password, unreachable host, a DSN that does not parse;
//   - schemad: --check-config, the start-up and rpc-failure logs, `dbs`
//     (ListDatabases with status), `current` (GetStatus), `upgrade` (the
//     operation's events), `history --log` (History), `ops list` and
//     `ops watch` (operations and their replay), `fleet upgrade` (per-site
//     results with failures), schemad_history rows in every database.
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <pqxx/pqxx>
#include <regex>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/pg_fixture.h"
#include "tests/testing/ports.h"
#include "tests/testing/subprocess.h"

namespace schemad {
namespace {

using ::schemad::testing::BackgroundProcess;
using ::schemad::testing::ProcessResult;
using ::schemad::testing::Query;
using ::schemad::testing::RunProcess;
using ::schemad::testing::TestDatabase;
using ::testing::HasSubstr;
using ::testing::Not;

// Each holds a marker word (Zebra, Yak2, Gnu3, Hare4) so that a partial leak
// shows too.
const std::vector<std::string>& Passwords() {
  static const auto* kPasswords = new std::vector<std::string>{
      "Zebra/1@x:y?z#[a]b%c+d=e&f'g\"h\\i j-\xc3\xbc\xe2\x82\xac",  // every special, ü€
      "kq3/Yak2LEAK+pw=",                                           // base64-like
      "Gnu3-\xc3\xbcn\xc3\xaf\xe2\x82\xac\xc3\xb6"
      "d\xc3\xa9 pass",   // non-ASCII, a space
      "%41Hare4%zz%2F@",  // percent signs
  };
  return *kPasswords;
}
const std::vector<std::string> kMarkers = {"Zebra", "Yak2", "Gnu3", "Hare4"};

std::string PercentEncode(const std::string& text, bool only_required) {
  std::string out;
  for (unsigned char c : text) {
    const bool keep =
        only_required ? (c != '@' && c != '/' && c != '?' && c != '%')
                      : (absl::ascii_isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~');
    if (keep) {
      out.push_back(static_cast<char>(c));
    } else {
      absl::StrAppend(&out, "%", absl::Hex(c, absl::kZeroPad2));
    }
  }
  return out;
}

std::string Lower(std::string text) { return absl::AsciiStrToLower(text); }

std::string ConninfoQuoted(const std::string& value) {
  return absl::StrReplaceAll(value, {{"\\", "\\\\"}, {"'", "\\'"}});
}

// Every way a password could be spelled in an output.
std::vector<std::string> Spellings(const std::string& password) {
  const std::string json = nlohmann::json(password).dump();
  return {password,
          PercentEncode(password, false),
          Lower(PercentEncode(password, false)),
          PercentEncode(password, true),
          ConninfoQuoted(password),
          json.substr(1, json.size() - 2)};
}

struct Form {
  std::string name;
  std::string (*dsn)(const std::string& user, const std::string& password, const std::string& host,
                     const std::string& port, const std::string& db);
};

const std::vector<Form>& Forms() {
  static const auto* kForms = new std::vector<Form>{
      {"uri",
       [](const std::string& u, const std::string& p, const std::string& h, const std::string& port,
          const std::string& d) {
         return absl::StrCat("postgresql://", u, ":", PercentEncode(p, false), "@", h, ":", port,
                             "/", d);
       }},
      {"uri-minimal",  // only what libpq needs encoded
       [](const std::string& u, const std::string& p, const std::string& h, const std::string& port,
          const std::string& d) {
         return absl::StrCat("postgresql://", u, ":", PercentEncode(p, true), "@", h, ":", port,
                             "/", d);
       }},
      {"uri-query",
       [](const std::string& u, const std::string& p, const std::string& h, const std::string& port,
          const std::string& d) {
         return absl::StrCat("postgres://", u, "@", h, ":", port, "/", d,
                             "?sslmode=disable&password=", PercentEncode(p, false));
       }},
      {"kv",
       [](const std::string& u, const std::string& p, const std::string& h, const std::string& port,
          const std::string& d) {
         return absl::StrCat("host=", h, " port=", port, " user=", u, " dbname=", d, " password='",
                             ConninfoQuoted(p), "'");
       }},
  };
  return *kForms;
}

// Roles with the nasty passwords, dropped at the end (after the databases).
class Roles {
 public:
  Roles() {
    pqxx::connection conn(testing::AdminDsn());
    pqxx::nontransaction tx(conn);
    for (size_t i = 0; i < Passwords().size(); ++i) {
      tx.exec(absl::StrCat("DROP ROLE IF EXISTS ", Name(i)));
      tx.exec(absl::StrCat("CREATE ROLE ", Name(i), " LOGIN SUPERUSER PASSWORD ",
                           tx.quote(Passwords()[i])));
    }
  }
  ~Roles() {
    try {
      pqxx::connection conn(testing::AdminDsn());
      pqxx::nontransaction tx(conn);
      for (size_t i = 0; i < Passwords().size(); ++i) {
        tx.exec(absl::StrCat("DROP ROLE IF EXISTS ", Name(i)));
      }
    } catch (const std::exception& e) {
      ADD_FAILURE() << "dropping the test roles: " << e.what();
    }
  }
  static std::string Name(size_t i) { return absl::StrCat("secrets_role_", i); }
};

// Every text any command printed, labelled, for the final scan.
class Outputs {
 public:
  void Add(const std::string& label, const std::string& text) { texts_[label] += text; }
  void Add(const std::string& label, const ProcessResult& r) {
    Add(label, absl::StrCat(r.out, "\n", r.err));
  }
  // No spelling of any password, nor any marker, anywhere.
  void ExpectNoSecret() const {
    std::vector<std::string> forbidden = kMarkers;
    for (const std::string& password : Passwords()) {
      for (const std::string& spelling : Spellings(password)) {
        forbidden.push_back(spelling);
      }
    }
    for (const auto& [label, text] : texts_) {
      for (const std::string& secret : forbidden) {
        EXPECT_THAT(text, Not(HasSubstr(secret))) << "in the output of " << label;
      }
    }
  }
  size_t size() const { return texts_.size(); }

 private:
  std::map<std::string, std::string> texts_;
};

class SecretsTest : public ::testing::Test {
 protected:
  SecretsTest() {
    char tmpl[] = "/tmp/schemad_secrets_test_XXXXXX";
    dir_ = mkdtemp(tmpl);
    std::filesystem::create_directories(dir_ + "/modax");
    for (const std::string& rev : {std::string("a1"), std::string("b2")}) {
      std::ofstream(absl::StrCat(dir_, "/modax/", rev, ".sql"))
          << "-- revision: " << rev << "\n"
          << (rev == "b2" ? "-- revises: a1\n" : "") << "\n-- +upgrade\nCREATE TABLE t_" << rev
          << " (id int);\n\n-- +downgrade\nDROP TABLE t_" << rev << ";\n";
    }
  }
  ~SecretsTest() override { std::filesystem::remove_all(dir_); }

  std::string WriteSecret(const std::string& name, const std::string& content) {
    const std::string path = absl::StrCat(dir_, "/", name);
    std::ofstream(path) << content;
    std::filesystem::permissions(
        path, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
    return path;
  }

  ProcessResult Schemactl(const std::vector<std::string>& args,
                          const std::vector<std::string>& env = {}) {
    std::vector<std::string> argv = {SCHEMAD_SCHEMACTL, "--dir", dir_ + "/modax", "--who",
                                     "secrets-test"};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunProcess(argv, env);
  }

  std::string dir_;
  Outputs outputs_;
};

TEST_F(SecretsTest, NoPasswordInAnyOutput) {
  Roles roles;
  testing::PgCluster cluster;
  ASSERT_TRUE(testing::ReadPgCluster(&cluster));
  const std::string down_port = absl::StrCat(testing::UnusedLoopbackPort());

  // One database per password and form; each DSN works (the upgrades below
  // prove it), so every output path runs with the secret loaded.
  struct Site {
    std::string name;
    std::unique_ptr<TestDatabase> db;
    std::string dsn;
  };
  std::vector<Site> sites;
  std::vector<std::string> broken;  // names of the databases that cannot work
  std::string yaml =
      absl::StrCat("listen: 127.0.0.1:0\nmigration_sets: [{name: modax, directory: ", dir_,
                   "/modax}]\ndatabases:\n");
  const auto add_database = [&](const std::string& name, const std::string& dsn) {
    const std::string file = WriteSecret("dsn-" + name, dsn);
    absl::StrAppend(&yaml, "  - {name: ", name, ", migration_set: modax, dsn_file: ", file,
                    ", labels: {group: secrets}}\n");
  };
  for (size_t i = 0; i < Passwords().size(); ++i) {
    for (const Form& form : Forms()) {
      Site site;
      site.name = absl::StrCat("p", i, "-", form.name);
      site.db = std::make_unique<TestDatabase>();
      ASSERT_TRUE(site.db->ok());
      site.dsn =
          form.dsn(Roles::Name(i), Passwords()[i], cluster.host, cluster.port, site.db->name());
      add_database(site.name, site.dsn);
      sites.push_back(std::move(site));
    }
    // The same password, wrong for the role; and a host where nobody listens.
    const std::string wrong = Passwords()[i] + "-wrong";
    add_database(absl::StrCat("p", i, "-wrong"),
                 Forms()[i % Forms().size()].dsn(Roles::Name(i), wrong, cluster.host, cluster.port,
                                                 "postgres"));
    add_database(absl::StrCat("p", i, "-down"),
                 Forms()[(i + 1) % Forms().size()].dsn(Roles::Name(i), Passwords()[i], cluster.host,
                                                       down_port, "postgres"));
    broken.push_back(absl::StrCat("p", i, "-wrong"));
    broken.push_back(absl::StrCat("p", i, "-down"));
  }

  // ------------------------------------------------ schemactl, direct mode
  for (size_t k = 0; k < sites.size(); ++k) {
    const Site& site = sites[k];
    SCOPED_TRACE(site.name);
    // The DSN by flag, by SCHEMAD_DSN and by DATABASE_URL.
    const std::vector<std::string> env =
        k % 3 == 0 ? std::vector<std::string>{}
                   : std::vector<std::string>{
                         absl::StrCat(k % 3 == 1 ? "SCHEMAD_DSN=" : "DATABASE_URL=", site.dsn)};
    std::vector<std::string> dsn_flag;
    if (k % 3 == 0) {
      dsn_flag = {"--dsn", site.dsn};
    }
    const auto run = [&](const std::string& label, std::vector<std::string> args) {
      args.insert(args.begin(), dsn_flag.begin(), dsn_flag.end());
      ProcessResult r = Schemactl(args, env);
      outputs_.Add(absl::StrCat(site.name, " direct ", label), r);
      return r;
    };
    EXPECT_EQ(run("upgrade a1", {"upgrade", "a1"}).code, 0);
    EXPECT_EQ(run("current", {"current", "-v"}).code, 0);
    EXPECT_EQ(run("current --json", {"--json", "current"}).code, 0);
    EXPECT_EQ(run("history --log --json", {"--json", "history", "--log"}).code, 0);
    EXPECT_EQ(run("plan --json", {"--json", "plan", "upgrade", "heads"}).code, 0);
  }
  for (size_t i = 0; i < Passwords().size(); ++i) {
    for (const Form& form : Forms()) {
      SCOPED_TRACE(absl::StrCat(i, " ", form.name));
      const std::string wrong = form.dsn(Roles::Name(i), Passwords()[i] + "-wrong", cluster.host,
                                         cluster.port, "postgres");
      const std::string down =
          form.dsn(Roles::Name(i), Passwords()[i], cluster.host, down_port, "postgres");
      for (const auto& [label, dsn] :
           {std::make_pair("wrong password", wrong), std::make_pair("unreachable", down)}) {
        ProcessResult r = Schemactl({"--dsn", dsn, "current"});
        EXPECT_EQ(r.code, 5) << r.err;
        outputs_.Add(absl::StrCat(i, form.name, " direct ", label), r);
        r = Schemactl({"--json", "upgrade"}, {"SCHEMAD_DSN=" + dsn});
        EXPECT_EQ(r.code, 5) << r.err;
        outputs_.Add(absl::StrCat(i, form.name, " direct --json ", label), r);
      }
    }
    // The password written into the URI as it is: refused (exit 2) where
    // libpq would mis-parse it, before anything connects; fine where it
    // would not (no '@', '/', '?' or '%').
    const std::string raw = absl::StrCat("postgresql://", Roles::Name(i), ":", Passwords()[i], "@",
                                         cluster.host, ":", cluster.port, "/postgres");
    ProcessResult r = Schemactl({"--json", "current"}, {"DATABASE_URL=" + raw});
    const bool ambiguous = Passwords()[i].find_first_of("@/?%") != std::string::npos;
    EXPECT_EQ(r.code, ambiguous ? 2 : 0) << r.err;
    outputs_.Add(absl::StrCat(i, " direct unescaped URI"), r);
  }

  // ---------------------------------------------------------- schemad
  const std::string config = WriteSecret("schemad.yaml", yaml);
  ProcessResult check = RunProcess({SCHEMAD_BINARY, "--config", config, "--check-config"});
  EXPECT_EQ(check.code, 0) << check.err;
  outputs_.Add("schemad --check-config", check);
  {
    // A configuration with a password written into a URI as it is.
    const std::string raw_file =
        WriteSecret("dsn-raw", absl::StrCat("postgresql://", Roles::Name(1), ":", Passwords()[1],
                                            "@", cluster.host, ":", cluster.port, "/postgres"));
    const std::string raw_config = WriteSecret(
        "raw.yaml", absl::StrCat("listen: 127.0.0.1:0\nmigration_sets: [{name: modax, directory: ",
                                 dir_, "/modax}]\ndatabases: [{name: raw, migration_set: modax, ",
                                 "dsn_file: ", raw_file, "}]\n"));
    ProcessResult refused = RunProcess({SCHEMAD_BINARY, "--config", raw_config, "--check-config"});
    EXPECT_EQ(refused.code, 2) << refused.err;
    EXPECT_THAT(refused.err, HasSubstr("the DSN of database raw is not a valid URI"));
    outputs_.Add("schemad --check-config, unescaped URI", refused);
    ProcessResult start = RunProcess({SCHEMAD_BINARY, "--config", raw_config});
    EXPECT_EQ(start.code, 2) << start.err;
    outputs_.Add("schemad start, unescaped URI", start);
  }
  BackgroundProcess schemad({SCHEMAD_BINARY, "--config", config, "--log-level", "debug"}, dir_,
                            "schemad");
  const std::string address = schemad.WaitForOutput("schemad listening on ", absl::Seconds(60));
  ASSERT_FALSE(address.empty()) << schemad.Err();
  // Calls retry while a database is unreachable (it may come back): the
  // broken ones get a short --timeout.
  const auto remote = [&](const std::string& label, std::vector<std::string> args,
                          const std::string& timeout = "30s") {
    // No --dir: with --server the server's migration set is used, and a
    // --dir would be refused.
    args.insert(args.begin(), {SCHEMAD_SCHEMACTL, "--who", "secrets-test", "--server", address,
                               "--timeout", timeout});
    ProcessResult r = RunProcess(args, {});
    outputs_.Add("remote " + label, r);
    return r;
  };
  EXPECT_EQ(remote("dbs", {"dbs"}).code, 0);
  EXPECT_EQ(remote("dbs --json", {"--json", "dbs"}).code, 0);
  for (const Site& site : sites) {
    SCOPED_TRACE(site.name);
    EXPECT_EQ(
        remote(site.name + " current --json", {"--database", site.name, "--json", "current"}).code,
        0);
    EXPECT_EQ(
        remote(site.name + " upgrade --json", {"--database", site.name, "--json", "upgrade"}).code,
        0);
    EXPECT_EQ(remote(site.name + " history", {"--database", site.name, "history", "--log"}).code,
              0);
    EXPECT_EQ(remote(site.name + " history --json",
                     {"--database", site.name, "--json", "history", "--log"})
                  .code,
              0);
    EXPECT_THAT(Query(site.db->dsn(), "SELECT version_num FROM alembic_version"),
                ::testing::ElementsAre(::testing::ElementsAre("b2")));
  }
  for (const std::string& name : broken) {
    SCOPED_TRACE(name);
    EXPECT_NE(remote(name + " current", {"--database", name, "current"}, "2s").code, 0);
    EXPECT_NE(
        remote(name + " current --json", {"--database", name, "--json", "current"}, "2s").code, 0);
    EXPECT_NE(
        remote(name + " upgrade --json", {"--database", name, "--json", "upgrade"}, "2s").code, 0);
    EXPECT_NE(remote(name + " ensure-head", {"--database", name, "ensure-head"}, "2s").code, 0);
  }
  EXPECT_EQ(remote("dbs after", {"--json", "dbs"}).code, 0);
  ProcessResult ops = remote("ops list --json", {"--json", "ops", "list"});
  EXPECT_EQ(ops.code, 0);
  std::smatch id;
  ASSERT_TRUE(std::regex_search(ops.out, id, std::regex("op-[0-9a-f]{16}"))) << ops.out;
  remote("ops watch", {"ops", "watch", id.str()});
  remote("ops watch --json", {"--json", "ops", "watch", id.str()});
  // Every site at once: the working ones have nothing to do, the broken
  // ones fail with their errors.
  ProcessResult fleet =
      remote("fleet upgrade --json", {"--json", "fleet", "upgrade", "heads", "--selector",
                                      "group=secrets", "--continue-on-error", "--parallel", "4"});
  EXPECT_EQ(fleet.code, 1) << fleet.err;  // the broken sites failed
  EXPECT_THAT(fleet.out, HasSubstr("\"failed\":" + std::to_string(broken.size())));
  remote("fleet status", {"fleet", "status", "--selector", "group=secrets"});
  remote("fleet ensure-head",
         {"fleet", "ensure-head", "--selector", "group=secrets", "--continue-on-error"});

  // What the databases recorded.
  for (const Site& site : sites) {
    const testing::Rows rows = Query(site.db->dsn(), "SELECT t::text FROM schemad_history t");
    EXPECT_FALSE(rows.empty());
    for (const auto& row : rows) {
      outputs_.Add(site.name + " schemad_history", absl::StrJoin(row, "|"));
    }
  }
  schemad.Signal(SIGTERM);
  EXPECT_EQ(schemad.Wait(absl::Seconds(60)), 0) << schemad.Err();
  outputs_.Add("schemad stdout", schemad.Out());
  outputs_.Add("schemad stderr", schemad.Err());
  EXPECT_THAT(schemad.Err(), HasSubstr("rpc failed"));  // the failures were logged
  EXPECT_GT(outputs_.size(), 150u);
  outputs_.ExpectNoSecret();
}

}  // namespace
}  // namespace schemad
