// The TCP state metrics, from what the programs counted (kernel/count_tables.hpp) and what the
// walks found (kernel/socket_walk.hpp): at each scrape the tables are read and each label
// tuple's counts are put under its series, within the labels' caps. Nothing here runs per
// transition, so a scrape costs what the tables hold, not what the host did.
//
// Counts never go down: a tuple keeps the label values it was given, and a series that found
// the cap full stays folded into "other", until the tables are swapped; the old table's counts
// are then folded into totals kept here, per series, so that no count moves from one series to
// another. A label value that is gone (a port nobody listens on, a removed cgroup) gives its
// place to a new one only at a swap: its series go (as a removed container's do), and the new
// value's first counts are its own. So a scrape leaves out a tuple whose value could replace a
// gone one until the next swap; the upkeep swaps then, when the tuple table fills, or when a
// value given "other" could now have a place. A swap waits for the programs (milliseconds)
// without holding the lock: scrapes never wait for it.
//
// Thread-safe: scrapes (HTTP threads) and the reactor thread's work (swaps, walks, new tuples,
// reloads) take one lock.
#pragma once

#include <prometheus/registry.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <vector>

#include "exposition/collection.hpp"
#include "kernel/count_tables.hpp"
#include "kernel/event_source.hpp"
#include "kernel/exemplar_tables.hpp"
#include "kernel/native_bounds.hpp"
#include "kernel/socket_walk.hpp"
#include "labels/labels_config.hpp"
#include "labels/tuple_labels.hpp"
#include "metrics/series_budget.hpp"

namespace tcpstatesd {

class BpfProgram;
struct TupleLabelSettings;

// What the programs need of the labels' configuration.
TupleLabelSettings tuple_label_settings(const LabelsConfig& labels);
// Duration bucket bounds in seconds, as the programs compare them: nanoseconds.
std::vector<uint64_t> bounds_ns(const std::vector<double>& buckets_seconds);

// The upper bounds in seconds of the buckets of the histograms the programs fill.
struct HistogramBuckets {
    std::vector<double> durations;       // tcpstates_state_duration_seconds
    std::vector<double> handshake_rtts;  // tcpstates_handshake_rtt_seconds
    NativeHistogramSettings native;      // both histograms' native buckets

    bool operator==(const HistogramBuckets&) const = default;
};

class CountedMetrics : public Collector, public TupleSink {
public:
    // Everything given must outlive the metrics; `budget`'s self metrics live in the registry.
    CountedMetrics(BpfProgram& program, CountTables& tables, TupleLabeler& labeler,
                   SeriesBudget& budget, const LabelsConfig& labels, HistogramBuckets buckets);

    Collection collect() const override;

    // A tuple the programs counted under for the first time: its cgroup is named now.
    void on_new_tuple(const tcpstates_tuple_key& key) override;
    // What a walk found: the gauge takes its timewait, request and unrecorded sockets from it
    // until the next walk, the oldest sockets' ages their start; the ports listened on now mark
    // the others' values gone.
    void walked(const SocketWalk& walk);
    // A walk failed (logged by the caller): counted.
    void walk_failed();
    // Whether a swap is due: a tuple waits to take a gone value's place, a value given
    // "other" for want of room could now replace a gone one, or the tuple table is more than
    // half full.
    bool swap_wanted() const;
    // Swaps the tables and folds the old one's counts in. Throws BpfError (then the old tables
    // stay in use and nothing is lost).
    void swap();
    // A swap failed (logged by the caller): counted.
    void swap_failed();
    // Reload, in two steps so that it is all or nothing (runtime/reload.hpp). First, before
    // anything changes: new buckets need a swap and the unused bucket generation cleared,
    // which may throw BpfError and change nothing the metrics show.
    void prepare_buckets(const HistogramBuckets& buckets);
    // Then, never throwing once the buckets are prepared: a family whose labels change starts
    // its series over; a histogram's new buckets start its series over.
    void configure(const LabelsConfig& labels, HistogramBuckets buckets);

