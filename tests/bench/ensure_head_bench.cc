// EnsureHead at head through the SDK on a warm channel, beside the floor
// measured in the same run: the same `SELECT version_num FROM alembic_version`
// over a plain libpq connection.
//
//   ensure_head_bench --admin-dsn postgresql://postgres:pw@127.0.0.1:5432/postgres
//       [--calls 10000] [--concurrency 64] [--per-caller 300] [--rounds 5]
//       [--server 127.0.0.1:50051 --database site-a --dsn DSN]
//       [--server-b 127.0.0.1:50052 --name-a A --name-b B]
//
// Without --server it creates a database, a small migration set and an
// in-process schemad (so client and server share the machine's cores, as
// they would on one host); with --server it measures that server, whose
// database `--database` must be at `--dsn` (for the floor). The floor and the
// SDK take turns: --rounds rounds, each running every measurement once
// (sequential: --calls / --rounds calls; concurrent: --concurrency callers x
// --per-caller calls). Prints per measurement the median over the rounds of
// p50, p99 and throughput, with min-max, and the SDK/floor ratio of p50 and
// of throughput taken round by round. Any failed call fails the benchmark.
// tests/bench/ensure_head_bench.sh runs it against the `schemad` binary.
//
// With --server-b (and --server, --database, --dsn) it compares two servers
// serving the same database (e.g. one without and one with a control
// database): each round measures the floor, then A and B in turn (which goes
// first alternates), sequentially and with --concurrency callers on the
// server's one channel; prints each one's p50, p99 and throughput and the
// B/A ratios of p50 and p99 taken round by round.
// tests/bench/ensure_head_control_bench.sh runs it so.
#include <libpq-fe.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "schemad/client.h"
#include "service/server/config.h"
#include "service/server/server.h"

namespace {

struct Args {
  std::string admin_dsn;
  std::string server;
  std::string database = "bench";
  std::string dsn;
  std::string server_b;  // compare mode (see above)
  std::string name_a = "A";
  std::string name_b = "B";
  int calls = 10000;
  int concurrency = 64;
  int per_caller = 300;
  int rounds = 5;
};

struct Stats {
  double p50_us = 0, p99_us = 0, mean_us = 0, throughput = 0;
};

Stats Summarize(std::vector<double> us, absl::Duration wall) {
  Stats s;
  if (us.empty()) {
    return s;
  }
  std::sort(us.begin(), us.end());
  s.p50_us = us[us.size() / 2];
  s.p99_us = us[std::min(us.size() - 1, us.size() * 99 / 100)];
  double sum = 0;
  for (double v : us) {
    sum += v;
  }
  s.mean_us = sum / static_cast<double>(us.size());
  s.throughput = static_cast<double>(us.size()) / absl::ToDoubleSeconds(wall);
  return s;
}

// Runs `call` `per_thread` times on each of `threads` threads (one sequential
// thread when threads == 1); returns per-call latencies.
Stats Measure(int threads, int per_thread, const std::function<std::function<bool()>(int)>& make) {
  std::vector<std::vector<double>> latencies(threads);
  std::vector<std::function<bool()>> calls;
  for (int t = 0; t < threads; ++t) {
    calls.push_back(make(t));
  }
  std::atomic<int> ready{0};
  std::atomic<bool> failed{false};
  absl::Time start;
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      latencies[t].reserve(per_thread);
      ready.fetch_add(1);
      while (ready.load() < threads) {
        std::this_thread::yield();
      }
      for (int i = 0; i < per_thread; ++i) {
        const absl::Time before = absl::Now();
        if (!calls[t]()) {
          failed = true;
          return;
        }
        latencies[t].push_back(absl::ToDoubleMicroseconds(absl::Now() - before));
      }
    });
  }
  while (ready.load() < threads) {
    std::this_thread::yield();
  }
  start = absl::Now();
  for (std::thread& w : workers) {
    w.join();
  }
  const absl::Duration wall = absl::Now() - start;
  if (failed) {
    std::cerr << "a call failed\n";
    std::exit(1);
  }
  std::vector<double> all;
  for (auto& l : latencies) {
    all.insert(all.end(), l.begin(), l.end());
  }
  return Summarize(std::move(all), wall);
}

// "median (min-max)" of `values`, each printed with one decimal.
std::string Spread(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  const double median = n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
  return absl::StrFormat("%.1f (%.1f-%.1f)", median, values.front(), values.back());
}

// One measurement's results over the rounds.
struct Series {
  std::string what;
  std::vector<Stats> rounds;

