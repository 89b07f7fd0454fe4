//! `--url … --filtered`: filtered search over REST, the figures of docs/filtered-search.md.
//!
//! Every point carries six keyword fields, `s1000`, `s100`, `s20`, `s10`, `s5` and `s2`, each
//! `"v{id % m}"`: a filter `s{m} = "v0"` selects 1/m of the points (0.1 %, 1 %, 5 %, 10 %, 20 %,
//! 50 %), independently of the vectors. The sweep runs the unfiltered searches, then each filter
//! on the unindexed fields (the node's planner builds its implicit columns on first use), then
//! creates keyword indexes on the fields and runs the filters again. Recall@k is against exact
//! filtered search computed here by brute force over the points the filter selects.
//!
//! The unindexed pass first drops any index on the fields, so a collection kept from an earlier
//! run (`--skip-upload`) is measured the same way again.

use crate::data::{self, Matrix};
use crate::http::Target;
use anyhow::Result;
use shoal::index::Metric;

/// The moduli of the selective fields: `s{m} = "v0"` holds for 1/m of the points.
/// 5 % and 20 % lie in the planner's weak range (between exact scoring of the candidates and a
/// walk of the graph that most nodes pass).
pub const FIELDS: [usize; 6] = [1000, 100, 20, 10, 5, 2];

/// One measured configuration: which filter, indexed or not, and its ground truth.
pub struct Case {
    pub name: String,
    pub filter: Option<String>,
    pub truth: Vec<Vec<u32>>,
}

/// The unfiltered case, then every selectivity (those of `only`'s moduli when it is not empty),
/// its ground truth computed once.
pub fn cases(
    base: &Matrix,
    queries: &Matrix,
    metric: Metric,
    k: usize,
    unfiltered: &[Vec<u32>],
    only: &[usize],
    clause: Clause,
) -> Vec<Case> {
    let mut out = vec![Case {
        name: "no filter".into(),
        filter: None,
        truth: unfiltered.to_vec(),
    }];
    for m in FIELDS
        .into_iter()
        .filter(|m| only.is_empty() || only.contains(m))
    {
        let truth = data::exact_knn(base, queries, metric, k, &|i| i % m == 0);
        out.push(Case {
            name: format!("{}% (s{m})", 100.0 / m as f64),
            filter: Some(selecting(m, clause)),
            truth,
        });
    }
    out
}

/// How the filter selecting `s{m} = "v0"` is written: the same points, through another clause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Clause {
    /// `must: [s{m} = v0]`.
    Must,
    /// `should: [s{m} = v0]`.
    Should,
}

/// The filter text selecting the points with `s{m} = "v0"`, written with `clause`.
fn selecting(m: usize, clause: Clause) -> String {
    let clause = match clause {
        Clause::Must => "must",
        Clause::Should => "should",
    };
    format!("{{\"{clause}\":[{{\"key\":\"s{m}\",\"match\":{{\"value\":\"v0\"}}}}]}}")
}

/// Creates the keyword indexes on the selective fields.
pub async fn create_indexes(target: &Target) -> Result<()> {
    for m in FIELDS {
        target.create_index(&format!("s{m}"), "keyword").await?;
    }
    Ok(())
}

/// Drops the indexes of the selective fields, where there are any.
pub async fn drop_indexes(target: &Target) -> Result<()> {
    for m in FIELDS {
        target.delete_index(&format!("s{m}")).await?;
    }
    Ok(())
}
