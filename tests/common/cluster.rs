//! A cluster on loopback, as a StatefulSet runs it: pods `shoal-0..n` on consecutive 127.0.0.x
//! addresses with the same ports, found through a DNS server inside the test that answers the
//! headless Service's names, every node with the same cluster token. And a client for the peer
//! port, to check what it refuses and to read every replica's records.

use super::dns::TestDns;
use super::{free_port, Node};
use serde::de::DeserializeOwned;
use serde::Serialize;
use shoal::cluster::protocol::{
    self, RecordsPage, RecordsRequest, PROTOCOL_HEADER, PROTOCOL_VERSION, TOKEN_HEADER,
};
use shoal::shard::point::{PointId, Record};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

pub const SERVICE: &str = "shoal-headless.default.svc.cluster.local";
/// The peer port's shared secret (a Kubernetes Secret in production).
pub const TOKEN: &str = "test-cluster-token-7f3a9c1e";

pub struct TestCluster {
    pub dns: TestDns,
    pub nodes: Vec<Node>,
}

/// The arguments that make pod `shoal-<i>` of an `n`-node cluster.
pub fn cluster_args(i: usize, n: usize, dns: &TestDns) -> Vec<String> {
    [
        "--hostname",
        &format!("shoal-{i}"),
        "--service",
        SERVICE,
        "--cluster-size",
        &n.to_string(),
        "--dns-server",
        &dns.addr.to_string(),
        "--cluster-token",
        TOKEN,
    ]
    .map(String::from)
    .to_vec()
}

impl TestCluster {
    /// Starts `shoal-0..n` on 127.0.0.`first_ip`.. in order, each only once the previous one is
    /// Ready (what `podManagementPolicy: OrderedReady` does).
    pub fn start(root: &Path, n: usize, first_ip: u8, extra_args: &[&str]) -> TestCluster {
        let dns = TestDns::start();
        let (port, peer_port) = (free_port("127.0.0.1"), free_port("127.0.0.1"));
        let mut nodes = Vec::new();
        for i in 0..n {
            let ip = Ipv4Addr::new(127, 0, 0, first_ip + i as u8);
            dns.set(&format!("shoal-{i}.{SERVICE}"), &[ip]);
            let mut args = cluster_args(i, n, &dns);
            args.extend(extra_args.iter().map(|a| a.to_string()));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let dir = root.join(format!("shoal-{i}"));
            nodes.push(Node::start_at(IpAddr::V4(ip), port, peer_port, &dir, &args));
        }
        TestCluster { dns, nodes }
    }
}

/// Speaks the peer protocol to one node, as a peer (or an attacker) would.
pub struct PeerClient {
    pub addr: SocketAddr,
    http: reqwest::blocking::Client,
    /// The protocol version it speaks (the header it sends, the shapes it writes and reads).
    pub version: u32,
}

impl PeerClient {
    pub fn new(addr: SocketAddr) -> PeerClient {
        PeerClient {
            addr,
            // A fresh connection per request: the node closes one whose body it refused, and
            // a pooled connection could be reused just as it closes.
            http: reqwest::blocking::Client::builder()
                .timeout(std::time::Duration::from_secs(60))
                .pool_max_idle_per_host(0)
                .build()
                .expect("client"),
            version: PROTOCOL_VERSION,
        }
    }

    /// This client, speaking protocol `version` (a node of an older release).
    pub fn speaking(mut self, version: u32) -> PeerClient {
        self.version = version;
        self
    }

    /// Sends raw bytes with the given token (or none); returns the status and the body.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Vec<u8>,
    ) -> (u16, Vec<u8>) {
        self.try_send(method, path, token, body)
            .expect("peer request sent")
    }

    /// As [`PeerClient::send`], but a connection the node closes before the whole body is sent
    /// (it refused the request from its headers) is an `Err`.
    pub fn try_send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Vec<u8>,
    ) -> Result<(u16, Vec<u8>), reqwest::Error> {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self
            .http
            .request(m, format!("http://{}{path}", self.addr))
            .header(PROTOCOL_HEADER, self.version.to_string())
            .body(body);
        if let Some(t) = token {
            req = req.header(TOKEN_HEADER, t);
        }
        let resp = req.send()?;
        let status = resp.status().as_u16();
        Ok((status, resp.bytes().map(|b| b.to_vec()).unwrap_or_default()))
    }

    /// A call with the cluster token that must succeed.
    pub fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: &Req,
    ) -> Resp {
        let body = protocol::encode_as(self.version, body);
        let (status, bytes) = self.send(method, path, Some(TOKEN), body);
        assert_eq!(
            status,
            200,
            "{method} {path}: {}",
            String::from_utf8_lossy(&bytes)
        );
        protocol::decode_as(self.version, &bytes).expect("peer answer decodes")
    }

    /// Every record (tombstones included) of this node's replica of a shard; `None` when the
    /// node holds no replica of it.
    pub fn records(&self, collection: &str, shard: u32) -> Option<BTreeMap<PointId, Record>> {
        let path = protocol::shard_path(collection, shard, "records");
        let mut all = BTreeMap::new();
        let mut after = None;
        loop {
            let req = RecordsRequest {
                since: 0,
                after,
                limit: 10_000,
            };
            let (status, bytes) = self.send("POST", &path, Some(TOKEN), protocol::encode(&req));
            if status == 409 {
                return None;
            }
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
            let page: RecordsPage = protocol::decode(&bytes).expect("records page");
            all.extend(page.changes.into_iter().map(|c| (c.id, c.record)));
            match page.next {
                Some(n) => after = Some(n),
                None => return Some(all),
            }
        }
    }
}
