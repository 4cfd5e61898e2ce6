#include "service/common/utf8.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace schemad {
namespace {

using ::testing::Optional;

constexpr char kReplacement[] = "\xEF\xBF\xBD";

TEST(Utf8Test, ValidTextIsValid) {
  using std::string_literals::operator""s;
  for (const std::string& text :
       {""s, "plain ascii"s, "caf\xC3\xA9"s, "\xE2\x82\xAC"s, "\xF0\x9F\x98\x80"s,
        "\xEF\xBF\xBF"s /* U+FFFF */, "\xF4\x8F\xBF\xBF"s /* U+10FFFF */,
        "a\0b"s /* U+0000 is valid UTF-8 */, "\xED\x9F\xBF"s /* U+D7FF */}) {
    EXPECT_TRUE(IsValidUtf8(text)) << text;
    EXPECT_EQ(ToValidUtf8(text), text);
  }
}

TEST(Utf8Test, FindsFirstInvalidByte) {
  EXPECT_THAT(FindInvalidUtf8("bad \xFF"), Optional(4));
  EXPECT_THAT(FindInvalidUtf8("ok \xC3\xA9 then \x80"), Optional(11));  // lone continuation
  EXPECT_THAT(FindInvalidUtf8("\xC0\xAF"), Optional(0));                // overlong '/'
  EXPECT_THAT(FindInvalidUtf8("\xE0\x80\xAF"), Optional(0));            // overlong
  EXPECT_THAT(FindInvalidUtf8("\xF0\x80\x80\xAF"), Optional(0));        // overlong
  EXPECT_THAT(FindInvalidUtf8("x\xED\xA0\x80"), Optional(1));           // surrogate U+D800
  EXPECT_THAT(FindInvalidUtf8("\xF4\x90\x80\x80"), Optional(0));        // above U+10FFFF
  EXPECT_THAT(FindInvalidUtf8("\xF5\x80\x80\x80"), Optional(0));
  EXPECT_THAT(FindInvalidUtf8("ab\xE2\x82"), Optional(2));  // cut short at the end
  EXPECT_THAT(FindInvalidUtf8("caf\xE9!"), Optional(3));    // Latin-1
}

TEST(Utf8Test, ReplacesEachMaximalInvalidSubpart) {
  EXPECT_EQ(ToValidUtf8("bad \xFF!"), absl::StrCat("bad ", kReplacement, "!"));
  // An incomplete 3-byte sequence is one subpart; a stray continuation another.
  EXPECT_EQ(ToValidUtf8("a\xE2\x82z\x80"), absl::StrCat("a", kReplacement, "z", kReplacement));
  // Overlong and surrogate forms: every byte is its own subpart.
  EXPECT_EQ(ToValidUtf8("\xC0\xAF"), absl::StrCat(kReplacement, kReplacement));
  EXPECT_EQ(ToValidUtf8("\xED\xA0\x80"), absl::StrCat(kReplacement, kReplacement, kReplacement));
  // Valid characters around and between invalid bytes survive.
  EXPECT_EQ(ToValidUtf8("\xC3\xA9\xFF\xF0\x9F\x98\x80"),
            absl::StrCat("\xC3\xA9", kReplacement, "\xF0\x9F\x98\x80"));
  EXPECT_TRUE(IsValidUtf8(ToValidUtf8(std::string("\xFF\xFE\xFD\x80\xBF\xC2", 6))));
}

TEST(Utf8Test, MakeValidUtf8SaysWhetherItChanged) {
  std::string ok = "caf\xC3\xA9";
  EXPECT_FALSE(MakeValidUtf8(&ok));
  EXPECT_EQ(ok, "caf\xC3\xA9");
  std::string bad = "caf\xE9";
  EXPECT_TRUE(MakeValidUtf8(&bad));
  EXPECT_EQ(bad, absl::StrCat("caf", kReplacement));
}

TEST(Utf8Test, TruncatesOnACharacterBoundaryAndSaysSo) {
  EXPECT_EQ(TruncateUtf8("short", 5), "short");
  EXPECT_EQ(TruncateUtf8("abcdefgh", 3), "abc... (8 bytes in all)");
  // "aé€" is a(1) é(2) €(3): a cut at 4 bytes would split the euro sign.
  EXPECT_EQ(TruncateUtf8("a\xC3\xA9\xE2\x82\xAC", 4), "a\xC3\xA9... (6 bytes in all)");
  EXPECT_EQ(TruncateUtf8("\xF0\x9F\x98\x80\xF0\x9F\x98\x80", 3), "... (8 bytes in all)");
  EXPECT_TRUE(IsValidUtf8(TruncateUtf8("\xE2\x82\xAC\xE2\x82\xAC\xE2\x82\xAC", 5)));
}

}  // namespace
}  // namespace schemad