  std::vector<double> Get(double Stats::*field) const {
    std::vector<double> out;
    for (const Stats& s : rounds) {
      out.push_back(s.*field);
    }
    return out;
  }
};

void Print(const Series& series) {
  std::cout << absl::StrFormat(
      "%-44s p50 %s us   p99 %s us   %s calls/s\n", series.what, Spread(series.Get(&Stats::p50_us)),
      Spread(series.Get(&Stats::p99_us)), Spread(series.Get(&Stats::throughput)));
}

// Round-by-round ratios of `field`, a over b.
void PrintRatio(const std::string& what, const Series& a, const Series& b, double Stats::*field) {
  std::vector<double> ratios;
  for (size_t i = 0; i < a.rounds.size(); ++i) {
    ratios.push_back((a.rounds[i].*field) / (b.rounds[i].*field));
  }
  std::sort(ratios.begin(), ratios.end());
  const size_t n = ratios.size();
  const double median = n % 2 == 1 ? ratios[n / 2] : (ratios[n / 2 - 1] + ratios[n / 2]) / 2;
  std::cout << absl::StrFormat("%-44s %.2fx (%.2f-%.2f)\n", what, median, ratios.front(),
                               ratios.back());
}

bool Exec(const std::string& dsn, const std::string& sql) {
  PGconn* conn = PQconnectdb(dsn.c_str());
  bool ok = PQstatus(conn) == CONNECTION_OK;
  if (ok) {
    PGresult* r = PQexec(conn, sql.c_str());
    ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok) {
      std::cerr << PQerrorMessage(conn);
    }
    PQclear(r);
  } else {
    std::cerr << PQerrorMessage(conn);
  }
  PQfinish(conn);
  return ok;
}

// The floor: the same one-row read over plain libpq connections.
Stats Floor(const std::string& dsn, int threads, int per_thread) {
  std::vector<PGconn*> conns;
  for (int t = 0; t < threads; ++t) {
    PGconn* conn = PQconnectdb(dsn.c_str());
    if (PQstatus(conn) != CONNECTION_OK) {
      std::cerr << "floor: " << PQerrorMessage(conn);
      std::exit(1);
    }
    conns.push_back(conn);
  }
  Stats s = Measure(threads, per_thread, [&](int t) {
    PGconn* conn = conns[t];
    return [conn]() {
      PGresult* r = PQexec(conn, "SELECT version_num FROM alembic_version");
      const bool ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
      PQclear(r);
      return ok;
    };
  });
  for (PGconn* conn : conns) {
    PQfinish(conn);
  }
  return s;
}

Stats Sdk(schemad::Client& client, const std::string& database, int threads, int per_thread) {
  return Measure(threads, per_thread, [&](int) {
    return [&client, &database]() {
      absl::StatusOr<schemad::EnsureHeadResult> r = client.EnsureHead(database);
      if (!r.ok()) {
        std::cerr << r.status() << "\n";
        return false;
      }
      return !r->applied;
    };
  });
}

absl::StatusOr<std::unique_ptr<schemad::Client>> Connect(const std::string& target) {
  schemad::ClientOptions options;
  options.target = target;
  return schemad::Client::Connect(options);
}