    // Exemplars (metrics.exemplars): on, the programs offer candidates; off, none is shown.
    // Never throws.
    void set_exemplars(bool on);
    // The candidates the programs kept since the last call (ExemplarTables::take()): the
    // slowest of each series waits for the next scrape (docs/metrics.md, "Exemplars").
    void add_exemplars(const std::vector<ExemplarCandidate>& candidates);

    // Transitions counted so far (for the status line).
    uint64_t transitions_total() const;

    // The keys of series, one per (metric, family, two fields of the metric's own, label value
    // indexes): public for the unit tests' sake.
    struct SeriesKey {
        LabelledMetric metric;
        uint8_t ipv6;
        uint8_t a, b;  // from/to, from/reason, direction/state, -/state, from/to, -/-
        uint32_t port, cgroup;
        // A sent reset's reason (enum sk_rst_reason; kOtherReason: "other"), else 0.
        uint8_t reason = 0;
        // NOLINTNEXTLINE(modernize-use-nullptr): clang-tidy 14 on a defaulted <=>
        auto operator<=>(const SeriesKey&) const = default;
    };
    // The reason of the sent resets the kernel's reasons do not name, or whose (state, reason)
    // found no slot in the programs' counts (bpf/tcpstates.h).
    static constexpr uint8_t kOtherReason = 255;
    // A scrape looks every counted cell's series up: hashed, not a tree walk per cell.
    struct SeriesKeyHash {
        size_t operator()(const SeriesKey& key) const noexcept;
    };

private:
    using TupleId = std::array<uint64_t, 2>;  // the tuple key's bytes
    struct TupleIdHash {
        size_t operator()(const TupleId& id) const noexcept;
    };
    static TupleId tuple_id(const tcpstates_tuple_key& key);
    struct Histogram {
        std::array<uint64_t, TCPSTATES_MAX_BUCKETS + 1> buckets{};
        uint64_t sum_ns = 0;
        // Its native buckets at the configured schema (index -> observations) and zero bucket;
        // served only while native_lost is 0 (bpf/tcpstates.h, struct tcpstates_histogram).
        std::map<int32_t, uint64_t> native;
        uint64_t native_zero = 0;
        uint64_t native_lost = 0;
        void add(const tcpstates_histogram& h);
        void add(const Histogram& h);
        void add_native(int32_t index, uint64_t count);
    };
    using Gauge = std::array<int64_t, TCPSTATES_STATE_SLOTS>;

    // The values a tuple carries in this epoch (since the last swap), given at its first use;
    // `may_replace`: a gone value may give its place (only while folding a retired table).
    TupleLabeler::Values values_of(const tcpstates_tuple_key& key, bool may_replace = false) const;
    // Whether a tuple not yet given values would take a gone value's place.
    bool wants_replacement(const tcpstates_tuple_key& key) const;
    // The swap, under the lock (a reload's): the spares in, the old tables' counts folded.
    void swap_locked() const;
    // Under the lock, once the spares are in: the old tables' counts folded into the totals,
    // the tuples still counting sockets carried into the new table.
    void fold_retired() const;
    // The series a labelled sample goes to: its own, or its family's "other" (the cap).
    SeriesKey place(const SeriesKey& key) const;
    uint64_t cost(LabelledMetric metric) const;
    bool carries(Label label, LabelledMetric metric) const;
    SeriesKey series(LabelledMetric metric, uint8_t ipv6, uint8_t a, uint8_t b,
                     TupleLabeler::Values values) const;
    void add_counts(const tcpstates_tuple_key& key, const tcpstates_tuple_counts& counts,
                    std::map<SeriesKey, uint64_t>& totals) const;
    void add_labelled_duration(const tcpstates_duration_key& key, const tcpstates_histogram& h,
                               std::map<SeriesKey, Histogram>& totals) const;
    // The series of a labelled histogram's key (of the bucket generation in use, else none).
    std::optional<SeriesKey> labelled_series(const tcpstates_duration_key& key) const;
    // A native bucket, in the series its classic histogram is in (`unlabelled`: the array's).
    void add_native_bucket(const tcpstates_native_key& key, uint64_t count,
                           std::map<SeriesKey, Histogram>& totals) const;
    // Removes series (and gives their cost back) whose key `remove` selects.
    template <typename Select>
    void remove_series(Select remove) const;
    std::vector<tcpstates_tuple_key> counted_tuples(const std::vector<TupleCounts>& live) const;

