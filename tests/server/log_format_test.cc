// Log lines (service/server/log_format.h): values that cannot forge fields,
// and the JSON form of the same lines.
#include "service/server/log_format.h"

#include <fmt/format.h>

#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "spdlog/logger.h"
#include "spdlog/pattern_formatter.h"
#include "spdlog/sinks/ostream_sink.h"

namespace schemad::server {
namespace {

using ::testing::ElementsAre;
using ::testing::Pair;

// A logfmt reader for the tests: the key=value fields of `line` in order
// (values unquoted, escapes undone), skipping free text.
std::vector<std::pair<std::string, std::string>> Fields(const std::string& line) {
  std::vector<std::pair<std::string, std::string>> out;
  size_t i = 0;
  while (i < line.size()) {
    const size_t space = line.find(' ', i);
    const size_t equals = line.find('=', i);
    if (equals == std::string::npos) {
      break;
    }
    if (space != std::string::npos && space < equals) {
      i = space + 1;  // free text
      continue;
    }
    std::string key = line.substr(i, equals - i);
    i = equals + 1;
    std::string value;
    if (i < line.size() && line[i] == '"') {
      for (++i; i < line.size() && line[i] != '"'; ++i) {
        if (line[i] == '\\' && i + 1 < line.size()) {
          ++i;
          value.push_back(line[i] == 'n' ? '\n' : line[i]);
          continue;
        }
        value.push_back(line[i]);
      }
      ++i;
    } else {
      while (i < line.size() && line[i] != ' ') {
        value.push_back(line[i++]);
      }
    }
    out.emplace_back(std::move(key), std::move(value));
    if (i < line.size() && line[i] == ' ') {
      ++i;
    }
  }
  return out;
}

TEST(LogfmtValueTest, PlainWordsBareEverythingElseQuotedAndEscaped) {
  EXPECT_EQ(LogfmtValue("site-a"), "site-a");
  EXPECT_EQ(LogfmtValue("ipv4:127.0.0.1:5000"), "ipv4:127.0.0.1:5000");
  EXPECT_EQ(LogfmtValue(""), "\"\"");
  EXPECT_EQ(LogfmtValue("a b"), "\"a b\"");
  EXPECT_EQ(LogfmtValue("k=v"), "\"k=v\"");
  EXPECT_EQ(LogfmtValue("say \"hi\"\\"), "\"say \\\"hi\\\"\\\\\"");
  EXPECT_EQ(LogfmtValue("a\nb\rc\td"), "\"a\\nb\\rc\\td\"");
  EXPECT_EQ(LogfmtValue(std::string("\x01\x7f", 2)), "\"\\x01\\x7f\"");
  EXPECT_EQ(LogfmtValue("gr\xc3\xbc\xc3\x9f"), "\"gr\xc3\xbc\xc3\x9f\"");  // UTF-8 kept
  EXPECT_EQ(LogfmtValue("bad\xff"), "\"bad\\xff\"");
}

// Defect (issue 9): `x-schemad-who: x" level=error msg="FORGED` forged fields.
TEST(LogfmtValueTest, ACallerCannotForgeFields) {
  const std::string who = "x\" level=error msg=\"FORGED\nlevel=error fake=1";
  const std::string line = fmt::format("rpc failed method={} code={} who={} error={}", "GetStatus",
                                       "NOT_FOUND", LogValue(who), LogValue("no \"such\" db"));
  EXPECT_EQ(line.find('\n'), std::string::npos);
  EXPECT_THAT(Fields(line), ElementsAre(Pair("method", "GetStatus"), Pair("code", "NOT_FOUND"),
                                        Pair("who", who), Pair("error", "no \"such\" db")));
}

TEST(JsonLogTest, OneObjectPerLineWithTheFields) {
  const std::string who = "x\" level=error msg=\"FORGED";
  const std::string message =
      fmt::format("rpc failed method={} who={} level={} bytes={}", "GetStatus", LogValue(who),
                  LogValue("fake"), LogValue("bad\xff"));
  const nlohmann::json json =
      nlohmann::json::parse(LogLineToJson("2026-01-01T00:00:00.000000Z", "info", "rpc", message));
  EXPECT_EQ(json["ts"], "2026-01-01T00:00:00.000000Z");
  EXPECT_EQ(json["level"], "info");
  EXPECT_EQ(json["logger"], "rpc");
  EXPECT_EQ(json["msg"], "rpc failed");
  EXPECT_EQ(json["method"], "GetStatus");
  EXPECT_EQ(json["who"], who);
  EXPECT_EQ(json["field_level"], "fake");  // never the line's own level
  EXPECT_EQ(json["bytes"], "bad\\xff");
  // Free text only, and raw invalid bytes in it, still make valid JSON.
  const nlohmann::json text =
      nlohmann::json::parse(LogLineToJson("t", "warn", "server", "shutting \"down\" \xff now"));
  EXPECT_EQ(text["msg"], "shutting \"down\" \\xff now");
}

TEST(JsonLogTest, FormatterWritesJsonLinesThroughSpdlog) {
  std::ostringstream out;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
  sink->set_formatter(std::make_unique<JsonLogFormatter>());
  spdlog::logger log("operations", sink);
  log.info("operation accepted op={} who={}", "op-1", LogValue("a \"b\""));
  log.warn("database not reachable yet name={} error={}", "site-a", LogValue("refused"));
  std::istringstream lines(out.str());
  std::vector<nlohmann::json> parsed;
  for (std::string line; std::getline(lines, line);) {
    parsed.push_back(nlohmann::json::parse(line));
  }
  ASSERT_EQ(parsed.size(), 2u);
  EXPECT_EQ(parsed[0]["level"], "info");
  EXPECT_EQ(parsed[0]["logger"], "operations");
  EXPECT_EQ(parsed[0]["msg"], "operation accepted");
  EXPECT_EQ(parsed[0]["who"], "a \"b\"");
  EXPECT_EQ(parsed[1]["level"], "warning");
  EXPECT_EQ(parsed[1]["error"], "refused");
  EXPECT_THAT(parsed[0]["ts"].get<std::string>(),
              ::testing::MatchesRegex("[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z"));
}

}  // namespace
}  // namespace schemad::server