// Compare mode (--server-b): see the top of the file. Returns the exit code.
int Compare(const Args& args) {
  absl::StatusOr<std::unique_ptr<schemad::Client>> a = Connect(args.server);
  absl::StatusOr<std::unique_ptr<schemad::Client>> b = Connect(args.server_b);
  if (!a.ok() || !b.ok()) {
    std::cerr << (a.ok() ? b.status() : a.status()) << "\n";
    return 1;
  }
  // Bring the database to head through A, then warm both channels and pools.
  for (schemad::Client* client : {a->get(), b->get()}) {
    absl::StatusOr<schemad::EnsureHeadResult> first = client->EnsureHead(args.database);
    if (!first.ok()) {
      std::cerr << "EnsureHead: " << first.status() << "\n";
      return 1;
    }
  }
  (void)Sdk(**a, args.database, 1, 500);
  (void)Sdk(**b, args.database, 1, 500);
  (void)Floor(args.dsn, 1, 500);

  const int per_round = std::max(1, args.calls / args.rounds);
  std::cout << absl::StrFormat(
      "EnsureHead at head, A: %s (%s), B: %s (%s); %d rounds, each: %d sequential calls, "
      "%d concurrent callers x %d\n",
      args.name_a, args.server, args.name_b, args.server_b, args.rounds, per_round,
      args.concurrency, args.per_caller);
  Series floor_seq{"floor: libpq SELECT version_num, sequential", {}};
  Series a_seq{absl::StrCat("A ", args.name_a, ": EnsureHead, sequential"), {}};
  Series b_seq{absl::StrCat("B ", args.name_b, ": EnsureHead, sequential"), {}};
  Series a_par{absl::StrCat("A ", args.name_a, ": ", args.concurrency, " callers"), {}};
  Series b_par{absl::StrCat("B ", args.name_b, ": ", args.concurrency, " callers"), {}};
  for (int round = 0; round < args.rounds; ++round) {
    floor_seq.rounds.push_back(Floor(args.dsn, 1, per_round));
    const bool a_first = round % 2 == 0;
    for (int k = 0; k < 2; ++k) {
      const bool is_a = (k == 0) == a_first;
      schemad::Client& client = is_a ? **a : **b;
      (is_a ? a_seq : b_seq).rounds.push_back(Sdk(client, args.database, 1, per_round));
    }
    for (int k = 0; k < 2; ++k) {
      const bool is_a = (k == 0) == a_first;
      schemad::Client& client = is_a ? **a : **b;
      (is_a ? a_par : b_par)
          .rounds.push_back(Sdk(client, args.database, args.concurrency, args.per_caller));
    }
  }
  std::cout << "median (min-max) over the rounds:\n";
  for (const Series* series : {&floor_seq, &a_seq, &b_seq, &a_par, &b_par}) {
    Print(*series);
  }
  PrintRatio("p50 B / A, sequential", b_seq, a_seq, &Stats::p50_us);
  PrintRatio("p99 B / A, sequential", b_seq, a_seq, &Stats::p99_us);
  PrintRatio(absl::StrCat("p50 B / A, ", args.concurrency, " callers"), b_par, a_par,
             &Stats::p50_us);
  PrintRatio(absl::StrCat("p99 B / A, ", args.concurrency, " callers"), b_par, a_par,
             &Stats::p99_us);
  PrintRatio("p50 A / floor, sequential", a_seq, floor_seq, &Stats::p50_us);
  PrintRatio("p50 B / floor, sequential", b_seq, floor_seq, &Stats::p50_us);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const std::string value = argv[i + 1];
    if (flag == "--admin-dsn") {
      args.admin_dsn = value;
    } else if (flag == "--server") {
      args.server = value;
    } else if (flag == "--database") {
      args.database = value;
    } else if (flag == "--dsn") {
      args.dsn = value;
    } else if (flag == "--server-b") {
      args.server_b = value;
    } else if (flag == "--name-a") {
      args.name_a = value;
    } else if (flag == "--name-b") {
      args.name_b = value;
    } else if (flag == "--calls") {
      args.calls = std::atoi(value.c_str());
    } else if (flag == "--concurrency") {
      args.concurrency = std::atoi(value.c_str());
    } else if (flag == "--per-caller") {
      args.per_caller = std::atoi(value.c_str());
    } else if (flag == "--rounds") {
      args.rounds = std::max(1, std::atoi(value.c_str()));
    } else {
      std::cerr << "unknown flag " << flag << "\n";
      return 2;
    }
  }

  if (!args.server_b.empty()) {
    if (args.server.empty() || args.dsn.empty()) {
      std::cerr << "--server-b needs --server, --database and --dsn\n";
      return 2;
    }
    return Compare(args);
  }

  std::unique_ptr<schemad::server::SchemadServer> server;
  std::string temp_dir;
  std::string bench_db;
  if (args.server.empty()) {
    if (args.admin_dsn.empty()) {
      std::cerr << "--admin-dsn (or --server, --database and --dsn) is required\n";
      return 2;
    }
    bench_db = absl::StrCat("schemad_bench_", getpid());
    if (!Exec(args.admin_dsn, absl::StrCat("CREATE DATABASE ", bench_db))) {
      return 1;
    }
    const size_t slash = args.admin_dsn.rfind('/');
    args.dsn = absl::StrCat(args.admin_dsn.substr(0, slash + 1), bench_db);
    char tmpl[] = "/tmp/schemad_bench_XXXXXX";
    temp_dir = mkdtemp(tmpl);
    std::filesystem::create_directories(temp_dir + "/set");
    std::string parent;
    for (int i = 0; i < 5; ++i) {
      const std::string id = absl::StrCat("r", i);
      std::ofstream(absl::StrCat(temp_dir, "/set/", id, ".sql"))
          << "-- revision: " << id << "\n"
          << (parent.empty() ? "" : "-- revises: " + parent + "\n")
          << "\n-- +upgrade\nCREATE TABLE t_" << id << " (id int);\n\n-- +downgrade\nDROP TABLE t_"
          << id << ";\n";
      parent = id;
    }
    std::ofstream(temp_dir + "/dsn") << args.dsn;
    // schemad refuses secret files that other users can read.
    std::filesystem::permissions(temp_dir + "/dsn", std::filesystem::perms::owner_read |
                                                        std::filesystem::perms::owner_write);
    schemad::server::ConfigSources sources;
    sources.base_dir = temp_dir;
    absl::StatusOr<schemad::server::LoadedConfig> config = schemad::server::ParseConfig(
        "listen: 127.0.0.1:0\nmigration_sets: [{name: bench, directory: set}]\n"
        "databases: [{name: bench, migration_set: bench, dsn_file: dsn}]\n",
        sources);
    if (!config.ok()) {
      std::cerr << config.status() << "\n";
      return 1;
    }
    absl::StatusOr<std::unique_ptr<schemad::server::SchemadServer>> started =
        schemad::server::SchemadServer::Start(*std::move(config), {});
    if (!started.ok()) {
      std::cerr << started.status() << "\n";
      return 1;
    }
    server = *std::move(started);
    args.server = server->address();
    args.database = "bench";
  } else if (args.dsn.empty()) {
    std::cerr << "--dsn is required with --server (for the floor)\n";
    return 2;
  }

  schemad::ClientOptions options;
  options.target = args.server;
  absl::StatusOr<std::unique_ptr<schemad::Client>> client = schemad::Client::Connect(options);
  if (!client.ok()) {
    std::cerr << client.status() << "\n";
    return 1;
  }
  // Bring the database to head, then warm the channel and the pool.
  absl::StatusOr<schemad::EnsureHeadResult> first = (*client)->EnsureHead(args.database);
  if (!first.ok()) {
    std::cerr << "EnsureHead: " << first.status() << "\n";
    return 1;
  }
  for (int i = 0; i < 500; ++i) {
    (void)(*client)->EnsureHead(args.database);
  }
  (void)Floor(args.dsn, 1, 500);

  const int per_round = std::max(1, args.calls / args.rounds);
  std::cout << absl::StrFormat(
      "EnsureHead at head, %d rounds, each: %d sequential calls; %d concurrent callers x %d\n",
      args.rounds, per_round, args.concurrency, args.per_caller);
  Series floor_seq{"floor: libpq SELECT version_num, sequential", {}};
  Series sdk_seq{"SDK EnsureHead, sequential", {}};
  // gRPC alone: a call answered from memory on the reactor (no worker hop, no query).
  Series grpc_seq{"SDK ListOperations (gRPC only), sequential", {}};
  Series floor_par{absl::StrCat("floor: libpq, ", args.concurrency, " connections"), {}};
  Series sdk_par{absl::StrCat("SDK EnsureHead, ", args.concurrency, " callers, 1 channel"), {}};
  for (int round = 0; round < args.rounds; ++round) {
    floor_seq.rounds.push_back(Floor(args.dsn, 1, per_round));
    sdk_seq.rounds.push_back(Sdk(**client, args.database, 1, per_round));
    grpc_seq.rounds.push_back(Measure(1, per_round, [&](int) {
      return [&]() { return (*client)->ListOperations(args.database, false, 1).ok(); };
    }));
    floor_par.rounds.push_back(Floor(args.dsn, args.concurrency, args.per_caller));
    sdk_par.rounds.push_back(Sdk(**client, args.database, args.concurrency, args.per_caller));
  }
  std::cout << "median (min-max) over the rounds:\n";
  for (const Series* series : {&floor_seq, &sdk_seq, &grpc_seq, &floor_par, &sdk_par}) {
    Print(*series);
  }
  PrintRatio("p50 SDK / floor, sequential", sdk_seq, floor_seq, &Stats::p50_us);
  PrintRatio(absl::StrCat("throughput SDK / floor, ", args.concurrency, " callers"), sdk_par,
             floor_par, &Stats::throughput);

  client->reset();
  if (server != nullptr) {
    server->Shutdown(absl::ZeroDuration());
    server.reset();
    Exec(args.admin_dsn, absl::StrCat("DROP DATABASE ", bench_db, " WITH (FORCE)"));
    std::filesystem::remove_all(temp_dir);
  }
  return 0;
}
