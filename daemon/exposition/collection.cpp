#include "exposition/collection.hpp"

#include <iterator>

namespace tcpstatesd {

void Collection::append(Collection more) {
    const size_t offset = families.size();
    families.insert(families.end(), std::make_move_iterator(more.families.begin()),
                    std::make_move_iterator(more.families.end()));
    for (auto& [index, sample_extras] : more.extras)
        extras.emplace(SampleIndex{index.family + offset, index.metric}, std::move(sample_extras));
}

const Exemplar* Collection::exemplar(SampleIndex sample) const {
    const auto found = extras.find(sample);
    return found != extras.end() && found->second.exemplar ? &*found->second.exemplar : nullptr;
}

}  // namespace tcpstatesd
