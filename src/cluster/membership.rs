//! How many replicas the StatefulSet has: the cluster size every placement decision uses.
//!
//! The source, in order: `--cluster-size` (fixed, outside Kubernetes), else the StatefulSet's
//! `spec.replicas` read from the Kubernetes API with the pod's service account (only `get` on
//! its own StatefulSet is needed). The API is polled every [`POLL`]; `kubectl scale` therefore
//! reaches every node within seconds, and each node rebalances on its own
//! ([`super::rebalance`]). Using `spec.replicas` (the target) rather than counting pods is what
//! lets a pod that is being removed know it is leaving, and a pod that merely restarts know it
//! is not.

use anyhow::Context;
use std::time::Duration;

pub const POLL: Duration = Duration::from_secs(2);
const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Reads `spec.replicas` of one StatefulSet.
pub struct KubeApi {
    url: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl KubeApi {
    /// `base` is the API server (`https://kubernetes.default.svc` in a pod); the service account's
    /// token and CA are used when present.
    pub fn new(base: &str, namespace: &str, statefulset: &str) -> anyhow::Result<KubeApi> {
        let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(5));
        if let Ok(pem) = std::fs::read(format!("{SA_DIR}/ca.crt")) {
            builder = builder.add_root_certificate(
                reqwest::Certificate::from_pem(&pem).context("service account CA")?,
            );
        }
        let token = std::fs::read_to_string(format!("{SA_DIR}/token"))
            .ok()
            .map(|t| t.trim().to_string());
        Ok(KubeApi {
            url: format!(
                "{}/apis/apps/v1/namespaces/{namespace}/statefulsets/{statefulset}",
                base.trim_end_matches('/')
            ),
            token,
            http: builder.build()?,
        })
    }

    pub async fn replicas(&self) -> anyhow::Result<u32> {
        let mut req = self.http.get(&self.url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("GET {}", self.url))?;
        let status = resp.status();
        anyhow::ensure!(status.is_success(), "GET {} answered {status}", self.url);
        let body: serde_json::Value = resp.json().await?;
        let n = body["spec"]["replicas"].as_u64().unwrap_or(1);
        u32::try_from(n).context("spec.replicas out of range")
    }
}

/// Where the cluster size comes from.
pub enum SizeSource {
    Fixed(u32),
    Kubernetes(KubeApi),
}

impl SizeSource {
    pub async fn current(&self) -> anyhow::Result<u32> {
        match self {
            SizeSource::Fixed(n) => Ok(*n),
            SizeSource::Kubernetes(api) => api.replicas().await,
        }
    }
}