    // The gauges' labelled samples take from `available` (the budget left at this scrape).
    prometheus::MetricFamily sockets_family(const std::vector<TupleCounts>& live,
                                            uint64_t& available) const;
    // tcpstates_state_oldest_seconds and tcpstates_state_oldest_start_known, from the last
    // walk's oldest sockets and the monotonic clock now.
    std::vector<prometheus::MetricFamily> oldest_families(uint64_t& available) const;
    // The port value of a socket the walk found (no owner), decided once in an epoch.
    // `port` 0 when the family does not carry the port label.
    const TupleLabeler::Values& walked_values(uint16_t port) const;
    void render_counters(const std::map<SeriesKey, uint64_t>& totals,
                         std::vector<prometheus::MetricFamily>& out) const;
    // A histogram sample with these buckets' bounds (seconds; observations in nanoseconds).
    static prometheus::ClientMetric histogram_sample(const Histogram& histogram,
                                                     const std::vector<double>& bounds);
    // A histogram's native buckets, as served: none when off or incomplete.
    std::optional<NativeBuckets> native_of(const Histogram& histogram) const;
    // The histograms of `metric` among `totals`.
    static std::map<SeriesKey, Histogram> histograms_of(
        const std::map<SeriesKey, Histogram>& totals, LabelledMetric metric);
    // Whether `metric` carries the port or the cgroup label.
    bool labelled(LabelledMetric metric) const;
    // Adds the sample of `histogram` (series `key`, labels besides the series') to the one
    // family of `out`, with its native buckets if served.
    void add_histogram_sample(Collection& out, const SeriesKey& key, const Histogram& histogram,
                              const std::vector<double>& bounds,
                              std::vector<prometheus::ClientMetric::Label> labels) const;
    // `keys`: each sample's series, in the family's order.
    Collection durations_family(const std::map<SeriesKey, Histogram>& totals,
                                std::vector<SeriesKey>& keys) const;
    // A scrape's exemplars: the pending candidates replace the exemplars of their series, which
    // are attached to the samples of `family` (the durations, whose series are `keys`).
    void attach_exemplars(Collection& collection, size_t family,
                          const std::vector<SeriesKey>& keys) const;
    Collection handshake_rtt_family(const std::map<SeriesKey, Histogram>& totals) const;
    std::vector<prometheus::MetricFamily> self_metrics(const std::vector<TupleCounts>& live) const;
    // The accept queues and ephemeral ports (metrics/queue_metrics.cpp), from the last walk:
    // taken in by walked(), under the lock; rendered at each scrape.
    void walked_queues(const SocketWalk& walk);
    void queue_families(std::vector<prometheus::MetricFamily>& out) const;
    // A service port's `port` value on `metric` (0, or the label not on it: "other"), decided
    // once in an epoch as the walk's are.
    uint32_t queue_port_value(LabelledMetric metric, uint16_t port) const;
    // Whether a destination's port is in the port label's set (listed or listened on now).
    bool in_port_label_set(uint16_t port) const;
    prometheus::ClientMetric::Label label_of(Label label, uint32_t index) const;
    // The series' port and cgroup labels, where its family carries them.
    void add_series_labels(std::vector<prometheus::ClientMetric::Label>& labels,
                           const SeriesKey& key) const;

