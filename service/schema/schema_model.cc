#include "service/schema/schema_model.h"

#include <algorithm>

namespace schemad::schema {
namespace {

template <typename T>
void SortByKey(std::vector<T>* objects) {
  std::sort(objects->begin(), objects->end(),
            [](const T& a, const T& b) { return a.Key() < b.Key(); });
}

}  // namespace

void Canonicalize(DatabaseSchema* schema) {
  SortByKey(&schema->schemas);
  SortByKey(&schema->extensions);
  SortByKey(&schema->enums);
  SortByKey(&schema->domains);
  for (DomainType& domain : schema->domains) {
    std::sort(domain.constraints.begin(), domain.constraints.end(),
              [](const DomainConstraint& a, const DomainConstraint& b) { return a.name < b.name; });
  }
  SortByKey(&schema->composite_types);
  SortByKey(&schema->sequences);
  SortByKey(&schema->tables);
  SortByKey(&schema->constraints);
  SortByKey(&schema->indexes);
  SortByKey(&schema->views);
  for (View& view : schema->views) std::sort(view.depends_on.begin(), view.depends_on.end());
  SortByKey(&schema->functions);
  SortByKey(&schema->triggers);
}

int ObjectCount(const DatabaseSchema& schema) {
  return static_cast<int>(schema.schemas.size() + schema.extensions.size() + schema.enums.size() +
                          schema.domains.size() + schema.composite_types.size() +
                          schema.sequences.size() + schema.tables.size() +
                          schema.constraints.size() + schema.indexes.size() + schema.views.size() +
                          schema.functions.size() + schema.triggers.size());
}

}  // namespace schemad::schema
