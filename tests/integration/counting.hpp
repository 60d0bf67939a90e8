// The programs loaded as the daemon loads them to count in the maps (no event records), and
// the metrics made from their count tables as the daemon makes them: the fixture of the tests
// that compare the kernel's counts with what the tests' own connections did.
#pragma once

#include <prometheus/registry.h>

#include "kernel/bpf_program.hpp"
#include "kernel/count_tables.hpp"
#include "labels/cgroup_names.hpp"
#include "labels/labels_config.hpp"
#include "labels/tuple_labels.hpp"
#include "metrics/counted_metrics.hpp"
#include "metrics/series_budget.hpp"

namespace tcpstatesd::test {

// Counting under `labels`, into histograms with `buckets`. The count tables hold 1024 tuples
// and 256 labelled histograms: a test's own ports and the host's other traffic meanwhile.
struct Counting {
    Counting(tcpstatesd::LabelsConfig labels_config, tcpstatesd::HistogramBuckets histograms);

    // Exemplar candidates each exemplar table holds: the test's series on a few CPUs.
    static constexpr uint32_t kExemplarTableSize = 1024;

    tcpstatesd::LabelsConfig labels;
    tcpstatesd::HistogramBuckets buckets;
    tcpstatesd::BpfProgram program;
    tcpstatesd::CountTables tables;
};

// Counting, with its metrics.
struct CountingMetrics : Counting {
    using Counting::Counting;

    prometheus::Registry registry;
    tcpstatesd::CgroupNames cgroups;
    tcpstatesd::TupleLabeler labeler{labels, cgroups};
    tcpstatesd::SeriesBudget budget{registry, labels.max_series};
    tcpstatesd::CountedMetrics metrics{program, tables, labeler, budget, labels, buckets};
};

}  // namespace tcpstatesd::test
