//! Who this node is: the StatefulSet name and ordinal, read from the pod's hostname.
//!
//! A StatefulSet names its pods `<statefulset>-<ordinal>`; the ordinal is the number after the
//! last `-`. Everything a node owns follows from that ordinal (see [`super::placement`]).

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The StatefulSet's name, e.g. `shoal`.
    pub statefulset: String,
    /// This pod's ordinal, e.g. 2 for `shoal-2`.
    pub ordinal: u32,
}

impl Identity {
    /// Parses `shoal-2` into (`shoal`, 2). A hostname given as an FQDN is cut at the first dot.
    pub fn from_hostname(hostname: &str) -> Result<Identity, String> {
        let short = hostname.split('.').next().unwrap_or(hostname);
        let (name, ordinal) = short.rsplit_once('-').ok_or_else(|| {
            format!("hostname {hostname:?} has no ordinal: a StatefulSet pod is named <statefulset>-<ordinal>, e.g. shoal-0")
        })?;
        let ordinal = ordinal.parse::<u32>().map_err(|_| {
            format!("hostname {hostname:?} does not end in an ordinal (<statefulset>-<number>)")
        })?;
        if name.is_empty() {
            return Err(format!(
                "hostname {hostname:?} has no StatefulSet name before the ordinal"
            ));
        }
        Ok(Identity {
            statefulset: name.to_string(),
            ordinal,
        })
    }

    /// The pod name of another ordinal of the same StatefulSet.
    pub fn pod_name(&self, ordinal: u32) -> String {
        format!("{}-{}", self.statefulset, ordinal)
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.statefulset, self.ordinal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_statefulset_hostnames() {
        let id = Identity::from_hostname("shoal-2").unwrap();
        assert_eq!((id.statefulset.as_str(), id.ordinal), ("shoal", 2));
        let id =
            Identity::from_hostname("my-vector-db-10.shoal-headless.ns.svc.cluster.local").unwrap();
        assert_eq!((id.statefulset.as_str(), id.ordinal), ("my-vector-db", 10));
        assert_eq!(id.pod_name(3), "my-vector-db-3");
        for bad in ["shoal", "shoal-", "shoal-x", "-3", "laptop.local"] {
            assert!(Identity::from_hostname(bad).is_err(), "{bad}");
        }
    }
}
