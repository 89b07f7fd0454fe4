//! `--url` mode: the same sweep over a running node's (or cluster's) Qdrant REST API. One tokio
//! current-thread runtime drives `concurrency` in-flight requests over a pooled keep-alive
//! reqwest client, so the client takes as little CPU as possible from the node on the same box.

use crate::data::Matrix;
use crate::report::{percentile, Progress};
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Target {
    pub urls: Vec<String>,
    pub collection: String,
    pub client: reqwest::Client,
}

#[derive(Deserialize)]
struct SearchResp {
    result: Vec<Hit>,
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
            let (mut points, mut indexed) = (0usize, 0usize);
            for i in 0..self.urls.len() {
                let v = Self::check(
                    self.client.get(self.coll(i)).send().await?,
                    "collection info",
                )
                .await?;
                let r = &v["result"];
                points += r["points_count"].as_u64().unwrap_or(0) as usize;
                indexed += r["indexed_vectors_count"].as_u64().unwrap_or(0) as usize;
            }
            eprint!(
                "\r[index] {indexed}/{points} vectors indexed, {:.0} s   ",
                t.elapsed().as_secs_f64()
            );
            let ready = points >= expect_points && indexed as f64 >= min_fraction * points as f64;
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

    /// Runs every query once (after `warmup` untimed ones) with `concurrency` in flight.
    pub async fn sweep(
        &self,
        queries: &Matrix,
        k: usize,
        ef: usize,
        concurrency: usize,
        warmup: usize,
    ) -> Result<SweepPoint> {
        let url = Arc::new(format!("{}/points/search", self.coll(0)));
        let bodies: Arc<Vec<String>> = Arc::new(
            (0..queries.rows())
                .map(|i| {
                    format!(
                        "{{\"vector\":{},\"limit\":{k},\"params\":{{\"hnsw_ef\":{ef}}}}}",
                        serde_json::to_string(queries.row(i)).unwrap_or_default()
                    )
                })
                .collect(),
        );
        for b in bodies.iter().take(warmup) {
            self.one(&url, b.clone()).await?;
        }
        let next = Arc::new(AtomicUsize::new(0));
        let t = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..concurrency.max(1) {
            let (url, bodies, next, me) = (
                Arc::clone(&url),
                Arc::clone(&bodies),
                Arc::clone(&next),
                self.client.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= bodies.len() {
                        return Ok::<_, anyhow::Error>(out);
                    }
                    let s = Instant::now();
                    let ids = one(&me, &url, bodies[i].clone()).await?;
                    out.push((i, s.elapsed().as_secs_f64() * 1e6, ids));
                }
            }));
        }
        let mut ids = vec![Vec::new(); queries.rows()];
        let mut lat = Vec::with_capacity(queries.rows());
        for task in tasks {
            for (i, l, got) in task.await?? {
                ids[i] = got;
                lat.push(l);
            }
        }
        let wall = t.elapsed().as_secs_f64();
        lat.sort_by(f64::total_cmp);
        let _ = percentile(&lat, 0.5);
        Ok(SweepPoint {
            ids,
            qps: queries.rows() as f64 / wall,
            lat_us: lat,
        })
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

    async fn one(&self, url: &str, body: String) -> Result<Vec<u32>> {
        one(&self.client, url, body).await
    }
}

async fn one(client: &reqwest::Client, url: &str, body: String) -> Result<Vec<u32>> {
    let r = client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?;
    let status = r.status();
    let bytes = r.bytes().await?;
    if !status.is_success() {
        bail!("search: HTTP {status}: {}", String::from_utf8_lossy(&bytes));
    }
    let resp: SearchResp = serde_json::from_slice(&bytes)?;
    Ok(resp
        .result
        .iter()
        .filter_map(|h| h.id.as_u64())
        .map(|x| x as u32)
        .collect())
}
