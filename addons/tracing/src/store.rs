//! The collector's memory: spans grouped by trace, the oldest traces dropped first once the
//! store holds its most spans (as Zipkin's in-memory storage does), and the lookups behind the
//! query API: service and span names, a trace by id, and traces matching a query.

use std::collections::{BTreeSet, HashMap, VecDeque};

use crate::query::TraceQuery;
use crate::span::Span;

/// One trace's spans and when it started (its earliest span), in microseconds.
#[derive(Debug, Default)]
struct Trace {
    spans: Vec<Span>,
    started: u64,
}

/// Spans by trace id, bounded by a span count.
#[derive(Debug)]
pub struct Store {
    traces: HashMap<String, Trace>,
    /// Trace ids in the order they first arrived, for eviction.
    arrival: VecDeque<String>,
    span_count: usize,
    max_spans: usize,
}

impl Store {
    pub fn new(max_spans: usize) -> Store {
        Store { traces: HashMap::new(), arrival: VecDeque::new(), span_count: 0, max_spans: max_spans.max(1) }
    }

    pub fn span_count(&self) -> usize {
        self.span_count
    }

    /// Keeps spans; a span already held (same trace, id, kind and service) is not kept twice.
    pub fn insert(&mut self, spans: Vec<Span>) {
        for span in spans {
            let trace = self.traces.entry(span.trace_id.clone()).or_insert_with(|| {
                self.arrival.push_back(span.trace_id.clone());
                Trace { spans: Vec::new(), started: u64::MAX }
            });
            let same = |held: &Span| {
                held.id == span.id && held.kind == span.kind && held.local_service() == span.local_service()
            };
            if let Some(held) = trace.spans.iter_mut().find(|held| same(held)) {
                // A later report of the same span (Zipkin's late merge): fill what was missing.
                merge(held, span);
            } else {
                trace.started = trace.started.min(span.timestamp.unwrap_or(u64::MAX));
                trace.spans.push(span);
                self.span_count += 1;
            }
        }
        while self.span_count > self.max_spans {
            let Some(oldest) = self.arrival.pop_front() else { break };
            if let Some(trace) = self.traces.remove(&oldest) {
                self.span_count -= trace.spans.len();
            }
        }
    }

    /// The services that reported spans, sorted.
    pub fn services(&self) -> Vec<String> {
        let names: BTreeSet<&str> =
            self.traces.values().flat_map(|trace| trace.spans.iter().filter_map(Span::local_service)).collect();
        names.into_iter().map(str::to_string).collect()
    }

    /// The span names a service reported, sorted.
    pub fn span_names(&self, service: &str) -> Vec<String> {
        let names: BTreeSet<&str> = self
            .traces
            .values()
            .flat_map(|trace| trace.spans.iter())
            .filter(|span| span.local_service() == Some(service))
            .filter_map(|span| span.name.as_deref())
            .collect();
        names.into_iter().map(str::to_string).collect()
    }

    /// The services a service's spans name at their other end, sorted.
    pub fn remote_services(&self, service: &str) -> Vec<String> {
        let names: BTreeSet<&str> = self
            .traces
            .values()
            .flat_map(|trace| trace.spans.iter())
            .filter(|span| span.local_service() == Some(service))
            .filter_map(Span::remote_service)
            .collect();
        names.into_iter().map(str::to_string).collect()
    }

    /// A trace's spans in start order; a 64-bit id also finds the 128-bit trace ending in it.
    pub fn trace(&self, id: &str) -> Option<Vec<Span>> {
        let trace = self.traces.get(id).or_else(|| {
            (id.len() == 16)
                .then(|| {
                    self.traces.iter().find(|(key, _)| key.len() == 32 && key.ends_with(id)).map(|(_, trace)| trace)
                })
                .flatten()
        })?;
        Some(sorted(&trace.spans))
    }

    /// The traces a query matches, newest first, at most `query.limit` of them.
    pub fn find(&self, query: &TraceQuery) -> Vec<Vec<Span>> {
        let mut matches: Vec<&Trace> = self
            .traces
            .values()
            .filter(|trace| query.in_window(trace.started) && query.matches(&trace.spans))
            .collect();
        matches.sort_by_key(|trace| std::cmp::Reverse(trace.started));
        matches.into_iter().take(query.limit).map(|trace| sorted(&trace.spans)).collect()
    }
}

fn sorted(spans: &[Span]) -> Vec<Span> {
    let mut spans = spans.to_vec();
    spans.sort_by_key(|span| (span.timestamp.unwrap_or(u64::MAX), span.parent_id.is_some()));
    spans
}

fn merge(held: &mut Span, late: Span) {
    held.parent_id = held.parent_id.take().or(late.parent_id);
    held.name = held.name.take().or(late.name);
    held.timestamp = held.timestamp.or(late.timestamp);
    held.duration = held.duration.or(late.duration);
    held.local_endpoint = held.local_endpoint.take().or(late.local_endpoint);
    held.remote_endpoint = held.remote_endpoint.take().or(late.remote_endpoint);
    for annotation in late.annotations {
        if !held.annotations.contains(&annotation) {
            held.annotations.push(annotation);
        }
    }
    for (key, value) in late.tags {
        held.tags.entry(key).or_insert(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::{Endpoint, Kind};

    pub(crate) fn span(trace: &str, id: &str, parent: Option<&str>, service: &str, name: &str, at: u64) -> Span {
        Span {
            trace_id: trace.into(),
            id: id.into(),
            parent_id: parent.map(str::to_string),
            kind: Some(Kind::Server),
            name: Some(name.into()),
            timestamp: Some(at),
            duration: Some(10),
            local_endpoint: Some(Endpoint { service_name: Some(service.into()), ..Endpoint::default() }),
            ..Span::default()
        }
    }

    #[test]
    fn spans_group_by_trace_and_the_oldest_traces_go_first() {
        let mut store = Store::new(3);
        store.insert(vec![span("a", "1", None, "gw", "x", 10), span("a", "2", Some("1"), "pp", "y", 11)]);
        store.insert(vec![span("a", "2", Some("1"), "pp", "y", 11)]);
        assert_eq!(store.span_count(), 2, "a span reported twice is kept once");
        store.insert(vec![span("b", "1", None, "gw", "x", 20), span("b", "3", Some("1"), "details", "z", 21)]);
        assert!(store.trace("a").is_none(), "trace a was evicted");
        assert_eq!(store.trace("b").map(|spans| spans.len()), Some(2));
        assert_eq!(store.services(), ["details", "gw"]);
        assert_eq!(store.span_names("details"), ["z"]);
    }

    #[test]
    fn a_64_bit_id_finds_the_128_bit_trace() {
        let mut store = Store::new(10);
        store.insert(vec![span("463ac35c9f6413ad48485a3953bb6124", "1", None, "gw", "x", 10)]);
        assert!(store.trace("48485a3953bb6124").is_some());
        assert!(store.trace("0000000000000001").is_none());
    }
}
