//! `--url` mode: the same sweep over a running node's (or cluster's) Qdrant REST API. One tokio
//! current-thread runtime drives `concurrency` in-flight requests over a pooled keep-alive
//! reqwest client, so the client takes as little CPU as possible from the node on the same box.

use crate::data::Matrix;
use crate::report::Progress;
use crate::spin::Answer;
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Target {
    pub urls: Vec<String>,
    pub collection: String,
    pub client: reqwest::Client,
    /// Upload two small payload fields with every point (`group`: 0..100, `tag`: "t0".."t6").
    pub payloads: bool,
    /// `wait_indexed` also waits for every node to report status `green` and all points indexed.
    pub until_green: bool,
    /// Also upload the fields filtered searches select on ([`crate::filtered`]): `s1000`,
    /// `s100`, `s10`, `s2`, each `"v{id % m}"`, so that `"v0"` is held by 1/m of the points.
    pub selective: bool,
    /// The filter (JSON) every search of [`Target::sweep`] carries, if any.
    pub filter: Option<String>,
    /// `params.quantization` (JSON) every search of [`Target::sweep`] carries, if any.
    pub quantization: Option<String>,
}

#[derive(Deserialize)]
struct SearchResp {
    result: Vec<Hit>,
}
#[derive(Deserialize)]
struct BatchResp {
    result: Vec<Vec<Hit>>,
}
#[derive(Deserialize)]
struct Hit {
    id: serde_json::Value,
}

pub struct SweepPoint {
    pub ids: Vec<Vec<u32>>,
    pub qps: f64,
    pub lat_us: Vec<f64>,
}

