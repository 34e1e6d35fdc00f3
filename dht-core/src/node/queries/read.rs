//! What a caller's read has found: valid copies grouped by version,
//! forgeries counted, and which version it returns.

use libp2p::{
    PeerId,
    kad::{self, Record},
};

use super::super::action::Query;
use crate::{
    error::{GetRecordError, RecordError},
    handle::{GetRecordOk, QueryStats},
    record::{RecordKind, Verified, display_key, verify},
};

/// One version of a record found by a read, and who sent it.
#[derive(Debug)]
struct Version {
    verified: Verified,
    /// The record as stored (a mutable one in its signed envelope).
    record: Record,
    /// The peers that sent it; `None` for this node's own store.
    holders: Vec<Option<PeerId>>,
}

/// Distinct valid versions a read keeps; only an owner can make more, and
/// the lowest are dropped first.
const MAX_VERSIONS: usize = 16;

/// What a read has found so far: the valid copies, grouped by version, and
/// how many copies failed verification.
///
/// An immutable record has one possible value, so a read of one ends at
/// the first `required` valid copies. A mutable record may have a newer
/// version at a holder not asked yet, so a read of one asks every holder
/// the lookup reaches, returns the newest version `required` copies agree
/// on, and sends it to the holders of older ones.
#[derive(Debug)]
pub(crate) struct Read {
    versions: Vec<Version>,
    pub(super) forgeries: usize,
    to_the_end: bool,
}

impl Read {
    /// A read of `key`.
    pub(crate) fn new(key: &[u8]) -> Self {
        Self {
            versions: Vec::new(),
            forgeries: 0,
            to_the_end: matches!(RecordKind::parse(key), Ok(RecordKind::Mutable { .. })),
        }
    }

    /// Whether the read may stop before its lookup ends.
    pub(super) fn is_enough(&self, required: usize) -> bool {
        !self.to_the_end && self.agreed(required).is_some()
    }

    /// The newest version agreed on, to the holders of older versions.
    pub(super) fn repair(&self, required: usize) -> Option<Query> {
        let newest = self.agreed(required)?;
        let stale = self
            .versions
            .iter()
            .filter(|v| v.verified.seq < newest.verified.seq)
            .flat_map(|v| v.holders.iter().copied());
        let (mut peers, mut here) = (Vec::new(), false);
        for holder in stale {
            match holder {
                Some(peer) => peers.push(peer),
                None => here = true,
            }
        }
        (here || !peers.is_empty()).then(|| Query::Repair {
            record: Record::new(newest.record.key.clone(), newest.record.value.clone()),
            peers,
            here,
        })
    }

    /// Checks a copy of `key` and keeps it if it is valid: under the key
    /// asked for, signed by its owner or matching its hash.
    pub(super) fn add(&mut self, key: &[u8], copy: &kad::PeerRecord) -> Result<(), RecordError> {
        let verified = if copy.record.key.as_ref() == key {
            verify(key, &copy.record.value)
        } else {
            Err(RecordError::Forged)
        };
        let verified = match verified {
            Ok(verified) => verified,
            Err(reason) => {
                self.forgeries += 1;
                return Err(reason);
            }
        };
        match self
            .versions
            .iter_mut()
            .find(|v| v.verified.seq == verified.seq && v.verified.value == verified.value)
        {
            Some(version) => version.holders.push(copy.peer),
            None => {
                self.versions.push(Version {
                    verified,
                    record: copy.record.clone(),
                    holders: vec![copy.peer],
                });
                self.versions
                    .sort_by_key(|v| std::cmp::Reverse(v.verified.seq));
                self.versions.truncate(MAX_VERSIONS);
            }
        }
        Ok(())
    }

    pub(super) fn is_empty(&self) -> bool {
        self.versions.is_empty()
    }

    /// The newest version at least `required` copies agree on.
    fn agreed(&self, required: usize) -> Option<&Version> {
        // Versions are kept newest first.
        self.versions.iter().find(|v| v.holders.len() >= required)
    }

    /// The reply to a read that is over.
    pub(super) fn result(
        self,
        key: Vec<u8>,
        required: usize,
        stats: QueryStats,
    ) -> Result<GetRecordOk, GetRecordError> {
        let forgeries = self.forgeries;
        if self.versions.is_empty() {
            return Err(GetRecordError::NotFound {
                key: display_key(&key),
                forgeries,
            });
        }
        let Some(index) = self
            .versions
            .iter()
            .position(|v| v.holders.len() >= required)
        else {
            let found = self.versions.iter().map(|v| v.holders.len()).max();
            return Err(GetRecordError::QuorumFailed {
                key: display_key(&key),
                found: found.unwrap_or(0),
                required,
                forgeries,
            });
        };
        let mut versions = self.versions;
        let Version {
            verified, holders, ..
        } = versions.swap_remove(index);
        Ok(GetRecordOk {
            key,
            owner: verified.owner(),
            seq: verified.sequence(),
            value: verified.value,
            found_locally: holders.contains(&None),
            found_at: holders.into_iter().flatten().collect(),
            forgeries,
            stats,
        })
    }
}