    BpfProgram& program_;
    CountTables& tables_;
    mutable std::mutex mutex_;
    TupleLabeler& labeler_;
    SeriesBudget& budget_;
    LabelsConfig labels_;
    HistogramBuckets buckets_;
    std::optional<HistogramBuckets> prepared_buckets_;  // by prepare_buckets(), for configure()
    uint32_t generation_ = 0;                           // the bucket generation in use

    // collect() is const (Collector) and may admit values, fold series and drop
    // a gone value's series: what it changes is mutable, under mutex_.
    // This epoch's decisions (cleared at each swap): a tuple's values.
    mutable std::unordered_map<TupleId, TupleLabeler::Values, TupleIdHash> assigned_;
    mutable std::map<uint16_t, TupleLabeler::Values> walked_values_;  // by the walk's port
    // Where a labelled series goes, one lookup per counted cell: Admitted (it holds its cost
    // of the budget, until its value goes) or Folded into "other" (this epoch: a later one
    // may find room).
    enum class Placement : uint8_t { Admitted, Folded };
    mutable std::unordered_map<SeriesKey, Placement, SeriesKeyHash> placements_;
    // Counts of the tables swapped out.
    mutable std::map<SeriesKey, uint64_t> counter_totals_;
    mutable std::map<SeriesKey, Histogram> duration_totals_;  // and handshake RTTs'
    mutable std::map<TupleId, Gauge> gauge_totals_;  // by tuple: a socket leaves its state in it
    mutable uint64_t swaps_ = 0;
    // A scrape left a tuple out that waits for a swap to take a gone value's place.
    mutable bool replacement_pending_ = false;
    // The tuples in the table in use, as last read or carried, plus those added since (the
    // programs tell of each); and the new tuples the full table refused, at the last swap.
    mutable uint64_t tuples_at_least_ = 0;
    mutable uint64_t table_full_at_swap_ = 0;
    mutable uint64_t tuples_carried_ = 0;  // into the table in use, at its swap
    // The last walk's.
    std::vector<SocketWalk::Count> walked_;
    std::vector<SocketWalk::Oldest> oldest_;
    tcpstates_walk_totals walk_totals_{};
    double walk_seconds_ = 0;
    uint64_t destroyed_records_ = 0;  // as the last walk that listed found them
    uint64_t walks_ = 0;
    uint64_t walk_corrections_ = 0;
    uint64_t walk_failures_ = 0;
    uint64_t swap_failures_ = 0;
    uint64_t startup_sockets_ = 0;  // the first walk's
    double startup_seconds_ = 0;
    std::chrono::system_clock::time_point last_walk_{};
    uint64_t listening_now_[65536 / 64] = {};
    // The last walk's queues, and the listeners' drop totals as last read (each read adds what
    // they grew by to the series of tcpstates_listen_drops_total, in counter_totals_).
    std::map<SocketWalk::PortKey, tcpstates_listen_queue> listen_queues_;
    std::map<SocketWalk::PortKey, uint64_t> listen_drops_read_;
    std::map<SocketWalk::PortKey, uint64_t> busiest_destinations_;
    uint32_t ephemeral_ports_ = 0;
    tcpstates_queue_walk_totals queue_walk_totals_{};
    mutable std::map<uint16_t, uint32_t> queue_port_values_;  // this epoch's
    // Exemplars: the slowest candidate of each of the programs' series (its key without the
    // CPU) since the last scrape, and what each duration series shows until a scrape brings a
    // new one. Bounded by the programs' series and the series exported.
    struct TimedExemplar {
        tcpstates_exemplar exemplar;
        int64_t timestamp_ms;  // Unix milliseconds
    };
    bool exemplars_ = false;
    mutable std::map<std::array<uint64_t, 2>, TimedExemplar> pending_exemplars_;
    mutable std::map<SeriesKey, TimedExemplar> shown_exemplars_;
};

}  // namespace tcpstatesd
