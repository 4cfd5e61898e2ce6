#include "service/server/wire_safety.h"

#include <vector>

#include "google/protobuf/descriptor.h"
#include "service/common/utf8.h"

namespace schemad::server {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

bool IsText(const FieldDescriptor* field) { return field->type() == FieldDescriptor::TYPE_STRING; }
bool IsMessage(const FieldDescriptor* field) {
  return field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE;
}

// True when every string field of `message` is valid UTF-8 (no mutation: a
// map field read through reflection stays a map).
bool IsWireSafe(const Message& message) {
  const Reflection* reflection = message.GetReflection();
  std::vector<const FieldDescriptor*> fields;
  reflection->ListFields(message, &fields);
  std::string scratch;
  for (const FieldDescriptor* field : fields) {
    if (IsText(field)) {
      if (field->is_repeated()) {
        for (int i = 0; i < reflection->FieldSize(message, field); ++i) {
          if (!IsValidUtf8(reflection->GetRepeatedStringReference(message, field, i, &scratch))) {
            return false;
          }
        }
      } else if (!IsValidUtf8(reflection->GetStringReference(message, field, &scratch))) {
        return false;
      }
    } else if (IsMessage(field)) {
      if (field->is_repeated()) {
        for (int i = 0; i < reflection->FieldSize(message, field); ++i) {
          if (!IsWireSafe(reflection->GetRepeatedMessage(message, field, i))) {
            return false;
          }
        }
      } else if (!IsWireSafe(reflection->GetMessage(message, field))) {
        return false;
      }
    }
  }
  return true;
}

int Repair(Message* message) {
  const Reflection* reflection = message->GetReflection();
  std::vector<const FieldDescriptor*> fields;
  reflection->ListFields(*message, &fields);
  int changed = 0;
  std::string scratch;
  for (const FieldDescriptor* field : fields) {
    if (IsText(field)) {
      if (field->is_repeated()) {
        for (int i = 0; i < reflection->FieldSize(*message, field); ++i) {
          const std::string& value =
              reflection->GetRepeatedStringReference(*message, field, i, &scratch);
          if (!IsValidUtf8(value)) {
            reflection->SetRepeatedString(message, field, i, ToValidUtf8(value));
            ++changed;
          }
        }
      } else {
        const std::string& value = reflection->GetStringReference(*message, field, &scratch);
        if (!IsValidUtf8(value)) {
          reflection->SetString(message, field, ToValidUtf8(value));
          ++changed;
        }
      }
    } else if (IsMessage(field)) {
      if (field->is_repeated()) {
        for (int i = 0; i < reflection->FieldSize(*message, field); ++i) {
          if (!IsWireSafe(reflection->GetRepeatedMessage(*message, field, i))) {
            changed += Repair(reflection->MutableRepeatedMessage(message, field, i));
          }
        }
      } else if (!IsWireSafe(reflection->GetMessage(*message, field))) {
        changed += Repair(reflection->MutableMessage(message, field));
      }
    }
  }
  return changed;
}

}  // namespace

int MakeWireSafe(Message* message) {
  if (IsWireSafe(*message)) {
    return 0;
  }
  return Repair(message);
}

std::string WireErrorText(absl::string_view text, size_t max_bytes) {
  return ToValidUtf8(TruncateUtf8(text, max_bytes));
}

}  // namespace schemad::server
