#include "service/server/log_format.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "spdlog/details/log_msg.h"

namespace schemad::server {
namespace {

// Length of the valid UTF-8 sequence at text[i], or 0 when the bytes there
// are not one (overlong forms, surrogates and values above U+10FFFF are not).
size_t Utf8Length(absl::string_view text, size_t i) {
  const auto c = static_cast<unsigned char>(text[i]);
  if (c < 0x80) {
    return 1;
  }
  size_t length = 0;
  uint32_t code = 0;
  if (c >= 0xc2 && c <= 0xdf) {
    length = 2;
    code = c & 0x1f;
  } else if (c >= 0xe0 && c <= 0xef) {
    length = 3;
    code = c & 0x0f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    length = 4;
    code = c & 0x07;
  } else {
    return 0;
  }
  if (i + length > text.size()) {
    return 0;
  }
  for (size_t k = 1; k < length; ++k) {
    const auto next = static_cast<unsigned char>(text[i + k]);
    if ((next & 0xc0) != 0x80) {
      return 0;
    }
    code = (code << 6) | (next & 0x3f);
  }
  if ((length == 3 && (code < 0x800 || (code >= 0xd800 && code <= 0xdfff))) ||
      (length == 4 && (code < 0x10000 || code > 0x10ffff))) {
    return 0;
  }
  return length;
}

bool IsPlain(char ch) {
  const auto c = static_cast<unsigned char>(ch);
  return absl::ascii_isalnum(c) || ch == '_' || ch == '.' || ch == ':' || ch == '/' || ch == '@' ||
         ch == '+' || ch == '-' || ch == ',';
}

// `text` quoted, with `"`, `\`, newline, return and tab escaped. Other
// control characters and bytes that are not UTF-8 are escaped as the format
// wants: JSON as \u00NN and as the text \xNN; logfmt as \xNN both.
enum class Quoting { kJson, kLogfmt };
void AppendQuoted(absl::string_view text, Quoting quoting, std::string* out) {
  const bool json = quoting == Quoting::kJson;
  out->push_back('"');
  for (size_t i = 0; i < text.size();) {
    const char ch = text[i];
    const auto c = static_cast<unsigned char>(ch);
    if (c >= 0x80) {
      const size_t length = Utf8Length(text, i);
      if (length == 0) {
        if (json) {
          absl::StrAppendFormat(out, "\\\\x%02x", c);  // the text \xNN
        } else {
          absl::StrAppendFormat(out, "\\x%02x", c);
        }
        ++i;
      } else {
        out->append(text.data() + i, length);
        i += length;
      }
      continue;
    }
    switch (ch) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default:
        if (c >= 0x20 && c != 0x7f) {
          out->push_back(ch);
        } else if (json) {
          absl::StrAppendFormat(out, "\\u%04x", c);
        } else {
          absl::StrAppendFormat(out, "\\x%02x", c);
        }
    }
    ++i;
  }
  out->push_back('"');
}

// `text` as a JSON string.
void AppendJsonString(absl::string_view text, std::string* out) {
  AppendQuoted(text, Quoting::kJson, out);
}

bool IsKeyStart(char c) { return absl::ascii_isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool IsKeyChar(char c) { return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_'; }

// The length of `key=` at text[i], or 0.
size_t KeyAt(absl::string_view text, size_t i) {
  if (i >= text.size() || !IsKeyStart(text[i])) {
    return 0;
  }
  size_t j = i + 1;
  while (j < text.size() && IsKeyChar(text[j])) {
    ++j;
  }
  return j < text.size() && text[j] == '=' ? j - i + 1 : 0;
}

// Reads a logfmt value at text[*i] (bare, or quoted with LogfmtValue's
// escapes) and returns it unescaped (\xNN stays as that text).
std::string ReadValue(absl::string_view text, size_t* i) {
  std::string value;
  if (*i < text.size() && text[*i] == '"') {
    ++*i;
    while (*i < text.size() && text[*i] != '"') {
      if (text[*i] == '\\' && *i + 1 < text.size()) {
        const char e = text[*i + 1];
        *i += 2;
        switch (e) {
          case 'n':
            value.push_back('\n');
            break;
          case 'r':
            value.push_back('\r');
            break;
          case 't':
            value.push_back('\t');
            break;
          case 'x':
            value.append("\\x");
            break;
          default:
            value.push_back(e);
        }
        continue;
      }
      value.push_back(text[(*i)++]);
    }
    if (*i < text.size()) {
      ++*i;  // the closing quote
    }
    return value;
  }
  while (*i < text.size() && text[*i] != ' ') {
    value.push_back(text[(*i)++]);
  }
  return value;
}

}  // namespace

std::string LogfmtValue(absl::string_view text) {
  bool plain = !text.empty();
  for (char c : text) {
    plain = plain && IsPlain(c);
  }
  if (plain) {
    return std::string(text);
  }
  std::string out;
  AppendQuoted(text, Quoting::kLogfmt, &out);
  return out;
}

std::string LogLineToJson(absl::string_view timestamp, absl::string_view level,
                          absl::string_view logger, absl::string_view message) {
  // The free text runs up to the first ` key=` (or `key=` at the start).
  size_t first = message.size();
  for (size_t i = 0; i < message.size(); ++i) {
    if ((i == 0 || message[i - 1] == ' ') && KeyAt(message, i) > 0) {
      first = i;
      break;
    }
  }
  std::vector<std::pair<std::string, std::string>> fields;
  std::string extra;  // text between fields that is not one
  for (size_t i = first; i < message.size();) {
    if (message[i] == ' ') {
      ++i;
      continue;
    }
    const size_t key_length = KeyAt(message, i);
    if (key_length == 0) {
      const size_t end = std::min(message.find(' ', i), message.size());
      absl::StrAppend(&extra, extra.empty() ? "" : " ", message.substr(i, end - i));
      i = end;
      continue;
    }
    std::string key(message.substr(i, key_length - 1));
    i += key_length;
    std::string value = ReadValue(message, &i);
    if (key == "ts" || key == "level" || key == "logger" || key == "msg") {
      key = absl::StrCat("field_", key);
    }
    fields.emplace_back(std::move(key), std::move(value));
  }
  std::string msg(absl::StripTrailingAsciiWhitespace(message.substr(0, first)));
  if (!extra.empty()) {
    absl::StrAppend(&msg, msg.empty() ? "" : " ", extra);
  }
  std::string out = "{\"ts\":";
  AppendJsonString(timestamp, &out);
  out.append(",\"level\":");
  AppendJsonString(level, &out);
  out.append(",\"logger\":");
  AppendJsonString(logger, &out);
  out.append(",\"msg\":");
  AppendJsonString(msg, &out);
  std::vector<std::string> seen = {"ts", "level", "logger", "msg"};
  for (auto& [key, value] : fields) {
    // A repeated key keeps every value: key, key_2, key_3...
    std::string name = key;
    for (int n = 2; std::find(seen.begin(), seen.end(), name) != seen.end(); ++n) {
      name = absl::StrCat(key, "_", n);
    }
    seen.push_back(name);
    out.push_back(',');
    AppendJsonString(name, &out);
    out.push_back(':');
    AppendJsonString(value, &out);
  }
  out.push_back('}');
  return out;
}

void JsonLogFormatter::format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) {
  const std::string timestamp =
      absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", absl::FromChrono(msg.time), absl::UTCTimeZone());
  const spdlog::string_view_t level = spdlog::level::to_string_view(msg.level);
  const std::string line =
      LogLineToJson(timestamp, absl::string_view(level.data(), level.size()),
                    absl::string_view(msg.logger_name.data(), msg.logger_name.size()),
                    absl::string_view(msg.payload.data(), msg.payload.size()));
  dest.append(line.data(), line.data() + line.size());
  dest.push_back('\n');
}

std::unique_ptr<spdlog::formatter> JsonLogFormatter::clone() const {
  return std::make_unique<JsonLogFormatter>();
}

}  // namespace schemad::server
