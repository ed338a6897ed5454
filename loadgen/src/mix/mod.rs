//! The mix: which requests a run sends, in which proportions, and the number each placeholder of a
//! path stands for in each request. The `--mix` text it is written in is [`parse`]'s.

mod parse;

use std::fmt::Write as _;

use bytes::Bytes;
use http::Method;

/// The default mix, a cycle of 20 requests: the seed's three routes (75%), 5% of a path that does
/// not exist so that 404s show in APM next to the successes, and the database routes (20%): one
/// visit recorded for two read back by id and one list of the latest. Ids are drawn from 1..50, so
/// that a run of a few hundred requests has created most of the ids it asks for (a 404 before).
pub const DEFAULT: &str = "/=5,/api/apm=5,/api/trace=5,/no-such-page=1,\
POST /api/visits {\"page\":\"/\"}=1,GET /api/visits/{1..50}=2,GET /api/visits=1";

/// Weighted requests, sent in a fixed interleaved cycle so that any run holds them in proportion.
///
/// The text is `entry,entry,...`, each entry `[METHOD ]path[ body][=weight]`: the method (GET when
/// left out), a path in which `{low..high}` stands for a number drawn per request from that
/// inclusive range, a JSON body (POST, PUT and PATCH only) and a weight (1 when left out). Commas,
/// `=` and spaces inside braces, brackets and JSON strings belong to the body, so a JSON body needs
/// no escaping: `/=3,POST /api/visits {"page":"/a","n":1}=1,/api/visits/{1..50}=2`.
#[derive(Debug, Clone)]
pub struct Mix {
    entries: Vec<Entry>,
    cycle: Vec<usize>,
}

/// One kind of request of the mix.
#[derive(Debug, Clone)]
pub struct Entry {
    pub method: Method,
    /// The path as written, placeholders included: how the report names the entry's row.
    pub path: String,
    /// Sent as it was written, with `content-type: application/json`.
    pub body: Option<Bytes>,
    pub weight: u32,
    parts: Vec<Part>,
}

/// A piece of a path: text as written, or a `{low..high}` placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Part {
    Text(String),
    Number { low: u64, high: u64 },
}

/// Whether a body may go with `method`: RFC 9110 gives content a meaning for these three only
/// (a GET or DELETE body "has no generally defined semantics", and servers may refuse it).
pub(crate) fn takes_a_body(method: &Method) -> bool {
    matches!(*method, Method::POST | Method::PUT | Method::PATCH)
}

impl Mix {
    fn new(entries: Vec<Entry>) -> Self {
        let weights: Vec<u32> = entries.iter().map(|entry| entry.weight).collect();
        let cycle = smooth_cycle(&weights);
        Self { entries, cycle }
    }

    /// The entries, in the order given; a request's entry is its index here.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Which entry request number `index` goes to.
    pub fn pick(&self, index: u64) -> usize {
        self.cycle[(index % self.cycle.len() as u64) as usize]
    }
}