impl Target {
    pub fn new(urls: Vec<String>, collection: String, concurrency: usize) -> Result<Target> {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(concurrency.max(4))
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(300))
            .build()?;
        Ok(Target {
            urls,
            collection,
            client,
            payloads: false,
            until_green: false,
            selective: false,
            filter: None,
            quantization: None,
        })
    }

    fn coll(&self, i: usize) -> String {
        format!(
            "{}/collections/{}",
            self.urls[i].trim_end_matches('/'),
            self.collection
        )
    }

    async fn check(resp: reqwest::Response, what: &str) -> Result<serde_json::Value> {
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            bail!(
                "{what}: HTTP {status}: {}",
                text.chars().take(500).collect::<String>()
            );
        }
        Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
    }

    /// Deletes the collection if present and creates it anew.
    pub async fn create(&self, body: serde_json::Value) -> Result<()> {
        let _ = self.client.delete(self.coll(0)).send().await;
        let r = self
            .client
            .put(self.coll(0))
            .json(&body)
            .send()
            .await
            .context("create collection")?;
        Self::check(r, "create collection").await?;
        Ok(())
    }

    /// Upserts rows `0..n` as points with ids `0..n`, `batch` at a time, `wait=true`.
    pub async fn upload(&self, data: &Matrix, batch: usize) -> Result<f64> {
        let n = data.rows();
        let t = Instant::now();
        let mut p = Progress::new("upsert", n);
        let mut i = 0;
        while i < n {
            let end = (i + batch).min(n);
            let mut body = String::with_capacity((end - i) * data.dim * 12 + 32);
            body.push_str("{\"points\":[");
            for j in i..end {
                if j > i {
                    body.push(',');
                }
                body.push_str(&format!("{{\"id\":{j},\"vector\":"));
                body.push_str(&serde_json::to_string(data.row(j))?);
                if self.payloads || self.selective {
                    let mut fields = Vec::new();
                    if self.payloads {
                        fields.push(format!("\"group\":{},\"tag\":\"t{}\"", j % 100, j % 7));
                    }
                    if self.selective {
                        for m in crate::filtered::FIELDS {
                            fields.push(format!("\"s{m}\":\"v{}\"", j % m));
                        }
                    }
                    body.push_str(&format!(",\"payload\":{{{}}}", fields.join(",")));
                }
                body.push('}');
            }
            body.push_str("]}");
            let r = self
                .client
                .put(format!("{}/points?wait=true", self.coll(0)))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .context("upsert")?;
            Self::check(r, "upsert").await?;
            i = end;
            p.set(i);
        }
        p.done();
        Ok(t.elapsed().as_secs_f64())
    }

    /// Waits until every given node reports `indexed_vectors_count ≥ min_fraction · points_count`
    /// (summed over the URLs) and the counts stay put for two polls in a row.
    pub async fn wait_indexed(
        &self,
        expect_points: usize,
        min_fraction: f64,
        timeout: Duration,
    ) -> Result<(f64, usize, usize)> {
        let t = Instant::now();
        let mut last = (usize::MAX, usize::MAX);
        let mut stable = 0;
        loop {
            let (mut points, mut indexed, mut green) = (0usize, 0usize, true);
            for i in 0..self.urls.len() {
                let v = Self::check(
                    self.client.get(self.coll(i)).send().await?,
                    "collection info",
                )
                .await?;
                let r = &v["result"];
                points += r["points_count"].as_u64().unwrap_or(0) as usize;
                indexed += r["indexed_vectors_count"].as_u64().unwrap_or(0) as usize;
                green &= r["status"] == "green";
            }
            eprint!(
                "\r[index] {indexed}/{points} vectors indexed, {:.0} s   ",
                t.elapsed().as_secs_f64()
            );
            let ready = points >= expect_points
                && indexed as f64 >= min_fraction * points as f64
                && (!self.until_green || green);
            if ready && (points, indexed) == last {
                stable += 1;
                if stable >= 2 || indexed == points {
                    eprintln!();
                    return Ok((t.elapsed().as_secs_f64(), points, indexed));
                }
            } else {
                stable = 0;
            }
            last = (points, indexed);
            if t.elapsed() > timeout {
                eprintln!();
                bail!("indexing did not finish in {timeout:?}: {indexed}/{points}");
            }
            tokio::time::sleep(Duration::from_millis(1000)).await;
        }
    }

    /// Runs every query (after one untimed pass) with `concurrency` in flight, on the spinning
    /// socket client ([`crate::spin`]) or, with `spin` off, on the reqwest pool. The timed pass
    /// repeats the query set until it lasts at least `min_secs`, so short sets still give stable
    /// figures; recall is taken from each query's first answer. With `batch` > 1 each request
    /// is a `/points/search/batch` of that many queries.
    #[allow(clippy::too_many_arguments)]
    pub async fn sweep(
        &self,
        queries: &Matrix,
        k: usize,
        ef: usize,
        concurrency: usize,
        min_secs: f64,
        spin: bool,
        batch: usize,
    ) -> Result<SweepPoint> {
        let batch = batch.max(1);
        // ef 0: the collection's default `hnsw_ef`.
        let mut fields = Vec::new();
        if ef > 0 {
            fields.push(format!("\"hnsw_ef\":{ef}"));
        }
        if let Some(q) = &self.quantization {
            fields.push(format!("\"quantization\":{q}"));
        }
        let params = if fields.is_empty() {
            String::new()
        } else {
            format!(",\"params\":{{{}}}", fields.join(","))
        };
        let filter = match &self.filter {
            Some(f) => format!(",\"filter\":{f}"),
            None => String::new(),
        };
        let search = |i: usize| {
            format!(
                "{{\"vector\":{},\"limit\":{k}{params}{filter}}}",
                serde_json::to_string(queries.row(i)).unwrap_or_default()
            )
        };
        let nq = queries.rows();
        let (path, bodies): (String, Vec<String>) = if batch == 1 {
            let path = format!("/collections/{}/points/search", self.collection);
            (path, (0..nq).map(search).collect())
        } else {
            let path = format!("/collections/{}/points/search/batch", self.collection);
            let bodies = (0..nq)
                .step_by(batch)
                .map(|s| {
                    let items: Vec<String> = (s..(s + batch).min(nq)).map(search).collect();
                    format!("{{\"searches\":[{}]}}", items.join(","))
                })
                .collect();
            (path, bodies)
        };
        let n = bodies.len();
        let spin_endpoint = if spin {
            Some(Arc::new(crate::spin::Endpoint::parse(&self.urls[0])?))
        } else {
            None
        };
        let url = format!("{}{path}", self.urls[0].trim_end_matches('/'));
        let bodies = Arc::new(bodies);
        let run = |total: usize| {
            let (endpoint, path, url) = (spin_endpoint.clone(), path.clone(), url.clone());
            let bodies = Arc::clone(&bodies);
            async move {
                match endpoint {
                    Some(e) => {
                        tokio::task::spawn_blocking(move || {
                            crate::spin::run(&e, &path, &bodies, total, concurrency)
                        })
                        .await?
                    }
                    None => self.run_pooled(&url, bodies, total, concurrency).await,
                }
            }
        };
        let (_, once) = run(n).await?;
        let repeats = ((min_secs / once.max(1e-6)).ceil() as usize).clamp(1, 1000);
        let (answers, wall) = run(n * repeats).await?;
        let mut ids = vec![Vec::new(); nq];
        let mut lat = Vec::with_capacity(answers.len());
        let mut answered = 0;
        for a in &answers {
            // Request i carries queries i·batch onwards, up to `batch` of them.
            let first = (a.query % n) * batch;
            let carried = batch.min(nq - first);
            answered += carried;
            lat.push(a.latency_us);
            if !Answer::keeps_body(a.query, n) {
                continue;
            }
            let per_query = if batch == 1 {
                vec![hit_ids(&a.body)?]
            } else {
                batch_hit_ids(&a.body)?
            };
            if per_query.len() != carried {
                bail!(
                    "request {} carried {carried} queries but was answered {} times",
                    a.query,
                    per_query.len()
                );
            }
            for (j, got) in per_query.into_iter().enumerate() {
                ids[first + j] = got;
            }
        }
        lat.sort_by(f64::total_cmp);
        Ok(SweepPoint {
            ids,
            qps: answered as f64 / wall,
            lat_us: lat,
        })
    }

    /// [`crate::spin::run`] on the reqwest pool: tasks on this runtime, each one request at a time.
    async fn run_pooled(
        &self,
        url: &str,
        bodies: Arc<Vec<String>>,
        total: usize,
        concurrency: usize,
    ) -> Result<(Vec<Answer>, f64)> {
        let url = Arc::new(url.to_string());
        let total = if bodies.is_empty() { 0 } else { total };
        let next = Arc::new(AtomicUsize::new(0));
        let t = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..concurrency.max(1) {
            let (url, bodies, next, client) = (
                Arc::clone(&url),
                Arc::clone(&bodies),
                Arc::clone(&next),
                self.client.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::new();
                loop {
                    let query = next.fetch_add(1, Ordering::Relaxed);
                    if query >= total {
                        return Ok::<_, anyhow::Error>(out);
                    }
                    let body = &bodies[query % bodies.len()];
                    let s = Instant::now();
                    let r = client
                        .post(url.as_str())
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await?;
                    let status = r.status();
                    let bytes = r.bytes().await?;
                    if !status.is_success() {
                        bail!("search: HTTP {status}: {}", String::from_utf8_lossy(&bytes));
                    }
                    let keep = Answer::keeps_body(query, bodies.len());
                    out.push(Answer {
                        query,
                        latency_us: s.elapsed().as_secs_f64() * 1e6,
                        body: if keep { bytes.to_vec() } else { Vec::new() },
                    });
                }
            }));
        }
        let mut answers = Vec::with_capacity(total);
        for task in tasks {
            answers.extend(task.await??);
        }
        Ok((answers, t.elapsed().as_secs_f64()))
    }

    /// Indexes a payload field (`PUT /collections/{c}/index`, `wait=true`).
    pub async fn create_index(&self, field: &str, schema: &str) -> Result<()> {
        let body = serde_json::json!({"field_name": field, "field_schema": schema});
        let url = format!("{}/index?wait=true", self.coll(0));
        let r = retry_once(|| self.client.put(&url).json(&body))
            .await
            .context("create index")?;
        Self::check(r, "create index").await?;
        Ok(())
    }

    /// Drops a payload field's index (`DELETE /collections/{c}/index/{field}`, `wait=true`);
    /// a field without one is no error.
    pub async fn delete_index(&self, field: &str) -> Result<()> {
        let url = format!("{}/index/{field}?wait=true", self.coll(0));
        let r = retry_once(|| self.client.delete(&url))
            .await
            .context("delete index")?;
        if r.status() != reqwest::StatusCode::NOT_FOUND {
            Self::check(r, "delete index").await?;
        }
        Ok(())
    }

    /// Latencies (µs, ascending) of `n` sequential `GET {first url}{path}` on the same pool: the
    /// round trip of the HTTP stack alone, to set beside the search latencies.
    pub async fn baseline(&self, path: &str, n: usize) -> Result<Vec<f64>> {
        let url = format!("{}{path}", self.urls[0].trim_end_matches('/'));
        let mut lat = Vec::with_capacity(n);
        for i in 0..n + n / 10 {
            let s = Instant::now();
            let r = self.client.get(&url).send().await?;
            let status = r.status();
            let _ = r.bytes().await?;
            if !status.is_success() {
                bail!("GET {url}: HTTP {status}");
            }
            if i >= n / 10 {
                lat.push(s.elapsed().as_secs_f64() * 1e6);
            }
        }
        lat.sort_by(f64::total_cmp);
        Ok(lat)
    }
}

/// Sends an idempotent request, and once more if it fails to send: a pooled keep-alive
/// connection may have been closed by the node while the bench computed ground truth (a minute
/// at 1M points), and the first request on it then fails with "connection closed".
async fn retry_once(
    request: impl Fn() -> reqwest::RequestBuilder,
) -> reqwest::Result<reqwest::Response> {
    match request().send().await {
        Ok(r) => Ok(r),
        Err(_) => request().send().await,
    }
}

fn ids_of(hits: &[Hit]) -> Vec<u32> {
    hits.iter()
        .filter_map(|h| h.id.as_u64())
        .map(|x| x as u32)
        .collect()
}

/// The ids of a search answer's hits, in order.
fn hit_ids(body: &[u8]) -> Result<Vec<u32>> {
    let resp: SearchResp = serde_json::from_slice(body)?;
    Ok(ids_of(&resp.result))
}

/// The hit ids of each search of a batch answer.
fn batch_hit_ids(body: &[u8]) -> Result<Vec<Vec<u32>>> {
    let resp: BatchResp = serde_json::from_slice(body)?;
    Ok(resp.result.iter().map(|h| ids_of(h)).collect())
}