impl Entry {
    /// `METHOD path`, the entry's name in the report: one row per entry, whatever ids it drew.
    pub fn label(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    /// Whether the path has `{low..high}` placeholders (else every request sends the same path).
    pub fn has_placeholders(&self) -> bool {
        self.parts
            .iter()
            .any(|part| matches!(part, Part::Number { .. }))
    }

    /// The path of request number `index`, its placeholders replaced by their numbers.
    pub fn path_of(&self, index: u64) -> String {
        let mut path = String::new();
        render(&self.parts, index, &mut path);
        path
    }

    /// The path's pieces, for [`render`].
    pub(crate) fn parts(&self) -> &[Part] {
        &self.parts
    }
}

/// Appends the path of request `index` to `out`: its text, and for each placeholder a number drawn
/// from its range by a generator seeded with the request's number. So a run sends the same numbers
/// in the same (scrambled) order every time, the placeholders of one path draw unrelated numbers,
/// and over many requests every number of a range comes up about equally often.
pub(crate) fn render(parts: &[Part], index: u64, out: &mut String) {
    let mut numbers = fastrand::Rng::with_seed(index);
    for part in parts {
        match part {
            Part::Text(text) => out.push_str(text),
            Part::Number { low, high } => {
                let _ = write!(out, "{}", numbers.u64(*low..=*high));
            }
        }
    }
}

/// Smooth weighted round robin (as nginx balances upstreams): weights 3,1 give a a b a, not a a a b.
fn smooth_cycle(weights: &[u32]) -> Vec<usize> {
    let total: i64 = weights.iter().map(|&w| i64::from(w)).sum();
    let mut current = vec![0i64; weights.len()];
    (0..total)
        .map(|_| {
            for (c, &w) in current.iter_mut().zip(weights) {
                *c += i64::from(w);
            }
            let best = (0..weights.len())
                .max_by_key(|&i| (current[i], -(i as i64)))
                .unwrap_or(0);
            current[best] -= total;
            best
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only(text: &str) -> Entry {
        let mix = Mix::parse(text).unwrap();
        assert_eq!(mix.entries().len(), 1, "{text}");
        mix.entries()[0].clone()
    }

    #[test]
    fn smooth_cycle_interleaves_by_weight() {
        let mix = Mix::parse("/a=3,/b=1").unwrap();
        let picks: Vec<usize> = (0..8).map(|i| mix.pick(i)).collect();
        assert_eq!(picks, [0, 0, 1, 0, 0, 0, 1, 0]);
    }

    #[test]
    fn mix_proportions_are_exact_over_whole_cycles() {
        let mix = Mix::parse("/=6,/api/apm=7,/api/trace=6,/x=1").unwrap();
        let mut counts = [0u32; 4];
        for i in 0..2000 {
            counts[mix.pick(i)] += 1;
        }
        assert_eq!(counts, [600, 700, 600, 100]);
    }

    #[test]
    fn the_default_mix_keeps_the_seed_routes_the_majority_in_a_cycle_of_20() {
        let mix = Mix::parse(DEFAULT).unwrap();
        let labels: Vec<String> = mix.entries().iter().map(Entry::label).collect();
        assert_eq!(
            labels,
            [
                "GET /",
                "GET /api/apm",
                "GET /api/trace",
                "GET /no-such-page",
                "POST /api/visits",
                "GET /api/visits/{1..50}",
                "GET /api/visits",
            ]
        );
        let mut counts = [0u32; 7];
        for i in 0..20 {
            counts[mix.pick(i)] += 1;
        }
        assert_eq!(
            counts,
            [5, 5, 5, 1, 1, 2, 1],
            "each entry its weight in every 20"
        );
        let post = &mix.entries()[4];
        assert_eq!(post.body.as_deref(), Some(&br#"{"page":"/"}"#[..]));
    }

    #[test]
    fn placeholder_numbers_are_in_range_deterministic_and_even() {
        let entry = only("/visits/{100..109}");
        let again = only("/visits/{100..109}");
        let mut counts = [0u32; 10];
        for i in 0..10_000 {
            let path = entry.path_of(i);
            assert_eq!(
                path,
                again.path_of(i),
                "the same request number, the same id"
            );
            let id: u64 = path.strip_prefix("/visits/").unwrap().parse().unwrap();
            assert!((100..=109).contains(&id), "{path}");
            counts[(id - 100) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&n| (850..=1150).contains(&n)),
            "{counts:?}"
        );
        let picks: Vec<String> = (0..8).map(|i| entry.path_of(i)).collect();
        assert!(picks.windows(2).any(|w| w[0] != w[1]), "{picks:?}");
    }

    #[test]
    fn two_placeholders_draw_their_own_numbers() {
        let entry = only("/{1..1000}/{1..1000}");
        let same = (0..1000)
            .filter(|&i| {
                let path = entry.path_of(i);
                let (a, b) = path[1..].split_once('/').unwrap();
                a == b
            })
            .count();
        assert!(
            same < 10,
            "{same} of 1000 requests drew the same number twice"
        );
    }

    #[test]
    fn numbers_cover_the_whole_u64_range_without_overflow() {
        let number = |text: &str, index| only(text).path_of(index)[1..].parse::<u64>().unwrap();
        assert_eq!(number("/{42..42}", 5), 42);
        let whole: Vec<u64> = (0..64)
            .map(|i| number("/{0..18446744073709551615}", i))
            .collect();
        assert!(
            whole.iter().any(|&n| n > u64::MAX / 2) && whole.iter().any(|&n| n < u64::MAX / 2),
            "both halves of the whole range are drawn: {whole:?}"
        );
        assert!(
            (0..64).all(
                |i| number("/{18446744073709551614..18446744073709551615}", i) >= u64::MAX - 1
            )
        );
    }
}
